"""add_temporal_attention on tiny random Qwen2-VL and Qwen2.5-VL models: identity at zero init, image
skipping, per-item separation, own-token placement through the whole tower (window-permuted on
Qwen2.5-VL), structure, gradients, dtypes and gradient checkpointing."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import enable_checkpointing, merged_tokens, packed_towers_only, randomize_temporal, tower_outputs
from torch import nn

import stave
from stave.presets import tiny_model
from stave.testing import model_inputs, random_pixels

MIXED_VIDEOS = [(4, 4, 4), (2, 4, 6), (4, 4, 4)]
IMAGES = [(1, 4, 4), (1, 6, 4)]


def _tower_inputs(model, grids, seed=0):
    return random_pixels(grids, model.config.vision_config, seed=seed)


@pytest.mark.parametrize("order", ["spatial_first", "temporal_first"])
@pytest.mark.parametrize(
    "batch",
    [dict(videos=MIXED_VIDEOS[:1]), dict(images=IMAGES), dict(videos=MIXED_VIDEOS, images=IMAGES)],
    ids=["video", "images", "mixed"],
)
def test_zero_init_is_exact_identity(preset, order, batch):
    packed_towers_only(preset)
    model = tiny_model(preset)
    inputs = model_inputs(model, **batch)
    grids = [*batch.get("images", []), *batch.get("videos", [])]
    pixels, grid_thw = _tower_inputs(model, grids)
    tower = stave.vision_tower(model)
    with torch.no_grad():
        base_logits = model(**inputs).logits
        base_outputs = tower_outputs(tower, pixels, grid_thw)
        stave.add_temporal_attention(model, order=order)
        logits = model(**inputs).logits
        outputs = tower_outputs(tower, pixels, grid_thw)
    assert len(outputs) == len(base_outputs)  # merged tokens (and Qwen3-VL's deepstack features)
    for tokens, base_tokens in zip(outputs, base_outputs, strict=True):
        assert (tokens - base_tokens).abs().max() <= 1e-6
    assert (logits - base_logits).abs().max() <= 1e-6


def test_layerscale_gate_starts_as_identity_and_scales_the_update(preset):
    """gate="layerscale": every STA block gets `temp_attn.gate` (D,) at gate_init; with the zero-initialised
    projection the model is unchanged; with random STA weights the tower's change follows the gate's size."""
    packed_towers_only(preset)
    model = tiny_model(preset)
    inputs = model_inputs(model, videos=MIXED_VIDEOS, images=IMAGES)
    tower = stave.vision_tower(model)
    pixels, grid_thw = _tower_inputs(model, [(4, 4, 4)])
    with torch.no_grad():
        base_logits = model(**inputs).logits
        base_tokens = merged_tokens(tower, pixels, grid_thw)
        stave.add_temporal_attention(model, gate="layerscale", gate_init=1e-3)
        assert (model(**inputs).logits - base_logits).abs().max() <= 1e-6
    gates = [p for n, p in stave.temporal_parameters(model) if n.endswith("temp_attn.gate")]
    assert len(gates) == len(tower.blocks)
    assert all(torch.equal(g, torch.full_like(g, 1e-3)) for g in gates)
    randomize_temporal(model)
    changes = []
    for value in (1e-3, 1.0):
        with torch.no_grad():
            for gate in gates:
                gate.fill_(value)
            changes.append((merged_tokens(tower, pixels, grid_thw) - base_tokens).abs().max())
    assert changes[1] > 0.01 and changes[0] < changes[1] * 3e-3


def test_random_sta_changes_videos_but_skipped_images_stay_identical(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    tower = stave.vision_tower(model)
    grids = [IMAGES[0], MIXED_VIDEOS[0], IMAGES[1], MIXED_VIDEOS[1]]
    pixels, grid_thw = _tower_inputs(model, grids)
    with torch.no_grad():
        base = merged_tokens(tower, pixels, grid_thw)
        stave.add_temporal_attention(model, init="random")
        out = merged_tokens(tower, pixels, grid_thw)
    merged = [t * h * w // 4 for t, h, w in grids]
    spans = torch.tensor(merged).cumsum(0).tolist()
    image_rows = [*range(0, spans[0]), *range(spans[1], spans[2])]
    video_rows = [*range(spans[0], spans[1]), *range(spans[2], spans[3])]
    assert torch.equal(out[image_rows], base[image_rows])
    assert (out[video_rows] - base[video_rows]).abs().max() > 1e-3


def test_images_apply_changes_images_too(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    tower = stave.vision_tower(model)
    pixels, grid_thw = _tower_inputs(model, IMAGES)
    with torch.no_grad():
        base = merged_tokens(tower, pixels, grid_thw)
        stave.add_temporal_attention(model, init="random", images="apply")
        assert (merged_tokens(tower, pixels, grid_thw) - base).abs().max() > 1e-3


def test_reversing_temporal_patches_changes_the_output(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    tower = stave.vision_tower(model)
    t, h, w = 4, 4, 4
    pixels, grid_thw = _tower_inputs(model, [(t, h, w)])
    reversed_pixels = pixels.view(t, h * w, -1).flip(0).reshape(t * h * w, -1)
    with torch.no_grad():
        out = merged_tokens(tower, pixels, grid_thw).view(t, h * w // 4, -1)
        out_rev = merged_tokens(tower, reversed_pixels, grid_thw).view(t, h * w // 4, -1).flip(0)
    assert (out - out_rev).abs().max() > 1e-3


def test_item_output_is_the_same_alone_and_batched(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    tower = stave.vision_tower(model)
    grids = [(2, 4, 6), (1, 4, 4), (4, 4, 4), (2, 4, 6), (3, 6, 4)]
    pixels, grid_thw = _tower_inputs(model, grids)
    with torch.no_grad():
        together = merged_tokens(tower, pixels, grid_thw)
        row = merged_row = 0
        for grid in grids:
            size = grid[0] * grid[1] * grid[2]
            alone = merged_tokens(tower, pixels[row : row + size], torch.tensor([grid]))
            torch.testing.assert_close(together[merged_row : merged_row + size // 4], alone, atol=1e-5, rtol=1e-5)
            row += size
            merged_row += size // 4


def test_update_lands_on_its_own_token_through_the_tower(preset):
    """With spatial attention and MLP silenced, a block is x + STA(norm3(x)): perturbing the input patch at
    one temporal patch and one spatial position must change exactly the merged tokens holding that
    position, on every temporal patch of that video — also under Qwen2.5-VL's window permutation."""
    packed_towers_only(preset)
    model = tiny_model(preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    tower = stave.vision_tower(model)
    with torch.no_grad():
        for block in tower.blocks:
            for module in (block.attn, block.mlp):
                for param in module.parameters():
                    param.zero_()
    # Grids larger than Qwen2.5's 4x4-patch window, so the window permutation is not the identity.
    grids = [(2, 8, 8), (3, 8, 12), (2, 4, 4)]
    pixels, grid_thw = _tower_inputs(model, grids)
    with torch.no_grad():
        before = merged_tokens(tower, pixels, grid_thw)
        t, h, w = grids[1]
        n = h * w
        start = 2 * 8 * 8
        position, patch = 37, 1  # rows of one temporal patch are in 2x2-merge order
        changed = pixels.clone()
        changed[start + patch * n + position] += 3.0
        after = merged_tokens(tower, changed, grid_thw)
    diff = (after - before).abs().sum(-1)
    merged_start = start // 4
    expected = {merged_start + k * (n // 4) + position // 4 for k in range(t)}
    assert set(torch.nonzero(diff > 1e-6).flatten().tolist()) == expected


def test_layers_subset_and_order_build_the_requested_structure(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    stave.add_temporal_attention(model, layers=[1], order="temporal_first", head_scale=0.5)
    tower = stave.vision_tower(model)
    assert [hasattr(b, "temp_attn") for b in tower.blocks] == [i == 1 for i in range(len(tower.blocks))]
    block = tower.blocks[1]
    assert isinstance(block.temp_attn.qkv, nn.Linear) and isinstance(block.temp_attn.proj, nn.Linear)
    assert type(block.norm3) is type(block.norm1)
    spatial_heads = model.config.vision_config.num_heads
    assert block.temp_attn.num_heads == round(spatial_heads * 0.5)
    assert block.temp_attn.proj.in_features == block.temp_attn.num_heads * block.temp_attn.head_dim
    names = {n for n, _ in stave.temporal_parameters(model)}
    assert all(".blocks.1.temp_attn." in n or ".blocks.1.norm3." in n for n in names)

    calls = []
    for name in ("attn", "temp_attn", "mlp"):
        getattr(block, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    pixels, grid_thw = _tower_inputs(model, [(2, 4, 4)])
    with torch.no_grad():
        merged_tokens(tower, pixels, grid_thw)
    assert calls == ["temp_attn", "attn", "mlp"]


def test_spatial_first_runs_temporal_between_attention_and_mlp(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    stave.add_temporal_attention(model)
    block = stave.vision_tower(model).blocks[0]
    calls = []
    for name in ("attn", "temp_attn", "mlp"):
        getattr(block, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    pixels, grid_thw = _tower_inputs(model, [(2, 4, 4)])
    with torch.no_grad():
        merged_tokens(stave.vision_tower(model), pixels, grid_thw)
    assert calls == ["attn", "temp_attn", "mlp"]


def test_norm_types_follow_the_family():
    qwen2 = stave.add_temporal_attention(tiny_model("tiny-qwen2-vl"))
    qwen25 = stave.add_temporal_attention(tiny_model("tiny-qwen2.5-vl"))
    assert isinstance(stave.vision_tower(qwen2).blocks[0].norm3, nn.LayerNorm)
    norm = stave.vision_tower(qwen25).blocks[0].norm3
    assert "RMSNorm" in type(norm).__name__ and not hasattr(norm, "bias")


def test_only_temporal_parameters_train_and_all_of_them_learn(preset):
    model = tiny_model(preset).train()
    stave.add_temporal_attention(model)
    temporal = dict(stave.temporal_parameters(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in temporal)
    optimizer = torch.optim.AdamW([p for p in temporal.values()], lr=1e-2)
    inputs = model_inputs(model, videos=[(4, 4, 4), (2, 4, 6)], images=[(1, 4, 4)])
    labels = inputs["input_ids"].clone()

    model(**inputs, labels=labels).loss.backward()
    for name, param in model.named_parameters():
        if name not in temporal:
            assert param.grad is None, name
    for name, param in temporal.items():
        assert param.grad is not None, name
        if ".temp_attn.proj." in name:
            assert param.grad.abs().max() > 0, name  # zero init: only proj gets signal at step 0
        else:
            assert param.grad.abs().max() == 0, name

    optimizer.step()
    optimizer.zero_grad()
    model(**inputs, labels=labels).loss.backward()
    for name, param in temporal.items():
        assert param.grad.abs().max() > 0, name


# Largest error allowed in half precision, as a share of STA's contribution to the output (the largest change
# of an output value when STA's output projection is zeroed: 0.070 on tiny Qwen2-VL, 0.079 on tiny Qwen2.5-VL).
# Measured errors: 0.6-0.9% of it in bfloat16 (5.0e-4 to 6.3e-4), 0.1% in float16 (6.4e-5 to 7.7e-5); a tower
# that skipped STA would be off by the whole contribution.
HALF_PRECISION_SHARE = {torch.bfloat16: 0.03, torch.float16: 0.005}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_runs_in_every_dtype_and_attention_backend(preset, attn, dtype):
    packed_towers_only(preset)
    model = tiny_model(preset, attn_implementation=attn)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    tower = stave.vision_tower(model)
    pixels, grid_thw = _tower_inputs(model, [(4, 4, 4), (1, 4, 4), (2, 4, 6)])
    without_sta = copy.deepcopy(tower)
    for block in without_sta.blocks:
        nn.init.zeros_(block.temp_attn.proj.weight)
        nn.init.zeros_(block.temp_attn.proj.bias)
    with torch.no_grad():
        reference = merged_tokens(tower, pixels, grid_thw)  # float32
        contribution = (reference - merged_tokens(without_sta, pixels, grid_thw)).abs().max()
        out = merged_tokens(tower.to(dtype), pixels.to(dtype), grid_thw)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert contribution > 0.05
    tolerance = 1e-5 if dtype == torch.float32 else HALF_PRECISION_SHARE[dtype] * contribution
    assert (out.float() - reference).abs().max() < tolerance


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(preset, reentrant):
    packed_towers_only(preset)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(preset).train()
        stave.add_temporal_attention(model)
        randomize_temporal(model)
        if checkpointing:
            enable_checkpointing(model, reentrant)
            assert all(block.gradient_checkpointing for block in stave.vision_tower(model).blocks)
        inputs = model_inputs(model, videos=[(4, 4, 4), (2, 4, 6)], images=[(1, 4, 4)])
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        grads.append({n: p.grad.clone() for n, p in stave.temporal_parameters(model)})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_vision_tower_compiles(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    tower = stave.vision_tower(model)
    pixels, grid_thw = _tower_inputs(model, [(4, 4, 4), (1, 4, 4)])
    with torch.no_grad():
        eager = merged_tokens(tower, pixels, grid_thw)
        compiled = merged_tokens(torch.compile(tower, backend="eager"), pixels, grid_thw)
    torch.testing.assert_close(compiled, eager)


def test_bare_tower_and_base_model_are_accepted(preset):
    model = tiny_model(preset)
    tower = stave.vision_tower(model)
    assert stave.add_temporal_attention(tower) is tower
    assert stave.temporal_config(model) is not None

    base = tiny_model(preset).model
    stave.add_temporal_attention(base)
    assert len(stave.temporal_parameters(base)) > 0


def test_unsupported_model_raises_type_error_listing_families():
    with pytest.raises(TypeError, match=r"Qwen2-VL.*Qwen2\.5-VL.*got Linear"):
        stave.add_temporal_attention(nn.Linear(2, 2))


def test_adding_twice_is_refused(preset):
    model = stave.add_temporal_attention(tiny_model(preset))
    with pytest.raises(RuntimeError, match="already has temporal attention"):
        stave.add_temporal_attention(model)


def test_layers_out_of_range_are_refused(preset):
    with pytest.raises(ValueError, match=r"layers \[7\] out of range"):
        stave.add_temporal_attention(tiny_model(preset), layers=[0, 7])


def test_grid_inconsistent_with_pixels_names_both_numbers(preset):
    packed_towers_only(preset)
    model = stave.add_temporal_attention(tiny_model(preset))
    pixels, _ = _tower_inputs(model, [(2, 4, 4)])
    with pytest.raises(ValueError, match=r"describes 64 patches.*received 32 rows"):
        merged_tokens(stave.vision_tower(model), pixels, torch.tensor([[4, 4, 4]]))


def test_config_is_recorded_in_the_vision_config(preset):
    model = stave.add_temporal_attention(tiny_model(preset), head_scale=0.5, layers=[0])
    recorded = model.config.to_dict()["vision_config"]["temporal_attention"]
    assert stave.TemporalConfig.from_dict(recorded) == stave.TemporalConfig(head_scale=0.5, layers=[0])


def test_blocks_dispatched_by_accelerate_still_run_temporal_attention(preset):
    """device_map="auto" wraps each block's forward on the instance; STA must not be bypassed."""
    packed_towers_only(preset)
    hooks = pytest.importorskip("accelerate.hooks")
    model = tiny_model(preset)
    tower = stave.vision_tower(model)
    for block in tower.blocks:
        hooks.add_hook_to_module(block, hooks.ModelHook())
    pixels, grid_thw = _tower_inputs(model, [(4, 4, 4)])
    with torch.no_grad():
        base = merged_tokens(tower, pixels, grid_thw)
        stave.add_temporal_attention(model, init="random")
        assert (merged_tokens(tower, pixels, grid_thw) - base).abs().max() > 1e-3


def test_block_with_unknown_instance_forward_is_refused(preset):
    packed_towers_only(preset)
    model = tiny_model(preset)
    block = stave.vision_tower(model).blocks[0]
    block.forward = lambda *args, **kwargs: None
    with pytest.raises(RuntimeError, match="block 0 has a forward set on the instance"):
        stave.add_temporal_attention(model)


def test_checkpointed_block_recomputes_sta_in_its_own_backward(preset):
    """Under gradient checkpointing STA runs three times per step (forward, the block's recomputation, and
    its own recomputation in backward), so its activations never add to the block's peak."""
    packed_towers_only(preset)
    model = tiny_model(preset).train()
    stave.add_temporal_attention(model)
    enable_checkpointing(model, reentrant=False)
    calls = []
    block = stave.vision_tower(model).blocks[0]
    block.temp_attn.register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    inputs = model_inputs(model, videos=[(4, 4, 4)])
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert len(calls) == 1
    loss.backward()
    assert len(calls) == 3
