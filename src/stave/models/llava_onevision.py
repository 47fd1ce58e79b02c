"""Where STA goes in LLaVA-OneVision (transformers' LlavaOnevisionForConditionalGeneration, LlavaOnevisionModel; the
tower is a SigLIP SiglipVisionModel).

Confirmed in transformers 4.57 and 5.24: a video (B, F, C, H, W) is encoded as B*F SigLIP images (rows of
(H/p)*(W/p) patch tokens, no CLS), the hidden states of `vision_feature_layer` (the published checkpoints: -1, the
last layer before post_layernorm) are projected, bilinearly pooled per frame to ceil(P/2) x ceil(P/2) tokens
(P = image_size / patch_size) and followed by one `image_newline` token; the prompt's `<video>` stands for
F * ceil(P/2)^2 + 1 tokens. Images go through the same tower in another call (anyres tiles: a base image and its
tiles, each a row); they and the tiles of one image are not time and never get a temporal update.

STA: in every SiglipEncoderLayer whose output reaches the selected feature layer (layers after
`vision_feature_layer` produce hidden states nothing uses: no STA there), over the F frames of each video, per
spatial position: the tower call of a video is B*F rows, and item k is rows k*F .. k*F+F-1 (t = F, n = P*P).
The tower cannot tell a video call from an image call, so the base model's get_video_features says it:
add_temporal_attention switches the base model to StaveLlavaOnevisionModel, whose get_video_features holds the
frame count while the tower runs (stave.models.frame_towers: video_frames, frame_items, shared with
LLaVA-NeXT-Video).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import transformers
from torch import nn
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.llava_onevision import modeling_llava_onevision as llava_ov
from transformers.models.qwen2 import modeling_qwen2 as qwen2
from transformers.models.siglip import modeling_siglip as siglip

from ..config import POOLING_KEY, pooling_window
from ..video import resize_frames
from . import UnsupportedMedia, VisionFamily, window_means
from .frame_towers import (
    FrameSpec,
    PreNormTemporalLayer,
    StackedVideoMedia,
    encoder_layers,
    feature_blocks,
    frame_counting_model,
    frame_items,
    normalise,
    split_tiles,
    switch_classes,
)

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
# SigLIP's normalisation (llava-hf/llava-onevision-qwen2-*-ov-hf preprocessor_config.json: image_mean = image_std =
# [0.5, 0.5, 0.5]; the class defaults of transformers' LlavaOnevisionVideoProcessor are CLIP's, which the published
# checkpoints override)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)

class SiglipTemporalLayer(PreNormTemporalLayer, siglip.SiglipEncoderLayer):
    """SiglipEncoderLayer with stacked temporal attention (frame_towers.PreNormTemporalLayer)."""


#: LlavaOnevisionModel whose get_video_features tells the tower (through `video_frames`) that its rows are videos of
#: F frames; otherwise the stock model (prepare_model switches the instance's class)
StaveLlavaOnevisionModel = frame_counting_model(
    llava_ov.LlavaOnevisionModel, "StaveLlavaOnevisionModel", __name__
)  # fmt: skip


def tell_frames(model: nn.Module) -> None:
    """Switch the LlavaOnevisionModel inside `model` (if any: not for a bare tower) to StaveLlavaOnevisionModel,
    in place, so that a video's tower call knows its frame count."""
    switch_classes(model, {llava_ov.LlavaOnevisionModel: StaveLlavaOnevisionModel})


@functools.wraps(llava_ov.LlavaOnevisionModel.get_video_features)  # its signature, which generation reads
def pooled_video_features(base: nn.Module, *args: Any, **kwargs: Any):
    """get_video_features with each video's projected, per-frame pooled tokens averaged over runs of K consecutive
    frames (stave.config.pooling_window; all F for "mean"): (B, ceil(F/K)*n, D) instead of (B, F*n, D), followed by
    the image_newline token as stock (5.x adds it here, 4.57 in forward)."""
    features = type(base).get_video_features
    mode = getattr(base.config, POOLING_KEY, None)
    if mode is None:
        return features(base, *args, **kwargs)
    window = pooling_window(mode)
    pixels = args[0] if args else kwargs.get("pixel_values_videos", kwargs.get("pixel_values"))
    frames = pixels.shape[1]

    def pool(tokens: torch.Tensor, newline: int) -> torch.Tensor:
        per_frame = tokens[:, : tokens.shape[1] - newline]
        b, length, dim = per_frame.shape
        pooled = window_means(per_frame.reshape(b, frames, length // frames, dim), window, dim=1)
        return torch.cat([pooled.flatten(1, 2), tokens[:, tokens.shape[1] - newline :]], dim=1)

    if TRANSFORMERS_MAJOR < 5:
        return pool(features(base, *args, **kwargs), 0)
    return_dict = kwargs.pop("return_dict", None)
    out = features(base, *args, return_dict=True, **kwargs)
    out.pooler_output = pool(out.pooler_output, 1)
    return_dict = base.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


POOLED_METHODS = (("get_video_features", pooled_video_features),)


# --- images: anyres ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnyresSpec(FrameSpec):
    """FrameSpec with a model's anyres settings: `grid_pinpoints`, the (height, width) canvases in pixels an image may
    be tiled on (config.image_grid_pinpoints; the published checkpoints: multiples of 384 from 384 to 2304 each way),
    and `max_patches`, the N of config.vision_aspect_ratio "anyres_max_N" (published: 9), above which the model
    downscales an image's tile features."""

    grid_pinpoints: tuple[tuple[int, int], ...] = ()
    max_patches: int = 9


def anyres_spec(config: Any, spec: FrameSpec) -> AnyresSpec:
    """The AnyresSpec of a LlavaOnevisionConfig (`spec`: its vision config's FrameSpec)."""
    aspect = str(config.vision_aspect_ratio)
    if not re.fullmatch(r"anyres_max_\d+", aspect):
        raise ValueError(f"LLaVA-OneVision: vision_aspect_ratio must be 'anyres_max_N', got {aspect!r}")
    pinpoints = tuple((int(h), int(w)) for h, w in config.image_grid_pinpoints)
    for h, w in pinpoints:
        if h % spec.image_size or w % spec.image_size:
            raise ValueError(f"LLaVA-OneVision: image_grid_pinpoints are multiples of {spec.image_size}, got {h}x{w}")
    max_patches = int(aspect[len("anyres_max_") :])
    return AnyresSpec(*dataclasses.astuple(spec), grid_pinpoints=pinpoints, max_patches=max_patches)


def anyres_tiles(image: torch.Tensor, spec: AnyresSpec) -> torch.Tensor:
    """(3, H, W) uint8 -> (1 + rows * columns, 3, S, S) uint8 as LlavaOnevisionImageProcessor tiles an image that is its
    sample's only one: the base image (resized to S x S), then the tiles of the best canvas (select_best_resolution
    among grid_pinpoints) in raster order: the image resized to fit it, keeping its aspect ratio, centred on black."""
    size = spec.image_size
    best = select_best_resolution(tuple(image.shape[-2:]), list(spec.grid_pinpoints))
    height, width = get_patch_output_size(image, best, ChannelDimension.FIRST)
    canvas = torch.zeros(3, *best, dtype=torch.uint8)
    top, left = (best[0] - height) // 2, (best[1] - width) // 2
    canvas[:, top : top + height, left : left + width] = resize_frames(image[None], height, width)[0]
    return torch.cat([resize_frames(image[None], size, size), split_tiles(canvas, size)])


def square_tile(image: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
    """(3, H, W) uint8 -> (1, 3, S, S) uint8 as LlavaOnevisionImageProcessor takes each image of a sample with several:
    padded to a square (centred) with the mean's colour (int(mean * 255)), resized to S x S."""
    height, width = image.shape[-2:]
    side = max(height, width)
    canvas = torch.tensor([int(m * 255) for m in spec.mean], dtype=torch.uint8).view(3, 1, 1).repeat(1, side, side)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[:, top : top + height, left : left + width] = image
    return resize_frames(canvas[None], spec.image_size, spec.image_size)


def anyres_tokens(height: int, width: int, spec: AnyresSpec) -> int:
    """LLM tokens of an anyres image of height x width pixels, as LlavaOnevisionProcessor counts them (and the model
    lays them out, pack_image_features): the base image's P^2, then the tiles' features unpadded to the image's
    aspect ratio (rows x columns), downscaled by sqrt(rows * columns / (max_patches * P^2)) where that exceeds 1.1,
    and one newline per row (P = image_size / patch_size)."""
    side = spec.image_size // spec.patch_size
    best_height, best_width = select_best_resolution((height, width), list(spec.grid_pinpoints))
    rows, columns = side * (best_height // spec.image_size), side * (best_width // spec.image_size)
    if width / height > columns / rows:
        rows -= (rows - int(round(height * (columns / width), 7))) // 2 * 2
    else:
        columns -= (columns - int(round(width * (rows / height), 7))) // 2 * 2
    ratio = math.sqrt(rows * columns / (spec.max_patches * side**2))
    if ratio > 1.1:
        rows, columns = int(rows // ratio), int(columns // ratio)
    return side * side + rows * columns + rows


@dataclasses.dataclass(frozen=True)
class LlavaOnevisionMedia(StackedVideoMedia):
    """LLaVA-OneVision's media format, as transformers' LlavaOnevisionProcessor (frame_towers.StackedVideoMedia): a
    video's frames are resized to the tower's image size (bicubic) and normalised with SigLIP's mean and std; its
    `<video>` placeholder becomes F * ceil(P/2)^2 + 1 `<video>` tokens (G * ceil(P/2)^2 + 1 for the G = ceil(F/K)
    runs of a model that pools runs of K frames, stave.config.pooling_window). An image, at its
    source size, that is its sample's only image becomes anyres tiles (anyres_tiles: the base image and the tiles of
    the best of the model's image_grid_pinpoints, `pixel_values` (1, tiles, 3, S, S)) and anyres_tokens `<image>`
    tokens; each image of a sample with several becomes one tile padded to a square (square_tile) and P^2 + 1
    tokens; `image_sizes` (1, 2) holds its source (height, width), the sample's `batch_num_images` its image count.
    A batch's images are zero-padded to its largest tile count, as transformers pads them."""

    family: str = "LLaVA-OneVision"
    batch_keys: tuple[str, ...] = ("pixel_values_videos", "pixel_values", "image_sizes", "batch_num_images")
    pixel_mean: tuple[float, float, float] = SIGLIP_MEAN
    pixel_std: tuple[float, float, float] = SIGLIP_STD
    source_size_images: bool = True
    padded_keys: tuple[str, ...] = ("pixel_values",)

    def model_spec(self, config: Any) -> AnyresSpec:
        return anyres_spec(config, self.patch_spec(config.vision_config))

    def frame_options(self, options: Any, spec: FrameSpec) -> Any:
        return dataclasses.replace(options, frame_size=(spec.image_size, spec.image_size))

    def video_tokens(self, groups: int, side: int) -> int:
        """Per frame (or pooled run of frames) ceil(P/2)^2 bilinearly pooled tokens, then one image_newline token."""
        return groups * math.ceil(side / 2) ** 2 + 1

    def image(
        self, frames: torch.Tensor, spec: FrameSpec, sample_images: int = 1
    ) -> tuple[dict[str, torch.Tensor], str]:
        if not isinstance(spec, AnyresSpec) or not spec.grid_pinpoints:
            raise UnsupportedMedia(
                "LLaVA-OneVision: images need the model's image_grid_pinpoints and vision_aspect_ratio: build the "
                "processor with VideoChatProcessor.for_model(tokenizer, model)"
            )
        image = frames[0]
        height, width = image.shape[-2:]
        if sample_images > 1:
            tiles, tokens = square_tile(image, spec), (spec.image_size // spec.patch_size) ** 2 + 1
        else:
            tiles, tokens = anyres_tiles(image, spec), anyres_tokens(height, width, spec)
        tensors = {"pixel_values": normalise(tiles, spec)[None], "image_sizes": torch.tensor([[height, width]])}
        return tensors, self.image_token * tokens

    def sample_tensors(
        self, clips: Sequence[Any], spec: Any, images: int = 0, window: int | None = 1
    ) -> dict[str, torch.Tensor]:
        """A sample with images: `batch_num_images` (1,), its image count (the model tiles a sample's only image)."""
        return {"batch_num_images": torch.tensor([images])} if images else {}


LLAVA_ONEVISION = VisionFamily(
    name="LLaVA-OneVision",
    tower_class=siglip.SiglipVisionModel,
    model_classes=(llava_ov.LlavaOnevisionForConditionalGeneration, llava_ov.LlavaOnevisionModel),
    block_class=siglip.SiglipEncoderLayer,
    temporal_block_class=SiglipTemporalLayer,
    llm_layer_class=qwen2.Qwen2DecoderLayer,  # the published checkpoints' LLM (llava-onevision-qwen2-*)
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: nn.LayerNorm(dim, eps=block.layer_norm1.eps),
    vision_linears=(
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"
    ),  # fmt: skip
    model_type="llava_onevision",
    media=LlavaOnevisionMedia(),
    vision_blocks=r"vision_tower\.(?:vision_model\.)?encoder\.layers\.\d+",
    vision_qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    pooled_methods=POOLED_METHODS,
    temporal_items=frame_items,
    blocks=encoder_layers,
    feature_blocks=feature_blocks,
    prepare_model=tell_frames,
)
