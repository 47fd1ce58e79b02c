"""Where STA goes in Qwen2.5-VL: every Qwen2_5_VLVisionBlock of Qwen2_5_VisionTransformerPretrainedModel, with
an RMSNorm as norm3. The tower permutes tokens by attention window, but identically within every temporal
patch and without mixing items, so each item is still t contiguous blocks of h*w tokens and the same
layout as Qwen2-VL applies (see stave.temporal.layout); `window_order` says where each token went."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen2_5_vl

from ..temporal.block import TemporalBlockMixin
from . import VisionFamily
from .mrope import MROPE
from .qwen_media import QwenMedia
from .qwen_pooling import POOLED_METHODS, check_pooling


class Qwen2_5_VLTemporalBlock(TemporalBlockMixin, qwen2_5_vl.Qwen2_5_VLVisionBlock):
    """Qwen2_5_VLVisionBlock with stacked temporal attention (see stave.temporal.block)."""


def window_order(tower: nn.Module, h: int, w: int) -> torch.Tensor:
    """(h*w,) long: for one temporal patch of h x w patches, the input row each block row holds.

    The tower reorders its input by attention window in units of spatial_merge_size**2 rows (its
    `window_index`, the same for every temporal patch) before the blocks and undoes it after the merger;
    the index comes from transformers' own code so it cannot drift from what the tower does.
    """
    grid = torch.tensor([[1, h, w]])
    if hasattr(tower, "get_window_index"):  # transformers 4.x: a method of the tower
        window_index = tower.get_window_index(grid)[0]
    else:  # transformers 5.x: transformers.vision_utils, imported by the modeling file
        geometry = tower.spatial_merge_size, tower.window_size, tower.patch_size
        window_index = qwen2_5_vl.get_vision_window_index(grid, *geometry)[0]
    unit = tower.spatial_merge_unit
    return (window_index.cpu()[:, None] * unit + torch.arange(unit)).flatten()


QWEN2_5_VL = VisionFamily(
    name="Qwen2.5-VL",
    tower_class=qwen2_5_vl.Qwen2_5_VisionTransformerPretrainedModel,
    model_classes=(qwen2_5_vl.Qwen2_5_VLForConditionalGeneration, qwen2_5_vl.Qwen2_5_VLModel),
    block_class=qwen2_5_vl.Qwen2_5_VLVisionBlock,
    temporal_block_class=Qwen2_5_VLTemporalBlock,
    llm_layer_class=qwen2_5_vl.Qwen2_5_VLDecoderLayer,
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: type(block.norm1)(dim, eps=block.norm1.variance_epsilon),
    # SwiGLU: the same names as the LLM's MLP, told apart by the `visual.blocks.N.` prefix (stave.training)
    vision_linears=("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
    token_order=window_order,
    model_type="qwen2_5_vl",
    pooled_methods=POOLED_METHODS,
    check_pooling=check_pooling,
    media=QwenMedia(seconds_per_grid=True),
    positions=MROPE,
)
