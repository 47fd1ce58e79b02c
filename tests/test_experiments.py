"""stave.experiments: the statistics, the metrics of a comparison, the experiment table, and `stave demo` end to
end on the shipped tiny base (a few steps: the pipeline, not the result)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stave.cli import main
from stave.experiments import Estimate, arm_metrics, item_difference, paired_difference, proportion, verdict
from stave.experiments.experiment import ExperimentError, load_experiment, summarise, summary_table

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


def _fake_run(root: Path, regime: str, seed: int, arm: str, correct: list[bool]) -> None:
    """An evaluation folder and its data set, as run_experiment leaves them, with chosen answers."""
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


def test_experiment_summary_pairs_seeds_and_reuses_a_baseline(tmp_path):
    spec = tmp_path / "e.yaml"
    spec.write_text(
        f"out: {tmp_path / 'runs'}\nseeds: [0, 1, 2]\nsteps: 1\n"
        "regimes:\n  stock: {}\n  heads: {overrides: [temporal.head_scale=1.0], baseline_from: stock}\n"
    )
    experiment = load_experiment(spec)
    runs = tmp_path / "runs"
    for seed, (base, sta, heads) in enumerate([(2, 4, 1), (1, 3, 2), (2, 4, 2)]):  # right answers out of 4
        _fake_run(runs, "stock", seed, "baseline", [i < base for i in range(4)])
        _fake_run(runs, "stock", seed, "staveq2", [i < sta for i in range(4)])
        _fake_run(runs, "heads", seed, "staveq2", [i < heads for i in range(4)])
    summary = summarise(experiment)
    stock = summary["regimes"]["stock"]["pair_accuracy"]
    assert stock["baseline"] == [0.5, 0.25, 0.5] and stock["staveq2"] == [1.0, 0.75, 1.0]
    difference = Estimate(**stock["difference"])
    assert difference.value == pytest.approx(0.5) and difference.low == difference.high == pytest.approx(0.5)
    heads = summary["regimes"]["heads"]["pair_accuracy"]
    assert heads["baseline"] == stock["baseline"]  # the stock baseline, reused
    assert Estimate(**heads["difference"]).value == pytest.approx((-0.25 + 0.25 + 0.0) / 3)
    assert "no significant difference" in heads["verdict"]
    # the variant's STA against stock's STA: 1/4 - 4/4, 2/4 - 3/4, 2/4 - 4/4
    against = summary["regimes"]["heads"]["against_source"]
    assert against["source"] == "stock" and against["seeds"] == [0, 1, 2]
    assert Estimate(**against["difference"]).value == pytest.approx((-0.75 - 0.25 - 0.5) / 3)
    assert "against_source" not in summary["regimes"]["stock"]
    table = summary_table(summary)
    assert "| heads | stock | 3 | -50.0 [" in table
    assert "| stock | 3 | 41.7 | 91.7 |" in table and "staveq2 better" in table


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
    ],
)
def test_bad_experiment_files_are_refused_naming_the_key(tmp_path, text, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises(ExperimentError, match=message):
        load_experiment(spec)


def test_a_derived_regime_keeps_its_sources_other_overrides(tmp_path):
    spec = tmp_path / "e.yaml"
    spec.write_text(
        "seeds: [0]\nregimes:\n  a: {hold: true, overrides: [model.temporal_pooling=mean]}\n"
        "  b: {overrides: [temporal.head_scale=1.0], baseline_from: a}\n"
    )
    derived = load_experiment(spec).regimes["b"]
    assert derived.baseline_from == "a" and derived.hold
    assert derived.overrides == ["model.temporal_pooling=mean", "temporal.head_scale=1.0"]


def test_shipped_experiment_file_is_valid():
    experiment = load_experiment(REPO / "configs" / "experiments" / "synthetic-temporal.yaml")
    assert len(experiment.seeds) >= 5
    assert {"stock", "hold", "pooled", "frozen-llm"} <= set(experiment.regimes)


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
