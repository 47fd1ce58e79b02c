"""Video-MME in its published layout (Hugging Face lmms-lab/Video-MME), with or without subtitles.

Layout::

    root/videomme/test-00000-of-00001.parquet   one row per question: video_id, duration (short | medium |
                                                long), domain, sub_category, url, videoID, question_id,
                                                task_type, question, options ["A. ...", ...], answer ("A")
    root/data/<videoID>.mp4                     the videos (.MP4 and .mkv are accepted too)
    root/subtitle/<videoID>.srt                 subtitles (from subtitle.zip; not every video has one)

Parquet files are read with pyarrow (`pip install 'stave[videomme]'`). `annotations=` names other parquet
files (relative to root or absolute); by default every *.parquet in root/videomme, else in root.

qid = question_id; task = task_type; groups = duration, domain, sub_category; options = the option texts
without their "A. " prefixes; answer = the text of the option the answer letter names.
`videomme-subs` (subtitles=True) also sets `subtitles`: the whole .srt file as plain text (numbers, timings
and markup such as <font ...> removed, HTML entities decoded; one line per subtitle block), or "" for a video
without a subtitle file.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import MissingExtraError
from ..items import LETTERS, BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .reading import OnMissing, check_on_missing, field, finish, videos_present

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv")
TEXT_FIELDS = ("video_id", "duration", "domain", "sub_category", "videoID", "task_type", "question")
_OPTION_PREFIX = re.compile(r"([A-Z])\.\s*")
_MARKUP = re.compile(r"<[^>]*>")


def load_videomme(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    subtitles: bool = False,
    annotations: str | Path | Sequence[str | Path] | None = None,
    videos: str | Path = "data",
    subtitle_folder: str | Path = "subtitle",
) -> list[EvalItem]:
    """Video-MME questions (see the module docstring); with subtitles=True the `videomme-subs` variant.
    `seed` is unused."""
    check_on_missing(on_missing)
    root = Path(root)
    items, skipped = [], []
    subtitle_cache: dict[str, str] = {}
    for path in _parquet_files(root, annotations):
        for row_number, row in enumerate(_read_parquet(path)):
            question_id = field(row, "question_id", str, path, f"row {row_number}")
            where = f"row {row_number} (question_id {question_id!r})"
            values = {name: field(row, name, str, path, where) for name in TEXT_FIELDS}
            raw_options = field(row, "options", list[str], path, where)
            if not 2 <= len(raw_options) <= len(LETTERS):
                raise BenchmarkFormatError(
                    f"{path}: {where}: field 'options' has {len(raw_options)} entries, expected 2 to {len(LETTERS)}"
                )
            options = [_option_text(text, i, path, where) for i, text in enumerate(raw_options)]
            letter = field(row, "answer", str, path, where).strip()
            if len(letter) != 1 or letter not in LETTERS[: len(options)]:
                raise BenchmarkFormatError(
                    f"{path}: {where}: field 'answer' {letter!r} is not one of the option letters "
                    f"{LETTERS[: len(options)]!r}"
                )
            video = _video_path(root / videos, values["videoID"])
            if not videos_present([video], where=f"{path} {where}", on_missing=on_missing, skipped=skipped):
                continue
            text = None
            if subtitles:
                video_name = values["videoID"]
                if video_name not in subtitle_cache:
                    subtitle_cache[video_name] = read_srt(root / subtitle_folder / f"{video_name}.srt")
                text = subtitle_cache[video_name]
            items.append(
                EvalItem(
                    qid=question_id,
                    task=values["task_type"],
                    question=values["question"],
                    videos=(VideoRef(video),),
                    options=tuple(options),
                    answer=options[LETTERS.index(letter)],
                    groups={name: values[name] for name in ("duration", "domain", "sub_category")},
                    subtitles=text,
                )
            )
    return finish("videomme-subs" if subtitles else "videomme", items, skipped, report)


def load_videomme_subs(root: str | Path, **options: Any) -> list[EvalItem]:
    """Video-MME with subtitles: load_videomme(root, subtitles=True, ...)."""
    return load_videomme(root, subtitles=True, **options)


def read_srt(path: Path) -> str:
    """The text of an .srt subtitle file, one line per subtitle block ("" when the file does not exist).

    A block is an optional number line, a timing line "HH:MM:SS,mmm --> HH:MM:SS,mmm", then text lines; markup
    tags (<font ...>, <i>) are removed. A block without a timing line raises BenchmarkFormatError.
    """
    if not path.is_file():
        return ""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise BenchmarkFormatError(f"{path}: not UTF-8 text (byte {error.start})") from None
    lines = []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").strip())
    for number, block in enumerate(blocks, 1):
        if not block.strip():
            continue
        rows = block.split("\n")
        timing = next((i for i, row in enumerate(rows[:2]) if "-->" in row), None)
        if timing is None:
            raise BenchmarkFormatError(f"{path}: subtitle block {number}: no timing line ('... --> ...')")
        words = html.unescape(" ".join(_MARKUP.sub("", row).strip() for row in rows[timing + 1 :]))
        words = " ".join(words.split())
        if words:
            lines.append(words)
    return "\n".join(lines)


def _parquet_files(root: Path, annotations: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if annotations is not None:
        names = [annotations] if isinstance(annotations, str | Path) else list(annotations)
        paths = [root / name for name in names]
        for path in paths:
            if not path.is_file():
                raise BenchmarkFormatError(f"{path}: Video-MME annotation file not found")
        return paths
    for folder in (root / "videomme", root):
        found = sorted(folder.glob("*.parquet"))
        if found:
            return found
    raise BenchmarkFormatError(f"{root}: no Video-MME parquet file in {root / 'videomme'} or {root}")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError(
            f"{path}: reading Video-MME's parquet annotations needs pyarrow: pip install 'stave[videomme]'"
        ) from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for damaged files
        raise BenchmarkFormatError(f"{path}: not a readable parquet file: {error}") from None


def _option_text(text: str, index: int, path: Path, where: str) -> str:
    match = _OPTION_PREFIX.match(text)
    if match is None or match.group(1) != LETTERS[index]:
        raise BenchmarkFormatError(
            f"{path}: {where}: field 'options'[{index}] {text!r} does not start with '{LETTERS[index]}.'"
        )
    return text[match.end() :]


def _video_path(folder: Path, name: str) -> Path:
    for extension in VIDEO_EXTENSIONS:
        candidate = folder / f"{name}{extension}"
        if candidate.is_file():
            return candidate
    return folder / f"{name}{VIDEO_EXTENSIONS[0]}"
