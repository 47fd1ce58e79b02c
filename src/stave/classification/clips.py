"""What a video classifier sees: T frames, one per segment of the video, resized and cropped to the model's input
size and normalised; at test time several views (temporal clips x spatial crops) of each video.

Frames: the video (within VideoOptions' start/end) is cut into T segments of equal length, and clip view k of K
takes from each segment the frame at fraction (k + 0.5) / K of it (K = 1: each segment's middle frame, as
VideoMAE's and InternVideo2's SSv2 test sampling). Only those frames are decoded (stave.video.read_video with
`choose`); a video with fewer frames than T repeats frames.
Pixels: each frame is resized (stave.video.resize_frames: bicubic, antialiased, on uint8) so that its shorter side
is `short_side` (default: `size`), then crop view c of C is a size x size square: C = 1 the centre; C > 1 spread
evenly along the longer side from one end to the other (C = 3: start, centre, end, the 3-crop test of VideoMAE and
InternVideo2); then scaled to [0, 1] and normalised with `mean` and `std` (default: ImageNet's, the processors'
of VideoMAE and InternVideo2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..video import VideoOptions, read_video, resize_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# read_video hands frames over at source resolution: no pixel budget (the classifier's resize follows)
_SOURCE_PIXELS = 2**31 - 1


@dataclass(frozen=True)
class ClipInput:
    """How a video becomes a classifier's input. frames: T; size: the square crop's side in pixels; short_side:
    the shorter side of a frame before cropping (None: `size`); mean, std: per-channel normalisation of pixels
    scaled to [0, 1]; backend, timeout, start, end: as stave.video.VideoOptions."""

    frames: int = 8
    size: int = 224
    short_side: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    backend: str = "pyav"
    timeout: float = 60.0
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        for name in ("frames", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClipInput.{name} must be a positive int, got {value!r}")
        if self.short_side is not None and (not isinstance(self.short_side, int) or self.short_side < self.size):
            raise ValueError(f"ClipInput.short_side must be an int >= size ({self.size}), got {self.short_side!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"ClipInput.{name} needs 3 values (R, G, B), got {list(value)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"ClipInput.std must be positive, got {list(self.std)}")
        # the checks of the decoding settings are VideoOptions'
        self.video_options()

    def video_options(self) -> VideoOptions:
        """The settings read_video decodes with (frames at source resolution; the frame choice is `choose`'s)."""
        return VideoOptions(
            min_pixels=1, max_pixels=_SOURCE_PIXELS, total_pixels=_SOURCE_PIXELS, backend=self.backend,
            timeout=self.timeout, start=self.start, end=self.end,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class Views:
    """The views of one video at test time: `clips` temporal clips x `crops` spatial crops, logits averaged."""

    clips: int = 1
    crops: int = 1

    def __post_init__(self) -> None:
        for name in ("clips", "crops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Views.{name} must be a positive int, got {value!r}")

    @property
    def count(self) -> int:
        return self.clips * self.crops

    def to_dict(self) -> dict[str, int]:
        return {"clips": self.clips, "crops": self.crops}


def segment_indices(available: int, frames: int, clip: int = 0, clips: int = 1) -> list[int]:
    """The `frames` frame indices (ascending, repeats when available < frames) of temporal view `clip` of `clips`
    of a video of `available` frames: in segment i of `frames` equal segments, the frame at fraction
    (clip + 0.5) / clips of it, i.e. floor(available * (i + (clip + 0.5) / clips) / frames)."""
    if available < 1:
        raise ValueError("the video has no frames")
    if not 0 <= clip < clips:
        raise ValueError(f"clip {clip} is not among {clips} clips")
    return [min(available - 1, int(available * (i + (clip + 0.5) / clips) / frames)) for i in range(frames)]


def crop_offsets(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """(top, left) of each of `crops` size x size squares in a height x width frame: one crop is centred; several
    are spread evenly along the longer side, from one end to the other, centred on the shorter one."""
    if min(height, width) < size:
        raise ValueError(f"a {height}x{width} frame is smaller than the {size}x{size} crop")
    centre_top, centre_left = (height - size) // 2, (width - size) // 2
    if crops == 1:
        return [(centre_top, centre_left)]
    span = max(height, width) - size
    steps = [round(span * c / (crops - 1)) for c in range(crops)]
    return [(step, centre_left) if height > width else (centre_top, step) for step in steps]


def shorter_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) scaled so that the shorter side is `short_side` (the longer one rounded to nearest)."""
    if height <= width:
        return short_side, max(short_side, round(width * short_side / height))
    return max(short_side, round(height * short_side / width)), short_side


def clip_views(
    frames: torch.Tensor, clip_input: ClipInput, views: Views, picks: Sequence[Sequence[int]]
) -> torch.Tensor:
    """(clips * crops, T, 3, size, size) float32 normalised pixels, clip-major (view = clip * crops + crop), from
    decoded uint8 frames (F, 3, h, w); picks[k] gives the positions in `frames` of clip k's T frames."""
    height, width = shorter_side_size(frames.shape[-2], frames.shape[-1], clip_input.short_side or clip_input.size)
    frames = resize_frames(frames, height, width)
    size = clip_input.size
    mean = torch.tensor(clip_input.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(clip_input.std, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    for pick in picks:
        clip = frames[list(pick)]
        for top, left in crop_offsets(height, width, size, views.crops):
            crop = clip[:, :, top : top + size, left : left + size].float() / 255.0
            out.append((crop - mean) / std)
    return torch.stack(out)


def read_views(source: str | Path | Any, clip_input: ClipInput, views: Views | None = None) -> torch.Tensor:
    """A video's views as a classifier takes them: (clips * crops, T, 3, size, size) float32, clip-major.

    Decodes the frames of all clips once (stave.video.read_video: a file, a frame folder, a (T, H, W, C) uint8
    array, ...). Raises the VideoError subclasses of read_video, naming the source."""
    views = views or Views()
    chosen: dict[str, list] = {}

    def choose(available: int) -> list[int]:
        picks = [segment_indices(available, clip_input.frames, k, views.clips) for k in range(views.clips)]
        chosen["picks"], chosen["frames"] = picks, sorted({i for pick in picks for i in pick})
        return chosen["frames"]

    clip = read_video(source, clip_input.video_options(), factor=1, choose=choose)
    position = {index: k for k, index in enumerate(chosen["frames"])}  # decoded frame k is chosen["frames"][k]
    picks = [[position[i] for i in pick] for pick in chosen["picks"]]
    return clip_views(clip.frames, clip_input, views, picks)
