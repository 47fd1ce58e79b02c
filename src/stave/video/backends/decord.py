"""Decoding with decord (optional: `pip install 'stave[decord]'`, which installs the maintained fork
decord2; the original decord 0.6.0 provides the same `decord` module and works too).

decord indexes frames itself; its frame count and timestamps are checked against the frame table before
any frame is taken, so a disagreement is an error, never a silently different frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..errors import VideoDecodeError
from .frame_table import Deadline, FrameTable

CHUNK = 8  # frames decoded per call: bounds memory at full source resolution
TOLERANCE = 1e-3  # seconds (decord reports float32 timestamps)


def load():
    """Import decord; ImportError (or OSError from its bundled libraries) if unusable."""
    import decord

    return decord


def decode(path: Path, table: FrameTable, indices: Sequence[int], deadline: Deadline) -> Iterator[torch.Tensor]:
    """Yield the frames at `indices` (ascending) as (k, 3, H, W) uint8 RGB tensors, in order."""
    decord = load()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
    except (RuntimeError, decord.DECORDError) as error:
        raise VideoDecodeError(path, f"decord cannot open it ({_first_line(error)})") from None
    if len(reader) != len(table):
        raise VideoDecodeError(path, f"decord counts {len(reader)} frames where the file has {len(table)}")
    first = float(reader.get_frame_timestamp([0])[0, 0])
    for start in range(0, len(indices), CHUNK):
        deadline.check()
        chunk = list(indices[start : start + CHUNK])
        got = [float(t) - first for t in reader.get_frame_timestamp(chunk)[:, 0]]
        wanted = [table.times[i] for i in chunk]
        if any(abs(g - w) > TOLERANCE for g, w in zip(got, wanted, strict=True)):
            raise VideoDecodeError(path, f"decord puts frames at {got}s where the file has them at {wanted}s")
        try:
            frames = reader.get_batch(chunk).asnumpy()
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(path, f"corrupt video after {start} frames ({_first_line(error)})") from None
        yield torch.from_numpy(frames).permute(0, 3, 1, 2)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
