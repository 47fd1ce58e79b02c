"""Random inputs for tiny models: used by the test suite, the benchmarks and `stave forward`.

Real videos go through stave's video pipeline; these helpers only produce tensors of the right shapes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

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
    """Inputs for a supported ForConditionalGeneration: one sequence holding every image, then every
    video, each as <vision_start> pad*(t*h*w/merge^2) <vision_end>, followed by a few text tokens. A video
    gets h*w/merge^2 pads when the model pools video tokens over time (stave.modeling.set_temporal_pooling).
    In a family whose prompt gives each temporal patch its own vision block (Qwen3-VL, Qwen3.5: VideoPrompt), a
    video is one such block per temporal patch (one when pooled), each after one text token standing for its
    timestamp text.

    mm_token_type_ids (0 text, 1 image, 2 video) is included when the model's forward takes it
    (transformers 5.x).
    """
    config = model.config
    prompt = find_vision_tower(model)[0].video_prompt
    merge = config.vision_config.spatial_merge_size**2
    pooled = temporal_pooling(model) is not None
    ids: list[int] = []
    types: list[int] = []
    for grids, pad_id, kind in ((images, config.image_token_id, 1), (videos, config.video_token_id, 2)):
        for t, h, w in grids:
            patches = 1 if pooled and kind == 2 else t
            if kind == 2 and prompt is not None:
                blocks = [(3, count) for _, count in prompt.blocks([float(k) for k in range(patches)], h * w // merge)]
            else:
                blocks = [(None, patches * h * w // merge)]
            for text_id, count in blocks:
                if text_id is not None:
                    ids.append(text_id)
                    types.append(0)
                ids += [config.vision_start_token_id, *[pad_id] * count, config.vision_end_token_id]
                types += [0, *[kind] * count, 0]
    generator = torch.Generator().manual_seed(seed + 1)
    text = torch.randint(3, 100, (text_tokens,), generator=generator).tolist()
    ids += text
    types += [0] * len(text)
    inputs: dict[str, torch.Tensor] = {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
    }
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["mm_token_type_ids"] = torch.tensor([types])
    if images:
        inputs["pixel_values"], inputs["image_grid_thw"] = random_pixels(images, config.vision_config, seed=seed)
    if videos:
        inputs["pixel_values_videos"], inputs["video_grid_thw"] = random_pixels(
            videos, config.vision_config, seed=seed + 2
        )
    return inputs
