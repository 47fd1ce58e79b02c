"""Where STA goes in VideoMAE (transformers' VideoMAEForVideoClassification, VideoMAEModel): every VideoMAELayer of
the VideoMAEEncoder, which is the tower. A row of the encoder's hidden states (B, t*h*w, D) is one clip: t temporal
patches (tubelets of `tubelet_size` frames) of h*w tokens each, time-major, no CLS. STA sits after the attention
residual and before layernorm_after + MLP, with a LayerNorm as norm3.

The encoder passes its keyword arguments on to its layers on transformers 5.x but not on 4.57, so the adapter
switches the encoder to a subclass that hands `temporal_layout` to its STA layers on both."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.videomae import modeling_videomae as videomae

from ..temporal.block import TemporalBlockMixin
from . import VisionFamily


class VideoMAETemporalLayer(TemporalBlockMixin, videomae.VideoMAELayer):
    """VideoMAELayer with stacked temporal attention between the attention residual and the MLP."""

    def forward(
        self, hidden_states: torch.Tensor, *args: Any, temporal_layout: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        x = hidden_states
        if self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        x = x + self.attention(self.layernorm_before(x), *args, **kwargs)
        if not self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        return self.output(self.intermediate(self.layernorm_after(x)), x)


def temporal_items(tower: nn.Module, args: tuple, kwargs: dict) -> list[tuple[int, int, bool]]:
    """One (t, h*w, True) item per clip, from the encoder's hidden states (B, t*h*w, D): h*w from the config's
    image and patch size (VideoMAE accepts no other frame size)."""
    hidden = args[0] if args else kwargs.get("hidden_states")
    config = tower.config
    side = config.image_size // config.patch_size
    per_frame = side * side
    if hidden is None or hidden.dim() != 3 or hidden.shape[1] % per_frame:
        shape = None if hidden is None else tuple(hidden.shape)
        raise ValueError(
            f"VideoMAE encoder with temporal attention: hidden states {shape} are not (clips, t * {per_frame}, width) "
            f"(masked pre-training inputs, which drop tokens, are not supported)"
        )
    return [(hidden.shape[1] // per_frame, per_frame, True)] * hidden.shape[0]


class VideoMAETemporalEncoder(videomae.VideoMAEEncoder):
    """VideoMAEEncoder that hands `temporal_layout` to its STA layers only (stock layers take no such argument;
    4.57's encoder passes no keywords on at all)."""

    def forward(
        self, hidden_states: torch.Tensor, head_mask: Any = None, *, temporal_layout: Any = None, **kwargs: Any
    ) -> BaseModelOutput:
        for i, layer in enumerate(self.layer):
            args = (head_mask[i],) if head_mask is not None else ()  # 4.57 passes a (possibly all-None) head mask
            extra = {"temporal_layout": temporal_layout} if isinstance(layer, TemporalBlockMixin) else {}
            hidden_states = layer(hidden_states, *args, **kwargs, **extra)
        return BaseModelOutput(last_hidden_state=hidden_states)


def _switch_encoder(model: nn.Module) -> None:
    """add_temporal_attention's extra step: the encoder becomes a VideoMAETemporalEncoder (see its docstring)."""
    for module in model.modules():
        if type(module) is videomae.VideoMAEEncoder:
            module.__class__ = VideoMAETemporalEncoder


VIDEOMAE = VisionFamily(
    name="VideoMAE",
    tower_class=videomae.VideoMAEEncoder,
    model_classes=(videomae.VideoMAEForVideoClassification, videomae.VideoMAEModel),
    block_class=videomae.VideoMAELayer,
    temporal_block_class=VideoMAETemporalLayer,
    llm_layer_class=None,
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: nn.LayerNorm(dim, eps=block.layernorm_before.eps),
    vision_linears=(
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ),  # fmt: skip
    model_type="videomae",
    llm_linears=(),
    # VideoMAEImageProcessor's defaults: ImageNet's
    temporal_items=temporal_items,
    blocks=lambda tower: tower.layer,
    prepare_model=_switch_encoder,
)
