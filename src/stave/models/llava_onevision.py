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
from typing import Any

import torch
import transformers
from torch import nn
from transformers.models.llava_onevision import modeling_llava_onevision as llava_ov
from transformers.models.qwen2 import modeling_qwen2 as qwen2
from transformers.models.siglip import modeling_siglip as siglip

from ..config import POOLING_KEY, pooling_window
from . import VisionFamily, window_means
from .frame_towers import (
    FrameSpec,
    PreNormTemporalLayer,
    StackedVideoMedia,
    encoder_layers,
    feature_blocks,
    frame_counting_model,
    frame_items,
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


@dataclasses.dataclass(frozen=True)
class LlavaOnevisionMedia(StackedVideoMedia):
    """LLaVA-OneVision's media format, as transformers' LlavaOnevisionProcessor (frame_towers.StackedVideoMedia): a
    video's frames are resized to the tower's image size (bicubic) and normalised with SigLIP's mean and std; its
    `<video>` placeholder becomes F * ceil(P/2)^2 + 1 `<video>` tokens (G * ceil(P/2)^2 + 1 for the G = ceil(F/K)
    runs of a model that pools runs of K frames, stave.config.pooling_window)."""

    family: str = "LLaVA-OneVision"
    pixel_mean: tuple[float, float, float] = SIGLIP_MEAN
    pixel_std: tuple[float, float, float] = SIGLIP_STD

    def frame_options(self, options: Any, spec: FrameSpec) -> Any:
        return dataclasses.replace(options, frame_size=(spec.image_size, spec.image_size))

    def video_tokens(self, groups: int, side: int) -> int:
        """Per frame (or pooled run of frames) ceil(P/2)^2 bilinearly pooled tokens, then one image_newline token."""
        return groups * math.ceil(side / 2) ** 2 + 1


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
