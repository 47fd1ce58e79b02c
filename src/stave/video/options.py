"""VideoOptions: every setting that decides which pixels a model sees. Logged with every run and stored
with every result, so a score can be traced to its frames, fps and pixel budget."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Defaults of qwen-vl-utils (the reference users know); pixels are counted per frame unless named total.
IMAGE_FACTOR = 28
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = 24576 * 28 * 28
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 16384 * 28 * 28
FPS = 2.0
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
FRAME_FACTOR = 2
BUDGETS = ("frame", "video")


@dataclass(frozen=True)
class VideoOptions:
    """How frames are taken from a video and resized.

    Attributes:
        nframes: take exactly this many frames (rounded to an even count); exclusive with `fps`.
        fps: take frames at this rate (default 2.0 when `nframes` is not given), clamped to
            [min_frames, max_frames] and to the frames available.
        min_frames, max_frames: bounds for the fps rule.
        start, end: optional clip bounds in seconds.
        min_pixels, max_pixels: smart_resize's pixel bounds, per frame or over the whole video (`budget`).
        total_pixels: with budget "frame", the pixel budget of the whole video: the per-frame maximum becomes
            max(min(max_pixels, total_pixels / n * 2), 1.05 * min_pixels); not used with budget "video".
        budget: "frame" (qwen-vl-utils; transformers' Qwen2-VL processors): min_pixels and max_pixels bound each
            frame's height x width; "video" (transformers' Qwen3VLVideoProcessor, whose `size` shortest_edge and
            longest_edge are these two): they bound frames x height x width of the whole video, the frame count
            rounded to the temporal patch (2), one size for all frames.
        frame_factor: the frame count is a multiple of this: 2 (qwen-vl-utils: counts rounded down to even, nframes
            to the nearest even) or 1 (transformers' Qwen3VLVideoProcessor: any count, an odd one padded with the
            last frame when packed).
        frame_size: (height, width): every frame resized to exactly this size, the pixel bounds unused (families
            whose tower takes fixed-size frames, e.g. LLaVA-OneVision's processor sets the tower's image size).
        shortest_edge: every frame resized so that its shorter side is this many pixels, the aspect ratio kept
            (the longer side int(shortest_edge * long / short), as transformers' resize to {"shortest_edge": ...});
            the pixel bounds unused; exclusive with frame_size (LLaVA-NeXT-Video's processor sets the tower's
            image size and center-crops).
        backend: the decoder of video files: "pyav" (always installed), "torchcodec" or "decord" (optional
            extras), or "auto" (torchcodec where it can be used, else pyav; see stave.video.backends).
            Frame folders, image lists and arrays need no decoder.
        timeout: seconds a decode may take before VideoTimeoutError.
    """

    nframes: int | None = None
    fps: float | None = None
    min_frames: int = FPS_MIN_FRAMES
    max_frames: int = FPS_MAX_FRAMES
    start: float | None = None
    end: float | None = None
    min_pixels: int = VIDEO_MIN_PIXELS
    max_pixels: int = VIDEO_MAX_PIXELS
    total_pixels: int = VIDEO_TOTAL_PIXELS
    budget: str = "frame"
    frame_factor: int = FRAME_FACTOR
    frame_size: tuple[int, int] | None = None
    shortest_edge: int | None = None
    backend: str = "pyav"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.nframes is not None and self.fps is not None:
            raise ValueError("VideoOptions: nframes and fps are mutually exclusive")
        positive = ("nframes", "shortest_edge", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels")
        for name in (*positive, "frame_factor"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"VideoOptions.{name} must be a positive int, got {value!r}")
        for name in ("fps", "timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"VideoOptions.{name} must be a positive number, got {value!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"VideoOptions.{name} must be a non-negative number of seconds, got {value!r}")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"VideoOptions: start ({self.start}) must be before end ({self.end})")
        if self.min_frames > self.max_frames:
            raise ValueError(f"VideoOptions: min_frames ({self.min_frames}) > max_frames ({self.max_frames})")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"VideoOptions: min_pixels ({self.min_pixels}) > max_pixels ({self.max_pixels})")
        if self.budget not in BUDGETS:
            raise ValueError(f"VideoOptions.budget must be one of {list(BUDGETS)}, got {self.budget!r}")
        if self.frame_factor not in (1, FRAME_FACTOR):
            raise ValueError(f"VideoOptions.frame_factor must be 1 or {FRAME_FACTOR}, got {self.frame_factor!r}")
        if self.frame_size is not None:
            size = self.frame_size
            if not (
                isinstance(size, (tuple, list)) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
            ):  # fmt: skip
                raise ValueError(f"VideoOptions.frame_size must be (height, width) positive ints, got {size!r}")
            object.__setattr__(self, "frame_size", tuple(size))
        if self.frame_size is not None and self.shortest_edge is not None:
            raise ValueError("VideoOptions: frame_size and shortest_edge are mutually exclusive")
        if self.backend not in ("pyav", "torchcodec", "decord", "auto"):
            raise ValueError(f"VideoOptions.backend must be pyav, torchcodec, decord or auto, got {self.backend!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every field; frame_size and shortest_edge only when set (so records, cache keys and resumable runs'
        settings written before they existed stay the same)."""
        values = dataclasses.asdict(self)
        for optional in ("frame_size", "shortest_edge"):
            if values[optional] is None:
                del values[optional]
        return values
