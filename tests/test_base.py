"""The shipped tiny base (stave.base): its weights load, it localises objects on fresh images, its tokenizer covers
every synthetic text, and the recipe that made it runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer

from stave.base import POSITION_BAR, TINY_BASE, check_base, resolve_model
from stave.checkpoint import load_model
from stave.presets import TINY_PRESETS
from stave.synthetic import generate
from stave.training import load_recipe, train

REPO = Path(__file__).resolve().parents[1]


def test_shipped_weights_are_small_and_load_as_the_tiny_base_architecture():
    weights = TINY_BASE / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 8 * 1024**2
    assert resolve_model("stave/tiny-base") == TINY_BASE
    model = load_model(TINY_BASE, dtype=torch.float32)
    _, vision, text = TINY_PRESETS["tiny-base"]
    assert model.config.vision_config.depth == vision["depth"]
    assert model.config.text_config.hidden_size == text["hidden_size"]
    assert 2_000_000 < sum(p.numel() for p in model.parameters()) < 5_000_000
    run = json.loads((TINY_BASE / "stave-run.json").read_text())
    assert run["trains"] == ["full"]  # made by configs/tiny-pretrain.yaml's pretrain stage


def test_shipped_base_localises_objects_on_a_fresh_sample(tmp_path):
    result = check_base(n=60, seed=4242, output=tmp_path / "check", progress=False)
    position = [result["accuracy"][kind]["image"] for kind in ("horizontal", "vertical")]
    assert sum(n for _, n in position) == 120
    assert result["position_images"] >= POSITION_BAR, result["accuracy"]
    assert result["passed"]


def test_the_base_tokenizer_knows_every_word_of_every_synthetic_task(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(TINY_BASE)
    data = generate(tmp_path / "all", n=60, seed=3).out  # every task
    unknown = tokenizer.convert_tokens_to_ids("[UNK]")
    for line in (data / "train.jsonl").read_text().splitlines():
        for turn in json.loads(line)["conversations"]:
            ids = tokenizer(turn["value"].replace("<video>", ""))["input_ids"]
            assert unknown not in ids, turn["value"]


def test_the_pretraining_recipe_runs_from_the_random_preset(tmp_path):
    data = generate(tmp_path / "stills", n=8, seed=1, tasks=("still",), images=True).out
    recipe = load_recipe(
        REPO / "configs" / "tiny-pretrain.yaml",
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.datasets.0.path={data / 'train.jsonl'}",
            "training.max_steps=2",
            "training.per_device_train_batch_size=4",
        ],
    )
    before = load_model(TINY_BASE, dtype=torch.float32)  # only to compare shapes with what the recipe builds
    model_dir = train(recipe)
    trained = load_model(model_dir)
    assert {n: p.shape for n, p in trained.named_parameters()} == {n: p.shape for n, p in before.named_parameters()}
    run = json.loads((model_dir / "stave-run.json").read_text())
    assert run["trainable"]["other"] + run["trainable"]["head"] == sum(p.numel() for p in trained.parameters())
