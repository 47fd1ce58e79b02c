"""stave explain: the temporal attention weights it shows are the ones the layer uses, at the image position
of the patch they belong to (Qwen2-VL's merge-block order and Qwen2.5-VL's window order undone), on every tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stave
from stave.explain import TemporalAttentionMap, attention_weights, save_map, sta_blocks, temporal_attention_map
from stave.models import find_vision_tower
from stave.presets import tiny_model, tiny_tokenizer
from stave.processing import VideoChatProcessor
from stave.temporal.attention import TemporalAttention
from stave.temporal.layout import TemporalLayout
from stave.video import PatchSpec, VideoOptions, pack_frames
from stave.video.packing import patch_positions


def explained_model(preset: str, rows: int, columns: int, **config):
    """A tiny model of `preset` with random STA, a processor that keeps frames of rows x columns patches as they
    are (a frame-per-image tower: its own frame size), the family's patch spec and the frames' (height, width) in
    pixels."""
    tokenizer = tiny_tokenizer(preset, ["."])
    model = stave.add_temporal_attention(tiny_model(preset, tokenizer=tokenizer), init="random", **config)
    family = find_vision_tower(model)[0]
    spec = family.media.patch_spec(model.config.vision_config)
    size = family.media.frame_size(spec) or (rows * spec.patch_size, columns * spec.patch_size)
    options = VideoOptions(nframes=8, min_pixels=size[0] * size[1], max_pixels=size[0] * size[1])
    return model, VideoChatProcessor.for_model(tokenizer, model, options), spec, size


def test_weights_rebuild_the_layer_output():
    layer = TemporalAttention(32, 2, 8, zero_init=False)
    t, n = 4, 6
    layout = TemporalLayout.from_grid(
        torch.tensor([[t, 2, 3]]), t * n, skip_single_frame=True, head_dim=8, rope_theta=1e4
    )
    x = torch.randn(t * n, 32)
    weights = attention_weights(layer, x.view(1, t, n, 32), layout.rotary[t])  # (1, n, H, t, t)
    assert torch.allclose(weights.sum(-1), torch.ones(1, n, 2, t))
    v = layer.qkv(x.view(1, t, n, 32)).view(1, t, n, 3, 2, 8)[:, :, :, 2]  # (1, t, n, H, d)
    mixed = torch.einsum("bnhij,bjnhd->binhd", weights, v).reshape(1, t, n, 16)
    torch.testing.assert_close(layer.proj(mixed).view(t * n, 32), layer(x, layout), atol=1e-5, rtol=1e-5)


def test_patch_positions_name_the_image_patch_of_each_packed_row():
    spec, h, w = PatchSpec(), 4, 6
    # every pixel of the patch in row r, column c holds the value r * w + c
    values = torch.arange(h * w, dtype=torch.uint8).view(1, 1, h, 1, w, 1)
    frames = values.expand(2, 3, h, spec.patch_size, w, spec.patch_size).reshape(2, 3, h * 14, w * 14)
    pixels, _ = pack_frames(frames, spec)
    packed = ((pixels[:, 0] * spec.std[0] + spec.mean[0]) * 255).round().long()
    assert torch.equal(patch_positions(h, w, spec.merge_size), packed)


def test_cross_time_puts_each_position_at_its_row_and_column():
    t, h, w = 2, 4, 6
    weights = torch.zeros(h * w, 1, t, t)
    for p in range(h * w):  # self-attention weight 1 - p/100: cross-time share p/100
        weights[p, 0] = torch.eye(t) * (1 - p / 100)
    frames = torch.zeros(t, 3, h * 14, w * 14, dtype=torch.uint8)
    result = TemporalAttentionMap(weights, frames, (t, h, w), 0, torch.arange(h * w))
    image = result.cross_time() * 100
    assert torch.equal(image.round(), torch.arange(h * w, dtype=torch.float).view(1, h, w).expand(t, h, w))


def test_map_weights_rebuild_the_layer_output_in_the_towers_row_order(tower_preset):
    """The weights, taken back to the layer's row order by result.positions, rebuild what the layer computed (that
    the positions name the right image patches: the cross-time test below)."""
    from training_data import moving_square

    model, processor, spec, size = explained_model(tower_preset, 8, 8)
    family, tower = find_vision_tower(model)
    block = sta_blocks(model)[-1]
    layer = family.blocks(tower)[block].temp_attn
    captured = {}
    hook = layer.register_forward_hook(lambda _module, args, out: captured.update(x=args[0], update=out))
    try:
        result = temporal_attention_map(model, processor, moving_square("right", frames=8, size=size[0]))
    finally:
        hook.remove()
    t, h, w = result.grid
    n, heads, d = h * w, layer.num_heads, layer.head_dim
    assert (t, h, w) == (8 // spec.temporal_patch_size, size[0] // spec.patch_size, size[1] // spec.patch_size)
    assert result.block == block and sorted(result.positions.tolist()) == list(range(n))
    weights = result.weights[result.positions]  # image order -> the order of the layer's rows
    v = layer.qkv(captured["x"].view(1, t, n, -1)).view(1, t, n, 3, heads, d)[:, :, :, 2]
    mixed = torch.einsum("nhij,bjnhd->binhd", weights, v).reshape(1, t, n, heads * d)
    torch.testing.assert_close(layer.proj(mixed).view(t * n, -1), captured["update"], atol=1e-5, rtol=1e-5)


def test_cross_time_marks_the_one_patch_that_changes_at_its_image_position(tower_preset):
    # STA in block 0 before spatial attention: each row it sees is the embedding of one patch's pixels alone (plus
    # the position embedding of its place, where the tower adds one first), so against the same video without the
    # change only the changing patch's weights differ
    model, processor, spec, size = explained_model(tower_preset, 8, 12, layers=[0], order="temporal_first")
    p = spec.patch_size
    h, w = size[0] // p, size[1] // p
    row, column = min(3, h - 1), min(5, w - 2)  # Qwen: 3, 5 (Qwen2.5-VL's window order moves its row)
    video = np.full((8, *size, 3), 90, dtype=np.uint8)
    for i in range(8):
        video[i, p * row : p * row + p, p * column : p * column + p] = 30 * i
    family, tower = find_vision_tower(model)
    input_row = family.media.frame_positions(h, w, spec).tolist().index(row * w + column)
    block_row = family.token_order(tower, h, w).tolist().index(input_row)
    assert (block_row != input_row) == (family.name == "Qwen2.5-VL")  # else a missing un-permutation goes unseen
    cross = temporal_attention_map(model, processor, video).cross_time()
    assert cross.shape == (8 // spec.temporal_patch_size, h, w)
    still = temporal_attention_map(model, processor, np.full_like(video, 90)).cross_time()
    departure = (cross - still).abs().amax(0)  # (h, w): largest difference from the unchanging video
    assert (departure > 1e-3).nonzero().tolist() == [[row, column]]


def test_map_of_a_tiny_model_on_a_video(tower_preset, tmp_path):
    from training_data import moving_square

    model, processor, spec, size = explained_model(tower_preset, 8, 8)
    video = moving_square("right", frames=8, size=size[0])
    result = temporal_attention_map(model, processor, video)
    family, tower = find_vision_tower(model)
    depth = len(family.blocks(tower))
    t, h, w = 8 // spec.temporal_patch_size, size[0] // spec.patch_size, size[1] // spec.patch_size
    assert result.grid == (t, h, w) and result.block == sta_blocks(model)[-1] and result.matrix.shape == (t, t)
    assert torch.allclose(result.matrix.sum(-1), torch.ones(t))
    cross = result.cross_time()
    assert cross.shape == (t, h, w) and cross.min() >= 0 and cross.max() <= 1
    assert save_map(result, tmp_path / "map.png").stat().st_size > 2000
    with pytest.raises(ValueError, match=f"block {depth + 2} has no temporal attention"):
        temporal_attention_map(model, processor, video, block=depth + 2)
    with pytest.raises(ValueError, match="no temporal attention"):
        temporal_attention_map(tiny_model(tower_preset, tokenizer=processor.tokenizer), processor, video)
