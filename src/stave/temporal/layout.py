"""Where each video's tokens sit in the tower's flat token sequence, computed once per forward.

Inside a Qwen2-VL-family vision tower a batch is one flat sequence of sum(t*h*w) tokens described by
grid_thw rows (t, h, w). Item k occupies one contiguous range; within it the t temporal patches are
contiguous blocks of h*w tokens that all use the same within-frame order (Qwen2.5-VL's window
permutation is applied identically to every temporal patch). So item k reshapes to (t, h*w, D) and
temporal attention runs over axis 0.

The layout groups items of equal (t, h*w) so that one attention call serves all of them, and records
the ranges that get no temporal update (images under images="skip"). Everything in it is a Python int
or a small tensor computed once, so blocks never synchronise with the device.
"""

from __future__ import annotations

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
    """

    num_tokens: int
    groups: tuple[TemporalGroup, ...]
    segments: tuple[tuple[int, int, int], ...]
    segment_sizes: tuple[int, ...]
    rotary: dict[int, tuple[torch.Tensor, torch.Tensor]]

    @property
    def covers_everything(self) -> bool:
        """True when a single group is the whole sequence in order (the common all-videos-alike batch)."""
        return len(self.segments) == 1 and self.segments[0][0] == 0

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
        """Build the layout for a batch.

        Args:
            grid_thw: (num_items, 3) temporal patches, height and width in patches, per item.
            num_tokens: number of rows the tower receives; must equal sum(t*h*w).
            skip_single_frame: items with t == 1 get no temporal update.
            head_dim: per-head width of the temporal attention (for the rotary tables).
            rope_theta: rotary base.
            device: where the rotary tables live.
        """
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

        group_of: dict[tuple[int, int], int] = {}  # (t, n) -> group index, in order of first appearance
        members: list[list[int]] = []  # first token of each item of each group
        item_place: list[tuple[int, int] | None] = []  # (group, index in group), or None if skipped
        starts = []
        start = 0
        for t, h, w in grid:
            starts.append(start)
            if t == 1 and skip_single_frame:
                item_place.append(None)
            else:
                g = group_of.setdefault((t, h * w), len(group_of))
                if g == len(members):
                    members.append([])
                item_place.append((g, len(members[g])))
                members[g].append(start)
            start += t * h * w
        # Merge runs of consecutive items into segments: a run of one group's consecutive members, or a
        # run of skipped tokens.
        segments: list[list[int]] = []
        for k, place in enumerate(item_place):
            t, h, w = grid[k]
            last = segments[-1] if segments else None
            if place is None:
                if last is not None and last[0] == -1:
                    last[2] += t * h * w
                else:
                    segments.append([-1, starts[k], t * h * w])
            else:
                g, i = place
                if last is not None and last[0] == g and last[1] + last[2] == i:
                    last[2] += 1
                else:
                    segments.append([g, i, 1])

        shapes = list(group_of)
        groups = [
            TemporalGroup(t, n, tuple(members[g]), tuple(s for s, seg in enumerate(segments) if seg[0] == g))
            for g, (t, n) in enumerate(shapes)
        ] or [TemporalGroup(1, 1, ())]
        sizes = tuple(count if g < 0 else count * shapes[g][0] * shapes[g][1] for g, _, count in segments)
        rotary = {g.t: temporal_rotary(g.t, head_dim, rope_theta, device) for g in groups}
        return cls(num_tokens, tuple(groups), tuple(tuple(s) for s in segments), sizes, rotary)


def temporal_rotary(
    t: int, head_dim: int, theta: float, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (t, head_dim), float32, for positions 0..t-1 (rotate-half convention)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    freqs = torch.outer(torch.arange(t, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()
