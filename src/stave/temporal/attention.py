"""The temporal attention layer: each spatial position attends to itself across temporal patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import TemporalLayout


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., t, head_dim) by float32 tables (t, head_dim); computed in float32 like the tower's RoPE."""
    xf = x.float()
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)


class TemporalAttention(nn.Module):
    """Multi-head attention over the time axis, batched over every item of equal (t, n) shape.

    Args:
        dim: token width D of the tower.
        num_heads: temporal heads (fewer than the spatial heads at head_scale < 1).
        head_dim: per-head width; the tower's own head_dim (D / spatial heads).
        zero_init: zero the output projection so the layer's update starts at exactly 0.
        device, dtype: where and in what precision the weights are created.

    Submodule names `qkv` and `proj` match the authors' checkpoints and peft recipes.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        *,
        zero_init: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"temporal rotary embedding needs an even head_dim, got {head_dim}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=True, device=device, dtype=dtype)
        self.proj = nn.Linear(inner, dim, bias=True, device=device, dtype=dtype)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, hidden_states: torch.Tensor, layout: TemporalLayout) -> torch.Tensor:
        """Temporal update for every token.

        Args:
            hidden_states: (L, D) normalised tokens of the whole batch, in the tower's order.
            layout: where each item's (t, n) grid sits in the sequence.

        Returns:
            (L, D) update to add onto the residual stream; row r is the update of token r, and rows of
            items that are skipped are exactly zero.
        """
        updates = [self._attend(group.gather(hidden_states), layout.rotary[group.t]) for group in layout.groups]
        if layout.covers_everything:
            return updates[0].view(layout.num_tokens, -1)
        pieces = []
        for group, first, count in layout.segments:
            if group < 0:
                pieces.append(hidden_states.new_zeros(count, hidden_states.shape[-1]))
            else:
                pieces.append(updates[group][first : first + count].flatten(0, 2))
        # An empty group (no item qualified) is still added, with zero rows, so the parameters take
        # part in the graph.
        if not layout.groups[0].starts:
            pieces.append(updates[0].flatten(0, 2))
        return torch.cat(pieces)

    def _attend(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, t, n, D) -> (B, t, n, D): attention over t for each of the B*n sequences."""
        b, t, n, _ = x.shape
        h, d = self.num_heads, self.head_dim
        qkv = self.qkv(x).view(b, t, n, 3, h, d).permute(3, 0, 2, 4, 1, 5)  # (3, B, n, H, t, d), a view
        cos, sin = rotary
        q = apply_rotary(qkv[0], cos, sin).reshape(b * n, h, t, d)
        k = apply_rotary(qkv[1], cos, sin).reshape(b * n, h, t, d)
        v = qkv[2].reshape(b * n, h, t, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B*n, H, t, d)
        out = out.view(b, n, h, t, d).permute(0, 3, 1, 2, 4).reshape(b, t, n, h * d)
        return self.proj(out)
