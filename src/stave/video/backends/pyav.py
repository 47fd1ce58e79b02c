"""Decoding with PyAV (FFmpeg bundled in its wheels; always installed).

Only the frames that will be used are decoded: the decoder seeks to the keyframe before a wanted frame
whenever that keyframe lies ahead of where decoding stands, and otherwise decodes on. In H.264 streams,
frames that are neither wanted nor a reference of any other frame (nal_ref_idc 0, most B-frames) are not
decoded at all (FFmpeg's skip_frame NONREF, switched per packet): nothing else is predicted from them, so
the wanted frames come out bit for bit as from a full decode (20% less decoding time on the x264 clips of
benchmarks/video_pipeline.py). Should a wanted frame ever not come out with skipping on, that frame and the
rest of the file are decoded in full.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import VideoDecodeError
from .frame_table import Deadline, FrameTable, open_container

if TYPE_CHECKING:
    import av

# Codecs whose non-reference frames FFmpeg can skip without changing any other frame: H.264 marks them
# (nal_ref_idc 0). Not HEVC: its "sub-layer non-reference" pictures may still be references of a higher
# temporal sub-layer.
SKIP_NONREF_CODECS = frozenset({"h264"})


def load() -> None:
    """PyAV is a dependency of stave: nothing to check."""
    import av  # noqa: F401


def decode(path: Path, table: FrameTable, indices: Sequence[int], deadline: Deadline) -> Iterator[torch.Tensor]:
    """Yield the frames at `indices` (ascending) as (1, 3, H, W) uint8 RGB tensors, in order."""
    import av

    with open_container(path, deadline.remaining()) as container:
        stream = _Stream(container, table, {table.pts[i] for i in indices}, deadline)
        taken = 0
        try:
            for index in indices:
                target = table.pts[index]
                frame = stream.frame_at(target)
                if stream.skip_nonref and (frame is None or frame.pts != target):
                    stream.skip_nonref = False  # the wanted frame did not come out: decode this file in full
                    frame = stream.frame_at(target, seek=True)
                if frame is None:
                    raise VideoDecodeError(path, f"stream ended after {taken} of {len(indices)} frames (truncated?)")
                yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None]
                taken += 1
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt video after {taken} frames ({error})") from None


class _Stream:
    """The decoded frames of a file's video stream, in presentation order, from the last seek on.

    Args:
        wanted: pts of every frame that will be asked for; while `skip_nonref` is on, packets of other
            frames are decoded with skip_frame NONREF (non-reference frames dropped).
    """

    def __init__(self, container: av.container.InputContainer, table: FrameTable, wanted: set[int], deadline: Deadline):
        self.container = container
        self.stream = container.streams[table.stream_index]
        self.stream.thread_type = "AUTO"
        self.context = self.stream.codec_context
        self.keyframes = table.keyframes
        self.wanted = wanted
        self.deadline = deadline
        self.skip_nonref = self.context.name in SKIP_NONREF_CODECS
        self.frames: Iterator[av.VideoFrame] | None = None
        self.position: int | None = None  # pts of the last decoded frame

    def frame_at(self, target: int, seek: bool = False) -> av.VideoFrame | None:
        """The first frame at or after pts `target` (None if the stream ends first), seeking to the keyframe
        before it when that lies ahead of where decoding stands (or when `seek`)."""
        keyframe = self.keyframes[max(0, bisect.bisect_right(self.keyframes, target) - 1)]
        if seek or self.frames is None or self.position is None or keyframe > self.position:
            self.container.seek(keyframe, stream=self.stream, backward=True, any_frame=False)
            self.frames = self._decoded()
        for frame in self.frames:
            self.deadline.check()
            self.position = frame.pts
            if frame.pts is not None and frame.pts >= target:
                return frame
        return None

    def _decoded(self) -> Iterator[av.VideoFrame]:
        skipping = None
        for packet in self.container.demux(self.stream):
            skip = self.skip_nonref and packet.pts is not None and packet.pts not in self.wanted
            if skip != skipping:
                self.context.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            yield from self.context.decode(packet)
