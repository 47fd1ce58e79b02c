"""Checkpoints that cannot be mistaken for complete ones.

The Trainer writes `checkpoint-N/` file by file; a run killed meanwhile leaves a folder that looks like a
checkpoint. stave seals a checkpoint once everything of it is written (all ranks): `stave-checkpoint.json`
lists every file with its size, written atomically. Resuming accepts only sealed checkpoints whose files are
all present with their recorded sizes and whose safetensors files parse. Final models are written to a
temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import StaveError

SEAL = "stave-checkpoint.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(StaveError, RuntimeError):
    """A checkpoint that must not be resumed from (incomplete, altered or corrupt); names the folder."""


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def seal(folder: Path, step: int) -> None:
    """Record every file of a fully written checkpoint folder (call after all ranks have written)."""
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != SEAL
    }
    write_json_atomic(folder / SEAL, {"step": step, "files": files})


def verify(folder: Path) -> int:
    """The step of a sealed, intact checkpoint; CheckpointError naming the folder and the fault otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    seal_file = folder / SEAL
    if not seal_file.is_file():
        raise CheckpointError(f"{folder}: incomplete checkpoint (no {SEAL}: the run stopped while writing it)")
    try:
        record = json.loads(seal_file.read_text())
        files, step = dict(record["files"]), int(record["step"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder}: unreadable {SEAL}: {error}") from None
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{folder}: {name} has {path.stat().st_size} bytes, {size} were written")
        if path.suffix == ".safetensors":
            _check_safetensors(path, folder)
    return step


def _check_safetensors(path: Path, folder: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                handle.get_slice(key)
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"{folder}: {path.name} is corrupt: {error}") from None


def latest(folder: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint under a stage folder, and why each newer one was passed over."""
    folder = Path(folder)
    found = []
    if folder.is_dir():
        found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir())
    passed = []
    for _, path in reversed(found):
        try:
            verify(path)
            return path, passed
        except CheckpointError as error:
            passed.append(str(error))
    return None, passed


def save_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp_folder)`, then move the folder to `target` (replacing an older one)."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
