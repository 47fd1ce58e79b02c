"""Decoding with torchcodec (optional: `pip install 'stave[torchcodec]'`).

torchcodec needs FFmpeg's shared libraries (major versions 4 to 9) on the system, and a wheel built for
the installed torch: PyPI's Linux wheels are CUDA builds that load only next to a CUDA build of torch.

Frames are asked for by index in torchcodec's "exact" mode (it indexes every frame of the file by its
timestamp, as the frame table does), and the timestamps it returns are checked against the frame table.
(Asking by time in "approximate" mode skips that indexing but cannot reach the last frame of a file whose
header gives the last frame's timestamp as its end.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..errors import VideoDecodeError
from .frame_table import Deadline, FrameTable

CHUNK = 8  # frames decoded per call: bounds memory at full source resolution
TOLERANCE = 1e-4  # seconds


def load():
    """Import torchcodec's VideoDecoder; ImportError or OSError (FFmpeg or torch mismatch) if unusable.

    torchcodec 0.17 imports without FFmpeg (its image decoders do not need it) and fails only when a video is
    opened; `torchcodec.ffmpeg_major_version` is None then, and that is reported here as unusable."""
    import torchcodec
    from torchcodec.decoders import VideoDecoder

    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:
        raise OSError(
            "torchcodec cannot load its FFmpeg core library: FFmpeg's shared libraries (major version 4 to 9: "
            "libavcodec, libavformat, libavutil, libavdevice, libavfilter, libswscale, libswresample) are not "
            "installed, or do not match"
        )
    return VideoDecoder


def decode(path: Path, table: FrameTable, indices: Sequence[int], deadline: Deadline) -> Iterator[torch.Tensor]:
    """Yield the frames at `indices` (ascending) as (k, 3, H, W) uint8 RGB tensors, in order."""
    video_decoder = load()
    try:  # torchcodec's default of one decoding thread: faster here than letting FFmpeg choose (RESULTS.md)
        decoder = video_decoder(str(path), stream_index=table.stream_index, seek_mode="exact")
    except (RuntimeError, ValueError) as error:
        raise VideoDecodeError(path, f"torchcodec cannot open it ({_first_line(error)})") from None
    if len(decoder) != len(table):
        raise VideoDecodeError(path, f"torchcodec counts {len(decoder)} frames where the file has {len(table)}")
    for start in range(0, len(indices), CHUNK):
        deadline.check()
        chunk = list(indices[start : start + CHUNK])
        try:
            batch = decoder.get_frames_at(chunk)
        except (RuntimeError, ValueError, IndexError) as error:
            raise VideoDecodeError(path, f"corrupt video after {start} frames ({_first_line(error)})") from None
        got = batch.pts_seconds.tolist()
        wanted = [table.seconds(i) for i in chunk]
        if any(abs(g - w) > TOLERANCE for g, w in zip(got, wanted, strict=True)):
            raise VideoDecodeError(path, f"torchcodec returned frames at {got}s where the file has them at {wanted}s")
        yield batch.data


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
