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

    `nframes` is rounded to a multiple of options.frame_factor (f: 2, qwen-vl-utils' rule, or 1, transformers'
    Qwen3VLVideoProcessor's) and must not exceed what is available. With `fps`: available / video_fps * fps,
    clamped to [min_frames, max_frames] (rounded to multiples of f) and to `available`, then rounded down to
    a multiple of f. A clip of fewer than f frames yields them all (the packer repeats the last frame to fill
    the temporal patch, as Qwen does).

    Raises:
        ValueError: nframes exceeds the frames available, or no frame is available.
    """
    factor = options.frame_factor
    if available < 1:
        raise ValueError("the clip has no frames")
    if available < factor:
        return available
    if options.nframes is not None:
        n = max(factor, round_by_factor(options.nframes, factor))
        if n > available:
            raise ValueError(f"nframes={options.nframes} asks for {n} frames but the clip has {available}")
        return n
    fps = options.fps if options.fps is not None else FPS
    min_frames = ceil_by_factor(options.min_frames, factor)
    max_frames = floor_by_factor(min(options.max_frames, available), factor)
    n = available / video_fps * fps
    n = min(max(n, min_frames), max_frames, available)
    return max(factor, floor_by_factor(n, factor))


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
    """Size (height, width) of every frame of a video of n frames of height x width, within the options' pixel
    budget: per frame (budget "frame", qwen-vl-utils' rule) or over the whole video (budget "video",
    transformers' Qwen3VLVideoProcessor's rule; see video_size_in_budget)."""
    if options.budget == "video":
        return video_size_in_budget(height, width, n, factor, options.min_pixels, options.max_pixels)
    max_pixels = max(min(options.max_pixels, options.total_pixels / n * FRAME_FACTOR), int(options.min_pixels * 1.05))
    return smart_resize(height, width, factor, options.min_pixels, int(max_pixels))


def video_size_in_budget(
    height: int, width: int, n: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """transformers' Qwen3-VL smart_resize (video_processing_qwen3_vl, 5.x): one frame size for n frames whose
    frames x height x width lies within [min_pixels, max_pixels], the frame count rounded (half to even) to the
    temporal patch, 2. Sides below `factor` are first scaled up to it (transformers 4.57 refuses such videos).
    Where the rounded count is out of the bounds, the scale is computed with the count itself, as there. A
    video of one frame counts as the 2 it is packed to (transformers refuses it).

    Raises:
        ValueError: the aspect ratio exceeds 200, or a side is 0.
    """
    if min(height, width) < 1:
        raise ValueError(f"frame of {height}x{width} pixels has no area")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {height}x{width}")
    frames = max(FRAME_FACTOR, round_by_factor(n, FRAME_FACTOR))
    h, w = round_by_factor(height, factor), round_by_factor(width, factor)
    if frames * h * w > max_pixels:
        beta = math.sqrt(max(n, FRAME_FACTOR) * height * width / max_pixels)
        h = max(factor, floor_by_factor(height / beta, factor))
        w = max(factor, floor_by_factor(width / beta, factor))
    elif frames * h * w < min_pixels:
        beta = math.sqrt(min_pixels / (max(n, FRAME_FACTOR) * height * width))
        h = ceil_by_factor(height * beta, factor)
        w = ceil_by_factor(width * beta, factor)
    return h, w
