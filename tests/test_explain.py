"""stave explain: the temporal attention weights it shows are the ones the layer uses."""

from __future__ import annotations

import pytest
import torch

import stave
from stave.explain import TemporalAttentionMap, attention_weights, save_map, temporal_attention_map
from stave.presets import tiny_model
from stave.processing import VideoChatProcessor
from stave.temporal.attention import TemporalAttention
from stave.temporal.layout import TemporalLayout
from stave.tokenizer import build_word_tokenizer
from stave.video import VideoOptions


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


def test_cross_time_puts_each_patch_back_on_its_image_position():
    t, h, w, m = 2, 4, 6, 2
    n = h * w
    weights = torch.zeros(n, 1, t, t)
    for index in range(n):  # self-attention weight 1 - index/100: cross-time share = index/100
        weights[index, 0] = torch.eye(t) * (1 - index / 100)
    result = TemporalAttentionMap(weights, torch.zeros(t, 3, h * 14, w * 14, dtype=torch.uint8), (t, h, w), 0, m)
    image = result.cross_time()[0] * 100
    for r in range(h):
        for c in range(w):
            expected = ((r // m) * (w // m) + c // m) * m * m + (r % m) * m + c % m  # the tower's merge order
            assert image[r, c].round() == expected


def test_map_of_a_tiny_model_on_a_video(tmp_path):
    from training_data import moving_square

    tokenizer = build_word_tokenizer(["."])
    model = stave.add_temporal_attention(tiny_model(tokenizer=tokenizer), stave.TemporalConfig(init="random"))
    options = VideoOptions(nframes=8, min_pixels=3136, max_pixels=3136)
    processor = VideoChatProcessor.for_model(tokenizer, model, options)
    result = temporal_attention_map(model, processor, moving_square("right", frames=8))
    assert result.grid == (4, 4, 4) and result.block == 1 and result.matrix.shape == (4, 4)
    assert torch.allclose(result.matrix.sum(-1), torch.ones(4))
    cross = result.cross_time()
    assert cross.shape == (4, 4, 4) and cross.min() >= 0 and cross.max() <= 1
    assert save_map(result, tmp_path / "map.png").stat().st_size > 2000
    with pytest.raises(ValueError, match="block 5 has no temporal attention"):
        temporal_attention_map(model, processor, moving_square("right", frames=8), block=5)
    with pytest.raises(ValueError, match="no temporal attention"):
        temporal_attention_map(tiny_model(tokenizer=tokenizer), processor, moving_square("right", frames=8))
