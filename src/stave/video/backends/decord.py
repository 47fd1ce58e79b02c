"""Decoding with decord (optional: `pip install 'stave[decord]'`, which installs the maintained fork
decord2; the original decord 0.6.0 provides the same `decord` module and works too).

decord indexes frames itself; its frame count and timestamps are checked against the frame table before
any frame is taken, so a disagreement is an error, never a silently different frame.

decord2 3.4.0 keeps the padding at the end of each row of some frames: where the RGB row (3 * width bytes)
is shorter than the row it allocates (seen for widths 16, 32, 48, 96 and 144 at height 64, whose rows it
pads to a multiple of 192 bytes; widths 64, 80, 112, 128, 160-400 were not padded), a single frame comes back
as (H, W, C) with C = row bytes / W (4 for width 96, 6 for width 32) and `get_batch` fails with "Check
failed: from_size == to_size". Those frames are then read one at a time and the padding is cut from each
row; the pixels are then PyAV's exactly (tests/test_video_backends.py, widths 16 to 144).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import VideoDecodeError
from .frame_table import Deadline, FrameTable

CHUNK = 8  # frames decoded per call: bounds memory at full source resolution
PADDED_ROWS = "from_size == to_size"  # decord2's error when a frame's rows carry padding (see above)
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
            if PADDED_ROWS not in str(error):
                raise VideoDecodeError(path, f"corrupt video after {start} frames ({_first_line(error)})") from None
            frames = np.stack([_without_row_padding(reader[i].asnumpy(), table, path) for i in chunk])
        yield torch.from_numpy(frames).permute(0, 3, 1, 2)


def _without_row_padding(frame: np.ndarray, table: FrameTable, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 from a frame decord returned with padded rows: H rows of `row` >= 3 * W bytes, of
    which the first 3 * W are the pixels."""
    height, width = table.height, table.width
    row, rest = divmod(frame.size, height)
    if frame.dtype != np.uint8 or frame.shape[:2] != (height, width) or rest or row < 3 * width:
        raise VideoDecodeError(
            path, f"decord gave a frame of {frame.shape} {frame.dtype}, expected ({height}, {width}, 3) uint8"
        )
    return np.ascontiguousarray(frame).reshape(height, row)[:, : 3 * width].reshape(height, width, 3)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
