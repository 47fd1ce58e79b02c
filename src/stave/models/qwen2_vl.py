"""Where STA goes in Qwen2-VL: every Qwen2VLVisionBlock of Qwen2VisionTransformerPretrainedModel, with a
LayerNorm as norm3. The tower's tokens are item-contiguous and frame-contiguous (see stave.temporal.layout), and
its blocks see them in the processor's order."""

from __future__ import annotations

from torch import nn
from transformers.models.qwen2_vl import modeling_qwen2_vl as qwen2_vl

from ..temporal.block import TemporalBlockMixin
from . import VisionFamily
from .mrope import MROPE
from .qwen_media import QwenMedia
from .qwen_pooling import POOLED_METHODS, check_pooling


class Qwen2VLTemporalBlock(TemporalBlockMixin, qwen2_vl.Qwen2VLVisionBlock):
    """Qwen2VLVisionBlock with stacked temporal attention (see stave.temporal.block)."""


QWEN2_VL = VisionFamily(
    name="Qwen2-VL",
    tower_class=qwen2_vl.Qwen2VisionTransformerPretrainedModel,
    model_classes=(qwen2_vl.Qwen2VLForConditionalGeneration, qwen2_vl.Qwen2VLModel),
    block_class=qwen2_vl.Qwen2VLVisionBlock,
    temporal_block_class=Qwen2VLTemporalBlock,
    llm_layer_class=qwen2_vl.Qwen2VLDecoderLayer,
    width=lambda config: config.embed_dim,
    make_norm=lambda block, dim: nn.LayerNorm(dim, eps=block.norm1.eps),
    vision_linears=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
    model_type="qwen2_vl",
    pooled_methods=POOLED_METHODS,
    check_pooling=check_pooling,
    media=QwenMedia(),
    positions=MROPE,
)
