"""stave.experiments: the statistics, the metrics of a comparison, the experiment table and its accuracy-vs-tokens
figure, the arms (the two-stage arm end to end at a few steps), and `stave demo` end to end on the shipped tiny base
(a few steps: the pipeline, not the result)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from stave.cli import main
from stave.experiments import (
    ARMS,
    Estimate,
    arm_metrics,
    item_difference,
    mean_interval,
    paired_difference,
    proportion,
    verdict,
)
from stave.experiments.experiment import (
    ExperimentError,
    load_experiment,
    summarise,
    summary_table,
    token_curves,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]


def test_wilson_interval_and_t_interval_match_textbook_values():
    # Wilson 95% interval of 8/10: [0.490, 0.943]
    estimate = proportion(8, 10)
    assert estimate.value == 0.8 and estimate.n == 10
    assert estimate.low == pytest.approx(0.4902, abs=1e-4) and estimate.high == pytest.approx(0.9433, abs=1e-4)
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.3027 -> half width 0.2484
    difference = paired_difference([0.5, 0.5, 0.5], [0.6, 0.7, 0.8])
    assert difference.value == pytest.approx(0.2)
    assert difference.low == pytest.approx(0.2 - 0.24841, abs=1e-4)
    assert difference.high == pytest.approx(0.2 + 0.24841, abs=1e-4)
    assert paired_difference([0.5], [0.7]).low is None  # one pair: no interval
    with pytest.raises(ValueError, match="paired"):
        paired_difference([0.5], [0.7, 0.8])


def test_the_verdict_follows_the_numbers():
    assert verdict(Estimate(0.2, 0.1, 0.3, 5), "staveq2", "baseline").startswith("staveq2 beats baseline")
    assert verdict(Estimate(-0.2, -0.3, -0.1, 5), "staveq2", "baseline").startswith("staveq2 is worse than baseline")
    assert verdict(Estimate(0.05, -0.1, 0.2, 5), "staveq2", "baseline").startswith("no significant difference")
    assert verdict(Estimate(0.05, None, None, 1), "staveq2", "baseline").startswith("too few observations")


def _row(qid: str, task: str, correct: bool, group: str, reversed_: bool = False) -> dict:
    return {"qid": qid, "task": task, "correct": correct, "group": group, "reversed": reversed_}


ROWS = [  # two left_right pairs (one fully right), one up_down pair half right, three still questions
    _row("v/0", "left_right", True, "left_right-0"),
    _row("v/1", "left_right", True, "left_right-0", True),
    _row("v/2", "left_right", True, "left_right-1"),
    _row("v/3", "left_right", False, "left_right-1", True),
    _row("v/4", "up_down", False, "up_down-0"),
    _row("v/5", "up_down", True, "up_down-0", True),
    _row("v/6", "shape", True, "still-0"),
    _row("v/7", "horizontal", False, "still-0"),
    _row("v/8", "vertical", True, "still-0"),
]


def test_arm_metrics_count_pairs_reversal_consistency_and_statics():
    metrics = arm_metrics(ROWS)
    assert (metrics["pairs"]["left_right"].value, metrics["pairs"]["left_right"].n) == (0.75, 4)
    assert (metrics["pairs"]["up_down"].value, metrics["pairs"]["up_down"].n) == (0.5, 2)
    assert (metrics["pair_accuracy"].value, metrics["pair_accuracy"].n) == (4 / 6, 6)
    assert (metrics["reversal_consistency"].value, metrics["reversal_consistency"].n) == (1 / 3, 3)
    assert (metrics["static_accuracy"].value, metrics["static_accuracy"].n) == (2 / 3, 3)
    assert set(metrics["static"]) == {"shape", "horizontal", "vertical"}
    better = [dict(r, correct=True) for r in ROWS]
    difference = item_difference(ROWS, better)  # only the 6 pair items count; 2 of them flip to right
    assert difference.n == 6 and difference.value == pytest.approx(2 / 6)


def _fake_run(root: Path, regime: str, seed: int, arm: str, correct: list[bool], tokens: float | None = None) -> None:
    """An evaluation folder and its data set, as run_experiment leaves them, with chosen answers (and, given
    `tokens`, the LLM tokens per video counted for it)."""
    data = root / regime / f"seed-{seed}" / "data"
    data.mkdir(parents=True, exist_ok=True)
    questions = [
        {"video": f"videos/{i:05d}.mp4", "task": "left_right", "question": "Which?", "candidates": ["right", "left"]}
        | {"answer": "right" if i % 2 == 0 else "left"}
        for i in range(len(correct))
    ]
    (data / "mvbench_validation.json").write_text(json.dumps(questions))
    clips = [{"id": f"{i:05d}", "group": f"left_right-{i // 2}", "reversed": bool(i % 2)} for i in range(len(correct))]
    (data / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    evaluation = root / regime / f"seed-{seed}" / "eval" / arm
    evaluation.mkdir(parents=True)
    rows = [{"qid": f"validation/{i}", "task": "left_right", "correct": c} for i, c in enumerate(correct)]
    (evaluation / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (evaluation / "results.json").write_text("{}")
    (evaluation / "seconds.json").write_text(json.dumps({"train_and_eval": 10.0}))
    if tokens is not None:
        (evaluation / "tokens.json").write_text(json.dumps({"videos": 4, "mean": tokens, "min": tokens, "max": tokens}))


@pytest.mark.version_independent
def test_experiment_summary_pairs_seeds_and_reuses_a_baseline(tmp_path):
    spec = tmp_path / "e.yaml"
    spec.write_text(
        f"out: {tmp_path / 'runs'}\nseeds: [0, 1, 2]\nsteps: 2\narms: [baseline, staveq2, staveq2-two-stage]\n"
        "regimes:\n  stock: {}\n  heads: {overrides: [temporal.head_scale=1.0], baseline_from: stock}\n"
    )
    experiment = load_experiment(spec)
    runs = tmp_path / "runs"
    for seed, (base, sta, two, heads, heads_two) in enumerate([(2, 4, 3, 1, 4), (1, 3, 3, 2, 3), (2, 4, 2, 2, 3)]):
        _fake_run(runs, "stock", seed, "baseline", [i < base for i in range(4)])  # right answers out of 4
        _fake_run(runs, "stock", seed, "staveq2", [i < sta for i in range(4)])
        _fake_run(runs, "stock", seed, "staveq2-two-stage", [i < two for i in range(4)])
        _fake_run(runs, "heads", seed, "staveq2", [i < heads for i in range(4)])
        _fake_run(runs, "heads", seed, "staveq2-two-stage", [i < heads_two for i in range(4)])
    summary = summarise(experiment)
    stock = summary["regimes"]["stock"]
    assert stock["arms"]["baseline"]["pair_accuracy"] == [0.5, 0.25, 0.5]
    assert stock["arms"]["staveq2"]["pair_accuracy"] == [1.0, 0.75, 1.0]
    assert stock["arms"]["staveq2-two-stage"]["pair_accuracy"] == [0.75, 0.75, 0.5]
    assert Estimate(**stock["arms"]["staveq2"]["pair_accuracy_mean"]) == mean_interval([1.0, 0.75, 1.0])
    # every pair of arms, later minus earlier in the file's order
    compared = {(c["arm"], c["against"]): c for c in stock["differences"]}
    assert list(compared) == [
        ("staveq2", "baseline"), ("staveq2-two-stage", "baseline"), ("staveq2-two-stage", "staveq2")
    ]  # fmt: skip
    difference = Estimate(**compared["staveq2", "baseline"]["pair_accuracy"]["difference"])
    assert difference.value == pytest.approx(0.5) and difference.low == difference.high == pytest.approx(0.5)
    two_vs_one = Estimate(**compared["staveq2-two-stage", "staveq2"]["pair_accuracy"]["difference"])
    assert two_vs_one == paired_difference([1.0, 0.75, 1.0], [0.75, 0.75, 0.5])
    heads = summary["regimes"]["heads"]
    assert heads["arms"]["baseline"]["pair_accuracy"] == [0.5, 0.25, 0.5]  # the stock baseline, reused
    heads_difference = heads["differences"][0]
    assert Estimate(**heads_difference["pair_accuracy"]["difference"]).value == pytest.approx((-0.25 + 0.25 + 0.0) / 3)
    assert "no significant difference" in heads_difference["pair_accuracy"]["verdict"]
    # each STA arm of the variant against the same arm of stock: 1/4 - 4/4, 2/4 - 3/4, 2/4 - 4/4
    against = heads["against_source"]
    assert set(against) == {"staveq2", "staveq2-two-stage"}
    assert against["staveq2"]["source"] == "stock" and against["staveq2"]["seeds"] == [0, 1, 2]
    assert Estimate(**against["staveq2"]["difference"]).value == pytest.approx((-0.75 - 0.25 - 0.5) / 3)
    assert Estimate(**against["staveq2-two-stage"]["difference"]).value == pytest.approx((0.25 + 0.0 + 0.25) / 3)
    assert "against_source" not in stock
    table = summary_table(summary)
    assert "| heads | staveq2 | stock | 3 | -50.0 [" in table
    assert "| stock | baseline | 3 | - | 41.7 [" in table  # no tokens.json: no token count
    assert "| stock | staveq2 | baseline | 3 | +50.0 [+50.0, +50.0] (n=3) | staveq2 better |" in table
    assert "| stock | left_right | 50 25 50 | 100 75 100 | 75 75 50 |" in table


@pytest.mark.version_independent
def test_the_report_plots_pair_accuracy_against_tokens_per_video(tmp_path):
    """Three poolings x three arms: the table gives each arm's mean pair accuracy with its t-interval and the LLM
    tokens per video; the figure's points are those numbers, by increasing tokens, and it is written next to the
    table; a regime without token counts is left out of the figure, an experiment without `plot` has none."""
    spec = tmp_path / "e.yaml"
    runs = tmp_path / "runs"
    spec.write_text(
        f"out: {runs}\nseeds: [0, 1]\nsteps: 4\narms: [baseline, staveq2, staveq2-two-stage]\n"
        "regimes: {none: {hold: true}, mean-2: {hold: true}, mean-all: {hold: true}, other: {}}\n"
        "plot: [none, mean-2, mean-all, other]\nreference: {regime: none, arm: baseline}\n"
    )
    right = {  # regime -> arm -> right answers out of 4, per seed
        "none": {"baseline": (4, 3), "staveq2": (4, 4), "staveq2-two-stage": (3, 4)},
        "mean-2": {"baseline": (2, 3), "staveq2": (4, 3), "staveq2-two-stage": (3, 3)},
        "mean-all": {"baseline": (2, 2), "staveq2": (3, 2), "staveq2-two-stage": (4, 3)},
        "other": {"baseline": (2, 2), "staveq2": (2, 2), "staveq2-two-stage": (2, 2)},
    }
    tokens = {"none": 36, "mean-2": 18, "mean-all": 9, "other": None}
    for regime, arms in right.items():
        for arm, counts in arms.items():
            for seed, count in enumerate(counts):
                _fake_run(runs, regime, seed, arm, [i < count for i in range(4)], tokens[regime])
    summary = summarise(load_experiment(spec))
    write_report(summary, runs)
    curves = token_curves(summary)
    assert list(curves) == ["baseline", "staveq2", "staveq2-two-stage"]
    assert [(x, name) for x, _, name in curves["staveq2"]] == [(9, "mean-all"), (18, "mean-2"), (36, "none")]
    assert [e for _, e, _ in curves["staveq2"]] == [
        mean_interval([0.75, 0.5]), mean_interval([1.0, 0.75]), mean_interval([1.0, 1.0])
    ]  # fmt: skip
    table = (runs / "results.md").read_text()
    assert "| mean-2 | staveq2-two-stage | 2 | 18 | 75.0 [75.0, 75.0] (n=2) |" in table
    assert f"| none | baseline | 2 | 36 | {mean_interval([1.0, 0.75]).percent()} |" in table
    assert "| other | baseline | 2 | - |" in table
    assert "(pair_accuracy_vs_tokens.png)" in table
    # every run on the reference's data (not `other`: no hold) against none/baseline, paired by seed (4/4, 3/4)
    reference = summary["reference"]
    compared = {(c["regime"], c["arm"]): c for c in reference["comparisons"]}
    assert len(compared) == 8 and ("none", "baseline") not in compared and reference["other_data"] == ["other"]
    staveq2_all = compared["mean-all", "staveq2"]
    assert staveq2_all["seeds"] == [0, 1] and staveq2_all["tokens_ratio"] == 4
    assert Estimate(**staveq2_all["difference"]) == paired_difference([1.0, 0.75], [0.75, 0.5])
    assert Estimate(**compared["mean-all", "staveq2-two-stage"]["difference"]).value == pytest.approx(0.0)
    assert compared["mean-2", "baseline"]["tokens_ratio"] == 2
    assert "| mean-all | staveq2 | 4 | 2 | -25.0 [-25.0, -25.0] (n=2) | mean-all/staveq2 worse |" in table
    assert "Not compared (other data: another `hold`): other." in table
    figure = runs / "pair_accuracy_vs_tokens.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    figure.unlink()
    write_report({**summary, "plot": []}, runs)
    assert not figure.exists() and "png" not in (runs / "results.md").read_text()


@pytest.mark.version_independent
def test_an_experiment_file_selects_its_arms_and_the_two_stage_split(tmp_path):
    spec = tmp_path / "e.yaml"
    spec.write_text("seeds: [0]\nregimes: {a: {}}\n")
    assert load_experiment(spec).arms == ["baseline", "staveq2"]  # the default: as before arms could be chosen
    two = ARMS["staveq2-two-stage"]
    assert two.temporal and ARMS["staveq2"].temporal and not ARMS["baseline"].temporal
    assert two.stage_steps(300) == [150, 150] and two.stage_steps(300, 0.25) == [75, 225]
    assert ARMS["staveq2"].stage_steps(300) == [300]
    assert two.overrides(10, 0.3) == [
        "stages=[{name: stage1, trains: [temporal, head], training: {max_steps: 3}}, "
        "{name: stage2, trains: [temporal, lora, head], training: {max_steps: 7}}]"
    ]
    with pytest.raises(ValueError, match="leave a stage without steps"):
        two.stage_steps(1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds: [0]\nregimes: {a: {colour: red}}\n", r"regimes\.a: unknown key"),
        ("seeds: [0]\nregimes: {a: {baseline_from: b}}\n", r"baseline_from: no regime 'b'"),
        ("seeds: [0]\nregimes: {a: {}, b: {overrides: [lora.r=4], baseline_from: a}}\n", r"only temporal"),
        ("seeds: [0]\nregimes: {a: {}, b: {baseline_from: a}, c: {baseline_from: b}}\n", r"c\.baseline_from: b reuses"),
        ("seeds: [0]\nregimes: {a: {}, b: {hold: true, baseline_from: a}}\n", r"reads other data"),
        ("seeds: []\nregimes: {a: {}}\n", r"seeds"),
        ("seed: [0]\nregimes: {a: {}}\n", r"unknown key"),
        ("seeds: [0]\narms: [baseline, staveq3]\nregimes: {a: {}}\n", r"arms: unknown arm\(s\) \['staveq3'\]; known"),
        ("seeds: [0]\narms: baseline\nregimes: {a: {}}\n", r"arms: a list of arm names"),
        ("seeds: [0]\narms: [staveq2, staveq2]\nregimes: {a: {}}\n", r"arms: an arm is listed twice"),
        ("seeds: [0]\nstage1_fraction: 1.5\nregimes: {a: {}}\n", r"stage1_fraction: a number between 0 and 1"),
        ("seeds: [0]\nsteps: 1\narms: [staveq2-two-stage]\nregimes: {a: {}}\n", r"steps / stage1_fraction: arm"),
        ("seeds: [0]\nregimes: {a: {}}\nplot: [b]\n", r"plot: a list of the file's regimes"),
        ("seeds: [0]\nregimes: {a: {}}\nreference: a\n", r"reference: \{regime: NAME, arm: NAME\} is needed"),
        ("seeds: [0]\nregimes: {a: {}}\nreference: {regime: b, arm: baseline}\n", r"reference.regime: no regime 'b'"),
        (
            "seeds: [0]\nregimes: {a: {}}\nreference: {regime: a, arm: staveq2-two-stage}\n",
            r"reference.arm: 'staveq2-t",
        ),
    ],
)
@pytest.mark.version_independent
def test_bad_experiment_files_are_refused_naming_the_key(tmp_path, text, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises(ExperimentError, match=message) as error:
        load_experiment(spec)
    assert str(error.value).startswith(f"{spec}: ")


def test_a_derived_regime_keeps_its_sources_other_overrides(tmp_path):
    spec = tmp_path / "e.yaml"
    spec.write_text(
        "seeds: [0]\nregimes:\n  a: {hold: true, overrides: [model.temporal_pooling=mean]}\n"
        "  b: {overrides: [temporal.head_scale=1.0], baseline_from: a}\n"
    )
    derived = load_experiment(spec).regimes["b"]
    assert derived.baseline_from == "a" and derived.hold
    assert derived.overrides == ["model.temporal_pooling=mean", "temporal.head_scale=1.0"]


@pytest.mark.version_independent
def test_shipped_experiment_files_are_valid():
    experiment = load_experiment(REPO / "configs" / "experiments" / "synthetic-temporal.yaml")
    assert len(experiment.seeds) >= 5
    assert {"stock", "hold", "pooled", "frozen-llm"} <= set(experiment.regimes)
    compression = load_experiment(REPO / "configs" / "experiments" / "token-compression.yaml")
    assert compression.arms == ["baseline", "staveq2", "staveq2-two-stage"] and len(compression.seeds) == 5
    assert (compression.steps, compression.data) == (experiment.steps, experiment.data)  # synthetic-temporal's budget
    assert all(regime.hold for regime in compression.regimes.values())
    pooling = {name: regime.overrides for name, regime in compression.regimes.items()}
    assert pooling == {
        "none": [], "mean-2": ["model.temporal_pooling=mean:2"], "mean-all": ["model.temporal_pooling=mean"]
    }  # fmt: skip
    assert compression.plot == list(compression.regimes) and compression.reference == ("none", "baseline")


def test_demo_runs_end_to_end_on_the_shipped_base(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "24", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "demo.json").read_text())
    assert set(report["arms"]) == {"baseline", "staveq2"}
    for name in ("comparison.png", "loss_curves.png", "attention.png", "demo.md"):
        assert (out / name).stat().st_size > 0, name
    # the printed numbers are those of the predictions, and the conclusion is computed from them
    for name in report["arms"]:
        rows = [json.loads(line) for line in (out / "eval" / name / "predictions.jsonl").read_text().splitlines()]
        pair = [r for r in rows if r["task"] in ("left_right", "up_down", "rotation", "approach")]
        measured = report["arms"][name]["metrics"]["pair_accuracy"]
        assert measured["n"] == len(pair) > 0
        assert measured["value"] == pytest.approx(sum(r["correct"] for r in pair) / len(pair))
    difference = Estimate(**report["pair_accuracy_difference"])
    assert report["conclusion"] == verdict(difference, "staveq2", "baseline")
    assert report["conclusion"] in printed
    assert "Sample questions" in printed and report["peak_memory_mib"] > 0


def _weights(model: Path) -> dict:
    from safetensors.torch import load_file

    return {name: tensor.float() for name, tensor in load_file(model / "model.safetensors").items()}


def test_two_stage_arm_trains_sta_and_head_then_lora_in_the_one_stage_budget(tmp_path):
    """The two-stage arm at 2 steps (1 + 1, no warm-up so that each step moves the weights): stage 1 changed STA
    and the head only (every other weight equals the shipped base's), stage 2 also LoRA (merged into the vision and
    LLM linears) and nothing outside STA, LoRA and the head; the steps add up to the one-stage arm's; the same seed
    gives the same weights; its processor's LLM tokens per video follow the saved model's pooling."""
    from stave.base import TINY_BASE
    from stave.experiments import RECIPE, train_arm, video_tokens
    from stave.synthetic import generate
    from stave.training import load_recipe

    data = tmp_path / "data"
    generate(data, n=8, seed=0, tasks=["left_right"], val_fraction=0.5)
    overrides = ["training.max_steps=2", "training.per_device_train_batch_size=2", "training.warmup_ratio=0.0"]
    runs = [train_arm("staveq2-two-stage", data, tmp_path / run, seed=3, overrides=overrides) for run in "ab"]
    stages = runs[0].parent.parent
    assert runs[0] == stages / "stage2" / "model"
    record = {s: json.loads((stages / s / "model" / "stave-run.json").read_text()) for s in ("stage1", "stage2")}
    assert [record[s]["trains"] for s in record] == [["temporal", "head"], ["temporal", "lora", "head"]]
    dataset = f"data.datasets=[{{path: {data / 'train.jsonl'}}}]"
    one_stage = load_recipe(RECIPE, [dataset, *ARMS["staveq2"].overrides(2), *overrides])
    assert record["stage1"]["steps"] + record["stage2"]["steps"] == one_stage.training["max_steps"] == 2
    assert record["stage1"]["steps"] == record["stage2"]["steps"] == 1

    base, first, second = _weights(TINY_BASE), _weights(stages / "stage1" / "model"), _weights(runs[0])
    sta = {name for name in first if ".temp_attn." in name or ".norm3." in name}
    assert sta and set(first) == set(base) | sta == set(second)
    changed = {name for name in base if not torch.equal(base[name], first[name])}
    assert changed == {"lm_head.weight"}
    assert any(not torch.equal(first[name], torch.zeros_like(first[name])) for name in sta if "proj.weight" in name)
    changed = {name for name in first if not torch.equal(first[name], second[name])}
    lora_targets = {name for name in changed if name not in sta and name != "lm_head.weight"}
    assert "lm_head.weight" in changed and changed & sta
    vision = {name for name in lora_targets if re.search(r"(^|\.)blocks\.\d+\.", name)}  # the tower's blocks
    llm = {name for name in lora_targets if re.search(r"(^|\.)layers\.\d+\.", name)}  # the LLM's layers
    assert any(".attn.qkv." in name for name in vision) and any(".self_attn.q_proj." in name for name in llm)
    assert vision | llm == lora_targets and all(name.endswith(".weight") for name in lora_targets)
    assert not any("norm" in name or "embed" in name or "merger" in name for name in lora_targets)
    again = _weights(runs[1])
    assert all(torch.equal(second[name], again[name]) for name in second)  # same seed, same result

    assert set(video_tokens(runs[0], data)) == {4 * 9}  # 8 frames of 84 x 84: 4 temporal patches of 3 x 3 tokens
    pooled = tmp_path / "pooled"
    shutil.copytree(runs[0], pooled)
    config = json.loads((pooled / "config.json").read_text())
    (pooled / "config.json").write_text(json.dumps({**config, "temporal_pooling": "mean"}))
    assert set(video_tokens(pooled, data)) == {9}


def test_classifier_experiment_pairs_top1_by_seed(tmp_path):
    """The shipped classifier experiment file loads (both regimes, 5 seeds, baseline then sta); its summary pairs
    each seed's top-1 of the two arms and gives the mean difference with its t-interval."""
    import yaml

    from stave.experiments.classifier import classifier_table, load_classifier_experiment, summarise_classifier

    path = REPO / "configs" / "experiments" / "classifier-synthetic.yaml"
    raw = yaml.safe_load(path.read_text())
    experiment = load_classifier_experiment(path, raw)
    assert list(experiment.arms) == ["baseline", "sta"] and experiment.regimes == {"stock": False, "hold": True}
    assert len(experiment.seeds) == 5 and Path(experiment.recipe).is_file()
    experiment.out = str(tmp_path)
    for seed, (base, sta) in enumerate([(0.25, 0.5), (0.5, 0.5), (0.25, 0.75)]):
        for arm, accuracy in (("baseline", base), ("sta", sta)):
            folder = tmp_path / "stock" / f"seed-{seed}" / "eval" / arm
            folder.mkdir(parents=True)
            (folder / "results.json").write_text(json.dumps({"overall": {"accuracy": accuracy}}))
    summary = summarise_classifier(experiment)
    assert list(summary["regimes"]) == ["stock"]  # hold: nothing finished
    stock = summary["regimes"]["stock"]
    assert stock["seeds"] == [0, 1, 2] and stock["accuracy"] == {"baseline": [0.25, 0.5, 0.25], "sta": [0.5, 0.5, 0.75]}
    assert Estimate(**stock["difference"]) == paired_difference([0.25, 0.5, 0.25], [0.5, 0.5, 0.75])
    assert "| stock | 3 | 33.3 | 58.3 | +25.0 [" in classifier_table(summary)
    with pytest.raises(ExperimentError, match=r"arms: two arms"):
        load_classifier_experiment(path, {**raw, "arms": {"only": []}})
    with pytest.raises(ExperimentError, match=r"regimes\.stock: unknown key"):
        load_classifier_experiment(path, {**raw, "regimes": {"stock": {"pooled": True}}})
