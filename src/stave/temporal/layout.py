"""Where each video's tokens sit in the tokens a vision tower's blocks see, computed once per forward.

STA sees a block's hidden states as one flat sequence of L tokens: (L, D) as they are for towers that pack a
batch into one sequence (Qwen2-VL's family), or (R, S, D) rows (frames as rows, as SigLIP or InternViT see a
video; or one row per video, as VideoMAE) flattened row after row, less the first `row_prefix` tokens of every
row (a CLS token), which STA leaves alone. The family adapter (stave.models) describes that sequence as items in
order, each (t, n, temporal): t consecutive runs of n tokens (temporal patch after temporal patch, or frame after
frame), the same spatial order in every run. Item k therefore reshapes to (t, n, D) and temporal attention runs
over axis 0. In a Qwen2-VL-family tower the items are the grid_thw rows (t, h*w) (Qwen2.5-VL's window permutation
is applied identically to every temporal patch).

The layout groups items of equal (t, n) so that one attention call serves all of them, and records the ranges
that get no temporal update (images under images="skip", items the family marks as not temporal). Everything in
it is a Python int or a small tensor computed once, so blocks never synchronise with the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TemporalGroup:
    """Items that share one (t, n) shape.

    Attributes:
        t, n: temporal patches and tokens per temporal patch of each item.
        starts: first token of each item, in sequence order.
        segments: indices (into TemporalLayout.segments) of the runs of consecutive items that make up
            this group, in order.
    """

    t: int
    n: int
    starts: tuple[int, ...]
    segments: tuple[int, ...] = ()


@dataclass(frozen=True)
class TemporalLayout:
    """Item layout of one forward pass of a vision tower.

    Attributes:
        num_tokens: length L of the flat token sequence.
        groups: items that get a temporal update, grouped by (t, n). Never empty: when no item
            qualifies, one empty group keeps the temporal parameters in the autograd graph (so
            distributed data parallel sees them used on image-only batches).
        segments: the whole sequence in order, as (group index, first item, item count) for ranges that
            get an update and (-1, first token, token count) for ranges that do not.
        segment_sizes: tokens in each segment.
        rotary: cos and sin (float32, shape (t, head_dim)) of the temporal rotary embedding, per t.
        row_prefix: for (R, S, D) hidden states, the tokens at the start of every row that are not part of the
            sequence (a CLS token: 1) and get no update.
    """

    num_tokens: int
    groups: tuple[TemporalGroup, ...]
    segments: tuple[tuple[int, int, int], ...]
    segment_sizes: tuple[int, ...]
    rotary: dict[int, tuple[torch.Tensor, torch.Tensor]]
    row_prefix: int = 0

    @property
    def covers_everything(self) -> bool:
        """True when a single group is the whole sequence in order (the common all-videos-alike batch)."""
        return len(self.segments) == 1 and self.segments[0][0] == 0

    @classmethod
    def from_items(
        cls,
        items: Sequence[tuple[int, int, bool]],
        *,
        head_dim: int,
        rope_theta: float,
        device: torch.device | str | None = None,
        row_prefix: int = 0,
    ) -> TemporalLayout:
        """Build the layout from the items of the sequence, in order.

        Args:
            items: (t, n, temporal) per item, covering the whole sequence: item k holds the next t*n tokens as t
                runs of n; temporal=False: its tokens get no update (exactly zero).
            head_dim: per-head width of the temporal attention (for the rotary tables).
            rope_theta: rotary base.
            device: where the rotary tables live.
            row_prefix: see the attribute.
        """
        items = [(int(t), int(n), bool(temporal)) for t, n, temporal in items]
        bad = [item for item in items if item[0] <= 0 or item[1] <= 0]
        if bad:
            raise ValueError(f"every item needs t >= 1 frames of n >= 1 tokens, got {bad}")
        if isinstance(row_prefix, bool) or not isinstance(row_prefix, int) or row_prefix < 0:
            raise ValueError(f"row_prefix must be a non-negative int, got {row_prefix!r}")

        group_of: dict[tuple[int, int], int] = {}  # (t, n) -> group index, in order of first appearance
        members: list[list[int]] = []  # first token of each item of each group
        segments: list[list[int]] = []  # runs of one group's consecutive members, or of tokens left alone
        start = 0
        for t, n, temporal in items:
            last = segments[-1] if segments else None
            if not temporal:
                if last is not None and last[0] == -1:
                    last[2] += t * n
                else:
                    segments.append([-1, start, t * n])
            else:
                g = group_of.setdefault((t, n), len(group_of))
                if g == len(members):
                    members.append([])
                i = len(members[g])
                members[g].append(start)
                if last is not None and last[0] == g and last[1] + last[2] == i:
                    last[2] += 1
                else:
                    segments.append([g, i, 1])
            start += t * n

        shapes = list(group_of)
        groups = [
            TemporalGroup(t, n, tuple(members[g]), tuple(s for s, seg in enumerate(segments) if seg[0] == g))
            for g, (t, n) in enumerate(shapes)
        ] or [TemporalGroup(1, 1, ())]
        sizes = tuple(count if g < 0 else count * shapes[g][0] * shapes[g][1] for g, _, count in segments)
        rotary = {g.t: temporal_rotary(g.t, head_dim, rope_theta, device) for g in groups}
        return cls(start, tuple(groups), tuple(tuple(s) for s in segments), sizes, rotary, row_prefix)

    @classmethod
    def from_grid(
        cls,
        grid_thw: torch.Tensor | list[list[int]],
        num_tokens: int,
        *,
        skip_single_frame: bool,
        head_dim: int,
        rope_theta: float,
        device: torch.device | str | None = None,
    ) -> TemporalLayout:
        """The layout of a Qwen2-VL-family tower's packed sequence.

        Args:
            grid_thw: (num_items, 3) temporal patches, height and width in patches, per item.
            num_tokens: number of rows the tower receives; must equal sum(t*h*w).
            skip_single_frame: items with t == 1 get no temporal update.
            head_dim, rope_theta, device: as for from_items.
        """
        items = grid_items(grid_thw, num_tokens)
        items = [(t, n, not (skip_single_frame and t == 1)) for t, n, _ in items]
        return cls.from_items(items, head_dim=head_dim, rope_theta=rope_theta, device=device)


def grid_items(grid_thw: torch.Tensor | Sequence[Sequence[int]], num_tokens: int) -> list[tuple[int, int, bool]]:
    """The items (t, h*w, True) of a packed sequence described by grid_thw rows (t, h, w), checked against the
    number of rows the tower receives."""
    grid = grid_thw.tolist() if isinstance(grid_thw, torch.Tensor) else [list(g) for g in grid_thw]
    if any(len(row) != 3 for row in grid):
        raise ValueError(f"grid_thw must have rows (t, h, w), got {grid}")
    if any(v <= 0 for row in grid for v in row):
        raise ValueError(f"grid_thw must be positive, got {grid}")
    expected = sum(t * h * w for t, h, w in grid)
    if expected != num_tokens:
        raise ValueError(
            f"grid_thw describes {expected} patches (sum of t*h*w over {len(grid)} items) "
            f"but the vision tower received {num_tokens} rows"
        )
    return [(t, h * w, True) for t, h, w in grid]


def temporal_rotary(
    t: int, head_dim: int, theta: float, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (t, head_dim), float32, for positions 0..t-1 (rotate-half convention)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    freqs = torch.outer(torch.arange(t, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()
