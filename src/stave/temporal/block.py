"""A vision block with a temporal residual between (or before) its spatial attention and its MLP.

The family adapters (stave.models) give each supported block class a subclass that mixes this in, and
switch the selected blocks of a tower to it in place: the block keeps its own attention, MLP and norms
(and their weights); only `forward` changes, from

    x = x + attn(norm1(x));                                x = x + mlp(norm2(x))
to
    x = x + attn(norm1(x)); x = x + temp_attn(norm3(x));  x = x + mlp(norm2(x))     (spatial_first)
    x = x + temp_attn(norm3(x)); x = x + attn(norm1(x));  x = x + mlp(norm2(x))     (temporal_first)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import TemporalAttention
from .layout import TemporalLayout


class TemporalBlockMixin(nn.Module):
    """Mixed in front of a Qwen vision block class; the block must have norm1, attn, norm2, mlp."""

    norm1: nn.Module
    norm2: nn.Module
    norm3: nn.Module
    attn: nn.Module
    mlp: nn.Module
    temp_attn: TemporalAttention
    temporal_first: bool

    def forward(
        self, hidden_states: torch.Tensor, *args: Any, temporal_layout: TemporalLayout | None = None, **kwargs: Any
    ) -> torch.Tensor:
        if temporal_layout is None:
            raise RuntimeError(
                "this vision block has temporal attention but received no `temporal_layout`; call it through "
                "its vision tower (whose forward pre-hook computes the layout from grid_thw) or pass "
                "temporal_layout=TemporalLayout.from_grid(...) yourself"
            )
        temporal = self.temporal_residual
        if getattr(self, "gradient_checkpointing", False) and self.training and torch.is_grad_enabled():
            # Under block checkpointing, recompute STA's internals in STA's own backward instead of keeping
            # them through the block's recomputation: STA then adds (almost) nothing to the memory peak,
            # for one extra STA forward per step (benchmarks/sta_overhead.py measures both).
            temporal = partial(checkpoint, self.temporal_residual, use_reentrant=False)
        x = hidden_states
        if self.temporal_first:
            x = temporal(x, temporal_layout)
        x = x + self.attn(self.norm1(x), *args, **kwargs)
        if not self.temporal_first:
            x = temporal(x, temporal_layout)
        return x + self.mlp(self.norm2(x))

    def temporal_residual(self, x: torch.Tensor, layout: TemporalLayout) -> torch.Tensor:
        """x + temp_attn(norm3(x)) for the (L, D) token sequence."""
        return x + self.temp_attn(self.norm3(x), layout)
