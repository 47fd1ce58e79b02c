"""save_pretrained -> load_model round trips, and refusal of checkpoints whose temporal tensors don't match."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import example_batch, randomize_temporal
from safetensors.torch import load_file, save_file

import stave
from stave.presets import tiny_model
from stave.testing import model_inputs


def _key(tensors, index: int, suffix: str) -> str:
    """The stored name of block `index`'s tensor `suffix`, whatever the family calls its block list (blocks.N.,
    layers.N., InternViT's layer.N.)."""
    return next(k for k in sorted(tensors) if re.search(rf"(?:^|\.){index}\.{re.escape(suffix)}$", k))


def _in_block(name: str, index: int) -> str:
    """`name` with its block index replaced by `index`."""
    return re.sub(r"\.\d+\.(temp_attn|norm3)\.", rf".{index}.\1.", name)


def _logits(model, inputs):
    with torch.no_grad():
        return model.eval()(**inputs).logits


def _saved(preset, tmp_path, **temporal):
    model = stave.add_temporal_attention(tiny_model(preset), **temporal)
    randomize_temporal(model)
    model.save_pretrained(tmp_path)
    return model


def test_round_trip_reproduces_outputs_exactly(preset, tmp_path):
    settings = dict(layers=[0, 1], head_scale=0.5, order="temporal_first", gate="layerscale", gate_init=1e-4)
    model = _saved(preset, tmp_path, **settings)
    inputs = model_inputs(model, **example_batch(model))
    loaded = stave.load_model(tmp_path)
    assert stave.temporal_config(loaded) == stave.TemporalConfig(**settings)
    assert torch.equal(_logits(loaded, inputs), _logits(model, inputs))
    saved = dict(stave.temporal_parameters(model))
    restored = dict(stave.temporal_parameters(loaded))
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)


def test_plain_checkpoint_gets_zero_initialised_sta(preset, tmp_path):
    plain = tiny_model(preset)
    plain.save_pretrained(tmp_path)
    inputs = model_inputs(plain, videos=[(4, 4, 4)])
    loaded = stave.load_model(tmp_path, temporal=stave.TemporalConfig())
    assert len(stave.temporal_parameters(loaded)) > 0
    assert (_logits(loaded, inputs) - _logits(plain, inputs)).abs().max() <= 1e-6
    assert stave.temporal_config(stave.load_model(tmp_path)) is None  # without `temporal`: the stock model


def _rewrite(tmp_path, change):
    file = tmp_path / "model.safetensors"
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file, metadata={"format": "pt"})
    return tensors


def test_missing_temporal_tensor_is_refused_by_name(preset, tmp_path):
    _saved(preset, tmp_path)
    dropped = []

    def drop(tensors):
        name = _key(tensors, 1, "temp_attn.qkv.weight")
        dropped.append(name)
        del tensors[name]

    _rewrite(tmp_path, drop)
    with pytest.raises(ValueError, match=r"missing from the checkpoint: blocks\.1\.temp_attn\.qkv\.weight"):
        stave.load_model(tmp_path)


def test_extra_temporal_tensor_is_refused_by_name(preset, tmp_path):
    _saved(preset, tmp_path, layers=[0])

    def add(tensors):
        name = _key(tensors, 0, "temp_attn.proj.bias")
        tensors[_in_block(name, 1)] = tensors[name].clone()

    _rewrite(tmp_path, add)
    with pytest.raises(ValueError, match=r"unexpected temporal tensor\(s\).*\.1\.temp_attn\.proj\.bias"):
        stave.load_model(tmp_path)


def test_misnamed_temporal_tensor_is_refused_by_name(preset, tmp_path):
    _saved(preset, tmp_path)

    def rename(tensors):
        name = _key(tensors, 0, "temp_attn.proj.bias")
        tensors[name.replace("proj.bias", "proj.scale")] = tensors.pop(name)

    _rewrite(tmp_path, rename)
    with pytest.raises(ValueError, match=r"temp_attn\.proj\.(bias|scale)"):
        stave.load_model(tmp_path)


def test_wrong_shape_is_refused_by_name(preset, tmp_path):
    _saved(preset, tmp_path)

    def shrink(tensors):
        name = _key(tensors, 0, "temp_attn.proj.bias")
        tensors[name] = tensors[name][:-1].clone()

    _rewrite(tmp_path, shrink)
    with pytest.raises(ValueError, match=r"temp_attn\.proj\.bias has shape"):
        stave.load_model(tmp_path)


def test_temporal_tensors_without_config_entry_are_not_ignored(preset, tmp_path):
    """The authors' checkpoints: temporal tensors but no temporal entry in config.json."""
    model = _saved(preset, tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    del config["vision_config"]["temporal_attention"]
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"holds temporal-attention tensors .* pass temporal="):
        stave.load_model(tmp_path)
    loaded = stave.load_model(tmp_path, temporal=stave.TemporalConfig())
    inputs = model_inputs(model, videos=[(4, 4, 4)])
    assert torch.equal(_logits(loaded, inputs), _logits(model, inputs))


def test_config_disagreeing_with_checkpoint_is_refused(preset, tmp_path):
    _saved(preset, tmp_path, head_scale=0.5)
    with pytest.raises(ValueError, match="records temporal attention"):
        stave.load_model(tmp_path, temporal=stave.TemporalConfig(head_scale=0.25))


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        stave.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(TypeError, match="LlamaForCausalLM.*not supported"):
        stave.load_model(tmp_path)


def test_a_family_the_installed_transformers_lacks_is_named_with_the_version_it_needs(tmp_path):
    """Qwen3.5 exists from transformers 5 on: on 4.57 its checkpoints and tiny presets are refused naming that;
    on 5.x a checkpoint without "architectures" loads as its model_type's full model."""
    from conftest import FAMILIES

    if "tiny-qwen3.5" in FAMILIES:
        model = tiny_model("tiny-qwen3.5")
        model.save_pretrained(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        config.pop("architectures")
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert type(stave.load_model(tmp_path)).__name__ == "Qwen3_5ForConditionalGeneration"
        return
    with pytest.raises(ValueError, match=r"'qwen3_5' needs transformers >= 5 \(installed: 4\.57"):
        tiny_model("tiny-qwen3.5")
    config = {"model_type": "qwen3_5", "architectures": ["Qwen3_5ForConditionalGeneration"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match=r"config\.json: model_type 'qwen3_5' needs transformers >= 5"):
        stave.load_model(tmp_path)
