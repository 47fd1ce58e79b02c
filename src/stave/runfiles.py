"""Files of a resumable run: append-only JSON-lines files, whose last line may have been cut by a kill, and the
settings a rerun must match to continue a run (`stave eval`'s predictions, `stave make-qa`'s generations)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import StaveError


class RunFileError(StaveError, ValueError):
    """A run file that is damaged other than by a kill (a bad line before its end); names the file and line."""


def read_jsonl(path: Path, *, repair: bool = False) -> list[Any]:
    """The rows of the complete lines of a JSON-lines file ([] when it does not exist). A last line without its
    newline was cut by a kill: it is left out, and with `repair` also removed from the file, so that appending
    continues on a line of its own. A line that is not JSON before the end is a RunFileError."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows, good = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunFileError(f"{path}: line {len(rows) + 1} is not valid JSON (not a cut-off last line)") from None
        good += len(line)
    if repair and good != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return rows


def keep_jsonl_rows(path: Path, keep: Callable[[Any], bool]) -> int:
    """Remove the rows of a JSON-lines file for which `keep` is false (and a cut last line); the file is
    rewritten atomically, and only when something goes. Returns how many complete rows were removed."""
    path = Path(path)
    rows = read_jsonl(path, repair=True)
    kept = [row for row in rows if keep(row)]
    if len(kept) != len(rows):
        write_jsonl_atomic(path, kept)
    return len(rows) - len(kept)


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> None:
    """Write a JSON-lines file through a temporary file renamed into place (ASCII escapes: no character inside a
    value can end a line for any reader)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def settings_differences(path: Path, current: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """Compare `current` with the settings stored at `path` (a JSON file), key by key: a description of each
    key that differs ('KEY: STORED there, CURRENT now'); [] when they agree. When `path` does not exist yet,
    `current` is written there (atomically) and [] is returned. `defaults` gives the values of settings added
    since the stored file was written (a key missing there has its default; in a setting whose value is a dict,
    such as the video options, a field missing there has its default's value)."""
    from .training.checkpoints import write_json_atomic

    path = Path(path)
    current = json.loads(json.dumps(current))
    if not path.is_file():
        write_json_atomic(path, current)
        return []
    defaults = defaults or {}
    stored = {**defaults, **json.loads(path.read_text(encoding="utf-8"))}
    for key, default in defaults.items():
        if isinstance(default, dict) and isinstance(stored.get(key), dict):
            stored[key] = {**default, **stored[key]}
    differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    return [f"{k}: {stored.get(k)!r} there, {current.get(k)!r} now" for k in differ]
