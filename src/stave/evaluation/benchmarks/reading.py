"""Reading published annotation files for the benchmark loaders: parse errors and field checks that name the
file, the record and the field; the missing-video policy; per-item random generators.

Records are located the way a reader would look them up: JSON paths for JSON files (`[12]`,
`["1034419625"]["action"][0]`), `line N` (1-based) for JSON Lines, `row N` (0-based) for parquet tables.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ... import jsonfiles
from ..items import BenchmarkFormatError, EvalItem, LoadReport

OnMissing = Literal["skip", "raise"]
ON_MISSING = ("skip", "raise")


def read_json(path: Path) -> Any:
    """Parse a JSON annotation file (stave.jsonfiles: UTF-8, BOM tolerated, a duplicate object key is an error)."""
    return jsonfiles.read_json(require_file(path, "annotation file"), BenchmarkFormatError)


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line of a JSON Lines annotation file (stave.jsonfiles)."""
    return jsonfiles.read_jsonl(require_file(path, "annotation file"), BenchmarkFormatError)


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else a BenchmarkFormatError saying which published file is missing."""
    if not path.is_file():
        raise BenchmarkFormatError(f"{path}: {what} not found")
    return path


def expect_type(value: Any, kind: type | tuple[type, ...], path: Path, where: str, what: str) -> Any:
    """`value` if it is of `kind`, else a BenchmarkFormatError naming file, record and what was expected."""
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        raise BenchmarkFormatError(f"{path}: {where}: expected {what}, got {_describe(value)}")
    return value


def field(record: Any, name: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """record[name], checked to exist and be of `kind` (str, float, list of str, ...).

    `kind` may be a type, a tuple of types, or `list[str]`-style generic for a list of one element type.
    """
    expect_type(record, dict, path, where, "a JSON object")
    if name not in record:
        raise BenchmarkFormatError(f"{path}: {where}: missing field {name!r}")
    value = record[name]
    element = getattr(kind, "__args__", None)
    if element is not None:  # list[str] and the like
        expect_type(value, list, path, where, f"field {name!r} to be a list")
        for i, entry in enumerate(value):
            expect_type(entry, element, path, where, f"field {name!r}[{i}] to be {_names(element)}")
        return value
    return expect_type(value, kind, path, where, f"field {name!r} to be {_names(kind)}")


def videos_present(
    paths: Sequence[Path], *, where: str, on_missing: OnMissing, skipped: list[tuple[str, str]], folder: bool = False
) -> bool:
    """Whether every video file (or, with folder=True, frame folder) of one question exists. A missing one
    raises under on_missing="raise"; under "skip" the question is recorded once in `skipped` as (record,
    reason naming every missing path) and False is returned."""
    missing = [path for path in paths if not (path.is_dir() if folder else path.is_file())]
    if not missing:
        return True
    reason = f"{'frame folder' if folder else 'video'} not found: {', '.join(str(path) for path in missing)}"
    if on_missing == "raise":
        raise BenchmarkFormatError(f"{where}: {reason}")
    skipped.append((where, reason))
    return False


def check_on_missing(on_missing: str) -> None:
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")


def finish(
    benchmark: str, items: list[EvalItem], skipped: list[tuple[str, str]], report: LoadReport | None
) -> list[EvalItem]:
    """Record what a loader read in `report`; without one, warn about skipped records (never drop silently).

    Also guarantees unique qids: resumable runs key results by them.
    """
    seen: set[str] = set()
    for item in items:
        if item.qid in seen:
            raise BenchmarkFormatError(f"{benchmark}: question id {item.qid!r} occurs twice")
        seen.add(item.qid)
    if report is not None:
        report.items += len(items)
        for where, reason in skipped:
            report.skip(where, reason)
    elif skipped:
        warnings.warn(
            f"{benchmark}: skipped {len(skipped)} question(s) whose video is missing (first: {skipped[0][1]}); "
            "pass report=LoadReport() to get the full list",
            stacklevel=3,
        )
    return items


def item_rng(seed: int, *key: object) -> random.Random:
    """A random.Random for one item: seeded by the run's seed and the item's own key (str seeds are hashed
    with SHA-512, so this is the same in every process). An item's draws therefore do not depend on which
    other records exist, come first, or are skipped."""
    return random.Random("/".join(str(part) for part in (seed, *key)))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def _describe(value: Any) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    text = kind.get(type(value), type(value).__name__)
    return text if isinstance(value, dict | list) else f"{text} {value!r:.60}"
