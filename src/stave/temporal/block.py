"""A vision block with a temporal residual between (or before) its spatial attention and its MLP.

The family adapters (stave.models) give each supported block class a subclass that mixes this in, and
switch the selected blocks of a tower to it in place: the block keeps its own attention, MLP and norms
(and their weights); only `forward` changes, from

    x = x + attn(norm1(x));                                x = x + mlp(norm2(x))
to
    x = x + attn(norm1(x)); x = x + temp_attn(norm3(x));  x = x + mlp(norm2(x))     (spatial_first)
    x = x + temp_attn(norm3(x)); x = x + attn(norm1(x));  x = x + mlp(norm2(x))     (temporal_first)

Hidden states may be (L, D) (a packed sequence) or (R, S, D) rows; the layout (stave.temporal.layout) says
where each item's frames are, and which tokens at the start of every row (CLS) STA leaves alone. A family whose
block is laid out differently (LayerScale, other names) gives its own forward that calls `temporal_update` at
the same place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import TemporalAttention
from .layout import TemporalLayout


class TemporalBlockMixin(nn.Module):
    """Mixed in front of a vision block class; the block must have norm1, attn, norm2, mlp (or a forward of
    its own that calls `temporal_update`)."""

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
        x = hidden_states
        if self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        x = x + self.attn(self.norm1(x), *args, **kwargs)
        if not self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        return x + self.mlp(self.norm2(x))

    def temporal_update(self, x: torch.Tensor, layout: TemporalLayout | None) -> torch.Tensor:
        """x with the temporal residual added (temporal_residual), recomputed in its own backward under block
        checkpointing."""
        if layout is None:
            raise RuntimeError(
                "this vision block has temporal attention but received no `temporal_layout`; call it through "
                "its vision tower (whose forward pre-hook computes the layout) or pass "
                "temporal_layout=TemporalLayout.from_items(...) yourself"
            )
        if getattr(self, "gradient_checkpointing", False) and self.training and torch.is_grad_enabled():
            # Under block checkpointing, recompute STA's internals in STA's own backward instead of keeping
            # them through the block's recomputation: STA then adds (almost) nothing to the memory peak,
            # for one extra STA forward per step (benchmarks/sta_overhead.py measures both).
            return checkpoint(self.temporal_residual, x, layout, use_reentrant=False)
        return self.temporal_residual(x, layout)

    def temporal_residual(self, x: torch.Tensor, layout: TemporalLayout) -> torch.Tensor:
        """x + temp_attn(norm3(x)) for (L, D) tokens, or for (R, S, D) rows less their first layout.row_prefix
        tokens (which keep their value)."""
        if x.dim() == 2:
            core = x
        elif x.dim() == 3:
            core = x[:, layout.row_prefix :]
        else:
            raise ValueError(f"temporal attention takes (L, D) or (R, S, D) hidden states, got {tuple(x.shape)}")
        flat = core.reshape(-1, x.shape[-1])
        if flat.shape[0] != layout.num_tokens:
            raise ValueError(
                f"the temporal layout describes {layout.num_tokens} tokens but the block holds {flat.shape[0]} "
                f"(hidden states {tuple(x.shape)}, {layout.row_prefix} prefix token(s) per row left alone)"
            )
        update = self.temp_attn(self.norm3(flat), layout)
        if x.dim() == 2:
            return x + update
        update = update.view(core.shape)
        if layout.row_prefix:
            update = torch.cat((update.new_zeros(x.shape[0], layout.row_prefix, x.shape[-1]), update), dim=1)
        return x + update
