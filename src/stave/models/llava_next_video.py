"""Where STA goes in LLaVA-NeXT-Video (transformers' LlavaNextVideoForConditionalGeneration, LlavaNextVideoModel; the
tower is a CLIP CLIPVisionModel, the LLM a Llama: Vicuna-7B in llava-hf/LLaVA-NeXT-Video-7B-hf).

Confirmed in transformers 4.57 and 5.24: a video (B, F, C, H, W) is encoded as B*F CLIP images (rows of a CLS token
and (H/p)*(W/p) patch tokens); the hidden states of `vision_feature_layer` (the published checkpoints: -2, the
input of the last layer) lose their CLS token (`vision_feature_select_strategy` "default"), are pooled per frame by
the `vision_resampler` (spatial_pool_mode "average", spatial_pool_stride 2: P x P -> P/2 x P/2 tokens, P = image_size
/ patch_size) and projected; no newline token for videos. The prompt's `<video>` stands for F * (P/2)^2 tokens (576
-> 144 per frame at 336 / 14). Images go through the same tower in another call (anyres tiles); they are not time
and never get a temporal update.

STA: in every CLIPEncoderLayer whose output reaches the selected feature layer (with -2 all but the last: that
layer's output reaches nothing the LLM sees), over the F frames of each video, per spatial position; the CLS token
of every row is left alone (row_prefix 1). Which rows are frames of which video: the base model's
get_video_features says it (stave.models.frame_towers: video_frames, frame_items, frame_counting_model, as for
LLaVA-OneVision). transformers 4.57's CLIP encoder calls its layers with positional arguments only, so there
prepare_model also switches the tower and its encoder to classes that hand the layout to the STA layers.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
from typing import Any

import torch
import transformers
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.clip import modeling_clip as clip
from transformers.models.llama import modeling_llama as llama
from transformers.models.llava_next_video import modeling_llava_next_video as llava_next_video

from ..config import POOLING_KEY, pooling_window
from ..temporal.block import TemporalBlockMixin
from ..temporal.layout import TemporalLayout
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
# CLIP's normalisation (OPENAI_CLIP_MEAN / OPENAI_CLIP_STD), as llava-hf/LLaVA-NeXT-Video-7B-hf's
# preprocessor_config.json sets it (https://huggingface.co/llava-hf/LLaVA-NeXT-Video-7B-hf/blame/
# 6ae32f631510fd9545977939fce6c44fa1ed91ff/preprocessor_config.json: image_mean [0.48145466, 0.4578275, 0.40821073],
# image_std [0.26862954, 0.26130258, 0.27577711], resample 3 (bicubic), size {"shortest_edge": 336}, crop_size 336 x
# 336, do_center_crop true); the class defaults of LlavaNextVideoVideoProcessor are the same mean and std at 224 px
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: spatial_pool_stride of the published checkpoints; stave's processor (like transformers', which divides by 4)
#: assumes it
POOL_STRIDE = 2


class CLIPTemporalLayer(PreNormTemporalLayer, clip.CLIPEncoderLayer):
    """CLIPEncoderLayer with stacked temporal attention (frame_towers.PreNormTemporalLayer); returns the hidden
    states (transformers 4.57's stock layer returns a tuple: CLIPTemporalEncoder takes both)."""


# --- transformers 4.57: its CLIP encoder hands its layers no keyword arguments ------------------------------------

_LAYOUT: contextvars.ContextVar[TemporalLayout | None] = contextvars.ContextVar("stave_clip_layout", default=None)


class CLIPTemporalVisionModel(clip.CLIPVisionModel):
    """CLIPVisionModel (4.57) whose forward also takes the `temporal_layout` of its STA pre-hook and holds it for its
    encoder; otherwise the stock tower."""

    def forward(self, *args: Any, temporal_layout: TemporalLayout | None = None, **kwargs: Any):
        token = _LAYOUT.set(temporal_layout)
        try:
            return super().forward(*args, **kwargs)
        finally:
            _LAYOUT.reset(token)


class CLIPTemporalEncoder(clip.CLIPEncoder):
    """CLIPEncoder (4.57) that hands its tower call's temporal layout to its STA layers as their `temporal_layout`
    keyword (read once per call, so checkpointed recomputation gets it as an argument); otherwise the stock loop."""

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                causal_attention_mask: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, **kwargs: Any) -> BaseModelOutput:  # fmt: skip
        layout = _LAYOUT.get()
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        if output_attentions and layout is not None:
            raise ValueError("a CLIP tower with temporal attention does not return attention weights")
        states: tuple[torch.Tensor, ...] = ()
        attentions: tuple[torch.Tensor, ...] = ()
        hidden = inputs_embeds
        for layer in self.layers:
            if output_hidden_states:
                states += (hidden,)
            if isinstance(layer, TemporalBlockMixin):
                hidden = layer(hidden, attention_mask, causal_attention_mask=causal_attention_mask,
                               temporal_layout=layout)  # fmt: skip
                continue
            out = layer(hidden, attention_mask, causal_attention_mask, output_attentions=output_attentions)
            hidden = out[0]
            if output_attentions:
                attentions += (out[1],)
        if output_hidden_states:
            states += (hidden,)
        return BaseModelOutput(
            last_hidden_state=hidden,
            hidden_states=states if output_hidden_states else None,
            attentions=attentions if output_attentions else None,
        )


#: LlavaNextVideoModel whose get_video_features tells the tower (through `video_frames`) that its rows are videos of
#: F frames; otherwise the stock model
StaveLlavaNextVideoModel = frame_counting_model(
    llava_next_video.LlavaNextVideoModel, "StaveLlavaNextVideoModel", __name__
)  # fmt: skip
_SWITCHES: dict[type[nn.Module], type[nn.Module]] = {llava_next_video.LlavaNextVideoModel: StaveLlavaNextVideoModel}
if TRANSFORMERS_MAJOR < 5:
    _SWITCHES.update({clip.CLIPVisionModel: CLIPTemporalVisionModel, clip.CLIPEncoder: CLIPTemporalEncoder})


def prepare_model(model: nn.Module) -> None:
    """Switch the modules of `model` (full, base model or bare tower) in place so that a video's tower call knows its
    frame count (and, on transformers 4.57, its STA layers get the layout); the switched model computes what the
    stock one does. A ValueError for a spatial_pool_stride other than 2 (stave's processor counts (P/2)^2 tokens
    per frame, as transformers' does)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        stride = getattr(config, "spatial_pool_stride", POOL_STRIDE)
        if isinstance(module, llava_next_video.LlavaNextVideoModel) and stride != POOL_STRIDE:
            raise ValueError(
                f"stave's LLaVA-NeXT-Video support assumes spatial_pool_stride {POOL_STRIDE}, got {stride}"
            )
    switch_classes(model, _SWITCHES)


@functools.wraps(llava_next_video.LlavaNextVideoModel.get_video_features)  # its signature, which generation reads
def pooled_video_features(base: nn.Module, *args: Any, **kwargs: Any):
    """get_video_features with each video's projected, spatially pooled tokens averaged over runs of K consecutive
    frames (stave.config.pooling_window; all F for "mean"): (B, ceil(F/K)*n, D) instead of (B, F*n, D) (5.x),
    (ceil(F/K), n, D) per video instead of (F, n, D) (4.57)."""
    features = type(base).get_video_features
    mode = getattr(base.config, POOLING_KEY, None)
    if mode is None:
        return features(base, *args, **kwargs)
    window = pooling_window(mode)
    pixels = args[0] if args else kwargs.get("pixel_values_videos", kwargs.get("pixel_values"))
    frames = pixels.shape[1]
    if TRANSFORMERS_MAJOR < 5:
        return tuple(window_means(video, window) for video in features(base, *args, **kwargs))
    return_dict = kwargs.pop("return_dict", None)
    out = features(base, *args, return_dict=True, **kwargs)
    b, length, dim = out.pooler_output.shape
    pooled = window_means(out.pooler_output.reshape(b, frames, length // frames, dim), window, dim=1)
    out.pooler_output = pooled.flatten(1, 2)
    return_dict = base.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


POOLED_METHODS = (("get_video_features", pooled_video_features),)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, size, size), the middle, offsets int((H - size) / 2) and int((W - size) / 2) as
    transformers' center_crop (4.57 and 5.x); frames are at least `size` on both sides (resized by shortest_edge)."""
    height, width = frames.shape[-2:]
    top, left = int((height - size) / 2.0), int((width - size) / 2.0)
    return frames[..., top : top + size, left : left + size]


@dataclasses.dataclass(frozen=True)
class LlavaNextVideoMedia(StackedVideoMedia):
    """LLaVA-NeXT-Video's media format, as transformers' LlavaNextVideoProcessor with the published checkpoint's
    preprocessing (frame_towers.StackedVideoMedia): a video's frames are resized so that their shorter side is the
    tower's image size S (bicubic, antialiased; VideoOptions.shortest_edge), center-cropped to S x S and normalised
    with CLIP's mean and std; its `<video>` placeholder becomes F * (P/2)^2 `<video>` tokens (ceil(F/K) * (P/2)^2 when
    the model pools runs of K frames), no newline."""

    family: str = "LLaVA-NeXT-Video"
    pixel_mean: tuple[float, float, float] = CLIP_MEAN
    pixel_std: tuple[float, float, float] = CLIP_STD

    def frame_options(self, options: Any, spec: FrameSpec) -> Any:
        return dataclasses.replace(options, frame_size=None, shortest_edge=spec.image_size)

    def square_frames(self, frames: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
        return center_crop(frames, spec.image_size)

    def video_tokens(self, groups: int, side: int) -> int:
        """Per frame (or pooled run of frames) (P/2)^2 tokens of the stride-2 vision_resampler; no newline."""
        return groups * (side // POOL_STRIDE) ** 2


LLAVA_NEXT_VIDEO = VisionFamily(
    name="LLaVA-NeXT-Video",
    tower_class=clip.CLIPVisionModel,
    model_classes=(
        llava_next_video.LlavaNextVideoForConditionalGeneration, llava_next_video.LlavaNextVideoModel
    ),  # fmt: skip
    block_class=clip.CLIPEncoderLayer,
    temporal_block_class=CLIPTemporalLayer,
    llm_layer_class=llama.LlamaDecoderLayer,  # the published checkpoints' LLM (Vicuna-7B)
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: nn.LayerNorm(dim, eps=block.layer_norm1.eps),
    vision_linears=(
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"
    ),  # fmt: skip
    model_type="llava_next_video",
    media=LlavaNextVideoMedia(),
    vision_blocks=r"vision_tower\.(?:vision_model\.)?encoder\.layers\.\d+",
    vision_qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    pooled_methods=POOLED_METHODS,
    temporal_items=frame_items,
    row_prefix=1,  # CLIP's CLS token
    blocks=encoder_layers,
    feature_blocks=feature_blocks,
    prepare_model=prepare_model,
)
