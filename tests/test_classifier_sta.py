"""STA in the video classifiers (tiny random InternVideo2 and VideoMAE): exact identity at zero init (with and
without the LayerScale gate), CLS untouched, frame order reaching the logits through STA, clips of a batch kept
apart, any frame count (InternVideo2), save/load with STA, and VideoMAE's token layout as the adapter assumes it."""

from __future__ import annotations

import re

import pytest
import torch

import stave
from stave.presets import tiny_classifier

# InternVideo2 is stave's own PyTorch module: its tests cannot depend on the transformers version.
FAMILIES = [pytest.param("internvideo2", marks=pytest.mark.version_independent), "videomae"]


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


def clips(batch: int = 2, frames: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def randomize_temporal(model: torch.nn.Module, std: float = 0.3) -> None:
    """Random weights in every added tensor (the gate included), so that STA's update is far from zero."""
    with torch.no_grad():
        for _, param in stave.temporal_parameters(model):
            param.normal_(0.0, std)


def position_table(model: torch.nn.Module) -> torch.Tensor:
    """The tensor that tells the blocks where (and when) each token is: the only other source of frame order."""
    if hasattr(model, "pos_embed"):
        return model.pos_embed
    return model.videomae.embeddings.position_embeddings


def reverse_temporal_patches(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The clip with its temporal patches (tubelets) in reverse order, each tubelet's frames kept in order."""
    b, t, *rest = pixels.shape
    k = model.config.tubelet_size
    return pixels.view(b, t // k, k, *rest).flip(1).reshape(pixels.shape)


@pytest.mark.parametrize("gate", ["none", "layerscale"])
def test_zero_init_is_exact_identity(family, gate):
    model = tiny_classifier(family)
    x = clips()
    with torch.no_grad():
        base = model(pixel_values=x).logits
        stave.add_temporal_attention(model, gate=gate)
        assert torch.equal(model(pixel_values=x).logits, base)


def test_layerscale_gate_starts_at_gate_init_and_scales_the_update(family):
    x = clips()
    model = tiny_classifier(family)
    with torch.no_grad():
        base = model(pixel_values=x).logits
        stave.add_temporal_attention(model, gate="layerscale", gate_init=1e-5, init="random")
        gates = [p for name, p in stave.temporal_parameters(model) if name.endswith("temp_attn.gate")]
        assert len(gates) == 2  # one per block of the tiny models
        assert all(torch.equal(g, torch.full_like(g, 1e-5)) for g in gates)
        small = (model(pixel_values=x).logits - base).abs().max()
        for g in gates:
            g.fill_(1.0)
        large = (model(pixel_values=x).logits - base).abs().max()
    assert 0 < small < 1e-3 < large


@pytest.mark.version_independent
def test_cls_token_gets_exactly_zero_update():
    model = tiny_classifier("internvideo2")
    stave.add_temporal_attention(model, init="random")
    randomize_temporal(model)
    seen = []
    for block in model.blocks:
        update = block.temporal_update

        def record(x, layout, update=update):
            out = update(x, layout)
            seen.append((x, out))
            return out

        block.temporal_update = record
    with torch.no_grad():
        model(pixel_values=clips())
    assert len(seen) == len(model.blocks)
    for before, after in seen:
        assert torch.equal(after[:, 0], before[:, 0])  # CLS
        assert (after[:, 1:] - before[:, 1:]).abs().amin(dim=-1).max() > 0  # every patch token moved


def test_frame_order_reaches_the_logits_through_sta(family):
    """Without its position table a classifier cannot tell a clip from its time reverse (attention and pooling are
    order-blind); with random STA it can, through STA's temporal rotary positions. Measured on the tiny models:
    without STA the logits of a clip and its reverse differ by < 4e-8 (float32 rounding), with STA by 6e-4 to 5e-3
    (the head's small random weights keep logits near 0.1)."""
    model = tiny_classifier(family)
    with torch.no_grad():
        position_table(model).zero_()
        x = clips()
        x_rev = reverse_temporal_patches(model, x)
        assert (model(pixel_values=x_rev).logits - model(pixel_values=x).logits).abs().max() < 1e-6
        stave.add_temporal_attention(model)
        randomize_temporal(model)
        assert (model(pixel_values=x_rev).logits - model(pixel_values=x).logits).abs().max() > 1e-4


def test_clips_in_a_batch_stay_apart(family):
    model = tiny_classifier(family)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    x = clips(batch=3)
    changed = x.clone()
    changed[1] = clips(batch=1, seed=7)[0]
    with torch.no_grad():
        out, out_changed = model(pixel_values=x).logits, model(pixel_values=changed).logits
    torch.testing.assert_close(out_changed[[0, 2]], out[[0, 2]], atol=1e-6, rtol=0)
    assert (out_changed[1] - out[1]).abs().max() > 1e-4  # its own logits do move (by 1e-3 and more here)


@pytest.mark.version_independent
@pytest.mark.parametrize("frames", [4, 6])
def test_internvideo2_with_sta_takes_any_frame_count(frames):
    model = tiny_classifier("internvideo2")  # position table stored for 8 frames
    x = clips(frames=frames)
    with torch.no_grad():
        base = model(pixel_values=x).logits
        stave.add_temporal_attention(model)
        assert torch.equal(model(pixel_values=x).logits, base)
        randomize_temporal(model)
        moved = model(pixel_values=x).logits
        assert (moved - base).abs().max() > 1e-4
        alone = model(pixel_values=x[:1]).logits
    torch.testing.assert_close(alone, moved[:1], atol=1e-6, rtol=0)


def test_only_temporal_parameters_train_and_all_of_them_learn(family):
    model = tiny_classifier(family).train()
    stave.add_temporal_attention(model, gate="layerscale", init="random")
    for param in model.parameters():
        param.requires_grad_(False)
    added = stave.temporal_parameters(model)
    assert {re.search(r"\.\d+\.(.*)$", name).group(1) for name, _ in added} == {
        "temp_attn.qkv.weight", "temp_attn.qkv.bias", "temp_attn.proj.weight", "temp_attn.proj.bias",
        "temp_attn.gate", "norm3.weight", *(["norm3.bias"] if family == "videomae" else []),
    }  # fmt: skip
    for _, param in added:
        param.requires_grad_(True)
    loss = model(pixel_values=clips(), labels=torch.tensor([0, 3])).loss
    loss.backward()
    for name, param in added:
        assert param.grad is not None and param.grad.abs().max() > 0, name


def test_save_and_load_keep_sta(family, tmp_path):
    model = tiny_classifier(family)
    stave.add_temporal_attention(model, gate="layerscale", head_scale=0.5)
    randomize_temporal(model)
    x = clips()
    with torch.no_grad():
        expected = model(pixel_values=x).logits
    model.save_pretrained(tmp_path)
    loaded = stave.load_model(tmp_path)
    assert stave.temporal_config(loaded) == stave.temporal_config(model)
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values=x).logits, expected)


def test_videomae_tokens_are_time_major_temporal_patches_of_the_frame_grid():
    """What the VideoMAE adapter assumes: token k*h*w + i is patch i of temporal patch k (frames 2k, 2k+1)."""
    model = tiny_classifier("videomae")
    embeddings = model.videomae.embeddings
    x = clips(batch=1)
    changed = x.clone()
    changed[:, 2:4, :, 4:8, 8:12] += 1.0  # temporal patch 1, patch row 1, patch column 2
    with torch.no_grad():
        moved = (embeddings(changed, None) - embeddings(x, None)).abs().amax(-1)[0]
    assert moved.shape == (4 * 16,)
    assert moved.nonzero().flatten().tolist() == [1 * 16 + 1 * 4 + 2]


@pytest.mark.parametrize(
    "preset, width, spatial_heads, depth, norm_params",
    [  # published shapes (stave.presets cites the sources); RMSNorm norm3: D weights, LayerNorm: 2D
        pytest.param("internvideo2-1b", 1408, 16, 40, 1, marks=pytest.mark.version_independent),
        pytest.param("internvideo2-6b", 3200, 25, 48, 1, marks=pytest.mark.version_independent),
        ("videomae-base", 768, 12, 12, 2),
    ],
)
def test_info_counts_sta_on_the_published_classifiers(capsys, preset, width, spatial_heads, depth, norm_params):
    from stave.cli import main

    assert main(["info", "--preset", preset, "--gate", "layerscale"]) == 0
    row = capsys.readouterr().out.splitlines()[-2].split()
    heads = max(1, round(spatial_heads * 0.25))
    inner = heads * (width // spatial_heads)
    per_block = width * 3 * inner + 3 * inner + inner * width + width + norm_params * width + width  # ... + gate
    assert row[0] == preset and row[1] == row[2] == str(depth)
    assert row[3] == f"{heads}x{width // spatial_heads}"
    assert row[5:7] == [f"{per_block:,}", f"{per_block * depth:,}"]


def test_sta_in_some_blocks_only(family):
    """Stock blocks next to STA blocks get no temporal layout (VideoMAE's stock layers would refuse one)."""
    model = tiny_classifier(family)
    x = clips()
    with torch.no_grad():
        base = model(pixel_values=x).logits
        stave.add_temporal_attention(model, layers=[1])
        assert torch.equal(model(pixel_values=x).logits, base)
        randomize_temporal(model)
        assert (model(pixel_values=x).logits - base).abs().max() > 1e-4
    assert [name.split("temp_attn")[0] for name, _ in stave.temporal_parameters(model)][0].endswith(".1.")


def test_internvideo2_loads_in_the_dtype_given_to_load_model(tmp_path):
    """stave.load_model hands the dtype on under its transformers name (4.57: torch_dtype): not version-independent."""
    model = tiny_classifier("internvideo2")
    stave.add_temporal_attention(model, gate="layerscale")
    model.save_pretrained(tmp_path)
    loaded = stave.load_model(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert stave.temporal_config(loaded) == stave.temporal_config(model)


def test_internvideo2_takes_the_classification_task_s_labels_and_input_record(tmp_path):
    """stave.classification.load_classifier gives label names (a head of another size is drawn afresh, reported) and
    training records the clip input on the config: both survive save and load."""
    from stave.classification import load_classifier
    from stave.classification.model import INPUT_KEY, model_labels

    model = tiny_classifier("internvideo2", num_labels=4)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    model.save_pretrained(tmp_path / "four")
    loaded = load_classifier(tmp_path / "four", ["up", "down", "left"])
    assert model_labels(loaded) == ["up", "down", "left"] and loaded.head.weight.shape == (3, 24)
    for name, param in stave.temporal_parameters(model):  # STA (and every other block tensor) kept
        assert torch.equal(dict(stave.temporal_parameters(loaded))[name], param)
    setattr(loaded.config, INPUT_KEY, {"frames": 8, "size": 16})
    loaded.save_pretrained(tmp_path / "three")
    again = load_classifier(tmp_path / "three", ["up", "down", "left"])
    assert getattr(again.config, INPUT_KEY) == {"frames": 8, "size": 16}
    assert torch.equal(again.head.weight, loaded.head.weight)  # same labels: the head is kept
    with pytest.raises(Exception, match="other labels"):
        load_classifier(tmp_path / "three", ["a", "b", "c"])
