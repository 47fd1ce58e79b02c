"""Random inputs for tiny models: used by the test suite, the benchmarks and `stave forward`.

Real videos go through stave's video pipeline; these helpers only produce tensors of the right shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import pooling_window
from .modeling import temporal_pooling
from .models import find_vision_tower

Grid = tuple[int, int, int]


def random_pixels(
    grids: Sequence[Grid], vision_config, *, seed: int = 0, dtype: torch.dtype = torch.float32, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patch rows and grid_thw for items of the given (t, h, w) grids.

    Returns:
        pixels: (sum t*h*w, in_channels * temporal_patch_size * patch_size**2)
        grid_thw: (num_items, 3) long
    """
    width = vision_config.in_channels * vision_config.temporal_patch_size * vision_config.patch_size**2
    rows = sum(t * h * w for t, h, w in grids)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(rows, width, generator=generator).to(device=device, dtype=dtype)
    return pixels, torch.tensor(grids, dtype=torch.long, device=device)


def model_inputs(
    model: nn.Module,
    *,
    videos: Sequence[Grid] = (),
    images: Sequence[Grid] = (),
    seed: int = 0,
    text_tokens: int = 3,
) -> dict[str, torch.Tensor]:
    """Inputs of random pixels for a supported ForConditionalGeneration: one sequence holding every image, then
    every video, followed by `text_tokens` text tokens, in the family's prompt format (its adapter's
    MediaFormat.random_inputs; Qwen: each as <vision_start> pad*(t*h*w/merge^2) <vision_end>, ceil(t/K)*h*w/merge^2
    pads for a video when the model pools video tokens over runs of K temporal patches (h*w/merge^2 for "mean"),
    stave.modeling.set_temporal_pooling; mm_token_type_ids (0 text, 1 image, 2 video) when the model's forward
    takes it)."""
    family = find_vision_tower(model)[0]
    window = pooling_window(temporal_pooling(model))
    return family.media.random_inputs(model, videos, images, seed=seed, text_tokens=text_tokens, window=window)


def tower_items(model: nn.Module, inputs: dict[str, torch.Tensor], tower: nn.Module | None = None):
    """What the vision tower of `model` hands on for each image and video of model inputs (model_inputs,
    video_inputs, a processor's batch), run as the model runs it: per item, in the order of the inputs' pixel
    tensors (model_inputs: every image, then every video), (is_video, outputs (steps, tokens, D)) — a video's
    temporal steps or an image's rows, each with its tokens (the family's MediaFormat.tower_items: Qwen's merged
    tokens, InternViT's and SigLIP's last hidden states). `tower`: run this module instead (a copy, a compiled
    tower) as the family's tower."""
    family, own = find_vision_tower(model)
    return family.media.tower_items(own if tower is None else tower, inputs)


def video_inputs(
    model: nn.Module, videos: Sequence[torch.Tensor], *, seed: int = 0, text_tokens: int = 3
) -> dict[str, torch.Tensor]:
    """Inputs for a supported ForConditionalGeneration holding the given videos, processed as the family's
    processor processes a video (its MediaFormat.video), in one sequence as model_inputs lays them out.

    Args:
        videos: (T, 3, H, W) uint8 frames each, at a size the family takes as it is (frame-per-image towers:
            their image size; Qwen: T even, H and W multiples of 28).
    """
    from .video import VideoClip, VideoOptions

    family = find_vision_tower(model)[0]
    media = family.media
    spec = media.patch_spec(model.config.vision_config)
    window = pooling_window(temporal_pooling(model))
    encoded = []
    for frames in videos:
        times = [k / 2 for k in range(frames.shape[0])]
        clip = VideoClip(frames, times, list(range(len(times))), 2.0, len(times) / 2, len(times), 2.0, "frames",
                         VideoOptions(nframes=len(times)))  # fmt: skip
        encoded.append(media.video(clip, spec, window)[0])
    tensors = {key: torch.cat([item[key] for item in encoded]) for key in encoded[0]}
    inputs = model_inputs(model, videos=media.video_grids(tensors, spec), seed=seed, text_tokens=text_tokens)
    inputs.update(tensors)
    return inputs

