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
        gate_init: None: no gate. A number: the update is multiplied by a learned per-channel vector `gate`
            (D,) initialised to it (a LayerScale; the authors' InternVideo2 + STA use 1e-5).
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
        gate_init: float | None = None,
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
        self.gate = None
        if gate_init is not None:
            self.gate = nn.Parameter(torch.full((dim,), float(gate_init), device=device, dtype=dtype))

    def forward(self, hidden_states: torch.Tensor, layout: TemporalLayout) -> torch.Tensor:
        """Temporal update for every token.

        Args:
            hidden_states: (L, D) normalised tokens of the whole batch, in the tower's order.
            layout: where each item's (t, n) grid sits in the sequence.

        Returns:
            (L, D) update to add onto the residual stream; row r is the update of token r, and rows of
            items that are skipped are exactly zero.
        """
        dim = hidden_states.shape[-1]
        if layout.covers_everything:  # one group, the whole sequence in order: views only
            group = layout.groups[0]
            x = hidden_states.view(-1, group.t, group.n, dim)
            return self._attend(x, layout.rotary[group.t]).view(layout.num_tokens, dim)
        # One split into per-segment views and one cat back: their backward passes are one copy each,
        # where slicing the sequence per item would cost a full-size gradient per slice.
        parts = hidden_states.split(layout.segment_sizes)
        pieces: list[torch.Tensor] = [
            hidden_states.new_zeros(size, dim) if group < 0 else parts[s]
            for s, ((group, _, _), size) in enumerate(zip(layout.segments, layout.segment_sizes, strict=True))
        ]
        for group in layout.groups:
            if not group.segments:
                # no item qualified: run on zero rows of the input, so that this layer's parameters and the
                # norm before it stay in the graph (zero gradients; DDP/FSDP/ZeRO need every one of them)
                empty = hidden_states[:0].view(0, 1, 1, dim)
                pieces.append(self._attend(empty, layout.rotary[group.t]).view(0, dim))
                continue
            inputs = [parts[s] for s in group.segments]
            x = (inputs[0] if len(inputs) == 1 else torch.cat(inputs)).view(-1, group.t, group.n, dim)
            update = self._attend(x, layout.rotary[group.t])
            counts = [layout.segments[s][2] for s in group.segments]
            for s, piece in zip(group.segments, update.split(counts), strict=True):
                pieces[s] = piece.reshape(-1, dim)
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
        out = self.proj(out)
        return out if self.gate is None else out * self.gate
