"""add_temporal_attention on the tiny random model of every family, driven through its adapter (stave.testing:
model_inputs, video_inputs, tower_items): identity at zero init, image skipping, per-item separation, own-token
placement through the whole tower (window-permuted on Qwen2.5-VL), structure, gradients, dtypes and gradient
checkpointing. Properties of the tower alone run once per distinct tower (`tower_preset`)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from conftest import enable_checkpointing, example_batch, merged_tokens, random_frames, randomize_temporal
from torch import nn

import stave
from stave.models import find_vision_tower
from stave.presets import tiny_model
from stave.testing import model_inputs, random_pixels, tower_items, video_inputs


def _blocks(model) -> nn.ModuleList:
    family, tower = find_vision_tower(model)
    return family.blocks(tower)


def _flat(items) -> torch.Tensor:
    """Every output value of every item, in one vector."""
    return torch.cat([outputs.flatten() for _, outputs in items])


def _one_video(model) -> tuple[int, int, int]:
    """The grid of the first video of the family's example batch (Qwen: (4, 4, 4); frame towers: 4 frames)."""
    return example_batch(model)["videos"][0]


def _spatial_modules(model) -> tuple[str, str]:
    """The names (within a block) of the spatial attention and the MLP: the modules of its first and last LoRA
    linear (attn / self_attn / attention, mlp)."""
    linears = find_vision_tower(model)[0].vision_linears
    return linears[0].split(".")[0], linears[-1].split(".")[0]


@pytest.mark.parametrize("order", ["spatial_first", "temporal_first"])
@pytest.mark.parametrize("batch", ["video", "images", "mixed"])
def test_zero_init_is_exact_identity(tower_preset, order, batch):
    model = tiny_model(tower_preset)
    example = example_batch(model)
    batch = {"video": dict(videos=example["videos"][:1]), "images": dict(images=example["images"] * 2),
             "mixed": example}[batch]  # fmt: skip
    inputs = model_inputs(model, **batch)
    with torch.no_grad():
        base_logits = model(**inputs).logits
        base_items = tower_items(model, inputs)
        stave.add_temporal_attention(model, order=order)
        logits = model(**inputs).logits
        items = tower_items(model, inputs)
    assert [video for video, _ in items] == [video for video, _ in base_items]
    assert (_flat(items) - _flat(base_items)).abs().max() <= 1e-6  # every item (Qwen3-VL: deepstack features too)
    assert (logits - base_logits).abs().max() <= 1e-6


def test_layerscale_gate_starts_as_identity_and_scales_the_update(tower_preset):
    """gate="layerscale": every STA block gets `temp_attn.gate` (D,) at gate_init; with the zero-initialised
    projection the model is unchanged; with random STA weights the tower's change follows the gate's size."""
    model = tiny_model(tower_preset)
    inputs = model_inputs(model, **example_batch(model))
    video = model_inputs(model, videos=[_one_video(model)])
    with torch.no_grad():
        base_logits = model(**inputs).logits
        base = _flat(tower_items(model, video))
        stave.add_temporal_attention(model, gate="layerscale", gate_init=1e-3)
        assert (model(**inputs).logits - base_logits).abs().max() <= 1e-6
    gates = [p for n, p in stave.temporal_parameters(model) if n.endswith("temp_attn.gate")]
    assert len(gates) == sum(hasattr(block, "temp_attn") for block in _blocks(model)) > 0
    assert all(torch.equal(g, torch.full_like(g, 1e-3)) for g in gates)
    randomize_temporal(model)
    changes = []
    for value in (1e-3, 1.0):
        with torch.no_grad():
            for gate in gates:
                gate.fill_(value)
            changes.append((_flat(tower_items(model, video)) - base).abs().max())
    assert changes[1] > 0.01 and changes[0] < changes[1] * 3e-3


def test_random_sta_changes_videos_but_skipped_images_stay_identical(tower_preset):
    model = tiny_model(tower_preset)
    inputs = model_inputs(model, **example_batch(model))
    with torch.no_grad():
        base = tower_items(model, inputs)
        stave.add_temporal_attention(model, init="random")
        out = tower_items(model, inputs)
    assert sorted(video for video, _ in out) == [False, True, True]
    for (video, before), (_, after) in zip(base, out, strict=True):
        if video:
            assert (after - before).abs().max() > 1e-3
        else:
            assert torch.equal(after, before)


def test_images_apply_changes_exactly_the_images_the_family_makes_single_frame_items(tower_preset):
    """images="apply": STA runs on every image the family's layout holds as a single-frame item (Qwen: each image;
    InternVL: each tile), and never on one it holds as no temporal item at all (LLaVA-OneVision: images and their
    tiles are not time)."""
    model = tiny_model(tower_preset)
    family, tower = find_vision_tower(model)
    args, kwargs = family.media.minimal_tower_input(tower)
    single_frame = all(temporal for _, _, temporal in family.temporal_items(tower, args, kwargs))
    inputs = model_inputs(model, images=example_batch(model)["images"] * 2)
    with torch.no_grad():
        base = _flat(tower_items(model, inputs))
        stave.add_temporal_attention(model, init="random", images="apply")
        change = (_flat(tower_items(model, inputs)) - base).abs().max()
    assert change > 1e-3 if single_frame else change == 0


def test_reversing_the_temporal_steps_changes_the_output_only_with_sta(tower_preset):
    """A held video (each temporal step one still frame) and its reverse: without STA the tower encodes each step
    alone, so the outputs are the same steps reversed; with random STA they differ."""
    model = tiny_model(tower_preset)
    frames = random_frames(model, _one_video(model), held=True)
    inputs, reversed_inputs = video_inputs(model, [frames]), video_inputs(model, [frames.flip(0)])

    def steps_and_reversed():
        with torch.no_grad():
            return tower_items(model, inputs)[0][1], tower_items(model, reversed_inputs)[0][1].flip(0)

    out, out_rev = steps_and_reversed()
    assert out.shape[0] > 1
    torch.testing.assert_close(out, out_rev, atol=1e-5, rtol=1e-5)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    out, out_rev = steps_and_reversed()
    assert (out - out_rev).abs().max() > 1e-3


def test_each_video_is_the_same_alone_and_batched(tower_preset):
    model = tiny_model(tower_preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    grids = example_batch(model)["videos"]
    clips = [random_frames(model, grid, seed=k) for k, grid in enumerate([*grids, *grids])]
    with torch.no_grad():
        together = tower_items(model, video_inputs(model, clips))
        assert len(together) == len(clips)
        for clip, (_, batched) in zip(clips, together, strict=True):
            alone = tower_items(model, video_inputs(model, [clip]))[0][1]
            torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_update_lands_on_its_own_token_through_the_tower(tower_preset):
    """With spatial attention and MLP silenced, a block is x + STA(norm3(x)): changing one patch of one frame
    changes one token of its temporal step without STA, and with STA that token in every step of its video,
    nothing else — also under Qwen2.5-VL's window permutation (frames of 8 x 8 patches, windows of 4 x 4)."""
    model = tiny_model(tower_preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    with torch.no_grad():
        for block in _blocks(model):
            for name in _spatial_modules(model):
                for param in getattr(block, name).parameters():
                    param.zero_()
    family, tower = find_vision_tower(model)
    spec = family.media.patch_spec(model.config.vision_config)
    t, h, w = _one_video(model)[0], 8, 8  # frame-per-image towers: their frame size
    clips = [random_frames(model, (t, h, w), seed=k) for k in range(3)]
    changed = [clip.clone() for clip in clips]
    p, row, column = spec.patch_size, 1, 2
    changed[1][t * spec.temporal_patch_size // 2, :, p * row : p * row + p, p * column : p * column + p] ^= 0x80
    without = copy.deepcopy(tower)
    for block in family.blocks(without):
        if hasattr(block, "temp_attn"):  # blocks after a feature layer get none
            nn.init.zeros_(block.temp_attn.proj.weight)
            nn.init.zeros_(block.temp_attn.proj.bias)

    def changed_tokens(module):
        with torch.no_grad():
            before = tower_items(model, video_inputs(model, clips), module)
            after = tower_items(model, video_inputs(model, changed), module)
        return [set(map(tuple, torch.nonzero((a - b).abs().sum(-1) > 1e-6).tolist()))
                for (_, b), (_, a) in zip(before, after, strict=True)]  # fmt: skip

    plain = changed_tokens(without)
    assert plain[0] == plain[2] == set() and len(plain[1]) == 1
    ((step, token),) = plain[1]
    assert changed_tokens(tower) == [set(), {(k, token) for k in range(t)}, set()]


def test_layers_subset_and_order_build_the_requested_structure(tower_preset):
    model = tiny_model(tower_preset)
    stave.add_temporal_attention(model, layers=[1], order="temporal_first", head_scale=0.5)
    family = find_vision_tower(model)[0]
    blocks = _blocks(model)
    assert [hasattr(b, "temp_attn") for b in blocks] == [i == 1 for i in range(len(blocks))]
    block = blocks[1]
    assert isinstance(block.temp_attn.qkv, nn.Linear) and isinstance(block.temp_attn.proj, nn.Linear)
    assert type(block.norm3) is type(family.make_norm(block, family.width(model.config.vision_config)))
    spatial_heads = family.spatial_heads(model.config.vision_config)
    assert block.temp_attn.num_heads == round(spatial_heads * 0.5)
    assert block.temp_attn.proj.in_features == block.temp_attn.num_heads * block.temp_attn.head_dim
    names = {n for n, _ in stave.temporal_parameters(model)}
    assert names and all(re.search(r"\.1\.(temp_attn|norm3)\.", n) for n in names)

    calls = []
    attention, mlp = _spatial_modules(model)
    for name in (attention, "temp_attn", mlp):
        getattr(block, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    with torch.no_grad():
        tower_items(model, model_inputs(model, videos=[_one_video(model)]))
    assert calls == ["temp_attn", attention, mlp]


def test_spatial_first_runs_temporal_between_attention_and_mlp(tower_preset):
    model = tiny_model(tower_preset)
    stave.add_temporal_attention(model)
    block = _blocks(model)[0]
    calls = []
    attention, mlp = _spatial_modules(model)
    for name in (attention, "temp_attn", mlp):
        getattr(block, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    with torch.no_grad():
        tower_items(model, model_inputs(model, videos=[_one_video(model)]))
    assert calls == [attention, "temp_attn", mlp]


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
    inputs = model_inputs(model, **example_batch(model))
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
def test_runs_in_every_dtype_and_attention_backend(tower_preset, attn, dtype):
    model = tiny_model(tower_preset, attn_implementation=attn)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    family, tower = find_vision_tower(model)
    inputs = model_inputs(model, **example_batch(model))
    without_sta = copy.deepcopy(tower)
    for block in family.blocks(without_sta):
        if hasattr(block, "temp_attn"):  # blocks after a feature layer get none
            nn.init.zeros_(block.temp_attn.proj.weight)
            nn.init.zeros_(block.temp_attn.proj.bias)
    with torch.no_grad():
        reference = _flat(tower_items(model, inputs))  # float32
        contribution = (reference - _flat(tower_items(model, inputs, without_sta))).abs().max()
        out = _flat(tower_items(model, inputs, tower.to(dtype)))  # the pixels cast to the tower's dtype
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert contribution > 0.05
    tolerance = 1e-5 if dtype == torch.float32 else HALF_PRECISION_SHARE[dtype] * contribution
    assert (out.float() - reference).abs().max() < tolerance


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(tower_preset, reentrant):
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(tower_preset).train()
        stave.add_temporal_attention(model)
        randomize_temporal(model)
        if checkpointing:
            enable_checkpointing(model, reentrant)
            assert all(block.gradient_checkpointing for block in _blocks(model))
        inputs = model_inputs(model, **example_batch(model))
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        grads.append({n: p.grad.clone() for n, p in stave.temporal_parameters(model)})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_vision_tower_compiles(tower_preset):
    model = tiny_model(tower_preset)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    tower = stave.vision_tower(model)
    inputs = model_inputs(model, videos=[_one_video(model)], images=example_batch(model)["images"])
    with torch.no_grad():
        eager = _flat(tower_items(model, inputs))
        compiled = _flat(tower_items(model, inputs, torch.compile(tower, backend="eager")))
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


def test_grid_inconsistent_with_pixels_names_both_numbers(packed_preset):
    model = stave.add_temporal_attention(tiny_model(packed_preset))
    pixels, _ = random_pixels([(2, 4, 4)], model.config.vision_config)
    with pytest.raises(ValueError, match=r"describes 64 patches.*received 32 rows"):
        merged_tokens(stave.vision_tower(model), pixels, torch.tensor([[4, 4, 4]]))


def test_config_is_recorded_in_the_vision_config(preset):
    model = stave.add_temporal_attention(tiny_model(preset), head_scale=0.5, layers=[0])
    recorded = model.config.to_dict()["vision_config"]["temporal_attention"]
    assert stave.TemporalConfig.from_dict(recorded) == stave.TemporalConfig(head_scale=0.5, layers=[0])


def test_blocks_dispatched_by_accelerate_still_run_temporal_attention(tower_preset):
    """device_map="auto" wraps each block's forward on the instance; STA must not be bypassed."""
    hooks = pytest.importorskip("accelerate.hooks")
    model = tiny_model(tower_preset)
    for block in _blocks(model):
        hooks.add_hook_to_module(block, hooks.ModelHook())
    inputs = model_inputs(model, videos=[_one_video(model)])
    with torch.no_grad():
        base = _flat(tower_items(model, inputs))
        stave.add_temporal_attention(model, init="random")
        assert (_flat(tower_items(model, inputs)) - base).abs().max() > 1e-3


def test_block_with_unknown_instance_forward_is_refused(tower_preset):
    model = tiny_model(tower_preset)
    block = _blocks(model)[0]
    block.forward = lambda *args, **kwargs: None
    with pytest.raises(RuntimeError, match="block 0 has a forward set on the instance"):
        stave.add_temporal_attention(model)


def test_checkpointed_block_recomputes_sta_in_its_own_backward(tower_preset):
    """Under gradient checkpointing STA runs three times per step (forward, the block's recomputation, and
    its own recomputation in backward), so its activations never add to the block's peak."""
    model = tiny_model(tower_preset).train()
    stave.add_temporal_attention(model)
    enable_checkpointing(model, reentrant=False)
    calls = []
    block = _blocks(model)[0]
    block.temp_attn.register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    inputs = model_inputs(model, videos=[_one_video(model)])
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert len(calls) == 1
    loss.backward()
    assert len(calls) == 3
