"""Where STA goes in InternVideo2 (stave.classifiers.internvideo2): every Block of the classifier, which is its own
tower. A row of the blocks' hidden states (B, 1 + t*h*w, D) is one clip: CLS first (left alone by STA), then t
frames of h*w tokens in the same raster order. STA sits after the attention residual and before the MLP (the
authors' InternVideo2 + STA), with an RMSNorm as norm3."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..classifiers.internvideo2 import Block, InternVideo2ForVideoClassification
from ..temporal.block import TemporalBlockMixin
from . import VisionFamily


class InternVideo2TemporalBlock(TemporalBlockMixin, Block):
    """Block with stacked temporal attention: x + ls1(attn(norm1(x))); x + STA(norm3(x)); x + ls2(mlp(norm2(x)))."""

    def forward(self, x: torch.Tensor, temporal_layout: Any = None) -> torch.Tensor:
        if self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        if not self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


def temporal_items(tower: nn.Module, args: tuple, kwargs: dict) -> list[tuple[int, int, bool]]:
    """One (t, h*w, True) item per clip, from the forward's pixel_values (B, T, C, H, W)."""
    pixels = args[0] if args else kwargs.get("pixel_values")
    if pixels is None:
        raise ValueError("InternVideo2ForVideoClassification with temporal attention needs pixel_values")
    t, h, w = tower.token_grid(pixels)
    return [(t, h * w, True)] * pixels.shape[0]


INTERNVIDEO2 = VisionFamily(
    name="InternVideo2",
    tower_class=InternVideo2ForVideoClassification,
    model_classes=(InternVideo2ForVideoClassification,),  # the classifier is its own tower
    block_class=Block,
    temporal_block_class=InternVideo2TemporalBlock,
    llm_layer_class=None,
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: nn.RMSNorm(dim, eps=block.norm1.eps),
    vision_linears=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
    model_type="internvideo2",
    llm_linears=(),
    # the authors' fine-tuning data pipeline normalises with ImageNet's mean and std (imagenet_default_mean_and_std)
    temporal_items=temporal_items,
    row_prefix=1,
)
