"""Which frames to take and what size to make them: the rules of qwen-vl-utils, as pure functions."""

from __future__ import annotations

import math

from .options import FPS, FRAME_FACTOR, VideoOptions


def round_by_factor(value: float, factor: int) -> int:
    return round(value / factor) * factor


def ceil_by_factor(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def floor_by_factor(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def number_of_frames(options: VideoOptions, available: int, video_fps: float) -> int:
    """How many frames to take from `available` frames of a clip played at `video_fps`.

    `nframes` is rounded to an even count and must not exceed what is available. With `fps`:
    available / video_fps * fps, clamped to [min_frames, max_frames] (rounded to even) and to
    `available`, then rounded down to even. A clip of a single frame yields 1 (the packer repeats it
    to fill the temporal patch, as Qwen does).

    Raises:
        ValueError: nframes exceeds the frames available, or no frame is available.
    """
    if available < 1:
        raise ValueError("the clip has no frames")
    if available < FRAME_FACTOR:
        return available
    if options.nframes is not None:
        n = max(FRAME_FACTOR, round_by_factor(options.nframes, FRAME_FACTOR))
        if n > available:
            raise ValueError(f"nframes={options.nframes} asks for {n} frames but the clip has {available}")
        return n
    fps = options.fps if options.fps is not None else FPS
    min_frames = ceil_by_factor(options.min_frames, FRAME_FACTOR)
    max_frames = floor_by_factor(min(options.max_frames, available), FRAME_FACTOR)
    n = available / video_fps * fps
    n = min(max(n, min_frames), max_frames, available)
    return max(FRAME_FACTOR, floor_by_factor(n, FRAME_FACTOR))


def frame_indices(first: int, last: int, n: int) -> list[int]:
    """n indices spread evenly over [first, last] (linspace, rounded half to even like torch)."""
    if n == 1:
        return [first]
    step = (last - first) / (n - 1)
    return [int(round(first + i * step)) for i in range(n)]


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, scaled into [min_pixels, max_pixels].

    Raises:
        ValueError: the aspect ratio exceeds 200.
    """
    if min(height, width) < 1:
        raise ValueError(f"frame of {height}x{width} pixels has no area")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {height}x{width}")
    h = max(factor, round_by_factor(height, factor))
    w = max(factor, round_by_factor(width, factor))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, floor_by_factor(height / beta, factor))
        w = max(factor, floor_by_factor(width / beta, factor))
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = ceil_by_factor(height * beta, factor)
        w = ceil_by_factor(width * beta, factor)
    return h, w


def video_frame_size(height: int, width: int, n: int, options: VideoOptions, factor: int) -> tuple[int, int]:
    """Per-frame size of a video of n frames under the per-frame and per-video pixel budgets."""
    max_pixels = max(min(options.max_pixels, options.total_pixels / n * FRAME_FACTOR), int(options.min_pixels * 1.05))
    return smart_resize(height, width, factor, options.min_pixels, int(max_pixels))
