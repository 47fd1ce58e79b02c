"""What every benchmark loader yields: evaluation items, independent of how they are prompted or scored.

A loader reads a benchmark in its published layout and yields `EvalItem`s. Records it cannot use are
either an error (`BenchmarkFormatError`, naming the file, the record and the field) or — for a missing
video only, under on_missing="skip" — counted in the loader's `LoadReport` with the reason; never dropped
silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StaveError

LETTERS = "ABCDEFGHIJ"


class BenchmarkFormatError(StaveError, ValueError):
    """A benchmark file or record that does not follow the published format; names file, record, field."""


@dataclass(frozen=True)
class VideoRef:
    """One video of an item: a file, or a folder of frame images (then `frame_fps` gives their rate);
    optional `start`/`end` seconds select a clip."""

    path: Path
    start: float | None = None
    end: float | None = None
    frame_fps: float | None = None


@dataclass(frozen=True)
class EvalItem:
    """One question.

    Attributes:
        qid: unique within the benchmark (the key that resumable runs use).
        task: the task / aspect / class / dimension scores are broken down by.
        question: the question text, without options.
        videos: the videos the question is about (one; several for SSv2-VSM).
        options: answer options for multiple choice (text without letters), None for open-ended.
        answer: the correct option's text (multiple choice) or the expected answer (open-ended).
        groups: further breakdowns, e.g. {"duration": "short", "domain": "Knowledge"} (Video-MME).
        subtitles: subtitle text to put in the prompt (Video-MME with subtitles), else None.
        images: image files the question is about (asked before the videos; usually none).
        classes: the class names of an open-ended classification benchmark (SSv2, SSv2-T10 with
            format="open"), which `prompt_classes` lists; None elsewhere.
        prompt_classes: the question lists `classes` and the answer is scored by its match to a class name
            (the runner sets it under EvalSettings.prompt_classes).
        examples: solved items asked before this one as earlier user/assistant turns, each with its own
            videos (the runner sets them under EvalSettings.shots; stave.evaluation.shots).
    """

    qid: str
    task: str
    question: str
    videos: tuple[VideoRef, ...]
    options: tuple[str, ...] | None
    answer: str
    groups: dict[str, str] = field(default_factory=dict)
    subtitles: str | None = None
    images: tuple[Path, ...] = ()
    classes: tuple[str, ...] | None = None
    prompt_classes: bool = False
    examples: tuple[EvalItem, ...] = ()

    @property
    def answer_index(self) -> int | None:
        return None if self.options is None else self.options.index(self.answer)

    @property
    def answer_letter(self) -> str | None:
        index = self.answer_index
        return None if index is None else LETTERS[index]


@dataclass
class LoadReport:
    """What a loader read: items yielded, and records skipped (with reasons) under on_missing="skip"."""

    items: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append({"record": where, "reason": reason})
