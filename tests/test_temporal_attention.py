"""The temporal layer itself: exact semantics against an independent per-item reference, own-token
placement, per-item separation, and the layout's bookkeeping."""

from __future__ import annotations

import pytest
import torch
from straightforward_sta import straightforward_temporal_update
from torch import nn

from stave.temporal import TemporalAttention, TemporalBlockMixin, TemporalLayout

pytestmark = pytest.mark.version_independent  # runs once: see tests/version_independence.py

GRIDS = [
    [[3, 4, 4]],  # one video
    [[2, 4, 4], [2, 4, 4], [2, 4, 4]],  # equal videos: one contiguous group (the fast path)
    [[4, 2, 2], [1, 4, 2], [2, 2, 4], [4, 2, 2], [1, 2, 2], [3, 2, 2]],  # mixed, with images and split groups
]


def _layout(grid, skip=True, head_dim=8, theta=10000.0):
    return TemporalLayout.from_grid(
        torch.tensor(grid),
        sum(t * h * w for t, h, w in grid),
        skip_single_frame=skip,
        head_dim=head_dim,
        rope_theta=theta,
    )


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("skip", [True, False])
def test_matches_straightforward_reference(grid, skip):
    torch.manual_seed(0)
    layer = TemporalAttention(32, 2, 8, zero_init=False)
    x = torch.randn(sum(t * h * w for t, h, w in grid), 32)
    ours = layer(x, _layout(grid, skip, theta=500.0))
    reference = straightforward_temporal_update(
        x, grid, layer.qkv, layer.proj, 2, rope_theta=500.0, skip_single_frame=skip
    )
    torch.testing.assert_close(ours, reference, atol=2e-6, rtol=1e-5)


def test_skipped_items_get_exactly_zero_update():
    grid = [[1, 4, 4], [3, 2, 2], [1, 2, 2]]
    layer = TemporalAttention(32, 2, 8, zero_init=False)
    x = torch.randn(16 + 12 + 4, 32)
    update = layer(x, _layout(grid))
    assert torch.count_nonzero(update[:16]) == 0
    assert torch.count_nonzero(update[28:]) == 0
    assert torch.count_nonzero(update[16:28]) == 12 * 32


def test_update_stays_on_its_own_token():
    """Perturbing one temporal patch at one spatial position changes the update only at that position,
    on every temporal patch of that video (the authors' release scatters it onto other tokens)."""
    t, n, dim = 4, 6, 32
    grid = [[2, 2, 2], [t, 2, 3], [2, 2, 2]]
    layer = TemporalAttention(dim, 2, 8, zero_init=False)
    x = torch.randn(8 + t * n + 8, dim)
    layout = _layout(grid)
    before = layer(x, layout)
    position, patch = 4, 1
    changed_row = 8 + patch * n + position
    x2 = x.clone()
    x2[changed_row] += torch.randn(dim)
    diff = (layer(x2, layout) - before).abs().sum(-1)
    expected_rows = {8 + k * n + position for k in range(t)}
    assert set(torch.nonzero(diff > 1e-7).flatten().tolist()) == expected_rows


def test_order_of_temporal_patches_matters():
    layer = TemporalAttention(32, 2, 8, zero_init=False)
    t, n = 4, 4
    x = torch.randn(t * n, 32)
    layout = _layout([[t, 2, 2]])
    reversed_x = x.view(t, n, 32).flip(0).reshape(t * n, 32)
    out = layer(x, layout).view(t, n, 32)
    out_rev = layer(reversed_x, layout).view(t, n, 32).flip(0)
    assert (out - out_rev).abs().max() > 1e-3  # rotary positions make the layer order-aware


def test_items_do_not_attend_to_each_other():
    layer = TemporalAttention(32, 2, 8, zero_init=False)
    a = torch.randn(3 * 4, 32)
    b = torch.randn(2 * 6, 32)
    alone = layer(a, _layout([[3, 2, 2]]))
    together = layer(torch.cat([a, b, a]), _layout([[3, 2, 2], [2, 2, 3], [3, 2, 2]]))
    torch.testing.assert_close(together[:12], alone, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(together[24:], alone, atol=1e-6, rtol=1e-6)


def test_layout_groups_equal_shapes_and_records_segments():
    layout = _layout([[4, 2, 2], [1, 4, 2], [2, 2, 4], [4, 2, 2], [4, 2, 2], [1, 2, 2]])
    shapes = [(g.t, g.n, g.starts) for g in layout.groups]
    assert shapes == [(4, 4, (0, 40, 56)), (2, 8, (24,))]
    assert layout.segments == ((0, 0, 1), (-1, 16, 8), (1, 0, 1), (0, 1, 2), (-1, 72, 4))
    assert not layout.covers_everything
    assert _layout([[2, 2, 2], [2, 2, 2]]).covers_everything


def test_image_only_batch_keeps_parameters_in_the_graph():
    """With images skipped, an image-only batch still runs the layer on zero rows, so every temporal
    parameter (and norm3 before it) gets a (zero) gradient and data-parallel training sees it used."""
    layer = TemporalAttention(32, 2, 8, zero_init=False)
    x = torch.randn(16 + 4, 32, requires_grad=True)
    update = layer(x, _layout([[1, 4, 4], [1, 2, 2]]))
    assert torch.count_nonzero(update) == 0
    update.sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) == 0, name
    # the input stays in the graph too, so the norm in front of the layer (norm3) gets its zero gradient
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0


def test_grid_inconsistent_with_tokens_names_both_numbers():
    with pytest.raises(ValueError, match=r"describes 40 patches.*received 41 rows"):
        TemporalLayout.from_grid(
            torch.tensor([[2, 4, 4], [2, 2, 2]]), 41, skip_single_frame=True, head_dim=8, rope_theta=1e4
        )


def test_rotary_tables_follow_the_spec():
    layout = _layout([[3, 2, 2]], head_dim=4, theta=100.0)
    cos, sin = layout.rotary[3]
    inv_freq = torch.tensor([1.0, 1.0 / 10.0])  # 1 / 100^(0/4), 1 / 100^(2/4)
    angles = torch.arange(3.0)[:, None] * torch.cat([inv_freq, inv_freq])[None]
    torch.testing.assert_close(cos, angles.cos())
    torch.testing.assert_close(sin, angles.sin())


class _Block(TemporalBlockMixin):
    """The smallest block the mixin accepts: LayerNorms, a linear attention stand-in, a linear MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.mlp = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.temp_attn = TemporalAttention(dim, 2, 8, zero_init=False)
        self.temporal_first = False


def test_rows_with_a_cls_prefix_equal_the_packed_sequence_and_leave_cls_alone():
    """(R, S, D) rows: frames as rows of two videos (3 and 2 frames) and one image row, each with a CLS token
    first. STA's residual equals the packed (L, D) computation on the rows less their CLS tokens; every CLS token
    and the image keep their value."""
    torch.manual_seed(0)
    dim, patches = 32, 6
    block = _Block(dim)
    rows = torch.randn(6, 1 + patches, dim)
    items = [(3, patches, True), (1, patches, False), (2, patches, True)]
    layout = TemporalLayout.from_items(items, head_dim=8, rope_theta=10000.0, row_prefix=1)
    out = block.temporal_residual(rows, layout)
    assert torch.equal(out[:, 0], rows[:, 0])  # CLS: exactly unchanged
    assert torch.equal(out[3], rows[3])  # the image row
    packed = TemporalLayout.from_items(items, head_dim=8, rope_theta=10000.0)
    expected = block.temporal_residual(rows[:, 1:].reshape(-1, dim), packed).view(6, patches, dim)
    torch.testing.assert_close(out[:, 1:], expected, atol=0, rtol=0)
    assert (out[:3, 1:] - rows[:3, 1:]).abs().min() > 0  # the videos did change
    # the frames of a video attend to each other: swapping two of its frames changes the others' update
    swapped = rows.clone()
    swapped[[0, 1]] = rows[[1, 0]]
    assert not torch.allclose(block.temporal_residual(swapped, layout)[2], out[2])
    # ... and never to another item's: changing video 2 leaves video 1 as it was
    changed = rows.clone()
    changed[4:] += 1.0
    torch.testing.assert_close(block.temporal_residual(changed, layout)[:3], out[:3], atol=0, rtol=0)


def test_block_with_too_few_or_many_tokens_for_its_layout_names_both_numbers():
    block = _Block(32)
    layout = TemporalLayout.from_items([(2, 4, True)], head_dim=8, rope_theta=10000.0, row_prefix=1)
    with pytest.raises(ValueError, match="describes 8 tokens but the block holds 10"):
        block.temporal_residual(torch.randn(2, 6, 32), layout)
    with pytest.raises(RuntimeError, match="received no `temporal_layout`"):
        block(torch.randn(8, 32))


def test_layerscale_gate_scales_the_update_per_channel():
    torch.manual_seed(0)
    plain = TemporalAttention(32, 2, 8, zero_init=False)
    gated = TemporalAttention(32, 2, 8, zero_init=False, gate_init=1e-5)
    gated.load_state_dict({**plain.state_dict(), "gate": torch.full((32,), 1e-5)})
    layout = _layout([[3, 2, 2]])
    x = torch.randn(12, 32)
    torch.testing.assert_close(gated(x, layout), plain(x, layout) * 1e-5)
    with torch.no_grad():
        gated.gate.copy_(torch.linspace(-1, 1, 32))
    torch.testing.assert_close(gated(x, layout), plain(x, layout) * torch.linspace(-1, 1, 32))
    names = [name for name, _ in gated.named_parameters()]
    assert names == ["gate", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"]
