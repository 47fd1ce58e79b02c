"""Where STA goes in Qwen2.5-VL: every Qwen2_5_VLVisionBlock of Qwen2_5_VisionTransformerPretrainedModel, with
an RMSNorm as norm3. The tower permutes tokens by attention window, but identically within every temporal
patch and without mixing items, so each item is still t contiguous blocks of h*w tokens and the same
layout as Qwen2-VL applies (see stave.temporal.layout)."""

from __future__ import annotations

from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen2_5_vl

from ..temporal.block import TemporalBlockMixin
from . import VisionFamily


class Qwen2_5_VLTemporalBlock(TemporalBlockMixin, qwen2_5_vl.Qwen2_5_VLVisionBlock):
    """Qwen2_5_VLVisionBlock with stacked temporal attention (see stave.temporal.block)."""


QWEN2_5_VL = VisionFamily(
    name="Qwen2.5-VL",
    tower_class=qwen2_5_vl.Qwen2_5_VisionTransformerPretrainedModel,
    model_classes=(qwen2_5_vl.Qwen2_5_VLForConditionalGeneration, qwen2_5_vl.Qwen2_5_VLModel),
    block_class=qwen2_5_vl.Qwen2_5_VLVisionBlock,
    temporal_block_class=Qwen2_5_VLTemporalBlock,
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: type(block.norm1)(dim, eps=block.norm1.variance_epsilon),
    # SwiGLU: the same names as the LLM's MLP, told apart by the `visual.blocks.N.` prefix (stave.training)
    vision_linears=("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
)
