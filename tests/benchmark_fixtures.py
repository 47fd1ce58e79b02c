"""Writers of tiny benchmarks in their published layouts (annotation files in the exact public formats, with
made-up records), for loader tests and any test that needs EvalItems from disk.

Videos are placeholder files by default: the loaders only check that they exist. Pass `video_writer` (e.g.
`real_video`) where decodable videos are needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stave.ssv2 import SUBSETS
from stave.video.encode import write_video

VideoWriter = Callable[[Path], None]

# A few SSv2 classes besides T10 (labels.json keys), including bracketed placeholders other than [something].
OTHER_SSV2_CLASSES = (
    "Spinning something that quickly stops spinning",
    "Showing something on top of something",
    "Taking something from somewhere",
    "Tipping something with something in it over, so something in it falls out",
    "Turning something upside down",
)
SSV2_CLASSES = (*SUBSETS["T10"], *OTHER_SSV2_CLASSES)


def placeholder_video(path: Path) -> None:
    """A file that exists (loaders check existence only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x1aE\xdf\xa3 not a real video")


def real_video(path: Path) -> None:
    """A 4-frame 32x32 H.264 file."""
    write_video(path, np.full((4, 32, 32, 3), 100, dtype=np.uint8), fps=4)


def ssv2_template(cls: str) -> str:
    """An SSv2 template for a class: its placeholders in brackets ("Taking [something] from [somewhere]")."""
    return re.sub(r"\b(something in it|[Ss]omething|somewhere)\b", r"[\1]", cls)


def ssv2_records(classes: Iterable[str], per_class: int, first_id: int = 1000) -> list[dict[str, Any]]:
    """`per_class` records of each class, ids counting up from `first_id`, classes interleaved."""
    classes = list(classes)
    records = []
    for n in range(per_class):
        for k, cls in enumerate(classes):
            video_id = str(first_id + n * len(classes) + k)
            template = ssv2_template(cls)
            placeholders = [f"thing {video_id}"] * template.count("[")
            label = template
            for placeholder in placeholders:
                label = re.sub(r"\[[^]]*\]", placeholder, label, count=1)
            records.append({"id": video_id, "label": label.lower(), "template": template, "placeholders": placeholders})
    return records


def write_ssv2(
    root: Path,
    splits: Mapping[str, Sequence[Any]],
    *,
    classes: Sequence[str] = SSV2_CLASSES,
    videos: str | None = None,
    missing: Iterable[str] = (),
    video_writer: VideoWriter = placeholder_video,
) -> Path:
    """labels.json (classes numbered in order) and <split>.json for each split, formatted as the official files
    (CRLF, one compact record per line); a video <id>.webm per record (in root, or root/`videos`) except the
    ids in `missing`."""
    root.mkdir(parents=True, exist_ok=True)
    labels = ",\r\n".join(f" {json.dumps(cls)}:{json.dumps(str(i))}" for i, cls in enumerate(classes))
    (root / "labels.json").write_bytes(("{\r\n" + labels + "\r\n}").encode())
    skip = set(missing)
    for split, records in splits.items():
        lines = ",\r\n".join(json.dumps(record, separators=(",", ":"), ensure_ascii=False) for record in records)
        (root / f"{split}.json").write_bytes(("[\r\n" + lines + "\r\n]").encode())
        for record in records:
            if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"] not in skip:
                video_writer((root / videos if videos else root) / f"{record['id']}.webm")
    return root


def vitatecs_record(video: str, caption: str, counterfactual: str, aspect: str, source: str = "MSRVTT") -> dict:
    return {
        "src_dataset": source,
        "video_name": video,
        "caption": caption,
        "counterfactual": counterfactual,
        "aspect": aspect,
    }


def write_vitatecs(
    root: Path,
    aspects: Mapping[str, Sequence[Any]],
    *,
    missing: Iterable[str] = (),
    video_writer: VideoWriter = placeholder_video,
) -> Path:
    """data/<Aspect>.jsonl (one object per line, ", " and ": " separators, LF) and videos/<src>/<video_name>
    for every record whose video_name is not in `missing`."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    skip = set(missing)
    for aspect, records in aspects.items():
        text = "".join((json.dumps(r) if isinstance(r, dict) else str(r)) + "\n" for r in records)
        (root / "data" / f"{aspect}.jsonl").write_text(text)
        for record in records:
            if isinstance(record, dict) and record.get("video_name") not in skip:
                video_writer(root / "videos" / record["src_dataset"] / record["video_name"])
    return root


def write_mvbench(
    root: Path,
    tasks: Mapping[str, Sequence[Any]],
    *,
    layout: str = "main",
    missing: Iterable[str] = (),
    video_writer: VideoWriter = placeholder_video,
) -> Path:
    """json/<task>.json and each record's media under video/<task folder>/ (a folder of 00001.jpg... for
    episodic reasoning in the main layout), except the `video` names in `missing`."""
    from stave.evaluation.benchmarks.mvbench import TASKS

    (root / "json").mkdir(parents=True, exist_ok=True)
    skip = set(missing)
    for task, records in tasks.items():
        (root / "json" / f"{task}.json").write_text(json.dumps(list(records), indent=2))
        spec = TASKS[task]
        folder = root / "video" / (spec.main_folder if layout == "main" else spec.segments_folder)
        for record in records:
            if not isinstance(record, dict) or record.get("video") in skip:
                continue
            if spec.frames and layout == "main":
                for i in range(1, 4):
                    placeholder_video(folder / record["video"] / f"{i:05d}.jpg")
            else:
                video_writer(folder / record["video"])
    return root


def videomme_row(video_id: str, question_id: str, answer: str = "B", **overrides: Any) -> dict[str, Any]:
    row = {
        "video_id": video_id,
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "url": f"https://www.youtube.com/watch?v=yt{video_id}",
        "videoID": f"yt{video_id}",
        "question_id": question_id,
        "task_type": "Temporal Reasoning",
        "question": f"What happens first in video {video_id}?",
        "options": ["A. a door opens.", "B. a dog barks.", "C. it rains.", "D. nothing."],
        "answer": answer,
    }
    row.update(overrides)
    return row


def write_videomme(
    root: Path,
    rows: Sequence[Mapping[str, Any]],
    *,
    subtitles: Mapping[str, str] | None = None,
    missing: Iterable[str] = (),
    video_writer: VideoWriter = placeholder_video,
) -> Path:
    """videomme/test-00000-of-00001.parquet, data/<videoID>.mp4 (except `missing` videoIDs) and
    subtitle/<videoID>.srt for the given subtitle texts. Needs pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "videomme").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([dict(row) for row in rows]), root / "videomme" / "test-00000-of-00001.parquet")
    skip = set(missing)
    for video in sorted({row["videoID"] for row in rows if isinstance(row.get("videoID"), str)} - skip):
        video_writer(root / "data" / f"{video}.mp4")
    (root / "subtitle").mkdir(exist_ok=True)
    for video, text in (subtitles or {}).items():
        (root / "subtitle" / f"{video}.srt").write_text(text, encoding="utf-8")
    return root


def write_tempcompass(
    root: Path,
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    missing: Iterable[str] = (),
    video_writer: VideoWriter = placeholder_video,
) -> Path:
    """questions/<task>.json ({video_id: {dimension: [{question, answer}]}}, 4-space indent, CRLF) and
    videos/<video_id>.mp4 except the ids in `missing`."""
    (root / "questions").mkdir(parents=True, exist_ok=True)
    videos = set()
    for task, data in tasks.items():
        text = json.dumps(data, indent=4).replace("\n", "\r\n")
        (root / "questions" / f"{task}.json").write_bytes(text.encode())
        videos.update(data)
    for video in sorted(videos - set(missing)):
        video_writer(root / "videos" / f"{video}.mp4")
    return root
