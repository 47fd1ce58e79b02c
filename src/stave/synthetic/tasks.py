"""What each synthetic task shows and asks.

Video tasks (`TASKS`) and the videos of one draw (a "group"):
    left_right, up_down, rotation, approach   two clips, each the exact time reverse of the other, with
                                              opposite classes ("pair tasks"; SSv2-style classes below)
    order                                     two objects move one after the other; the time reverse
                                              swaps who moves first, so it is a pair too
    still                                     one clip of one object at rest: questions on its shape,
                                              its position (left/centre/right, top/middle/bottom) and
                                              its colour, the controls that need no temporal reasoning

Objects are 1.6-2.3 patches (14 px) big, so that each covers a few patches whichever way it is placed;
approaching / receding objects grow from 1.2-1.6 to 2.3-3.0 patches, since the change of size is the
signal. Positions keep every object inside the frame at all times. Every draw takes its randomness from
the generator it is given, so a group depends only on (seed, task, group index) and the frame size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import COLOURS, PATCH, SHAPES, Clip, MovingObject, ObjectState, reach

TASKS = ("left_right", "up_down", "rotation", "approach", "order", "still")
PAIR_TASKS = ("left_right", "up_down", "rotation", "approach")

OBJECT_PATCHES = (1.6, 2.3)
APPROACH_PATCHES = ((1.2, 1.6), (2.3, 3.0))  # start (far) and end (near) sizes of an approaching object
TRAVEL = (0.5, 1.0)  # how far a moving object goes, as a share of the room it has (its speed)
TURN = (90.0, 180.0)  # degrees an arrow turns over a clip
HORIZONTAL = ("left", "centre", "right")
VERTICAL = ("top", "middle", "bottom")
THIRD_MARGIN = 0.1  # an object's centre keeps this share of a third's width away from the other thirds
ORDER_QUESTION = "Which object moves first?"
STILL_QUESTIONS = {
    "shape": "What shape is the object?",
    "horizontal": "Where is the object horizontally?",
    "vertical": "Where is the object vertically?",
    "colour": "What colour is the object?",
}
STILL_KINDS = tuple(STILL_QUESTIONS)
# How a training conversation asks for one of the options (the evaluation template "synth-v1" asks the same).
ANSWER_REQUEST = "Answer with one of: {option_list}."


@dataclass(frozen=True)
class PairTask:
    """A task whose two classes are time reverses: `templates`/`answers` are (forward, reversed)."""

    templates: tuple[str, str]
    answers: tuple[str, str]
    question: str  # "{object}" is replaced by the object's name


PAIRS: dict[str, PairTask] = {
    "left_right": PairTask(
        ("Moving [something] from left to right", "Moving [something] from right to left"),
        ("right", "left"),
        "Which way does the {object} move?",
    ),
    "up_down": PairTask(
        ("Moving [something] up", "Moving [something] down"), ("up", "down"), "Which way does the {object} move?"
    ),
    "rotation": PairTask(
        ("Rotating [something] clockwise", "Rotating [something] counterclockwise"),
        ("clockwise", "counterclockwise"),
        "Which way does the {object} turn?",
    ),
    "approach": PairTask(
        ("Moving [something] towards the camera", "Moving [something] away from the camera"),
        ("towards", "away"),
        "Does the {object} move towards the camera or away from it?",
    ),
}
# The SSv2-style classes (templates without brackets are the labels.json keys), forward then reversed.
TEMPLATES = tuple(template for task in PAIR_TASKS for template in PAIRS[task].templates)


@dataclass(frozen=True)
class Question:
    """A multiple-choice question about one video. `kind` groups questions for scoring and filtering: a pair
    task's name, "order", or "shape" / "horizontal" / "vertical" / "colour" for stills."""

    kind: str
    text: str  # without the options
    candidates: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Member:
    """One video of a group: what it shows, its SSv2-style class (pair tasks only) and its questions.
    `reversed` marks the time-reversed member of a pair."""

    clip: Clip
    questions: tuple[Question, ...]
    template: str | None = None
    placeholders: tuple[str, ...] = ()
    reversed: bool = False


def draw_group(task: str, rng: np.random.Generator, size: int) -> list[Member]:
    """The videos of one draw of `task` on size x size frames: a pair (forward, reversed) or one still."""
    if task in PAIRS:
        return _pair(task, rng, size)
    if task == "order":
        return _order(rng, size)
    if task == "still":
        return [_still(rng, size)]
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def _pair(task: str, rng: np.random.Generator, size: int) -> list[Member]:
    spec = PAIRS[task]
    forward = Clip(size, (_DRAW[task](rng, size),))
    name = forward.objects[0].name
    candidates = _shuffled(spec.answers, rng)  # one option order for both clips: only the answer differs
    members = []
    for clip, template, answer, backwards in zip(
        (forward, forward.reversed()), spec.templates, spec.answers, (False, True), strict=True
    ):
        question = Question(task, spec.question.format(object=name), candidates, answer)
        members.append(Member(clip, (question,), template, (name,), backwards))
    return members


def _look(rng: np.random.Generator, shapes: tuple[str, ...] = SHAPES) -> tuple[str, str]:
    return str(rng.choice(shapes)), str(rng.choice(list(COLOURS)))


def _travel(rng: np.random.Generator, low: float, high: float) -> tuple[float, float]:
    """Start and end (start < end) of a motion inside [low, high], covering TRAVEL of the room."""
    length = float(rng.uniform(*TRAVEL)) * (high - low)
    start = float(rng.uniform(low, high - length))
    return start, start + length


def _left_right(rng: np.random.Generator, size: int) -> MovingObject:
    shape, colour = _look(rng)
    side = float(rng.uniform(*OBJECT_PATCHES)) * PATCH
    x0, x1 = _travel(rng, side / 2, size - side / 2)
    y = float(rng.uniform(side / 2, size - side / 2))
    return MovingObject(shape, colour, ObjectState(x0, y, side), ObjectState(x1, y, side))


def _up_down(rng: np.random.Generator, size: int) -> MovingObject:
    shape, colour = _look(rng)
    side = float(rng.uniform(*OBJECT_PATCHES)) * PATCH
    top, bottom = _travel(rng, side / 2, size - side / 2)
    x = float(rng.uniform(side / 2, size - side / 2))
    return MovingObject(shape, colour, ObjectState(x, bottom, side), ObjectState(x, top, side))  # up


def _rotation(rng: np.random.Generator, size: int) -> MovingObject:
    colour = str(rng.choice(list(COLOURS)))
    side = float(rng.uniform(*OBJECT_PATCHES)) * PATCH
    r = reach("arrow") * side
    x, y = (float(v) for v in rng.uniform(r, size - r, size=2))
    angle = float(rng.uniform(0.0, 360.0))
    turn = float(rng.uniform(*TURN))
    return MovingObject("arrow", colour, ObjectState(x, y, side, angle), ObjectState(x, y, side, angle + turn))


def _approach(rng: np.random.Generator, size: int) -> MovingObject:
    shape, colour = _look(rng)
    far, near = (float(rng.uniform(*bounds)) * PATCH for bounds in APPROACH_PATCHES)
    x, y = (float(v) for v in rng.uniform(near / 2, size - near / 2, size=2))
    return MovingObject(shape, colour, ObjectState(x, y, far), ObjectState(x, y, near))


_DRAW = {"left_right": _left_right, "up_down": _up_down, "rotation": _rotation, "approach": _approach}


def _order(rng: np.random.Generator, size: int) -> list[Member]:
    """Two objects of different shape and colour, one in the top half and one in the bottom half (so they
    never overlap), each sliding sideways; one moves in the clip's first half, the other in its second."""
    shapes = rng.choice(SHAPES, size=2, replace=False)
    colours = rng.choice(list(COLOURS), size=2, replace=False)
    top_first = bool(rng.random() < 0.5)
    objects = []
    for k in range(2):  # 0: top half, 1: bottom half
        side = float(rng.uniform(*OBJECT_PATCHES)) * PATCH
        y = float(rng.uniform(*((side / 2, size / 2 - side / 2) if k == 0 else (size / 2 + side / 2, size - side / 2))))
        x0, x1 = _travel(rng, side / 2, size - side / 2)
        if rng.random() < 0.5:
            x0, x1 = x1, x0
        phase = "first" if (k == 0) == top_first else "second"
        objects.append(
            MovingObject(str(shapes[k]), str(colours[k]), ObjectState(x0, y, side), ObjectState(x1, y, side), phase)
        )
    objects.sort(key=lambda obj: obj.phase != "first")  # the first mover first
    forward = Clip(size, tuple(objects))
    names = tuple(obj.name for obj in objects)
    candidates = _shuffled(names, rng)
    text = ORDER_QUESTION
    return [
        Member(forward, (Question("order", text, candidates, names[0]),)),
        Member(forward.reversed(), (Question("order", text, candidates, names[1]),), reversed=True),
    ]


def _still(rng: np.random.Generator, size: int) -> Member:
    """One object at rest in one of the 3 x 3 thirds of the frame."""
    shape, colour = _look(rng)
    side = float(rng.uniform(*OBJECT_PATCHES)) * PATCH
    column, row = (int(v) for v in rng.integers(0, 3, size=2))
    x = float(rng.uniform(*third_range(column, size, side)))
    y = float(rng.uniform(*third_range(row, size, side)))
    state = ObjectState(x, y, side)
    clip = Clip(size, (MovingObject(shape, colour, state, state),))
    others = [c for c in COLOURS if c != colour]
    colours = (colour, *(str(c) for c in rng.choice(others, size=3, replace=False)))
    questions = (
        Question("shape", STILL_QUESTIONS["shape"], _shuffled(SHAPES, rng), shape),
        Question("horizontal", STILL_QUESTIONS["horizontal"], HORIZONTAL, HORIZONTAL[column]),
        Question("vertical", STILL_QUESTIONS["vertical"], VERTICAL, VERTICAL[row]),
        Question("colour", STILL_QUESTIONS["colour"], _shuffled(colours, rng), colour),
    )
    return Member(clip, questions)


def third_range(index: int, size: int, side: float) -> tuple[float, float]:
    """Where the centre of an object of `side` pixels may lie to be in third `index` (0, 1, 2) of a frame
    side of `size` pixels: inside the third, THIRD_MARGIN of a third away from its inner borders, and
    with the whole object in the frame."""
    third = size / 3
    low = max(index * third + (THIRD_MARGIN * third if index > 0 else 0.0), side / 2)
    high = min((index + 1) * third - (THIRD_MARGIN * third if index < 2 else 0.0), size - side / 2)
    if low >= high:
        raise ValueError(f"a {side:.0f}-pixel object does not fit in third {index} of a {size}-pixel frame")
    return low, high


def _shuffled(items: tuple[str, ...], rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(items[i] for i in rng.permutation(len(items)))


def vocabulary() -> list[str]:
    """Every word any synthetic question, option, answer or class can use (for a word-level tokenizer that
    must cover the tasks a model is fine-tuned on later, not only those it was pretrained on)."""
    from ..tokenizer import split_words

    names = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
    texts = [
        *TEMPLATES,
        *(pair.question.format(object=name) for pair in PAIRS.values() for name in names[:1]),
        *(answer for pair in PAIRS.values() for answer in pair.answers),
        ORDER_QUESTION,
        *STILL_QUESTIONS.values(),
        *HORIZONTAL,
        *VERTICAL,
        *names,
        ANSWER_REQUEST.format(option_list=","),
    ]
    words: dict[str, None] = {}
    for text in texts:
        words.update(dict.fromkeys(split_words(text)))
    return list(words)
