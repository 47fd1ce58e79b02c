"""A synthetic data set on disk: which clips, which split, and every annotation file.

`plan` decides everything without touching the disk: how many clips each task gets (as equal as the count
allows), each group's draw, and the split. Each group is drawn from its own random generator seeded by
(seed, task, group index), so a group does not depend on n, on the other tasks chosen, on the frame count
or on `hold`: the same seed with and without `hold` shows the same objects on the same paths, only sampled
differently. The split is drawn per task over whole groups (a clip and its time reverse always land in
the same split), so train and validation share no clip and no object path, and every task with at least
two groups appears in both.

`write` renders and encodes the clips and writes the annotations (see `generate` for the files). Videos
are lossless H.264 (crf 0): decoding gives back exactly what was drawn, up to the yuv420p colour
conversion, which works on each frame alone — so decoded partners are exact time reverses too and held
frames decode identically, with no compression artefact that could tell forwards from backwards.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StaveError
from ..ssv2 import ssv2_class
from ..video.encode import write_video
from .scene import BACKGROUND, COLOURS, PATCH, SHAPES, TEMPORAL_PATCH, Clip, poses_per_clip, render_clip
from .tasks import (
    ANSWER_REQUEST,
    APPROACH_PATCHES,
    OBJECT_PATCHES,
    PAIR_TASKS,
    TASKS,
    TEMPLATES,
    Member,
    draw_group,
)

GENERATOR = "stave.synthetic"
GENERATOR_VERSION = 1  # bump whenever the same options and seed would give different files
SPLITS = ("train", "validation")
VIDEO_FOLDER = "videos"
IMAGE_FOLDER = "images"
METADATA_FILE = "synth.json"
# file name -> what it holds (also written to synth.json)
FILES = {
    "videos/{id}.mp4": "every clip, H.264 (lossless), named by its id",
    "images/{id}.png": "with images: the still clips' frame as an image (questions asked on both)",
    "labels.json": "SSv2-style classes: {class text: index as string}",
    "train.json": "SSv2-style records {id, label, template, placeholders} of the pair tasks, train split",
    "validation.json": "the same for the validation split",
    "train.jsonl": 'LLaVA/Qwen-finetune conversations {"id", "video", "conversations", "task"}, train split',
    "validation.jsonl": "the same for the validation split",
    "mvbench_train.json": 'MVBench-style questions {"video", "question", "candidates", "answer", "task"}',
    "mvbench_validation.json": "the same for the validation split",
    "clips.jsonl": "every clip's drawn parameters: task, group, split, objects with start/end states",
    METADATA_FILE: "seed, options, generator version, counts per task, class, answer and split",
}
SIZE_FACTOR = 2 * PATCH  # Qwen2-VL resizes frames to multiples of patch x merge (28)
MIN_SIZE, MAX_SIZE = 84, 448
MIN_FRAMES, MAX_FRAMES = 8, 64


class SynthError(StaveError, ValueError):
    """Options that cannot make a data set, or an output folder that must not be written to."""


@dataclass(frozen=True)
class SynthOptions:
    """Everything that decides a synthetic data set (recorded in synth.json).

    Attributes:
        n: number of videos, shared as equally as possible among `tasks`.
        seed: the only source of randomness.
        frames: frames per video (even, MIN_FRAMES..MAX_FRAMES).
        size: frame side in pixels, a multiple of 28 (patch 14 x merge 2) so the model sees the frames
            unresized and object sizes stay in patch units; at least 84 so an object of 2.3 patches fits
            inside each third of the frame.
        fps: frame rate written in the files.
        hold: hold every pose for TEMPORAL_PATCH (2) frames: motion only between temporal patches.
        images: also write each still clip as a PNG image and ask its questions on the image too (records
            with "image" instead of "video"): the image-and-still-video data a base model is pretrained on.
        tasks: the video tasks to generate (stave.synthetic.TASKS).
        val_fraction: share of each task's groups that goes to the validation split.
        crf: H.264 quality; 0 is lossless (see the module docstring) and the default.
    """

    n: int
    seed: int = 0
    frames: int = 8
    size: int = 84
    fps: float = 4.0
    hold: bool = False
    images: bool = False
    tasks: tuple[str, ...] = TASKS
    val_fraction: float = 0.2
    crf: int = 0

    def __post_init__(self) -> None:
        def integer(name: str, value: Any, low: int, high: int | None = None) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low or high and value > high:
                bounds = f">= {low}" if high is None else f"in {low}..{high}"
                raise SynthError(f"{name} must be an integer {bounds}, got {value!r}")

        integer("n", self.n, 1)
        integer("seed", self.seed, 0)
        integer("frames", self.frames, MIN_FRAMES, MAX_FRAMES)
        if self.frames % TEMPORAL_PATCH:
            raise SynthError(f"frames must be even (Qwen2-VL patches 2 frames together), got {self.frames}")
        integer("size", self.size, MIN_SIZE, MAX_SIZE)
        if self.size % SIZE_FACTOR:
            raise SynthError(
                f"size must be a multiple of {SIZE_FACTOR} (patch 14 x merge 2) so frames reach the model "
                f"unresized, got {self.size}"
            )
        integer("crf", self.crf, 0, 51)
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 0 < self.fps <= 60:
            raise SynthError(f"fps must be a number in (0, 60], got {self.fps!r}")
        for name in ("hold", "images"):
            if not isinstance(getattr(self, name), bool):
                raise SynthError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.tasks, str):
            object.__setattr__(self, "tasks", tuple(t.strip() for t in self.tasks.split(",") if t.strip()))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise SynthError(f"tasks must be distinct names from {', '.join(TASKS)}; got {list(self.tasks)}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 1:
            raise SynthError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")

    @classmethod
    def create(cls, **options: Any) -> SynthOptions:
        """Options from keywords; an unknown name is a SynthError listing the known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise SynthError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if "n" not in options:
            raise SynthError("option n (the number of videos) is required")
        return cls(**options)

    @property
    def poses(self) -> int:
        """Distinct instants a clip shows (frames, or frames / 2 with hold)."""
        return poses_per_clip(self.frames, self.hold)


@dataclass(frozen=True)
class Sample:
    """One video of the data set: its id, task, group, split, and what it shows and asks."""

    id: str
    task: str
    group: str  # "<task>-<index>"; the two clips of a pair share it
    split: str
    member: Member

    @property
    def video(self) -> str:
        return f"{VIDEO_FOLDER}/{self.id}.mp4"

    @property
    def image(self) -> str:
        return f"{IMAGE_FOLDER}/{self.id}.png"


@dataclass
class SynthResult:
    """What `generate` wrote: the folder, the samples, the counts and the seconds it took."""

    out: Path
    samples: list[Sample]
    counts: dict[str, Any]
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


def plan(options: SynthOptions) -> list[Sample]:
    """Every sample of the data set, in id order (no files written)."""
    groups: dict[str, list[list[Member]]] = {}
    for k, task in enumerate(options.tasks):
        videos = options.n // len(options.tasks) + (k < options.n % len(options.tasks))
        drawn, count = [], 0
        for g in range(videos):
            if count == videos:
                break
            rng = np.random.default_rng([options.seed, 0, TASKS.index(task), g])
            members = draw_group(task, rng, options.size)
            if count + len(members) > videos:  # a lone last clip: either member of its pair
                members = [members[int(rng.integers(len(members)))]]
            drawn.append(members)
            count += len(members)
        groups[task] = drawn
    splits = {task: _validation_groups(options, task, len(drawn)) for task, drawn in groups.items()}
    width = max(5, len(str(options.n - 1)))
    samples = []
    for g in range(max(len(drawn) for drawn in groups.values())):  # ids interleave the tasks
        for task in options.tasks:
            if g < len(groups[task]):
                split = "validation" if g in splits[task] else "train"
                for member in groups[task][g]:
                    samples.append(Sample(f"{len(samples):0{width}d}", task, f"{task}-{g}", split, member))
    return samples


def _validation_groups(options: SynthOptions, task: str, count: int) -> set[int]:
    """A seeded share of a task's groups; at least one (and not all) when there are two or more."""
    chosen = round(options.val_fraction * count)
    if options.val_fraction > 0 and count >= 2:
        chosen = min(max(chosen, 1), count - 1)
    elif count < 2:
        chosen = 0
    rng = np.random.default_rng([options.seed, 1, TASKS.index(task)])
    return {int(g) for g in rng.permutation(count)[:chosen]}


def generate(out: str | Path, *, overwrite: bool = False, progress: bool = False, **options: Any) -> SynthResult:
    """Write a synthetic data set to `out` (see SynthOptions for the options; `n` is required).

    Files (all paths inside `out`; video paths in annotations are relative to `out`):
        videos/{id}.mp4            every clip; SSv2 ships {id}.webm, so SSv2 readers need the pattern
                                   "videos/{id}.mp4" (stave: DatasetSpec(format="ssv2", video_pattern=...))
        labels.json                {class text: "index"}: the 8 classes of the pair tasks
        train.json, validation.json          SSv2-style records of the pair tasks' clips
        train.jsonl, validation.jsonl        one conversation per question (stave's trainer reads them)
        mvbench_train.json, mvbench_validation.json    multiple-choice questions, every task
        clips.jsonl                every clip's parameters;  synth.json  options, version and counts

    `out` must be empty or absent; with overwrite=True a previous synthetic data set there (a folder with
    synth.json) is replaced, file by file (other files in it are left alone). Everything is written to a
    hidden folder of its own next to `out` first (`.{name}.XXXX.partial`, removed if the run fails) and moved
    in at the end, so a run that fails leaves `out` as it was.
    Raises SynthError for bad options or an output folder it must not touch. `progress` shows a progress bar.
    """
    import time

    from tqdm.auto import tqdm

    settings = SynthOptions.create(**options)
    out = Path(out)
    _check_output(out, overwrite)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    # a folder of this run's own (a unique name), removed if the run fails; nothing else is touched
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        (partial / VIDEO_FOLDER).mkdir()
        samples = plan(settings)
        for sample in tqdm(samples, desc="synthetic clips", disable=not progress):
            frames = render_clip(sample.member.clip, settings.frames, hold=settings.hold)
            write_video(partial / sample.video, frames, fps=settings.fps, crf=settings.crf)
            if _has_image(sample, settings):
                from PIL import Image

                (partial / IMAGE_FOLDER).mkdir(exist_ok=True)
                Image.fromarray(frames[0]).save(partial / sample.image)
        counts = _counts(samples)
        written = _write_annotations(partial, samples, settings, counts)
        _move_in(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return SynthResult(out, samples, counts, time.perf_counter() - start, written)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / METADATA_FILE).is_file():
        raise SynthError(f"{out}: the folder is not empty and holds no synthetic data set; choose another folder")
    if not overwrite:
        raise SynthError(f"{out}: holds a synthetic data set already; pass overwrite (--overwrite) to replace it")


def _move_in(partial: Path, out: Path) -> None:
    """Replace what a previous run wrote to `out` (only the names in FILES) by the new files."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted(partial.iterdir(), key=lambda p: p.name == METADATA_FILE):  # synth.json last
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    partial.rmdir()


# -- annotations -------------------------------------------------------------------------------------


def ssv2_record(sample: Sample) -> dict[str, Any]:
    """{"id", "label", "template", "placeholders"} as SSv2 writes them: the label is the template with its
    placeholders filled in, starting lower-case; the template without brackets is the class."""
    template, placeholders = sample.member.template, list(sample.member.placeholders)
    label = template
    for placeholder in placeholders:
        label = re.sub(r"\[[^\]]*\]", placeholder, label, count=1)
    return {"id": sample.id, "label": label[:1].lower() + label[1:], "template": template, "placeholders": placeholders}


def conversation_records(sample: Sample, media: str = "video") -> list[dict[str, Any]]:
    """One LLaVA/Qwen-finetune conversation per question about the sample's video (or, media="image", its
    image); the human turn names the options."""
    suffix = "" if media == "video" else f"-{media}"
    return [
        {
            "id": f"{sample.id}-{question.kind}{suffix}",
            media: getattr(sample, media),
            "conversations": [
                {
                    "from": "human",
                    "value": f"<{media}>\n{question.text} "
                    + ANSWER_REQUEST.format(option_list=", ".join(question.candidates)),
                },
                {"from": "gpt", "value": question.answer},
            ],
            "task": question.kind,
        }
        for question in sample.member.questions
    ]


def mvbench_records(sample: Sample, media: str = "video") -> list[dict[str, Any]]:
    """MVBench-style {"video", "question", "candidates", "answer" (a candidate's text)} plus the "task"
    (MVBench keeps one file per task; one file with the task named per record serves every task). With
    media="image" the record holds "image" instead of "video"."""
    return [
        {
            media: getattr(sample, media),
            "question": question.text,
            "candidates": list(question.candidates),
            "answer": question.answer,
            "task": question.kind,
        }
        for question in sample.member.questions
    ]


def _has_image(sample: Sample, options: SynthOptions) -> bool:
    return options.images and sample.task == "still"


def _media(sample: Sample, options: SynthOptions) -> tuple[str, ...]:
    return ("video", "image") if _has_image(sample, options) else ("video",)


def clip_record(sample: Sample) -> dict[str, Any]:
    """The clip's drawn parameters (pixels, degrees), for tracing a result back to what was shown."""
    clip: Clip = sample.member.clip
    record = {"id": sample.id, "video": sample.video, "task": sample.task, "group": sample.group}
    record |= {"split": sample.split, "reversed": sample.member.reversed}
    record["class"] = ssv2_class(sample.member.template) if sample.member.template else None
    record["objects"] = [
        {
            "shape": obj.shape,
            "colour": obj.colour,
            "phase": obj.phase,
            "start": {k: round(v, 4) for k, v in asdict(obj.start).items()},
            "end": {k: round(v, 4) for k, v in asdict(obj.end).items()},
        }
        for obj in clip.objects
    ]
    return record


def labels() -> dict[str, str]:
    """labels.json: every class of the pair tasks, whether or not this data set has clips of it."""
    return {ssv2_class(template): str(i) for i, template in enumerate(TEMPLATES)}


def _counts(samples: list[Sample]) -> dict[str, Any]:
    counts: dict[str, Any] = {"videos": {"total": len(samples)}}
    for split in SPLITS:
        chosen = [s for s in samples if s.split == split]
        answers: dict[str, Counter] = defaultdict(Counter)
        for sample in chosen:
            for question in sample.member.questions:
                answers[question.kind][question.answer] += 1
        classes = Counter(ssv2_class(s.member.template) for s in chosen if s.member.template)
        counts["videos"][split] = len(chosen)
        counts[split] = {
            "videos": {task: n for task in TASKS if (n := sum(s.task == task for s in chosen))},
            "classes": {c: classes[c] for c in labels() if classes[c]},
            "questions": {kind: sum(c.values()) for kind, c in answers.items()},
            "answers": {kind: dict(sorted(c.items())) for kind, c in answers.items()},
        }
    return counts


def _write_annotations(out: Path, samples: list[Sample], options: SynthOptions, counts: dict[str, Any]) -> list[str]:
    written = {"labels.json": json.dumps(labels(), indent=1, separators=(",", ":")) + "\n"}
    for split in SPLITS:
        chosen = [s for s in samples if s.split == split]
        written[f"{split}.json"] = _json_lines([ssv2_record(s) for s in chosen if s.task in PAIR_TASKS])
        written[f"{split}.jsonl"] = "".join(
            json.dumps(record) + "\n"
            for s in chosen
            for media in _media(s, options)
            for record in conversation_records(s, media)
        )
        written[f"mvbench_{split}.json"] = _json_lines(
            [record for s in chosen for media in _media(s, options) for record in mvbench_records(s, media)]
        )
    written["clips.jsonl"] = "".join(json.dumps(clip_record(s)) + "\n" for s in samples)
    written[METADATA_FILE] = json.dumps(_metadata(options, counts), indent=2) + "\n"
    for name, text in written.items():
        (out / name).write_text(text, encoding="utf-8")
    listed = [*written, f"{VIDEO_FOLDER}/ ({len(samples)} videos)"]
    images = sum(_has_image(s, options) for s in samples)
    return listed + ([f"{IMAGE_FOLDER}/ ({images} images)"] if images else [])


def _json_lines(records: list[dict[str, Any]]) -> str:
    """A JSON list with one compact record per line, as SSv2's annotation files are laid out."""
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records) + "\n]\n"


def _metadata(options: SynthOptions, counts: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__

    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "stave_version": __version__,
        "seed": options.seed,
        "options": {**asdict(options), "tasks": list(options.tasks)},
        "video": {
            "frames": options.frames,
            "poses": options.poses,
            "size": [options.size, options.size],
            "fps": options.fps,
            "hold": options.hold,
            "temporal_patch": TEMPORAL_PATCH,
            "codec": "libx264 yuv420p" + (" (lossless)" if options.crf == 0 else f" crf {options.crf}"),
            # stave.video.VideoOptions that read every frame unresized (needed to keep held pairs aligned)
            "read_with": {"nframes": options.frames, "min_pixels": options.size**2, "max_pixels": options.size**2},
        },
        "scene": {
            "background": BACKGROUND,
            "patch": PATCH,
            "object_patches": list(OBJECT_PATCHES),
            "approach_patches": [list(b) for b in APPROACH_PATCHES],
            "shapes": list(SHAPES),
            "colours": {name: list(rgb) for name, rgb in COLOURS.items()},
        },
        "classes": labels(),
        "counts": counts,
        "files": FILES,
    }
