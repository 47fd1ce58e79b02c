"""Reading frames: from video files (PyAV, torchcodec or decord), frame folders, PIL images or uint8 arrays;
and single images (read_image). Videos and images are resized by one function, resize_frames.

Only the frames that will be used are decoded: the packets are demuxed first (no decoding) to learn
every frame's timestamp and where the keyframes are (backends.frame_table), the frames are chosen from
that table by the sampling rules, and only those are decoded by the backend (backends/).

The decoded frames are held at source resolution (at most DECODED_BYTES of them, so memory stays bounded
whatever the source's resolution and length) and resized with torch's thread pool once the decoder has
finished, or when the bound is reached; never in between the decoder's frames, where torch's OpenMP
workers, spinning between small ops beside FFmpeg's threads, slowed both. Nothing process-wide (torch's
thread count) is changed. On the project's 2-core machine the alternative, resizing a few frames at a
time as they come on one torch thread, took 14-22% longer, and as long when torch has one thread (as in
DataLoader workers); with other processes loading the cores this way took 4-38% longer, as torch's thread
pool does on any overloaded machine, where fewer torch threads serve better (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import bisect
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .backends import get_backend
from .backends.frame_table import Deadline, read_frame_table
from .errors import VideoDecodeError, VideoNotFoundError, VideoSamplingError, VideoShapeError
from .options import IMAGE_FACTOR, IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS, VideoOptions
from .sampling import frame_indices, number_of_frames, smart_resize, video_frame_size

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Decoded frames are held at source resolution up to this many bytes (194 frames of 360p, 21 of 1080p), then
# resized together: memory stays bounded whatever the source resolution and the number of frames taken.
DECODED_BYTES = 128 * 2**20
# What a path that is neither a regular file nor a folder is, for the error message.
NON_REGULAR_KINDS = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)
# Held frames are resized this many at a time (fewer, larger ops; the same result bit for bit).
RESIZE_BATCH = 8


@dataclass
class VideoClip:
    """Frames taken from a video, resized for the model.

    Attributes:
        frames: (T, 3, H, W) uint8, H and W multiples of the resize factor (or
            options.frame_size, or the short side options.shortest_edge).
        timestamps: time in seconds of each taken frame in the source.
        indices: index of each taken frame among the source's frames.
        source_fps: the source's frame rate (frames per second).
        duration: the source's duration in seconds.
        total_frames: frames in the source.
        sampled_fps: frames taken per second of source time (Qwen2.5-VL aligns time with it).
        source: where the frames came from.
        options: the VideoOptions used.
        backend: the library that decoded a file ("pyav", "torchcodec", "decord"; "auto" resolved), or
            "frames" for frame folders, image lists and arrays.
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
    backend: str = "frames"


def read_video(
    source: str | Path | Sequence[Any] | np.ndarray | torch.Tensor,
    options: VideoOptions | None = None,
    *,
    factor: int = IMAGE_FACTOR,
    source_fps: float = 1.0,
    choose: Callable[[int], Sequence[int]] | None = None,
) -> VideoClip:
    """Decode, sample and resize a video.

    Args:
        source: a video file; a folder of frame images (sorted by name); a list of frame image files (in
            that order); a list of PIL images; or a (T, H, W, C) uint8 array/tensor with C = 1 (grey),
            3 (RGB) or 4 (RGBA; alpha dropped).
        options: sampling and resizing settings.
        factor: frame sides become multiples of this (patch_size * merge_size; 28 for Qwen2-VL).
        source_fps: frame rate of frame folders, frame lists and arrays (video files carry their own).
        choose: which frames to take instead of the options' nframes/fps rule: called with the number of frames
            available (within start/end), returns ascending, distinct indices among them (e.g. one frame per
            segment for a video classifier, stave.classification.clips).

    Raises:
        VideoError subclasses naming the source and the reason.
    """
    options = options or VideoOptions()
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _read_frames(_FileFrames.folder(path), options, factor, source_fps, choose)
        _check_regular_file(path)
        return _read_file(path, options, factor, choose)
    if isinstance(source, (list, tuple)) and source and all(isinstance(f, (str, Path)) for f in source):
        return _read_frames(_FileFrames.listed(source), options, factor, source_fps, choose)
    return _read_frames(_MemoryFrames(source), options, factor, source_fps, choose)


def read_image(
    source: str | Path | Any,
    *,
    min_pixels: int = IMAGE_MIN_PIXELS,
    max_pixels: int = IMAGE_MAX_PIXELS,
    factor: int = IMAGE_FACTOR,
    resize: bool = True,
) -> torch.Tensor:
    """Read and resize one image for the model, as transformers' Qwen2-VL image processor does.

    Args:
        source: an image file, a PIL image, or an (H, W, C) uint8 array/tensor with C = 1 (grey), 3 (RGB)
            or 4 (RGBA; alpha dropped).
        min_pixels, max_pixels: smart_resize's bounds on the image's pixels (defaults: qwen-vl-utils' and
            the processor's, 4 * 28 * 28 and 16384 * 28 * 28).
        factor: the sides become multiples of this (patch_size * merge_size; 28 for Qwen2-VL).
        resize: False: the image at its source size, the pixel bounds unused (families whose processor resizes and
            tiles it itself: LLaVA-OneVision's anyres tiles, InternVL's dynamic tiles).

    Returns:
        (1, 3, H, W) uint8, resized by resize_frames (or as read); pack_frames turns it into what a Qwen tower
        takes.

    Raises:
        VideoNotFoundError (no such file), VideoDecodeError (not a readable image), VideoShapeError (wrong
        array shape or dtype, aspect ratio over 200), each naming the source.
    """
    if isinstance(source, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        path = Path(source)
        if not path.is_file():
            raise VideoNotFoundError(path, "is a folder, not an image" if path.is_dir() else "no such file")
        try:
            with Image.open(path) as image:
                frame = to_rgb_chw(image, path)
        except (UnidentifiedImageError, OSError) as error:
            raise VideoDecodeError(path, f"not a readable image ({error})") from None
        name: object = path
    else:
        name = f"<{type(source).__name__} image>"
        frame = to_rgb_chw(source, name)
    if not resize:
        return frame[None]
    try:
        height, width = smart_resize(frame.shape[1], frame.shape[2], factor, min_pixels, max_pixels)
    except ValueError as error:
        raise VideoShapeError(name, str(error)) from None
    return resize_frames(frame[None], height, width)


def check_video(source: str | Path, options: VideoOptions | None = None, *, source_fps: float = 1.0) -> None:
    """Raise the VideoError that read_video(source, options) would raise for a missing path, a path that is no
    regular file or folder, a file that is not a video, a missing decoder or frames the options cannot take
    (too few, start/end outside the clip) — without decoding a frame: a file's packets are read, a folder is
    listed. Frame sizes are not checked (they depend on the model's patch size). Cheap: for a command to
    refuse a bad video before it loads a model."""
    options = options or VideoOptions()
    path = Path(source)
    if path.is_dir():
        frames = _FileFrames.folder(path)
        _select(len(frames), source_fps, options, frames.name, [i / source_fps for i in range(len(frames))])
        return
    _check_regular_file(path)
    get_backend(options.backend, path)
    table = read_frame_table(path, options.timeout)
    _select(len(table), table.fps, options, path, table.times)


def _check_regular_file(path: Path) -> None:
    """Refuse a missing path (VideoNotFoundError) and anything but a regular file (VideoDecodeError) before a
    decoder opens it: a FIFO without a writer would block the opening for good, a device may never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise VideoNotFoundError(path, "no such file or folder") from None
    except OSError as error:
        raise VideoDecodeError(path, f"cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in NON_REGULAR_KINDS if test(mode)), "special file")
        raise VideoDecodeError(path, f"not a regular file but a {kind}; stave reads video files and frame folders")


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> (T, 3, height, width) uint8: bicubic with antialias, as torchvision's
    transforms.v2 resize does it, and so as transformers' Qwen2-VL image and video processors (their
    torchvision backend) hand the model its pixels: a uint8 tensor on the CPU is resized as uint8 by torch's
    integer kernel; on other devices it is resized in float32, clamped to 0..255 and rounded. (qwen-vl-utils'
    video path uses torchvision's older transforms.functional.resize, which resizes in float32 on the CPU
    too: up to tens of levels apart on hard edges; README, "Pixels as transformers makes them".) Frames
    already of the size are returned as they are."""
    if frames.shape[-2:] == (height, width):
        return frames
    if frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    size = (height, width)
    if frames.device.type == "cpu":
        return F.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False)
    resized = F.interpolate(frames.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp_(0, 255).round_().to(torch.uint8)


def _select(
    total: int, fps: float, options: VideoOptions, source: object, times: Sequence[float], choose=None
) -> list[int]:
    """Indices of the frames to take, within start/end: by the options' rule, or those `choose` picks."""
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
    if choose is not None:
        chosen = [int(i) for i in choose(last - first + 1)]
        ascending = all(a < b for a, b in zip(chosen, chosen[1:], strict=False))
        if not chosen or not ascending or chosen[0] < 0 or chosen[-1] > last - first:
            raise VideoSamplingError(
                source, f"chose frames {chosen} of {last - first + 1}; expected ascending distinct indices among them"
            )
        return [first + i for i in chosen]
    try:
        n = number_of_frames(options, last - first + 1, fps)
    except ValueError as error:
        raise VideoSamplingError(source, str(error)) from None
    return frame_indices(first, last, n)


def _target_size(height: int, width: int, n: int, options: VideoOptions, factor: int, source: object):
    if options.frame_size is not None:
        return options.frame_size
    if options.shortest_edge is not None:
        return shortest_edge_size(height, width, options.shortest_edge)
    try:
        return video_frame_size(height, width, n, options, factor)
    except ValueError as error:
        raise VideoShapeError(source, str(error)) from None


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """(height, width) of a frame resized so that its shorter side is `edge`, the aspect ratio kept: the longer side
    int(edge * long / short), as transformers' get_resize_output_image_size (default_to_square=False)."""
    short, long = (width, height) if width <= height else (height, width)
    longer = int(edge * long / short)
    return (longer, edge) if width <= height else (edge, longer)


def _clip(frames, times, indices, fps, total, options, source, backend: str = "frames") -> VideoClip:
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
        backend=backend,
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


class _FileFrames:
    """Frame images on disk: a folder of them (e.g. MVBench's %05d.jpg episodes), in name order, or a list of
    files in the given order (qwen-vl-utils', LLaMA-Factory's and ms-swift's video given as frames)."""

    def __init__(self, files: list[Path], name: str) -> None:
        self.name = name
        self.files = files

    @classmethod
    def folder(cls, path: Path) -> _FileFrames:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise VideoDecodeError(path, f"folder holds no frame images ({', '.join(FRAME_SUFFIXES)})")
        return cls(files, str(path))

    @classmethod
    def listed(cls, paths: Sequence[str | Path]) -> _FileFrames:
        files = [Path(p) for p in paths]
        for index, file in enumerate(files):
            if not file.is_file():
                raise VideoNotFoundError(file, f"no such frame file (frame {index} of {len(files)})")
        return cls(files, f"{files[0]} (+{len(files) - 1} frames)" if len(files) > 1 else str(files[0]))

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


def _read_frames(
    frames: _MemoryFrames | _FileFrames, options: VideoOptions, factor: int, fps: float, choose=None
) -> VideoClip:
    total = len(frames)
    times = [i / fps for i in range(total)]
    indices = _select(total, fps, options, frames.name, times, choose)
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


# -- video files -------------------------------------------------------------------------------------


def _read_file(path: Path, options: VideoOptions, factor: int, choose=None) -> VideoClip:
    """Sample from the file's frame table, decode just those frames with the chosen backend, holding them at
    source resolution up to DECODED_BYTES, and resize what is held whenever the bound is reached and once
    the decoder has finished, so that torch's threads never run beside the decoder's."""
    name, backend = get_backend(options.backend, path)
    deadline = Deadline(options.timeout, path)
    table = read_frame_table(path, options.timeout)
    deadline.check()
    indices = _select(len(table), table.fps, options, path, table.times, choose)
    height, width = _target_size(table.height, table.width, len(indices), options, factor, path)
    out = torch.empty(len(indices), 3, height, width, dtype=torch.uint8)
    bound = max(1, DECODED_BYTES // (3 * table.height * table.width))  # frames held before resizing
    decoded = resized = 0
    held: list[torch.Tensor] = []  # decoded, not yet resized
    for chunk in backend.decode(path, table, indices, deadline):
        decoded += len(chunk)
        if chunk.shape[1:] != (3, table.height, table.width) or decoded > len(indices):
            raise VideoDecodeError(
                path,
                f"{name} gave {decoded} frame(s), the last of {tuple(chunk.shape[1:])}; expected {len(indices)} "
                f"of (3, {table.height}, {table.width})",
            )
        held.append(chunk)
        if decoded - resized >= bound:
            resized = _resize_held(held, out, resized)
    if decoded != len(indices):
        raise VideoDecodeError(path, f"{name} decoded {decoded} of {len(indices)} frames (truncated?)")
    _resize_held(held, out, resized)
    return _clip(out, table.times, indices, table.fps, len(table), options, path, backend=name)


def _resize_held(held: list[torch.Tensor], out: torch.Tensor, start: int) -> int:
    """Resize the held (k, 3, h, w) chunks into out[start:], RESIZE_BATCH frames at a time; empties `held`
    and returns where the next frames go."""
    frames = [frame for chunk in held for frame in chunk]
    held.clear()
    for i in range(0, len(frames), RESIZE_BATCH):
        batch = torch.stack(frames[i : i + RESIZE_BATCH])
        out[start + i : start + i + len(batch)] = resize_frames(batch, out.shape[2], out.shape[3])
    return start + len(frames)
