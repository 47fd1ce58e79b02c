"""Reading frames: from video files (PyAV), frame folders, PIL images or uint8 arrays.

Only the frames that will be used are decoded: the packets are demuxed first (no decoding) to learn
every frame's timestamp and where the keyframes are, then the decoder seeks to the keyframe before a
wanted frame whenever that keyframe lies ahead of where decoding stands. Each taken frame is resized at
once, so memory stays bounded by the pixel budget, not by the source resolution.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import VideoDecodeError, VideoNotFoundError, VideoSamplingError, VideoShapeError, VideoTimeoutError
from .options import IMAGE_FACTOR, VideoOptions
from .sampling import frame_indices, number_of_frames, video_frame_size

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class VideoClip:
    """Frames taken from a video, resized for the model.

    Attributes:
        frames: (T, 3, H, W) uint8, H and W multiples of the resize factor.
        timestamps: time in seconds of each taken frame in the source.
        indices: index of each taken frame among the source's frames.
        source_fps: the source's frame rate (frames per second).
        duration: the source's duration in seconds.
        total_frames: frames in the source.
        sampled_fps: frames taken per second of source time (Qwen2.5-VL aligns time with it).
        source: where the frames came from.
        options: the VideoOptions used.
    """

    frames: torch.Tensor
    timestamps: list[float]
    indices: list[int]
    source_fps: float
    duration: float
    total_frames: int
    sampled_fps: float
    source: str
    options: VideoOptions = field(repr=False)


def read_video(
    source: str | Path | Sequence[Any] | np.ndarray | torch.Tensor,
    options: VideoOptions | None = None,
    *,
    factor: int = IMAGE_FACTOR,
    source_fps: float = 1.0,
) -> VideoClip:
    """Decode, sample and resize a video.

    Args:
        source: a video file; a folder of frame images (sorted by name); a list of PIL images; or a
            (T, H, W, C) uint8 array/tensor with C = 1 (grey), 3 (RGB) or 4 (RGBA; alpha dropped).
        options: sampling and resizing settings.
        factor: frame sides become multiples of this (patch_size * merge_size; 28 for Qwen2-VL).
        source_fps: frame rate of frame folders, image lists and arrays (files carry their own).

    Raises:
        VideoError subclasses naming the source and the reason.
    """
    options = options or VideoOptions()
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _read_frames(_FolderFrames(path), options, factor, source_fps)
        if not path.exists():
            raise VideoNotFoundError(path, "no such file or folder")
        if options.backend not in ("pyav", "auto"):
            raise VideoDecodeError(path, f"backend {options.backend!r} is not available in this build; use 'pyav'")
        return _read_pyav(path, options, factor)
    return _read_frames(_MemoryFrames(source), options, factor, source_fps)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> (T, 3, height, width) uint8; bicubic with antialias, rounded and clamped."""
    if frames.shape[-2:] == (height, width):
        return frames
    resized = F.interpolate(frames.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _select(total: int, fps: float, options: VideoOptions, source: object, times: Sequence[float]) -> list[int]:
    """Indices of the frames to take, within start/end."""
    first, last = 0, total - 1
    duration = times[-1] + 1.0 / fps if times else total / fps
    if options.start is not None or options.end is not None:
        start = options.start or 0.0
        end = options.end if options.end is not None else duration
        if start >= duration:
            raise VideoSamplingError(source, f"start={start}s is beyond the clip's duration of {duration:.3f}s")
        if end > duration + 1.0 / fps:
            raise VideoSamplingError(source, f"end={end}s is beyond the clip's duration of {duration:.3f}s")
        first = bisect.bisect_left(times, start - 1e-6)
        last = bisect.bisect_right(times, end + 1e-6) - 1
        if last < first:
            raise VideoSamplingError(source, f"no frame between start={start}s and end={end}s")
    try:
        n = number_of_frames(options, last - first + 1, fps)
    except ValueError as error:
        raise VideoSamplingError(source, str(error)) from None
    return frame_indices(first, last, n)


def _target_size(height: int, width: int, n: int, options: VideoOptions, factor: int, source: object):
    try:
        return video_frame_size(height, width, n, options, factor)
    except ValueError as error:
        raise VideoShapeError(source, str(error)) from None


def _clip(frames, times, indices, fps, total, options, source) -> VideoClip:
    duration = times[-1] + 1.0 / fps if times else total / fps
    span = times[indices[-1]] - times[indices[0]] + 1.0 / fps if indices else duration
    return VideoClip(
        frames=frames,
        timestamps=[times[i] for i in indices],
        indices=list(indices),
        source_fps=fps,
        duration=duration,
        total_frames=total,
        sampled_fps=len(indices) / span if span > 0 else fps,
        source=str(source),
        options=options,
    )


# -- in-memory frames and frame folders -------------------------------------------------------------


class _MemoryFrames:
    """Frames already in memory: list of PIL images, or a (T, H, W, C) uint8 array or tensor."""

    def __init__(self, source: Any) -> None:
        self.name = f"<{type(source).__name__} of frames>"
        if isinstance(source, (np.ndarray, torch.Tensor)):
            array = torch.as_tensor(source)
            if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
                raise VideoShapeError(self.name, f"expected (T, H, W, C) with C in 1, 3, 4, got {tuple(array.shape)}")
            if array.dtype != torch.uint8:
                raise VideoShapeError(self.name, f"expected uint8 frames, got {array.dtype}")
            self.frames = [array[i] for i in range(array.shape[0])]
        elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
            self.frames = list(source)
        else:
            raise VideoShapeError(self.name, "expected a path, a list of PIL images or a (T, H, W, C) uint8 array")
        if not self.frames:
            raise VideoDecodeError(self.name, "no frames")

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> torch.Tensor:
        return to_rgb_chw(self.frames[index], self.name)


class _FolderFrames:
    """A folder of frame images (e.g. MVBench's %05d.jpg episodes), in name order."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not self.files:
            raise VideoDecodeError(path, f"folder holds no frame images ({', '.join(FRAME_SUFFIXES)})")

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        file = self.files[index]
        try:
            with Image.open(file) as image:
                return to_rgb_chw(image, file)
        except (UnidentifiedImageError, OSError) as error:
            raise VideoDecodeError(file, f"not a readable image ({error})") from None


def to_rgb_chw(frame: Any, name: object) -> torch.Tensor:
    """A PIL image or (H, W, C) uint8 array/tensor -> (3, H, W) uint8; grey is repeated, alpha dropped."""
    if hasattr(frame, "convert") and hasattr(frame, "mode"):  # PIL image
        frame = np.array(frame.convert("RGB"))  # a writable copy
    array = torch.as_tensor(np.asarray(frame) if not isinstance(frame, torch.Tensor) else frame)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or array.dtype != torch.uint8:
        raise VideoShapeError(name, f"expected an (H, W, C) uint8 frame, got {tuple(array.shape)} {array.dtype}")
    if array.shape[-1] == 1:
        array = array.expand(-1, -1, 3)
    return array[..., :3].permute(2, 0, 1)


def _read_frames(frames: _MemoryFrames | _FolderFrames, options: VideoOptions, factor: int, fps: float) -> VideoClip:
    total = len(frames)
    times = [i / fps for i in range(total)]
    indices = _select(total, fps, options, frames.name, times)
    first = frames.load(indices[0])
    height, width = _target_size(first.shape[1], first.shape[2], len(indices), options, factor, frames.name)
    out = torch.empty(len(indices), 3, height, width, dtype=torch.uint8)
    for k, index in enumerate(indices):
        frame = first if k == 0 else frames.load(index)
        if frame.shape != first.shape:
            raise VideoShapeError(
                frames.name,
                f"frame {index} is {tuple(frame.shape)}, frame {indices[0]} is "
                f"{tuple(first.shape)}: all frames must share one size",
            )
        out[k] = resize_frames(frame[None], height, width)[0]
    return _clip(out, times, indices, fps, total, options, frames.name)


# -- video files with PyAV ---------------------------------------------------------------------------


def _read_pyav(path: Path, options: VideoOptions, factor: int) -> VideoClip:
    import av

    deadline = time.monotonic() + options.timeout
    try:
        container = av.open(str(path), timeout=options.timeout)
    except av.error.FileNotFoundError:
        raise VideoNotFoundError(path, "no such file") from None
    except av.error.ExitError:
        raise VideoTimeoutError(path, f"opening took longer than the timeout of {options.timeout}s") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoDecodeError(path, f"not a readable video ({error})") from None
    with container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
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

        indices = _select(len(pts), fps, options, path, times)
        width, height = stream.codec_context.width, stream.codec_context.height
        size = _target_size(height, width, len(indices), options, factor, path)
        targets = [pts[i] for i in indices]
        frames = _decode_at(container, stream, targets, keyframes, size, (deadline, options.timeout), path)
    return _clip(frames, times, indices, fps, len(pts), options, path)


def _decode_at(container, stream, targets, keyframes, size, deadline, path) -> torch.Tensor:
    """Decode the frames whose pts are `targets` (ascending), seeking to a keyframe whenever the one
    before the next target lies ahead of the decoder."""
    import av

    out = torch.empty(len(targets), 3, *size, dtype=torch.uint8)
    deadline, timeout = deadline
    decoder = None
    position = None  # pts of the last decoded frame
    taken = 0
    try:
        while taken < len(targets):
            target = targets[taken]
            keyframe = keyframes[max(0, bisect.bisect_right(keyframes, target) - 1)]
            if decoder is None or position is None or keyframe > position:
                container.seek(keyframe, stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
            for frame in decoder:
                if time.monotonic() > deadline:
                    raise VideoTimeoutError(path, f"decoding took longer than the timeout of {timeout}s")
                position = frame.pts
                if frame.pts is None or frame.pts < target:
                    continue
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                out[taken] = resize_frames(rgb[None], *size)[0]
                taken += 1
                break
            else:
                raise VideoDecodeError(path, f"stream ended after {taken} of {len(targets)} frames (truncated?)")
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"corrupt video after {taken} frames ({error})") from None
    return out
