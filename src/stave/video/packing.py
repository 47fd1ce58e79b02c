"""Turning resized frames into the tensors Qwen2-VL-family models take, in their processor's token order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# CLIP normalisation, used by every Qwen2-VL / Qwen2.5-VL processor.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PatchSpec:
    """How the vision tower cuts frames into patches (from the model's vision config)."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    @property
    def factor(self) -> int:
        """Frame sides must be multiples of this."""
        return self.patch_size * self.merge_size

    @classmethod
    def from_vision_config(cls, config) -> PatchSpec:
        return cls(config.patch_size, config.temporal_patch_size, config.spatial_merge_size)


def pack_frames(frames: torch.Tensor, spec: PatchSpec = PatchSpec()) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Normalise and patchify one video (or one image as a single frame).

    Args:
        frames: (T, 3, H, W) uint8 (or float in 0..255), H and W multiples of spec.factor. A frame count
            that is not a multiple of temporal_patch_size is padded by repeating the last frame.

    Returns:
        pixel values (t*h*w, 3 * temporal_patch_size * patch_size**2) float32, in the order of
        transformers' Qwen2VLImageProcessor (2x2 merge windows, then channels, time, rows, columns),
        and the grid (t, h, w) in patches.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames of shape (T, 3, H, W), got {tuple(frames.shape)}")
    count, channels, height, width = frames.shape
    if height % spec.factor or width % spec.factor:
        raise ValueError(f"frame size {height}x{width} is not a multiple of {spec.factor}")
    tp, p, m = spec.temporal_patch_size, spec.patch_size, spec.merge_size
    if count % tp:
        frames = torch.cat([frames, frames[-1:].expand(tp - count % tp, -1, -1, -1)])
    t, h, w = frames.shape[0] // tp, height // p, width // p
    # Into patch order while the values are still uint8, converted into one float32 buffer that is then
    # normalised in place: the same operations in the same order as (x / 255 - mean) / std on (T, 3, H, W),
    # so the same bits, about 2.5x faster and with one float buffer where the out-of-place chain held several.
    patches = frames.reshape(t, tp, channels, h // m, m, p, w // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    pixels = torch.empty(t * h * w, channels, tp * p * p, dtype=torch.float32)
    pixels.view(patches.shape).copy_(patches)  # reorders and converts in one pass; never aliases `frames`
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1)
    # rescale then normalise, as the processors do (the order matters at float32 precision)
    pixels.mul_(1 / 255).sub_(mean).div_(std)
    return pixels.view(t * h * w, channels * tp * p * p), (t, h, w)


def patch_positions(h: int, w: int, merge_size: int) -> torch.Tensor:
    """(h*w,) long: the image position (row * w + column, in patches) of each patch of one temporal patch,
    in pack_frames' order (merge_size x merge_size blocks in raster order, then raster order within a block)."""
    raster = torch.arange(h * w).view(h // merge_size, merge_size, w // merge_size, merge_size)
    return raster.permute(0, 2, 1, 3).flatten()


def seconds_per_grid(sampled_fps: Sequence[float], spec: PatchSpec = PatchSpec()) -> torch.Tensor:
    """Qwen2.5-VL's `second_per_grid_ts`: seconds of source video per temporal patch, one value per video.

    Args:
        sampled_fps: VideoClip.sampled_fps of each video, in batch order.

    Returns:
        (num_videos,) float32, temporal_patch_size / sampled_fps, as transformers' Qwen2.5-VL processor
        computes it; the model spaces the temporal rotary positions of a video's merged tokens by
        tokens_per_second * this value.
    """
    if any(fps <= 0 for fps in sampled_fps):
        raise ValueError(f"sampled fps must be positive, got {list(sampled_fps)}")
    return torch.tensor([spec.temporal_patch_size / fps for fps in sampled_fps], dtype=torch.float32)


def pack_batch(items: Sequence[torch.Tensor], spec: PatchSpec = PatchSpec()) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack several videos (or images) into one (sum t*h*w, C*tp*p*p) tensor and its (N, 3) grid_thw."""
    packed = [pack_frames(frames, spec) for frames in items]
    pixels = (
        torch.cat([p for p, _ in packed])
        if packed
        else torch.empty(0, 3 * spec.temporal_patch_size * spec.patch_size**2)
    )
    return pixels, torch.tensor([g for _, g in packed], dtype=torch.long).view(-1, 3)
