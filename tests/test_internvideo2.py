"""The plain-PyTorch InternVideo2 classifier: the published key layout loads key for key (a missing, unexpected or
misshapen key is named), the .pth converter reads only with weights_only and round-trips, save/load round-trips,
clips of other frame counts and sizes run on an interpolated position table, bad clip shapes are named."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import stave
from stave.classifiers import (
    InternVideo2Config,
    InternVideo2ForVideoClassification,
    WeightsError,
    convert_checkpoint,
    load_public_state_dict,
    read_torch_checkpoint,
    sincos_table,
)
from stave.presets import CLASSIFIER_PRESETS, TINY_CLASSIFIERS, tiny_classifier

pytestmark = pytest.mark.version_independent

CONFIG = InternVideo2Config(**{**TINY_CLASSIFIERS["internvideo2"][1], "num_labels": 5})


def public_state_dict(config: InternVideo2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the names and shapes of the authors' single-modality classifier (written out here from
    their module layout, independently of stave's modules)."""
    g = torch.Generator().manual_seed(seed)
    d, m, c = config.hidden_size, config.intermediate_size, config.pool_size
    t, h, w = config.grid
    p, k = config.patch_size, config.tubelet_size
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + t * h * w, d),
        "patch_embed.proj.weight": (d, config.num_channels, k, p, p),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(config.depth):
        shapes.update({
            f"blocks.{i}.norm1.weight": (d,),
            f"blocks.{i}.attn.qkv.weight": (3 * d, d),
            f"blocks.{i}.attn.q_norm.weight": (d,),
            f"blocks.{i}.attn.k_norm.weight": (d,),
            f"blocks.{i}.attn.proj.weight": (d, d),
            f"blocks.{i}.attn.proj.bias": (d,),
            f"blocks.{i}.ls1.gamma": (d,),
            f"blocks.{i}.norm2.weight": (d,),
            f"blocks.{i}.mlp.fc1.weight": (m, d),
            f"blocks.{i}.mlp.fc1.bias": (m,),
            f"blocks.{i}.mlp.fc2.weight": (d, m),
            f"blocks.{i}.mlp.fc2.bias": (d,),
            f"blocks.{i}.ls2.gamma": (d,),
        })  # fmt: skip
    for part in ("q", "k", "v"):
        shapes[f"clip_projector.norm1_{part}.weight"] = (d,)
        shapes[f"clip_projector.norm1_{part}.bias"] = (d,)
        shapes[f"clip_projector.cross_attn.{part}.weight"] = (d, d)
        shapes[f"clip_projector.cross_attn.{part}_bias"] = (d,)
    shapes.update({
        "clip_projector.cross_attn.proj.weight": (c, d),
        "clip_projector.cross_attn.proj.bias": (c,),
        "fc_norm.weight": (c,),
        "fc_norm.bias": (c,),
        "head.weight": (config.num_labels, c),
        "head.bias": (config.num_labels,),
    })  # fmt: skip
    return {name: torch.randn(shape, generator=g) * 0.1 for name, shape in shapes.items()}


def clips(batch: int = 2, frames: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_public_layout_loads_with_every_key_used():
    state = public_state_dict(CONFIG)
    model = InternVideo2ForVideoClassification(CONFIG)
    load_public_state_dict(model, state, source="public.pth")
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda s: s.pop("blocks.1.attn.q_norm.weight"), "1 missing: blocks.1.attn.q_norm.weight"),
        (lambda s: s.update({"blocks.0.attn.qkv.bias": torch.zeros(96)}), "1 unexpected: blocks.0.attn.qkv.bias"),
        (lambda s: s.update({"pos_embed": torch.zeros(1, 65, 32)}), "pos_embed (1, 65, 32) (expected (1, 129, 32))"),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_a_key_that_does_not_fit_is_named(change, named):
    state = public_state_dict(CONFIG)
    change(state)
    with pytest.raises(WeightsError, match="public.pth") as error:
        load_public_state_dict(InternVideo2ForVideoClassification(CONFIG), state, source="public.pth")
    assert named in str(error.value)


@pytest.mark.parametrize("wrapper", [None, "module"])
def test_converter_round_trip_keeps_every_tensor(tmp_path, wrapper):
    state = {k: v.to(torch.bfloat16) for k, v in public_state_dict(CONFIG).items()}
    source = tmp_path / "1B_ft_ssv2_f8.pth"
    torch.save({wrapper: state} if wrapper else state, source)
    out = convert_checkpoint(source, tmp_path / "converted", InternVideo2Config(**TINY_CLASSIFIERS["internvideo2"][1]))
    assert json.loads((out / "config.json").read_text())["num_labels"] == 5  # read from head.weight
    model = stave.load_model(out)
    assert model.config.num_labels == 5
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == torch.bfloat16 and torch.equal(loaded[name], tensor), name


def test_converter_refuses_what_weights_only_cannot_read(tmp_path):
    source = tmp_path / "pickled.pth"
    torch.save({"model": public_state_dict(CONFIG), "args": _Arguments()}, source)
    refused = (
        r"pickled\.pth: torch\.load\(weights_only=True\) refused the file \(Unsupported global: GLOBAL [\w.]*_Arguments"
    )
    with pytest.raises(WeightsError, match=refused):
        read_torch_checkpoint(source)
    (tmp_path / "garbage.pth").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(WeightsError, match=r"garbage\.pth: not a readable PyTorch checkpoint \(PytorchStreamReader"):
        read_torch_checkpoint(tmp_path / "garbage.pth")


class _Arguments:  # what training scripts store next to the weights (an argparse.Namespace-like object)
    lr = 1e-4


def test_converter_names_a_key_the_configured_model_lacks(tmp_path):
    state = public_state_dict(CONFIG)
    state["pos_embed_temporal"] = torch.zeros(1, 8, 32)
    torch.save(state, tmp_path / "sep.pth")
    with pytest.raises(WeightsError, match=r"sep\.pth: .*1 unexpected: pos_embed_temporal"):
        convert_checkpoint(tmp_path / "sep.pth", tmp_path / "out", CONFIG)
    assert not (tmp_path / "out").exists()


def test_save_load_round_trip_reproduces_logits(tmp_path):
    model = tiny_classifier("internvideo2", num_labels=5)
    x = clips()
    with torch.no_grad():
        expected = model(pixel_values=x).logits
        model.save_pretrained(tmp_path / "saved")
        again = stave.load_model(tmp_path / "saved")(pixel_values=x).logits
    assert torch.equal(again, expected)
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["config.json", "model.safetensors"]


def test_from_pretrained_refuses_a_checkpoint_with_sta_and_names_load_model(tmp_path):
    model = tiny_classifier("internvideo2")
    stave.add_temporal_attention(model)
    model.save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="holds temporal attention .* stave.load_model"):
        InternVideo2ForVideoClassification.from_pretrained(tmp_path)
    assert stave.temporal_config(stave.load_model(tmp_path)) == stave.temporal_config(model)


def test_load_names_a_missing_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    directory = tmp_path / "saved"
    tiny_classifier("internvideo2").save_pretrained(directory)
    tensors = load_file(directory / "model.safetensors")
    del tensors["fc_norm.bias"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(WeightsError, match=r"model\.safetensors: .*1 missing: fc_norm\.bias"):
        stave.load_model(directory)


@pytest.mark.parametrize("frames, size", [(4, 16), (6, 16), (8, 12), (3, 20)])
def test_any_frame_count_and_size_runs_on_the_interpolated_table(frames, size):
    model = tiny_classifier("internvideo2")
    with torch.no_grad():
        logits = model(pixel_values=clips(frames=frames, size=size)).logits
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_position_table_is_interpolated_as_the_authors_fine_tuning_does():
    model = tiny_classifier("internvideo2")
    stored = model.pos_embed
    assert model.position_table(8, 4, 4) is stored
    with torch.no_grad():
        stored.normal_()
        half = model.position_table(4, 4, 4)
        grid = stored[0, 1:].view(8, 16, -1)
        # linear, align_corners=False, 8 -> 4: new frame i sits at 2i + 0.5, halfway between stored frames 2i, 2i+1
        torch.testing.assert_close(half[0, 1:].view(4, 16, -1), (grid[0::2] + grid[1::2]) / 2)
        assert torch.equal(half[:, 0], stored[:, 0])  # the CLS row as stored
        larger = model.position_table(8, 6, 6)[0, 1:].view(8, 6, 6, -1)
        planes = stored[0, 1:].view(8, 4, 4, -1).permute(0, 3, 1, 2)
        bicubic = F.interpolate(planes, size=(6, 6), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        torch.testing.assert_close(larger, bicubic)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 8, 3, 15, 16), "height 15 is not a positive multiple of patch_size 4"),
        ((2, 8, 1, 16, 16), "1 channels, the model takes 3"),
        ((2, 0, 3, 16, 16), "0 frames"),
        ((8, 3, 16, 16), r"\(batch, frames, channels, height, width\)"),
    ],
)
def test_a_clip_that_does_not_fit_is_named(shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_classifier("internvideo2")(pixel_values=torch.zeros(shape))


def test_frame_count_not_a_multiple_of_the_tubelet_is_named():
    model = tiny_classifier("internvideo2", tubelet_size=2)
    with pytest.raises(ValueError, match="5 frames, which is not a positive multiple of tubelet_size 2"):
        model(pixel_values=clips(frames=5))


def test_initial_table_is_the_authors_3d_sincos_table():
    """Their get_3d_sincos_pos_embed: D/4 channels encode time, 3D/4 the (column, row) pair, each 1-D code a sin half
    and a cos half with frequencies 1 / 10000^(i / (n/2)); CLS row zero."""
    dim, t, side = 64, 3, 5

    def code(n, position):
        omega = [1 / 10000 ** (i / (n / 2)) for i in range(n // 2)]
        return [math.sin(position * o) for o in omega] + [math.cos(position * o) for o in omega]

    rows = [[0.0] * dim]
    for time in range(t):
        for row in range(side):
            for col in range(side):
                rows.append(code(dim // 4, time) + code(dim // 4 * 3 // 2, col) + code(dim // 4 * 3 // 2, row))
    torch.testing.assert_close(sincos_table(dim, t, side, side)[0], torch.tensor(rows), atol=1e-6, rtol=0)


def test_labels_give_the_cross_entropy_loss():
    model = tiny_classifier("internvideo2")
    labels = torch.tensor([3, 0])
    out = model(pixel_values=clips(), labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tiny_classifier("internvideo2", drop_path_rate=0.0).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(pixel_values=clips(), labels=torch.tensor([1, 2])).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_published_presets_have_the_published_sizes():
    from stave.presets import classifier

    counts = {
        name: sum(p.numel() for p in classifier(name).parameters()) for name in ("internvideo2-1b", "internvideo2-6b")
    }
    # 1B: 40 blocks of width 1408; 6B: 48 of 3200 (the names round the counts)
    assert 0.95e9 < counts["internvideo2-1b"] < 1.1e9
    assert 5.5e9 < counts["internvideo2-6b"] < 6.2e9
    assert CLASSIFIER_PRESETS["internvideo2-1b"][1]["intermediate_size"] == int(1408 * 48 / 11)


def test_convert_command_writes_a_directory_load_model_reads(tmp_path, capsys):
    from stave.cli import main

    state = public_state_dict(CONFIG)
    torch.save(state, tmp_path / "ft.pth")
    # the tiny architecture is not a preset: give the command a preset whose shape the file does not have
    assert (
        main(["convert-internvideo2", str(tmp_path / "ft.pth"), str(tmp_path / "out"), "--preset", "internvideo2-1b"])
        == 2
    )
    assert "ft.pth: the weights do not fit the model" in capsys.readouterr().err
    out = convert_checkpoint(tmp_path / "ft.pth", tmp_path / "out", CONFIG)
    assert torch.equal(stave.load_model(out).head.weight, state["head.weight"])
