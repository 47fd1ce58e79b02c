"""VITATECS (temporal concept understanding) in its published layout, as two-option questions.

Layout (github.com/lscpku/VITATECS; its README says where the videos go)::

    root/data/<Aspect>.jsonl        one object per line: {"src_dataset": "MSRVTT" | "VATEX", "video_name":
                                    "video9770.mp4", "caption": ..., "counterfactual": ..., "aspect": ...}
    root/videos/<src_dataset>/<video_name>     e.g. videos/MSRVTT/video9770.mp4,
                                               videos/VATEX/EmT9Ut-RCTc_000120_000130.mp4

Aspects: Compositionality, Direction, Intensity, Localization, Sequence, Type (`aspects=` selects some).
Each line becomes one question "Which caption describes the video?" with the options caption and
counterfactual in an order drawn by random.Random seeded by (seed, aspect, line number); the answer is the
caption. task = the aspect; qid = "<Aspect>/<line number>" (a video can appear on several lines).
A record's `aspect` field must name the file it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..items import BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .reading import OnMissing, check_on_missing, field, finish, item_rng, read_jsonl, videos_present

ASPECTS = ("Compositionality", "Direction", "Intensity", "Localization", "Sequence", "Type")
QUESTION = "Which caption describes the video?"


def load_vitatecs(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    aspects: Sequence[str] = ASPECTS,
    videos: str | Path = "videos",
) -> list[EvalItem]:
    """VITATECS two-option questions from root/data/<Aspect>.jsonl (see the module docstring)."""
    check_on_missing(on_missing)
    unknown = sorted(set(aspects) - set(ASPECTS))
    if unknown:
        raise ValueError(f"unknown VITATECS aspects {unknown}; known: {list(ASPECTS)}")
    root = Path(root)
    video_root = root / videos
    items, skipped = [], []
    for aspect in aspects:
        path = root / "data" / f"{aspect}.jsonl"
        for line, record in read_jsonl(path):
            where = f"line {line}"
            source = field(record, "src_dataset", str, path, where)
            name = field(record, "video_name", str, path, where)
            caption = field(record, "caption", str, path, where)
            counterfactual = field(record, "counterfactual", str, path, where)
            if field(record, "aspect", str, path, where) != aspect:
                raise BenchmarkFormatError(f"{path}: {where}: field 'aspect' is {record['aspect']!r}, not {aspect!r}")
            video = video_root / source / name
            if not videos_present([video], where=f"{path} {where}", on_missing=on_missing, skipped=skipped):
                continue
            options = [caption, counterfactual]
            item_rng(seed, "vitatecs", aspect, line).shuffle(options)
            items.append(
                EvalItem(
                    qid=f"{aspect}/{line}",
                    task=aspect,
                    question=QUESTION,
                    videos=(VideoRef(video),),
                    options=tuple(options),
                    answer=caption,
                )
            )
    return finish("vitatecs", items, skipped, report)
