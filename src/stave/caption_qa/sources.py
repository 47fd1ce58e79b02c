"""Captioned videos to write questions about: WebVid's published annotation CSV, or any CSV / JSONL of
(video, caption).

WebVid (results_2M_train.csv, results_10M_train.csv, ...): columns videoid, contentUrl, duration, page_dir, name
(the 10M files add page_idx); the caption is `name`, the id `videoid`, and the video file is
`{page_dir}/{videoid}.mp4`, where WebVid's own download script (m-bain/webvid download.py) puts it under its
`videos/` folder. Any other CSV or JSONL needs `video` and `caption` (and may have `id`; default: the video path).
`video_pattern` builds the video path from any of a row's fields, e.g. "{videoid}.mp4" for a flat folder.
"""

from __future__ import annotations

import csv
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import jsonfiles
from ..errors import StaveError

WEBVID_COLUMNS = ("videoid", "page_dir", "name")


class CaptionSourceError(StaveError, ValueError):
    """An input file of captions that cannot be used; names the file, the line and the field."""


@dataclass(frozen=True)
class CaptionedVideo:
    """One input row: a unique id, the video path (relative to the videos' folder) and its caption; `where` is
    the file and line it came from."""

    id: str
    video: str
    caption: str
    where: str


@dataclass(frozen=True)
class CaptionColumns:
    """Which fields of a row make a CaptionedVideo: the caption's field, the id's field (None: the video path)
    and the video path's pattern (str.format over the row's fields)."""

    caption: str
    video_pattern: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "video_pattern": self.video_pattern, "id": self.id}


WEBVID = CaptionColumns(caption="name", video_pattern="{page_dir}/{videoid}.mp4", id="videoid")
PLAIN = CaptionColumns(caption="caption", video_pattern="{video}", id=None)


def detect_columns(fields: list[str] | set[str], video_pattern: str | None = None) -> CaptionColumns:
    """WebVid's columns when a row has them (videoid, page_dir, name), else video/caption/id; `video_pattern`
    replaces the format's own."""
    columns = WEBVID if set(WEBVID_COLUMNS) <= set(fields) else PLAIN
    if columns is PLAIN and "id" in fields:
        columns = CaptionColumns(caption="caption", video_pattern="{video}", id="id")
    if video_pattern is not None:
        columns = CaptionColumns(columns.caption, video_pattern, columns.id)
    return columns


def read_captions(
    path: str | Path, *, video_pattern: str | None = None, limit: int | None = None
) -> Iterator[CaptionedVideo]:
    """The rows of a captions file (.csv with a header row, or .jsonl of objects), in file order, each checked:
    a missing field, an empty caption or video, or an id seen before is a CaptionSourceError naming the file,
    the line and the field. Lazy: the file is read as it is consumed (WebVid's 10M file is 2.7 GB)."""
    path = Path(path)
    if not path.is_file():
        raise CaptionSourceError(f"{path}: captions file not found")
    if path.suffix not in (".csv", ".jsonl"):
        raise CaptionSourceError(f"{path}: captions are read from .csv (WebVid's layout) or .jsonl files")
    rows = _csv_rows(path) if path.suffix == ".csv" else _jsonl_rows(path)
    columns: CaptionColumns | None = None
    seen: dict[str, str] = {}
    for n, (where, row) in enumerate(rows):
        if limit is not None and n >= limit:
            return
        if columns is None:
            columns = detect_columns(list(row), video_pattern)
            _check_pattern(columns, list(row), path)
        item = _item(row, columns, where)
        if item.id in seen:
            raise CaptionSourceError(f"{where}: id {item.id!r} appears again (first at {seen[item.id]})")
        seen[item.id] = where
        yield item


def _check_pattern(columns: CaptionColumns, fields: list[str], path: Path) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(columns.video_pattern) if name is not None]
    except ValueError as error:
        raise CaptionSourceError(f"video pattern {columns.video_pattern!r}: {error}") from None
    needed = [columns.caption, *([columns.id] if columns.id else []), *names]
    missing = [name for name in needed if name not in fields]
    if missing or not names:
        raise CaptionSourceError(
            f"{path}: the rows have no field {missing} (needed by caption={columns.caption!r}, id={columns.id!r}, "
            f"video pattern {columns.video_pattern!r}); fields: {fields}. WebVid's CSV has videoid, contentUrl, "
            "duration, page_dir, name; other files need video and caption"
            if missing
            else f"video pattern {columns.video_pattern!r}: names no field of the rows ({fields})"
        )


def _item(row: dict[str, Any], columns: CaptionColumns, where: str) -> CaptionedVideo:
    # ids and path fields may be numbers (JSON's {"videoid": 1066692733}); every other value is used as it is
    values = {k: str(v).strip() if isinstance(v, (str, int)) and not isinstance(v, bool) else v for k, v in row.items()}
    caption = row.get(columns.caption)
    if not isinstance(caption, str) or not caption.strip():
        raise CaptionSourceError(f"{where}.{columns.caption}: the caption is missing, empty or not text")
    try:
        video = columns.video_pattern.format(**values)
    except (KeyError, IndexError, ValueError) as error:
        raise CaptionSourceError(f"{where}: video pattern {columns.video_pattern!r}: {error}") from None
    names = [name for _, name, _, _ in string.Formatter().parse(columns.video_pattern) if name]
    empty = [name for name in names if not isinstance(values.get(name), str) or not values[name]]
    if empty:
        raise CaptionSourceError(f"{where}.{empty[0]}: empty or not text (the video path needs it)")
    id_ = video if columns.id is None else values.get(columns.id)
    if not isinstance(id_, str) or not id_:
        raise CaptionSourceError(f"{where}.{columns.id}: the id is missing or empty")
    return CaptionedVideo(id=id_, video=video, caption=" ".join(caption.split()), where=where)


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise CaptionSourceError(f"{path}: empty (a CSV file starts with a header row)")
        for row in reader:
            where = f"{path}:line {reader.line_num}"
            if None in row:  # more values than header fields
                raise CaptionSourceError(f"{where}: {len(row) - 1 + len(row[None])} values for {len(row) - 1} columns")
            if any(value is None for value in row.values()):
                raise CaptionSourceError(f"{where}: fewer values than the {len(row)} columns of the header")
            yield where, row


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, row in jsonfiles.read_jsonl(path, CaptionSourceError):
        where = f"{path}:line {n}"
        if not isinstance(row, dict):
            raise CaptionSourceError(f"{where}: a row is a JSON object, got {type(row).__name__}")
        yield where, row
