"""Decoding with PyAV (FFmpeg bundled in its wheels; always installed).

Only the frames that will be used are decoded: the decoder seeks to the keyframe before a wanted frame
whenever that keyframe lies ahead of where decoding stands, and otherwise decodes on.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..errors import VideoDecodeError
from .frame_table import Deadline, FrameTable


def load() -> None:
    """PyAV is a dependency of stave: nothing to check."""
    import av  # noqa: F401


def decode(path: Path, table: FrameTable, indices: Sequence[int], deadline: Deadline) -> Iterator[torch.Tensor]:
    """Yield the frames at `indices` (ascending) as (1, 3, H, W) uint8 RGB tensors, in order."""
    import av

    try:
        container = av.open(str(path), timeout=deadline.timeout)
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"not a readable video ({error})") from None
    with container:
        stream = container.streams[table.stream_index]
        stream.thread_type = "AUTO"
        decoder = None
        position = None  # pts of the last decoded frame
        taken = 0
        try:
            for index in indices:
                target = table.pts[index]
                keyframe = table.keyframes[max(0, bisect.bisect_right(table.keyframes, target) - 1)]
                if decoder is None or position is None or keyframe > position:
                    container.seek(keyframe, stream=stream, backward=True, any_frame=False)
                    decoder = container.decode(stream)
                for frame in decoder:
                    deadline.check()
                    position = frame.pts
                    if frame.pts is None or frame.pts < target:
                        continue
                    yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None]
                    taken += 1
                    break
                else:
                    raise VideoDecodeError(path, f"stream ended after {taken} of {len(indices)} frames (truncated?)")
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt video after {taken} frames ({error})") from None
