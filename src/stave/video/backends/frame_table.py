"""The frame table of a video file: every frame's timestamp, the keyframes, the frame rate and the size.

It is read by demuxing with PyAV (packets only, nothing is decoded), whichever backend decodes the pixels
afterwards. Frames are chosen from this one table, so the indices, timestamps, fps and duration of a clip
never depend on the decoding library, only its pixels may (by a rounding step of colour conversion).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VideoDecodeError, VideoNotFoundError, VideoTimeoutError

if TYPE_CHECKING:
    import av


class Deadline:
    """A decode's time limit: `check()` raises VideoTimeoutError naming the source once it has passed."""

    def __init__(self, timeout: float, source: object) -> None:
        self.timeout = timeout
        self.source = source
        self.end = time.monotonic() + timeout

    def check(self) -> None:
        self.remaining()

    def remaining(self) -> float:
        """Seconds left; raises VideoTimeoutError if none are."""
        left = self.end - time.monotonic()
        if left < 0:
            raise VideoTimeoutError(self.source, f"decoding took longer than the timeout of {self.timeout}s")
        return left


def open_container(path: Path, timeout: float) -> av.container.InputContainer:
    """av.open(path), given at most `timeout` seconds, the opening itself included.

    PyAV's own `timeout` interrupts FFmpeg while it waits for data, but not the open(2) of a file, which can
    block for good (a FIFO without a writer, a hung network mount). So the opening runs in a daemon thread:
    if it has not returned in time, VideoTimeoutError is raised and the thread is left behind (it closes the
    file, should it ever open it).

    Raises:
        VideoNotFoundError, VideoTimeoutError, VideoDecodeError (not a readable video).
    """
    import av

    opened: Future[av.container.InputContainer] = Future()

    def run() -> None:
        try:
            opened.set_result(av.open(str(path), timeout=timeout))
        except BaseException as error:  # handed to the waiting thread
            opened.set_exception(error)

    threading.Thread(target=run, name=f"stave-open {path}", daemon=True).start()
    try:
        return opened.result(timeout)
    except av.error.FileNotFoundError:
        raise VideoNotFoundError(path, "no such file") from None
    except av.error.ExitError:  # FFmpeg's interrupt: PyAV's timeout passed while it read
        raise VideoTimeoutError(path, f"opening took longer than the timeout of {timeout}s") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoDecodeError(path, f"not a readable video ({error})") from None
    except TimeoutError:  # the opening has not returned (FFmpeg's errors were caught above)
        opened.add_done_callback(_close_late)
        raise VideoTimeoutError(path, f"opening took longer than the timeout of {timeout}s") from None


def _close_late(opened: Future) -> None:
    if opened.exception() is None:
        opened.result().close()


@dataclass(frozen=True)
class FrameTable:
    """Where the frames of a file's first video stream are.

    Attributes:
        pts: presentation timestamp of every frame, ascending, in `time_base` units.
        keyframes: pts of the keyframes, ascending.
        time_base: seconds per pts unit.
        times: seconds of every frame from the first frame (times[0] == 0).
        fps: the stream's average frame rate (frames per second).
        width, height: decoded frame size in pixels.
        stream_index: the stream's index in the container (counting every kind of stream).
    """

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction
    times: list[float]
    fps: float
    width: int
    height: int
    stream_index: int

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, index: int) -> float:
        """Presentation time of frame `index` in seconds, as decoders report it (not shifted to start at 0)."""
        return float(self.pts[index] * self.time_base)


def read_frame_table(path: Path, timeout: float) -> FrameTable:
    """Demux `path` (no decoding) into its FrameTable.

    Raises:
        VideoNotFoundError, VideoDecodeError (not a video, no video stream, no frames, corrupt),
        VideoTimeoutError (opening took longer than `timeout` seconds).
    """
    import av

    with open_container(path, timeout) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        try:
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size]
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt video ({error})") from None
        if not packets:
            raise VideoDecodeError(path, "no video frames")
        pts = sorted(p for p, _ in packets)
        keyframes = sorted(p for p, key in packets if key) or [pts[0]]
        time_base = stream.time_base or Fraction(1, 1)
        times = [float((p - pts[0]) * time_base) for p in pts]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (len(pts) - 1) / times[-1] if times[-1] > 0 else 1.0
        width, height = stream.codec_context.width, stream.codec_context.height
        return FrameTable(pts, keyframes, time_base, times, fps, width, height, stream.index)
