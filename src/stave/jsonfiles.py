"""Reading the JSON and JSON Lines files users hand stave (benchmark annotations, training data, caption sources):
UTF-8 text (a byte-order mark is tolerated); a key that appears twice in one object is an error, since json would
keep the last one silently and records would be lost without notice; every error names the file and, for JSON
Lines, the line, and is raised as the caller's error class. (Files stave writes itself: stave.runfiles.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json(path: Path, error: type[Exception]) -> Any:
    """The parsed JSON document of `path`; `error` with the file, line and column where it is not valid JSON."""
    text = _text(path, error)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as failure:
        raise error(f"{path}: not valid JSON at line {failure.lineno}, column {failure.colno}: {failure.msg}") from None
    except _DuplicateKey as duplicate:
        raise error(f"{path}: key {duplicate.args[0]!r} appears twice in one object") from None


def read_jsonl(path: Path, error: type[Exception]) -> Iterator[tuple[int, Any]]:
    """(line number from 1, parsed value) of every non-blank line of a JSON Lines file; `error` naming the file and
    line of one that is not valid JSON."""
    for number, line in enumerate(_text(path, error).split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as failure:
            raise error(f"{path}:line {number}: not valid JSON at column {failure.colno}: {failure.msg}") from None
        except _DuplicateKey as duplicate:
            raise error(f"{path}:line {number}: key {duplicate.args[0]!r} appears twice") from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _text(path: Path, error: type[Exception]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as failure:
        raise error(f"{path}: not UTF-8 text (byte {failure.start})") from None
