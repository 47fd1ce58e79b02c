"""A straightforward temporal attention, written the way the authors' release computes it — one item at a
time, reshapes without fused attention, explicit float32 softmax of q k^T — but with each output put back
on its own token and positions restarting per item (the release's two defects fixed).

Used for comparison only: by benchmarks/sta_overhead.py as arm (c), and by the test suite as an
independent reference of the layer's exact semantics. stave itself never imports it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def straightforward_temporal_update(
    hidden_states: torch.Tensor,
    grid_thw: list[list[int]],
    qkv: nn.Linear,
    proj: nn.Linear,
    num_heads: int,
    *,
    rope_theta: float = 10000.0,
    skip_single_frame: bool = True,
) -> torch.Tensor:
    """(L, D) normalised tokens -> (L, D) temporal update, item by item."""
    dim = hidden_states.shape[-1]
    head_dim = qkv.out_features // (3 * num_heads)
    update = torch.zeros_like(hidden_states)
    offset = 0
    for t, h, w in grid_thw:
        n = h * w
        rows = slice(offset, offset + t * n)
        offset += t * n
        if t == 1 and skip_single_frame:
            continue
        x = hidden_states[rows].reshape(t, n, dim)
        q, k, v = qkv(x).reshape(t, n, 3, num_heads, head_dim).unbind(2)  # each (t, n, H, d)

        inv_freq = 1.0 / rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        freqs = torch.arange(t, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1).to(x.device)
        cos, sin = emb.cos()[:, None, None, :], emb.sin()[:, None, None, :]
        q = q.float() * cos + _rotate_half(q.float()) * sin
        k = k.float() * cos + _rotate_half(k.float()) * sin

        q, k, v = (z.permute(1, 2, 0, 3) for z in (q, k, v.float()))  # (n, H, t, d)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
        attn = torch.softmax(scores, dim=-1, dtype=torch.float32)
        out = torch.matmul(attn, v).permute(2, 0, 1, 3).reshape(t, n, num_heads * head_dim)
        update[rows] = proj(out.to(hidden_states.dtype)).reshape(t * n, dim)
    return update
