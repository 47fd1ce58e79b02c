"""Training: recipes, stages, data policy, sealed checkpoints, kill-and-resume, merged export, DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import require_deepspeed
from launchers import UNJOINED, launch
from training_data import tiny_recipe, write_dataset

import stave
from stave.config import TemporalConfig
from stave.presets import tiny_model
from stave.training import CheckpointError, DataError, RecipeError, load_recipe, train
from stave.training.data import read_records
from stave.training.recipe import DatasetSpec, LoraSection, StageSpec
from stave.training.stages import prepare_stage, trainable_counts

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), 8, text_only_at=1)


def losses(output: Path, stage: str) -> list[float]:
    state = json.loads(next((output / stage).glob("checkpoint-*/trainer_state.json")).read_text())
    return [row["loss"] for row in state["log_history"] if "loss" in row]


# --- recipes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_recipes_are_valid_except_for_their_data(path, tmp_path, monkeypatch):
    """Every shipped recipe passes the checks up to its data file, which is named when absent."""
    monkeypatch.chdir(tmp_path)  # recipes' relative paths start where stave runs: here, nothing exists
    with pytest.raises(RecipeError, match=r"data\.datasets\[0\]\.path: data file not found"):
        load_recipe(path)
    (tmp_path / "train.json").write_text("[]")
    datasets = range(len(yaml.safe_load(path.read_text())["data"]["datasets"]))  # a mix names several files
    files = [f"data.datasets.{i}.path={tmp_path / 'train.json'}" for i in datasets]
    recipe = load_recipe(path, [*files, *(f"data.datasets.{i}.root=null" for i in datasets)])
    stages = [(stage.name, stage.trains) for stage in recipe.stages]
    if path.name == "tiny-pretrain.yaml":  # the tiny base is trained from scratch, in full
        assert stages == [("pretrain", ["full"])]
    elif path.name.endswith("-lora.yaml"):  # a recipe's LoRA baseline: the comparison row, no STA
        assert stages == [("baseline", ["lora"])]
    elif path.name == "tiny-classifier.yaml":  # the tiny classifier, trained from scratch in full
        assert stages == [("full", ["full"])]
    elif recipe.task == "classification":  # the paper's row: STA (LayerScale gate at 1e-5) + a new head on the
        # fine-tuned classifier; its baseline: the same new head alone
        assert recipe.classification.new_head
        if "-sta" in path.name:
            assert stages == [("sta-head", ["temporal", "head"])]
            assert (recipe.temporal.gate, recipe.temporal.gate_init) == ("layerscale", 1e-5)
        else:
            assert stages == [("head", ["head"])]
    else:
        assert stages == [("stage1", ["temporal"]), ("stage2", ["temporal", "lora"])]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.pathh=x", r"model\.pathh"),
        ("lora.r=sixteen", r"lora\.r"),
        ("temporal.order=backwards", r"temporal\.order|order"),
        ("stages=[stage1,stage3]", r"unknown stage 'stage3'"),
        ("training.learning_rat=1e-4", r"training\.learning_rat: not an option"),
        ("training.learning_rate=fast", r"training\.learning_rate: expected float"),
        ("training.max_steps=1.5", r"training\.max_steps: expected int"),
        ("training.output_dir=x", r"training\.output_dir: set by the recipe"),
        ("data.on_error=ignore", r"data\.on_error"),
        ("data.datasets.0.path=/no/such/file.json", r"data\.datasets\[0\]\.path: data file not found: /no/such"),
        ("data.datasets.0.subset=T11", r"unknown SSv2 subset 'T11'"),
        ("data.video.nframes=many", r"nframes"),
        ("stages=[]", r"at least one stage"),
        ("noequals", r"key=value"),
        ("stages=[{name: s, trains: [full, lora]}]", r"'full' trains every parameter"),
        ("stages=[{name: s, trains: [everything]}]", r"stages\[0\]\.trains"),
        ("data.datasets.0.tasks=7", r"tasks"),
        # TrainingArguments' own field types, recipe-wide and per stage (YAML reads an unquoted no as False)
        ("training.save_strategy=no", r"training\.save_strategy: expected one of 'no', .*False.*save_strategy: \"no\""),
        ("stages.0.training.save_strategy=off", r"stages\[0\] \(stage1\): training\.save_strategy: .*got False"),
        ("training.lr_scheduler_type=cosinus", r"training\.lr_scheduler_type: expected one of 'linear'.*got 'cosinus'"),
        ("training.report_to=[tensorboard, 3]", r"training\.report_to: expected None \| str \| list\[str\], got"),
        ("training.disable_tqdm=maybe", r"training\.disable_tqdm: expected bool \| None, got 'maybe'"),
        # stage names are folder names under output_dir, never paths
        ("stages=[{name: ../../x, trains: [lora]}]", r"stages\[0\]\.name: '\.\./\.\./x' is not a plain folder name"),
        ("stages=[{name: a/b, trains: [lora]}]", r"stages\[0\]\.name: 'a/b' is not a plain folder name"),
        ("stages=[{name: '..', trains: [lora]}]", r"stages\[0\]\.name: '\.\.' is not a plain"),
        ("stages=[{name: .hidden, trains: [lora]}]", r"stages\[0\]\.name: '\.hidden' is not a plain"),
        ("stages=[{name: '', trains: [lora]}]", r"stages\[0\]\.name: '' is not a plain"),
        ("stages=[stage1, {name: 'c:\\x', trains: [lora]}]", r"stages\[1\]\.name: .* is not a plain"),
        # data settings
        ("data.max_skipped_fraction=1.5", r"data\.max_skipped_fraction: must be in \[0, 1\]"),
        ("data.datasets.0.dataset=mllm", r"data\.datasets\[0\]\.dataset: names an entry .* dataset_info is missing"),
        ("data.datasets.0.dataset_info=/no/info.json", r"data\.datasets\[0\]: give path or dataset_info"),
    ],
)
def test_bad_recipe_values_fail_before_training_naming_the_key(data, tmp_path, override, message):
    with pytest.raises(RecipeError, match=message):
        train(tiny_recipe(data, tmp_path / "out"), [override])
    assert not (tmp_path / "out").exists()


def test_every_training_arguments_type_is_checked_and_its_default_passes():
    """The recipe check understands every field type of this transformers' TrainingArguments (a new type form
    raises TypeError instead of passing unchecked) and accepts every default."""
    import dataclasses

    from transformers import TrainingArguments

    from stave.training.recipe import _type_hints, accepts

    hints = _type_hints(TrainingArguments)
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        assert accepts(hints.get(f.name, f.type), default), (f.name, default)
    assert not accepts(hints["save_strategy"], False) and accepts(hints["save_strategy"], "no")
    assert not accepts(hints["max_steps"], True) and accepts(hints["learning_rate"], 1)


def test_bad_training_file_fails_before_training_naming_file_and_record(data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = data.read_text().splitlines()
    broken = json.loads(lines[2])
    del broken["conversations"][1]["from"]
    bad.write_text("\n".join([lines[0], json.dumps(broken)]) + "\n")
    with pytest.raises(RecipeError, match=r"bad\.jsonl:line 2.*conversations\[1\].*'from'"):
        train(load_recipe(tiny_recipe(bad, tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_yaml_recipe_with_overrides_and_warmup_ratio(data, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(data, tmp_path / "out") | {"stages": ["stage1", "stage2"]}))
    recipe = load_recipe(path, ["training.warmup_ratio=0.1", "stages.1.training.learning_rate=2e-5", "lora.r=4"])
    stage2 = recipe.training_arguments(recipe.stages[1])
    assert stage2["learning_rate"] == 2e-5 and recipe.training_arguments(recipe.stages[0])["learning_rate"] == 1e-3
    assert recipe.lora.r == 4
    import dataclasses

    from transformers import TrainingArguments

    if "warmup_ratio" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        assert stage2["warmup_ratio"] == 0.1
    else:  # transformers 5.x: a float warmup_steps below 1 is a ratio
        assert stage2["warmup_steps"] == 0.1


# --- what each stage trains ------------------------------------------------------------------------------


def _lora_size(model, names: list[str], r: int) -> int:
    modules = dict(model.named_modules())
    return sum(r * (modules[n].in_features + modules[n].out_features) for n in names)


@pytest.mark.parametrize("trains", [["temporal"], ["temporal", "lora"], ["lora"]], ids="+".join)
def test_each_stage_trains_exactly_its_parameters(preset, trains):
    base = tiny_model(preset)
    family, tower = stave.models.find_vision_tower(base)
    llm = [
        n
        for n, _ in base.named_modules()
        if (m := re.fullmatch(r".*\.language_model\.layers\.\d+\.(.+)", n)) and m.group(1) in family.llm_linears
    ]
    vision = [
        n
        for n, _ in base.named_modules()
        if (m := re.fullmatch(rf".*{family.vision_blocks}\.(?P<linear>.+)", n)) and m["linear"] in family.vision_linears
    ]
    # the family's lists name linears the model has: the vision blocks' four (five: SwiGLU) and the LLM's
    assert {".".join(n.split(".")[-2:]) for n in vision} == set(family.vision_linears)
    assert llm and all(isinstance(dict(base.named_modules())[n], torch.nn.Linear) for n in llm)
    expected_lora = 0
    if "lora" in trains:
        # only the blocks that feed the LLM (LLaVA-NeXT-Video: not the last CLIP layer, after the feature layer)
        feeding = family.blocks(tower)[: family.feature_blocks(base) if family.feature_blocks is not None else None]
        feeding_names = [n for n, m in base.named_modules() if any(m is block for block in feeding)]
        vision = [n for n in vision if any(n.startswith(f"{block}.") for block in feeding_names)]
        qkv = [n for n in vision if n.endswith(family.vision_qkv)]
        expected_lora = _lora_size(base, [n for n in vision if n not in qkv] + llm, 16) + _lora_size(base, qkv, 32)
    model = prepare_stage(base, StageSpec(name="s", trains=trains), TemporalConfig(), LoraSection())
    sta_size = sum(p.numel() for _, p in stave.temporal_parameters(tiny_model(preset).eval().requires_grad_(False)))
    expected_sta = 0
    if "temporal" in trains:
        probe = stave.add_temporal_attention(tiny_model(preset))
        expected_sta = sum(p.numel() for _, p in stave.temporal_parameters(probe))
    assert sta_size == 0  # a plain model has none
    assert trainable_counts(model) == {"temporal": expected_sta, "lora": expected_lora, "head": 0, "other": 0}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any("temp_attn" in n and "lora_" in n for n in names), "LoRA must never sit on STA"
    if "lora" in trains:  # Qwen2.5-VL: vision SwiGLU and LLM MLP are both adapted, each by its own path
        assert any(re.search(rf"{family.vision_blocks}\.mlp\.", n) and "lora_A" in n for n in names)
        if any(".language_model.layers.0.mlp." in n for n in llm):  # MoE: only a shared expert's MLP is adapted
            assert any(".language_model.layers.0.mlp." in n and "lora_A" in n for n in names)
        assert not any(".merger." in n or "deepstack_merger" in n for n in names)
        assert not any(".experts." in n or n.endswith("mlp.gate.weight") for n in names)  # MoE: routed experts, router
    assert ("temporal" in trains) == (stave.temporal_config(model) is not None)


def test_stage_weights_follow_the_seed_not_the_rng_state(preset):
    """STA and LoRA weights are drawn from seeds derived from the stage's seed: whatever the RNG did before, the
    same seed gives the same weights, and LoRA's are the same with or without STA (both arms start alike)."""
    import copy

    base = tiny_model(preset).train()
    temporal = TemporalConfig(init="random")

    def prepared(trains: list[str], seed: int) -> dict[str, torch.Tensor]:
        torch.rand(1000)  # the global RNG moves between calls
        stage = StageSpec(name="s", trains=trains)
        model = prepare_stage(copy.deepcopy(base), stage, temporal, LoraSection(), seed=seed)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    both, again, lora_only = prepared(["temporal", "lora"], 3), prepared(["temporal", "lora"], 3), prepared(["lora"], 3)
    other = prepared(["temporal", "lora"], 4)
    assert both.keys() == again.keys() and all(torch.equal(both[n], again[n]) for n in both)
    lora = [n for n in both if "lora_" in n]
    assert lora and all(torch.equal(both[n], lora_only[n]) for n in lora)
    assert all(not torch.equal(both[n], other[n]) for n in both if "lora_A" in n or "temp_attn.qkv.weight" in n)


def test_head_and_full_stages_train_the_output_layer_and_everything(preset):
    head = tiny_model(preset).lm_head.weight.numel()
    stage = StageSpec(name="s", trains=["lora", "head"])
    model = prepare_stage(tiny_model(preset), stage, TemporalConfig(), LoraSection())
    counts = trainable_counts(model)
    assert counts["head"] == head and counts["lora"] > 0 and counts["other"] == counts["temporal"] == 0
    merged = model.merge_and_unload()  # peft's trained copy of the head is what the merged model keeps
    assert type(merged.lm_head) is torch.nn.Linear

    alone = prepare_stage(tiny_model(preset), StageSpec(name="s", trains=["head"]), TemporalConfig(), LoraSection())
    assert trainable_counts(alone) == {"temporal": 0, "lora": 0, "head": head, "other": 0}

    full = prepare_stage(tiny_model(preset), StageSpec(name="s", trains=["full"]), TemporalConfig(), LoraSection())
    everything = sum(p.numel() for p in full.parameters())
    assert sum(trainable_counts(full).values()) == everything
    assert all(p.requires_grad for p in full.parameters())


def test_task_filter_keeps_only_the_named_tasks_and_names_records_without_one(tmp_path):
    rows = [
        {"video": "a.mp4", "conversations": [{"from": "human", "value": "<video>\nq"}, {"from": "gpt", "value": "x"}]}
        | {"task": t}
        for t in ("shape", "colour", "horizontal")
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = read_records(DatasetSpec(path=str(path), tasks=["shape", "horizontal"]))
    assert [r.sample["task"] for r in kept] == ["shape", "horizontal"]
    del rows[1]["task"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"train\.jsonl:line 2\.task: missing"):
        read_records(DatasetSpec(path=str(path), tasks=["shape"]))


# --- running ------------------------------------------------------------------------------------------------


def test_stages_train_and_the_loss_goes_down(data, tmp_path):
    out = tmp_path / "run"
    # STA alone moves a random model's loss slowly: stage 1 gets its own, larger learning rate
    recipe = tiny_recipe(data, out) | {"stages": [{"name": "stage1", "training": {"learning_rate": 3e-2}}, "stage2"]}
    recipe["training"] |= {"max_steps": 16, "learning_rate": 3e-3, "save_steps": 16}
    model_dir = train(load_recipe(recipe))
    for stage, drop in (("stage1", 0.01), ("stage2", 0.1)):
        curve = losses(out, stage)  # batch 1, no shuffling: step i and step i + 8 see the same sample
        assert len(curve) == 16
        videos = [i for i in range(8) if i != 1]  # sample 1 is text-only: STA cannot change its loss
        assert all(curve[8 + i] < curve[i] for i in videos), (stage, curve)
        assert sum(curve[8 + i] for i in videos) / 7 < sum(curve[i] for i in videos) / 7 - drop, (stage, curve)
        assert (out / stage / "training_curves.png").stat().st_size > 1000
        run = json.loads((out / stage / "model" / "stave-run.json").read_text())
        assert run["steps"] == 16 and run["skipped_samples"] == 0
    assert model_dir == out / "stage2" / "model"
    loaded = stave.load_model(model_dir)
    assert stave.temporal_config(loaded) == TemporalConfig()
    stage1 = stave.load_model(out / "stage1" / "model")
    # stage 1 moved STA away from zero; stage 2 trained STA further and merged LoRA into the base weights
    proj = [p for n, p in stave.temporal_parameters(stage1) if n.endswith("temp_attn.proj.weight")]
    assert all(p.abs().max() > 0 for p in proj)
    changed = [
        n for (n, a), (_, b) in zip(stage1.named_parameters(), loaded.named_parameters(), strict=True) if not a.equal(b)
    ]
    assert any("language_model" in n and "q_proj" in n for n in changed)
    assert any("temp_attn" in n for n in changed)
    with pytest.raises(RecipeError, match="already finished"):
        train(load_recipe(recipe))


def test_skip_policy_counts_and_reports_failed_samples(data, tmp_path, caplog):
    broken = tmp_path / "broken.jsonl"
    lines = data.read_text().splitlines()
    missing = json.loads(lines[0]) | {"video": "videos/none.mp4"}
    broken.write_text("\n".join([*lines[2:6], json.dumps(missing)]) + "\n")
    recipe = tiny_recipe(broken, tmp_path / "out")
    recipe["data"]["datasets"][0]["root"] = str(data.parent)
    recipe["training"] |= {"max_steps": 3, "per_device_train_batch_size": 2}
    train(load_recipe(recipe))
    skipped = [json.loads(x) for x in (tmp_path / "out/stage1/skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == 1 and skipped[0]["sample"].endswith("broken.jsonl:line 5")
    assert "none.mp4" in skipped[0]["reason"]
    assert "1 sample(s) skipped" in caplog.text
    assert json.loads((tmp_path / "out/stage1/model/stave-run.json").read_text())["skipped_samples"] == 1

    recipe["output_dir"] = str(tmp_path / "out-raise")
    with pytest.raises(DataError, match=r"broken\.jsonl:line 5.*none\.mp4"):
        train(load_recipe(recipe, ["data.on_error=raise"]))


@pytest.mark.parametrize("trains", [["temporal", "lora"], ["full"]])
def test_text_only_batches_give_every_trainable_parameter_a_gradient(data, tmp_path, preset, trains):
    """A batch without pixels still reaches every STA and vision-LoRA parameter (with zero gradient) and, in full
    fine-tuning, every tower parameter (Qwen3-VL's deepstack mergers too), so DDP/FSDP/ZeRO ranks never wait for
    gradients another rank does not produce."""
    from stave.presets import tiny_tokenizer
    from stave.processing import VideoChatProcessor
    from stave.training.run import StaveTrainer

    tokenizer = tiny_tokenizer(preset, ["say", "right"])
    model = tiny_model(preset, tokenizer=tokenizer).train()
    model = prepare_stage(model, StageSpec(name="s", trains=trains), TemporalConfig(), LoraSection())
    processor = VideoChatProcessor.for_model(tokenizer, model)
    sample = {"conversations": [{"from": "human", "value": "say right"}, {"from": "gpt", "value": "right"}]}
    batch = processor.collate([processor.encode(sample, train=True)])
    from transformers import TrainingArguments

    trainer = StaveTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to="none", use_cpu=True))
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    tower = {id(p) for p in stave.vision_tower(model).parameters()}
    assert all(p.grad.abs().max() == 0 for p in model.parameters() if p.requires_grad and id(p) in tower)


# --- same seed, same run -------------------------------------------------------------------------------------


def _train_in_new_process(recipe: Path, *overrides: str) -> None:
    command = [sys.executable, "-m", "stave.cli", "train", str(recipe), *overrides]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def _stage_record(output: Path, stage: str) -> tuple[dict[str, torch.Tensor], list[tuple[float, float]]]:
    """What a stage produced: its model's weights (and its adapter's, as adapter.*) and its (loss, grad_norm) per
    step."""
    from safetensors.torch import load_file

    weights = dict(stave.load_model(output / stage / "model").state_dict())
    adapter = output / stage / "adapter" / "adapter_model.safetensors"
    if adapter.is_file():
        weights |= {f"adapter.{k}": v for k, v in load_file(adapter).items()}
    history = json.loads((output / stage / "log_history.json").read_text())
    return weights, [(row["loss"], row["grad_norm"]) for row in history if "loss" in row]


def test_same_seed_same_run_across_processes_from_a_model_folder(data, tmp_path):
    """A model loaded from a folder (the shipped base, a checkpoint) gains random STA and LoRA weights; the recipe's
    seed decides them, so two processes train bit-identical weights with identical losses — and stage 2 started
    in a later process from the saved stage-1 model equals stage 2 run straight after stage 1."""
    from stave.tokenizer import build_word_tokenizer
    from stave.training.data import load_datasets, words_of

    recipe = load_recipe(tiny_recipe(data, tmp_path / "unused"))
    tokenizer = build_word_tokenizer(words_of(load_datasets(recipe.data.datasets, 0)))
    tiny_model(tokenizer=tokenizer).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    path = tmp_path / "recipe.yaml"
    values = tiny_recipe(data, tmp_path / "a") | {"stages": ["stage1", "stage2"], "lora": {"dropout": 0.3}}
    values["model"]["path"] = str(tmp_path / "base")
    values["temporal"] = {"init": "random"}  # every STA weight random, not only qkv
    values["data"] |= {"shuffle": True}
    values["data"]["datasets"][0]["ratio"] = 1.5  # a seeded half on top of the whole set
    values["training"] |= {"max_steps": 3, "per_device_train_batch_size": 2, "save_strategy": "no"}
    path.write_text(yaml.safe_dump(values))

    _train_in_new_process(path)  # both stages in one process
    _train_in_new_process(path, f"output_dir={tmp_path / 'b'}", "stages=[stage1]")
    _train_in_new_process(path, f"output_dir={tmp_path / 'b'}", "resume=latest")  # stage 2 from the saved stage 1
    for stage in ("stage1", "stage2"):
        weights_a, curve_a = _stage_record(tmp_path / "a", stage)
        weights_b, curve_b = _stage_record(tmp_path / "b", stage)
        assert len(curve_a) == 3 and curve_a == curve_b, stage
        assert weights_a.keys() == weights_b.keys()
        differ = [k for k in weights_a if not torch.equal(weights_a[k], weights_b[k])]
        assert not differ, (stage, differ[:5])
    assert any(k.startswith("adapter.") and "lora_A" in k for k in weights_a)


# --- checkpoints: kill, resume, refuse -----------------------------------------------------------------------

KILLER = """
import os, sys
sys.path.insert(0, {tests!r})
from transformers import TrainerCallback
from stave.training import load_recipe, train
from training_data import tiny_recipe

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if args.output_dir.endswith("stage2") and state.global_step == {kill_at}:
            os._exit(9)  # as abrupt as SIGKILL: no cleanup, no final save

recipe = tiny_recipe({data!r}, {out!r}) | {{"stages": ["stage1", "stage2"]}}
recipe["training"] |= {{"max_steps": 6, "save_steps": 2, "per_device_train_batch_size": 2}}
train(load_recipe(recipe, sys.argv[1:]), callbacks=[Kill()] if {kill_at} else [])
"""


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=240)


def test_kill_and_resume_reproduces_the_uninterrupted_run(data, tmp_path):
    def script(out: Path, kill_at: int) -> str:
        return KILLER.format(tests=str(ROOT / "tests"), data=str(data), out=str(out), kill_at=kill_at)

    whole = _run(script(tmp_path / "whole", 0))
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _run(script(tmp_path / "killed", 5))  # stage2 step 5: checkpoint-4 is the last one saved
    assert killed.returncode == 9, killed.stderr[-3000:]
    assert (tmp_path / "killed/stage2/checkpoint-4").is_dir() and not (tmp_path / "killed/stage2/model").exists()
    resumed = _run(script(tmp_path / "killed", 0), "resume=latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "stage stage1: finished earlier" in resumed.stderr
    assert "resuming stage2 from" in resumed.stderr

    assert losses(tmp_path / "killed", "stage2")[-2:] == pytest.approx(
        losses(tmp_path / "whole", "stage2")[-2:], abs=1e-5
    )
    a = stave.load_model(tmp_path / "whole/stage2/model").state_dict()
    b = stave.load_model(tmp_path / "killed/stage2/model").state_dict()
    assert a.keys() == b.keys()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5


def test_partial_and_corrupt_checkpoints_are_refused(data, tmp_path):
    out = tmp_path / "out"
    recipe = tiny_recipe(data, out)
    recipe["training"] |= {"max_steps": 4, "save_steps": 2}
    train(load_recipe(recipe))
    stage = out / "stage1"
    assert stave.training.checkpoints.verify(stage / "checkpoint-4") == 4
    (stage / "model").rename(tmp_path / "finished-model")

    weights = stage / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"checkpoint-4: model\.safetensors has \d+ bytes, \d+ were written"):
        train(load_recipe(recipe, [f"resume={stage / 'checkpoint-4'}"]))
    (stage / "checkpoint-2" / "stave-checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint-2: incomplete checkpoint"):
        train(load_recipe(recipe, [f"resume={stage / 'checkpoint-2'}"]))
    found, passed = stave.training.checkpoints.latest(stage)
    assert found is None and len(passed) == 2


def test_resume_latest_passes_over_a_checkpoint_killed_mid_write(data, tmp_path, caplog):
    out = tmp_path / "out"
    recipe = tiny_recipe(data, out)
    recipe["training"] |= {"max_steps": 4, "save_steps": 2}
    train(load_recipe(recipe))
    stage = out / "stage1"
    (stage / "model").rename(tmp_path / "finished")
    (stage / "checkpoint-4" / "stave-checkpoint.json").unlink()  # as if killed while writing checkpoint-4
    (stage / "checkpoint-2" / "model.safetensors").write_bytes(b"garbage")  # and checkpoint-2 damaged later
    found, passed = stave.training.checkpoints.latest(stage)
    assert found is None and "incomplete" in passed[0] and "bytes" in passed[1]


# --- merged export -------------------------------------------------------------------------------------------


def test_merged_export_loads_without_peft_and_matches_the_unmerged_model(data, tmp_path):
    from peft import PeftModel

    from stave.testing import model_inputs

    out = tmp_path / "out"
    recipe = tiny_recipe(data, out) | {"stages": ["stage1", "stage2"]}
    recipe["training"] |= {"max_steps": 3, "learning_rate": 1e-2}
    train(load_recipe(recipe))
    merged = stave.load_model(out / "stage2/model").eval()
    unmerged = PeftModel.from_pretrained(stave.load_model(out / "stage1/model"), out / "stage2/adapter").eval()
    inputs = model_inputs(merged, videos=[(2, 4, 4)], seed=3, text_tokens=0)
    with torch.no_grad():
        a = merged(**inputs).logits
        b = unmerged(**inputs).logits
    assert (a - b).abs().max() < 1e-4
    assert (a - stave.load_model(out / "stage1/model").eval()(**inputs).logits).abs().max() > 1e-3

    no_peft = (
        "import sys; sys.modules['peft'] = None\n"
        "import stave, torch\n"
        f"m = stave.load_model({str(out / 'stage2/model')!r})\n"
        "assert stave.temporal_config(m) is not None and 'peft' not in type(m).__module__\n"
        "print('ok')"
    )
    result = _run(no_peft)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


# --- distributed -------------------------------------------------------------------------------------------------


def ddp_recipe(data: Path, output: Path, batch: int) -> dict:
    # no LoRA dropout: its random masks would differ between the two set-ups
    recipe = tiny_recipe(data, output) | {"stages": ["stage2"], "lora": {"dropout": 0.0}}
    recipe["training"] |= {"max_steps": 3, "learning_rate": 1e-2, "per_device_train_batch_size": batch, "save_steps": 3}
    return recipe


@pytest.fixture(scope="module")
def one_process_run(data, tmp_path_factory) -> Path:
    """The 1-process run with the DDP runs' global batch (2 ranks x 1 = 1 x 2)."""
    output = tmp_path_factory.mktemp("single")
    train(load_recipe(ddp_recipe(data, output, batch=2)))
    return output


@pytest.mark.parametrize(
    ("launcher", "settings"),
    [("torchrun", ["training.ddp_backend=gloo", "training.use_cpu=true"]), ("torchrun", []), ("accelerate", [])],
    ids=["torchrun-gloo-cpu", "torchrun", "accelerate-ddp.yaml"],
)
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(
    data, tmp_path, one_process_run, launcher, settings
):
    """2 ranks x batch 1 (gloo on 127.0.0.1) against 1 process x batch 2; sample 1 (rank 1's first batch) has no
    video, so rank 1 runs a step in which STA and vision LoRA see no pixels. With no settings on this CPU
    machine stave itself chooses gloo on the CPUs (without, each process would train alone). Both ranks exit
    cleanly: the process group is taken down."""
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(ddp_recipe(data, tmp_path / "ddp", batch=1)))
    result = launch(launcher, "-m", "stave.cli", "train", str(path), *settings)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("MULTI_CPU, 2 process(es)") == 2
    assert result.stderr.count("trained as DistributedDataParallel") == 2
    assert ("training with use_cpu=True, ddp_backend=gloo" in result.stderr) == (not settings)
    assert "terminate called" not in result.stderr

    assert losses(tmp_path / "ddp", "stage2") == pytest.approx(losses(one_process_run, "stage2"), abs=2e-4)
    a = stave.load_model(tmp_path / "ddp/stage2/model").state_dict()
    b = stave.load_model(one_process_run / "stage2/model").state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_fsdp_shard_units_are_each_familys_vision_blocks_and_decoder_layers(preset):
    """FSDP's units come from the family adapter: the blocks the model holds (STA blocks once STA is added, also
    inside a peft model), so no configuration lists class names of another family or of absent blocks."""
    from stave.models import shard_units

    def held(model) -> list[str]:  # the classes of the tower's blocks and of the LLM's decoder layers
        family, tower = stave.models.find_vision_tower(model)
        layers = model.get_decoder().layers
        return sorted({type(m).__name__ for m in (*family.blocks(tower), *layers)})

    model = tiny_model(preset)
    assert shard_units(model) == held(model) and len(held(model)) == 2
    stage = StageSpec(name="s", trains=["temporal", "lora"])
    model = prepare_stage(model, stage, TemporalConfig(), LoraSection())
    assert shard_units(model) == held(model.get_base_model()) and any("Temporal" in n for n in shard_units(model))


FSDP_STAGES = {
    "stage1": ["stage1"],  # STA only: every other parameter of each shard unit frozen
    "sta-lora-head": [{"name": "tuned", "trains": ["temporal", "lora", "head"]}],
    "full": [{"name": "whole", "trains": ["full"]}],
}


# (stage kind, tiny model): every kind on Qwen2-VL; STA + LoRA + head on Qwen3-VL too (its vision blocks also feed
# deepstack mergers). Qwen3-VL-MoE passes as well but took 47 s here against 28 s for the dense one (CI budget).
FSDP_RUNS = [(kind, "tiny-qwen2-vl") for kind in FSDP_STAGES] + [("sta-lora-head", "tiny-qwen3-vl")]


@pytest.mark.parametrize(("kind", "model"), FSDP_RUNS, ids=[f"{kind}-{model}" for kind, model in FSDP_RUNS])
def test_two_process_fsdp2_matches_one_process_with_the_same_global_batch(data, tmp_path, kind, model):
    """`accelerate launch --config_file configs/accelerate/fsdp.yaml` on the CPUs (gloo) shards with FSDP2 by the
    family's blocks: 2 ranks x batch 1 equal 1 process x batch 2 in losses (float32, 1e-5) and in the exported
    model (1e-4), though rank 1's first batch has no video (its tower runs on a blank image where a forward
    with pixels runs it, so both ranks gather the same shards in the same order and none hangs)."""
    from stave.models import family_for_model_type
    from stave.presets import TINY_PRESETS

    stages = FSDP_STAGES[kind]
    name = stages[0] if isinstance(stages[0], str) else stages[0]["name"]

    def recipe(output: Path, batch: int) -> dict:
        values = ddp_recipe(data, output, batch) | {"stages": stages}
        values["model"]["path"] = model
        return values

    train(load_recipe(recipe(tmp_path / "one", batch=2)))
    path = tmp_path / "fsdp.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path / "fsdp", batch=1)))
    result = launch("accelerate-fsdp", "-m", "stave.cli", "train", str(path))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 processes on the CPUs: sharding with FSDP2 (gloo)" in result.stderr
    family = family_for_model_type(TINY_PRESETS[model][0])
    sharded_by = [line.split(", ") for line in re.findall(r"FSDP2 shards by (.*)", result.stderr)]
    blocks = {family.block_class.__name__, family.temporal_block_class.__name__}  # its vision blocks, with STA or not
    assert len(sharded_by) == 2 and all(
        len(units) == 2 and family.llm_layer_class.__name__ in units and blocks & set(units) for units in sharded_by
    ), sharded_by
    assert result.stderr.count(f"stage {name}: trained as FSDP") == 2
    assert "terminate called" not in result.stderr

    assert losses(tmp_path / "fsdp", name) == pytest.approx(losses(tmp_path / "one", name), abs=1e-5)
    exported = stave.load_model(tmp_path / "fsdp" / name / "model")
    assert type(exported) is family.model_classes[0]
    a = exported.state_dict()
    b = stave.load_model(tmp_path / "one" / name / "model").state_dict()
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


# Per step (2 ranks x batch 2 = 1 process x batch 4): 1. rank 0 only text, rank 1 only videos; 2. rank 0 only
# images, rank 1 a video and text; 3. rank 0 an image and a video (the tower runs twice), rank 1 only videos (once)
MIXED_KINDS = ["text", "text", "video", "video", "image", "image", "video", "text", "image", "video", "video", "video"]


def mixed_recipe(data: Path, output: Path, batch: int) -> dict:
    recipe = ddp_recipe(data, output, batch) | {"stages": FSDP_STAGES["sta-lora-head"]}
    recipe["data"] |= {"image_min_pixels": 3136, "image_max_pixels": 3136}
    return recipe


@pytest.fixture(scope="module")
def mixed_one_process(tmp_path_factory) -> tuple[Path, Path]:
    """The mixed data set and its 1-process run with the 2-rank runs' global batch (1 x 4 = 2 ranks x 2)."""
    root = tmp_path_factory.mktemp("mixed")
    data = write_dataset(root, kinds=MIXED_KINDS)
    train(load_recipe(mixed_recipe(data, root / "one", batch=4)))
    return data, root / "one"


@pytest.mark.parametrize(
    ("launcher", "wrapper"),
    [
        ("accelerate-fsdp", "FSDP"),
        ("accelerate", "DistributedDataParallel"),
        ("accelerate-zero3", "DeepSpeedEngine (ZeRO-3)"),
    ],
    ids=["fsdp2", "ddp", "zero3"],
)
def test_ranks_with_only_text_only_images_or_videos_train_as_one_process(
    tmp_path, mixed_one_process, launcher, wrapper
):
    """In one step a rank may hold only text, only images, or images and videos while the other holds videos
    (MIXED_KINDS): every rank runs the vision tower as often as the rank that runs it most (blank images
    for the others), so FSDP2 and ZeRO-3 gather the same shards on both and none hangs; the losses equal
    1 process x batch 4 (float32, 1e-5), and the exported model too (1e-4)."""
    if "zero" in launcher:
        require_deepspeed()
    data, one = mixed_one_process
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(mixed_recipe(data, tmp_path / "two", batch=2)))
    result = launch(launcher, "-m", "stave.cli", "train", str(path))
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count(f"stage tuned: trained as {wrapper}") == 2
    assert "terminate called" not in result.stderr

    assert losses(tmp_path / "two", "tuned") == pytest.approx(losses(one, "tuned"), abs=1e-5)
    a = stave.load_model(tmp_path / "two/tuned/model").state_dict()
    b = stave.load_model(one / "tuned/model").state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


RANK_KILLER = """
import os, sys
from transformers import TrainerCallback
from stave.training import load_recipe, train

class KillRank1(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if args.process_index == 1 and state.global_step == int(os.environ["KILL_AT"]):
            os._exit(9)  # as abrupt as SIGKILL: no cleanup, no save

train(load_recipe(sys.argv[1], sys.argv[2:]), callbacks=[KillRank1()] if "KILL_AT" in os.environ else [])
"""


def resumable_recipe(data: Path, output: Path, batch: int) -> dict:
    """STA + LoRA + head for 4 steps, a checkpoint every 2."""
    recipe = ddp_recipe(data, output, batch) | {"stages": FSDP_STAGES["sta-lora-head"]}
    recipe["training"] |= {"max_steps": 4, "save_steps": 2}
    return recipe


@pytest.fixture(scope="module")
def resumable_one_process(data, tmp_path_factory) -> Path:
    """The uninterrupted 1-process run of resumable_recipe with the 2-rank runs' global batch (1 x 2)."""
    output = tmp_path_factory.mktemp("resumable")
    train(load_recipe(resumable_recipe(data, output, batch=2)))
    return output


def stage_history(output: Path) -> list[float]:
    return [row["loss"] for row in json.loads((output / "tuned/log_history.json").read_text()) if "loss" in row]


@pytest.mark.parametrize(
    ("launcher", "wrapper"),
    [
        ("accelerate-fsdp", "FSDP"),
        ("accelerate-zero2", "DeepSpeedEngine (ZeRO-2)"),
        ("accelerate-zero3", "DeepSpeedEngine (ZeRO-3)"),
    ],
    ids=["fsdp2", "zero2", "zero3"],
)
def test_two_process_sharded_run_killed_and_resumed_equals_one_process(
    data, tmp_path, resumable_one_process, launcher, wrapper
):
    """`accelerate launch` with configs/accelerate/fsdp.yaml or deepspeed-zero{2,3}.yaml on the CPUs (gloo;
    DeepSpeed's CPU accelerator), STA + LoRA + head, 2 ranks x batch 1 (a text-only batch on rank 1) against
    1 process x batch 2: rank 1 dies at step 3 of 4 (rank 0 stops on the broken group); checkpoint-2, written
    by both ranks in FSDP's or DeepSpeed's format, is sealed; `resume=latest` finishes the stage, logged as
    trained by the wrapper asked for; the 4 losses equal the 1-process run's (float32, 1e-5) and the exported
    model (gathered from the shards on rank 0 under FSDP and ZeRO-3) loads with stave.load_model and equals it
    (1e-4). ZeRO needs deepspeed (scripts/setup.sh installs it; a skip is a failure where
    STAVE_EXPECT_DEEPSPEED=1, as scripts/test.sh sets)."""
    if "zero" in launcher:
        require_deepspeed()
    path = tmp_path / "sharded.yaml"
    path.write_text(yaml.safe_dump(resumable_recipe(data, tmp_path / "sharded", batch=1)))
    script = tmp_path / "kill.py"
    script.write_text(RANK_KILLER)

    killed = launch(launcher, str(script), str(path), KILL_AT="3")
    assert killed.returncode != 0
    assert killed.stderr.count("2 process(es), model wrapped as") == 2, killed.stderr[-4000:]
    stage = tmp_path / "sharded" / "tuned"
    assert stave.training.checkpoints.verify(stage / "checkpoint-2") == 2
    assert not (stage / "checkpoint-4").exists() and not (stage / "model").exists()
    resumed = launch(launcher, str(script), str(path), "resume=latest")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming tuned from" in resumed.stderr
    assert resumed.stderr.count(f"stage tuned: trained as {wrapper}") == 2

    assert len(stage_history(tmp_path / "sharded")) == 4
    assert stage_history(tmp_path / "sharded") == pytest.approx(stage_history(resumable_one_process), abs=1e-5)
    a = stave.load_model(stage / "model").state_dict()
    b = stave.load_model(resumable_one_process / "tuned/model").state_dict()
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_launched_processes_that_do_not_form_one_run_stop_before_a_model_is_built(data, tmp_path):
    """On a machine whose accelerator accelerate cannot run several processes on (pretended here), the
    Trainer sets each launched process up alone: stave stops every rank with the error naming what it found
    and the settings that fix it, before any model is built or anything is written."""
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(ddp_recipe(data, tmp_path / "ddp", batch=1)))
    script = tmp_path / "unjoined.py"
    script.write_text(UNJOINED)
    result = launch("torchrun", str(script), "train", str(path))
    assert result.returncode != 0
    message = (
        r"stave train: error: the launcher started 2 processes \(WORLD_SIZE=2; this is RANK=(0|1), LOCAL_RANK=\1\) "
        r"on a machine with accelerator mps, but accelerate set them up as DistributedType.NO with 1 process\(es\) "
        r"on cpu: each would run alone on the same data and write the same folder. training.use_cpu=true "
        r"training.ddp_backend=gloo trains on the CPUs."
    )
    assert len(re.findall(message, result.stderr)) == 2, result.stderr[-4000:]
    assert not (tmp_path / "ddp").exists()
    assert "terminate called" not in result.stderr

    fixed = launch("torchrun", str(script), "train", str(path), "training.use_cpu=true", "training.ddp_backend=gloo")
    assert fixed.returncode == 0, fixed.stderr[-4000:]
    assert fixed.stderr.count("trained as DistributedDataParallel") == 2


def test_ssv2_t10_training_split_never_overlaps_the_ssv2_t10_benchmark(tmp_path):
    from benchmark_fixtures import SSV2_CLASSES, ssv2_records, write_ssv2

    from stave.evaluation import load_benchmark
    from stave.ssv2 import SUBSETS
    from stave.training.data import read_records
    from stave.training.recipe import DatasetSpec

    records = ssv2_records(SSV2_CLASSES[:12], per_class=5)  # 10 T10 classes + 2 others
    root = write_ssv2(tmp_path / "ssv2", {"train": records, "validation": records[:3]})
    spec = dict(path=str(root / "train.json"), format="ssv2", subset="T10", video_pattern="{id}.webm")
    train = read_records(DatasetSpec(**spec, split="train"))
    everything = read_records(DatasetSpec(**spec))
    assert len(everything) == 50 and len(train) == 40
    assert all(r.sample["conversations"][1]["value"] in SUBSETS["T10"] for r in everything)
    test_ids = {item.qid for item in load_benchmark("ssv2-t10", root, seed=0)}
    train_ids = {r.sample["video"].removesuffix(".webm") for r in train}
    assert len(test_ids) == 10 and not train_ids & test_ids
    assert train_ids | test_ids == {r.sample["video"].removesuffix(".webm") for r in everything}


# --- bad records, skipped shares, published formats -------------------------------------------------------


def _with_record(data: Path, tmp_path: Path, record) -> Path:
    """A copy of `data`'s first record, then `record` (line 2), media relative to data's folder."""
    path = tmp_path / "bad.jsonl"
    path.write_text(data.read_text().splitlines()[0] + "\n" + json.dumps(record) + "\n")
    return path


def _video_turns(answer="right", **settings):
    video = {"type": "video", "video": "videos/000.mp4", **settings}
    return [
        {"role": "user", "content": [video, {"type": "text", "text": "which way does the square move ?"}]},
        {"role": "assistant", "content": answer},
    ]


def _llava(answer="right", question="<video>\nwhich way does the square move ?"):
    return {
        "video": "videos/000.mp4",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
    }


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_llava(answer=123), r"bad\.jsonl:line 2\.conversations\[1\]\.value: must be a string, got int 123"),
        (_llava(answer=["left", "right"]), r"bad\.jsonl:line 2\.conversations\[1\]\.value: must be a string"),
        (_llava(question=None), r"bad\.jsonl:line 2\.conversations\[0\]\.value: must be a string, got NoneType"),
        (_llava(answer=""), r"bad\.jsonl:line 2\.conversations\[1\]\.value: an empty answer"),
        (_video_turns(nframes="many"), r"bad\.jsonl:line 2\[0\]\.content\[0\]: VideoOptions\.nframes"),
        (_video_turns(nframes=0), r"bad\.jsonl:line 2\[0\]\.content\[0\]: VideoOptions\.nframes .* got 0"),
        (_video_turns(source_fps="fast"), r"bad\.jsonl:line 2\[0\]\.content\[0\]\.source_fps"),
        (_video_turns(fps=2.0, min_pixels=4000), r"line 2\[0\]\.content\[0\]: VideoOptions: min_pixels \(4000\) >"),
        ({"messages": _llava()["conversations"][:0] + [{"role": "user", "content": "<video>which way ?"},
                                                       {"role": "assistant", "content": "right"}]},
         r"bad\.jsonl:line 2: 1 <video> placeholder\(s\) in the text but 0 video\(s\) given"),
    ],
)  # fmt: skip
def test_bad_records_fail_before_training_naming_file_line_and_field(data, tmp_path, record, message):
    """Wrong types, empty answers, placeholders without media and bad per-video settings (checked over the
    run's own data.video: min_pixels 4000 > the recipe's max_pixels 3136) all fail at read time."""
    bad = _with_record(data, tmp_path, record)
    recipe = tiny_recipe(bad, tmp_path / "out")
    recipe["data"]["datasets"][0]["root"] = str(data.parent)
    with pytest.raises(RecipeError, match=message):
        train(load_recipe(recipe))
    assert not (tmp_path / "out").exists()


def test_late_video_failures_of_a_records_own_settings_are_skipped_and_listed(data, tmp_path, caplog):
    """What only decoding can tell (a video's own nframes beyond its frames; a missing frame of a frame list)
    is skipped under on_error=skip, counted and listed with the record, and named under raise."""
    lines = data.read_text().splitlines()
    late = [
        {"messages": _video_turns(nframes=64)},  # line 5: the clip has 4 frames
        {"messages": [{"role": "user", "content": "<video>which way ?"}, {"role": "assistant", "content": "right"}],
         "videos": [["videos/none-0.png", "videos/none-1.png"]]},  # line 6: LLaMA-Factory frames, missing
    ]  # fmt: skip
    path = tmp_path / "late.jsonl"
    path.write_text("\n".join([*lines[2:6], *map(json.dumps, late)]) + "\n")
    recipe = tiny_recipe(path, tmp_path / "out")
    recipe["data"]["datasets"][0]["root"] = str(data.parent)
    recipe["training"] |= {"max_steps": 3, "per_device_train_batch_size": 2}
    train(load_recipe(recipe))
    skipped = [json.loads(x) for x in (tmp_path / "out/stage1/skipped.jsonl").read_text().splitlines()]
    assert [row["sample"].rsplit(":", 1)[1] for row in skipped] == ["line 5", "line 6"]
    assert "000.mp4" in skipped[0]["reason"] and "64" in skipped[0]["reason"]
    assert "none-0.png" in skipped[1]["reason"]
    assert json.loads((tmp_path / "out/stage1/model/stave-run.json").read_text())["skipped_samples"] == 2

    recipe["output_dir"] = str(tmp_path / "out-raise")
    with pytest.raises(DataError, match=r"late\.jsonl:line 5"):
        train(load_recipe(recipe, ["data.on_error=raise"]))


def test_a_run_whose_samples_fail_stops_with_the_counts_and_first_reasons(data, tmp_path):
    """data.video.nframes=100000: every video sample fails to decode (sample 1 of 8 is text-only). The run stops
    once 16 samples were seen, over the share of data.max_skipped_fraction; a shorter run at the end of its
    stage; no model is saved."""
    recipe = tiny_recipe(data, tmp_path / "out")
    recipe["training"] |= {"max_steps": 12, "per_device_train_batch_size": 2}
    with pytest.raises(DataError, match=r"stage stage1: 14 of the 16 samples seen were skipped \(88%; "
                       r"data\.max_skipped_fraction is 0\.5\); first reasons: .*train\.jsonl:line 1: "
                       r"VideoSamplingError: .*all listed in .*skipped\.jsonl"):  # fmt: skip
        train(load_recipe(recipe, ["data.video.nframes=100000"]))
    assert not (tmp_path / "out/stage1/model").exists()
    recipe["output_dir"] = str(tmp_path / "short")
    recipe["training"] |= {"max_steps": 2}  # 4 samples: below the in-run check, caught at the stage's end
    with pytest.raises(DataError, match=r"stage stage1: 3 of the 4 samples seen were skipped \(75%"):
        train(load_recipe(recipe, ["data.video.nframes=100000", "data.max_skipped_fraction=0.7"]))
    assert not (tmp_path / "short/stage1/model").exists()
    recipe["output_dir"] = str(tmp_path / "allowed")
    train(load_recipe(recipe, ["data.video.nframes=100000", "data.max_skipped_fraction=0.8"]))
    assert (tmp_path / "allowed/stage1/model").is_dir()


def test_every_sample_failing_fails_the_stage_whatever_the_allowed_share(data, tmp_path):
    only_videos = tmp_path / "videos.jsonl"
    only_videos.write_text("\n".join(x for i, x in enumerate(data.read_text().splitlines()) if i != 1) + "\n")
    recipe = tiny_recipe(only_videos, tmp_path / "out")
    recipe["data"]["datasets"][0]["root"] = str(data.parent)
    recipe["training"] |= {"max_steps": 2}
    with pytest.raises(DataError, match=r"2 of the 2 samples seen were skipped"):
        train(load_recipe(recipe, ["data.video.nframes=100000", "data.max_skipped_fraction=1.0"]))


def test_stave_train_reads_a_llamafactory_dataset_of_synth_clips(tmp_path):
    """2 steps of `stave train` on `stave synth` clips written as LLaMA-Factory's mllm_video_demo.json
    (data/README.md there: a dataset_info.json entry with formatting sharegpt, columns messages/videos and
    role/content tags; media relative to the dataset_info folder)."""
    from stave.cli import main
    from stave.synthetic import generate

    synth = generate(tmp_path / "synth", n=4, seed=0, tasks=("left_right",)).out
    records = []
    for line in (synth / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        question, answer = (turn["value"] for turn in row["conversations"])
        records.append({
            "messages": [{"content": question, "role": "user"}, {"content": answer, "role": "assistant"}],
            "videos": [row["video"]],
        })  # fmt: skip
    assert records and all(r["messages"][0]["content"].startswith("<video>") for r in records)
    (synth / "synth_video.json").write_text(json.dumps(records))
    entry = {
        "file_name": "synth_video.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }
    (synth / "dataset_info.json").write_text(json.dumps({"synth_video": entry}))
    out = tmp_path / "run"
    code = main([
        "train", str(ROOT / "configs/tiny.yaml"), f"output_dir={out}", "data.datasets.0.path=null",
        f"data.datasets.0.dataset_info={synth / 'dataset_info.json'}", "data.datasets.0.dataset=synth_video",
        "stages=[stage1]", "training.max_steps=2", "training.save_steps=2",
    ])  # fmt: skip
    assert code == 0
    run = json.loads((out / "stage1/model/stave-run.json").read_text())
    assert run["steps"] == 2 and run["skipped_samples"] == 0
    assert not (out / "stage1/skipped.jsonl").exists()
    state = json.loads((out / "stage1/checkpoint-2/trainer_state.json").read_text())
    assert [row["step"] for row in state["log_history"] if "loss" in row] == [1, 2]


def test_two_ranks_stop_together_when_too_many_samples_were_skipped(data, tmp_path):
    """Rank 0 draws the even records (their videos are missing), rank 1 the odd ones (all good): each rank's own
    share (100%, 0%) says something different, the summed one (50%) is over 0.4 — so both ranks stop, at the
    same step, with the same counts, and neither is left waiting for the other."""
    lines = data.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for i in range(0, 8, 2):
        rows[i] = rows[i] | {"video": f"videos/missing-{i}.mp4"}
    path = tmp_path / "half.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tiny_recipe(path, tmp_path / "ddp") | {"stages": ["stage1"]}
    recipe["data"]["datasets"][0]["root"] = str(data.parent)
    recipe["data"]["max_skipped_fraction"] = 0.4
    recipe["training"] |= {"max_steps": 12, "per_device_train_batch_size": 1, "save_steps": 100}
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(recipe))
    result = launch("torchrun", "-m", "stave.cli", "train", str(config))  # no settings: stave picks gloo on CPUs
    assert result.returncode != 0
    # 8 steps x 2 ranks: the 16th sample is seen at step 8 by both ranks at once
    assert result.stderr.count("stage stage1: 8 of the 16 samples seen were skipped (50%") == 2, result.stderr[-4000:]
    assert not (tmp_path / "ddp/stage1/model").exists()


def test_a_line_separator_inside_a_json_lines_value_does_not_split_the_record(tmp_path):
    """JSON allows U+2028, U+2029 and U+0085 raw inside strings; str.splitlines would cut a record there."""
    from stave.evaluation.benchmarks.reading import read_jsonl

    answers = ["left\u2028then right", "up\u0085down", "plain"]
    rows = [
        {"messages": [{"role": "user", "content": "what happens?"}, {"role": "assistant", "content": answer}]}
        for answer in answers
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    records = read_records(DatasetSpec(path=str(path)))
    assert [r.messages[1]["content"][0]["text"] for r in records] == answers
    assert [row for _, row in read_jsonl(path)] == rows
