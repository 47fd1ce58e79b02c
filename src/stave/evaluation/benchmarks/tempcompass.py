"""TempCompass in its published layout (github.com/llyx97/TempCompass): closed-form temporal questions.

Layout::

    root/questions/<task>.json   {video_id: {dimension: [{"question": str, "answer": str}, ...]}}
    root/videos/<video_id>.mp4   the videos (ids ending in "_reverse" are the reversed "conflicting" clips)

Tasks (question formats) read, and how options are taken from the question text:
- multi-choice: the question holds its options on the lines after the stem, "A. text"; the answer is
  "B. text" and names one of them.
- yes_no: the question has no options; options are ("yes", "no") and the answer is one of them.
- caption_matching: the lines after the stem are "Option 1: ...", "Sentence A: ..." or "Caption A: ...";
  the answer repeats one of those lines.
captioning is not read: its answers are judged by a language model, not matched.

question = the stem (the lines before the options); options = option texts without their labels;
task = the dimension (action, speed, direction, order, attribute_change); groups = {"format": task};
qid = "<task>/<video_id>/<dimension>/<index>".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..items import LETTERS, BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .reading import OnMissing, check_on_missing, expect_type, field, finish, read_json, videos_present

TASKS = ("multi-choice", "yes_no", "caption_matching")
YES_NO = ("yes", "no")
# An option line: its label (letter or number) and its text.
_OPTION_LINES = {
    "multi-choice": re.compile(r"(?P<label>[A-Z])\.\s+(?P<text>.*)"),
    "caption_matching": re.compile(r"(?P<label>(?:Option|Sentence|Caption) [A-Z0-9]+):\s+(?P<text>.*)"),
}


def load_tempcompass(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    tasks: Sequence[str] = TASKS,
    videos: str | Path = "videos",
) -> list[EvalItem]:
    """TempCompass questions of `tasks` (see the module docstring). `seed` is unused."""
    check_on_missing(on_missing)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown TempCompass tasks {unknown}; readable: {list(TASKS)} (captioning needs a judge)")
    root = Path(root)
    items, skipped = [], []
    for task in tasks:
        path = root / "questions" / f"{task}.json"
        data = expect_type(read_json(path), dict, path, "top level", "an object {video_id: {dimension: [...]}}")
        for video_id, dimensions in data.items():
            expect_type(dimensions, dict, path, f"[{video_id!r}]", "an object {dimension: [questions]}")
            video = root / videos / f"{video_id}.mp4"
            for dimension, questions in dimensions.items():
                where = f"[{video_id!r}][{dimension!r}]"
                expect_type(questions, list, path, where, "a list of questions")
                for index, record in enumerate(questions):
                    where = f"[{video_id!r}][{dimension!r}][{index}]"
                    question = field(record, "question", str, path, where)
                    answer = field(record, "answer", str, path, where)
                    stem, options, correct = _parse(task, question, answer, path, where)
                    if not videos_present([video], where=f"{path} {where}", on_missing=on_missing, skipped=skipped):
                        continue
                    items.append(
                        EvalItem(
                            qid=f"{task}/{video_id}/{dimension}/{index}",
                            task=dimension,
                            question=stem,
                            videos=(VideoRef(video),),
                            options=options,
                            answer=correct,
                            groups={"format": task},
                        )
                    )
    return finish("tempcompass", items, skipped, report)


def _parse(task: str, question: str, answer: str, path: Path, where: str) -> tuple[str, tuple[str, ...], str]:
    """(stem, options, answer text) of one question of `task`."""
    if task == "yes_no":
        word = answer.strip().rstrip(".").lower()
        if word not in YES_NO:
            raise BenchmarkFormatError(f"{path}: {where}: field 'answer' {answer!r} is neither yes nor no")
        return question.strip(), YES_NO, word
    pattern = _OPTION_LINES[task]
    lines = [line.strip() for line in question.strip().split("\n")]
    first = next((i for i, line in enumerate(lines) if pattern.fullmatch(line)), None)
    if first is None or first == 0:
        raise BenchmarkFormatError(f"{path}: {where}: field 'question' has no stem followed by option lines")
    labels, options = [], []
    for line in lines[first:]:
        match = pattern.fullmatch(line)
        if match is None:
            raise BenchmarkFormatError(f"{path}: {where}: field 'question': {line!r} is not an option line")
        labels.append(match["label"])
        options.append(match["text"].strip())
    if len(set(labels)) != len(labels):
        raise BenchmarkFormatError(f"{path}: {where}: field 'question' repeats an option label: {labels}")
    if not 2 <= len(options) <= len(LETTERS):
        raise BenchmarkFormatError(f"{path}: {where}: field 'question' has {len(options)} options")
    chosen = pattern.fullmatch(answer.strip())
    if chosen is None or chosen["label"] not in labels:
        raise BenchmarkFormatError(f"{path}: {where}: field 'answer' {answer!r} names none of the options {labels}")
    index = labels.index(chosen["label"])
    if chosen["text"].strip() != options[index]:
        raise BenchmarkFormatError(
            f"{path}: {where}: field 'answer' {answer!r} does not repeat option {labels[index]} {options[index]!r}"
        )
    return "\n".join(lines[:first]), tuple(options), options[index]
