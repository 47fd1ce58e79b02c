"""`stave experiment FILE` for a file with `task: classification`: a video classifier trained from scratch on
`stave synth`'s direction clips (its SSv2-style labels.json/train.json/validation.json: the classes of the pair
tasks), with and without STA, over seeds and regimes, with the paired difference of top-1 accuracy.

For each (regime, seed): a data set drawn with that seed (`hold` as the regime says), then each arm — the
recipe plus the file's overrides plus the arm's overrides (its stages) — trained with `stave train` (same data
stream, budget and seeds: training.seed = model.seed = the seed) and evaluated with `stave eval --task
classification` on the validation split. Results go to <out>/<regime>/seed-<s>/{data,train,eval}; finished
evaluations are reused on rerun. The table (<out>/results.md, results.json): per regime, each arm's mean top-1
over seeds and the mean paired difference (second arm - first, per seed) with its 95% Student-t interval.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .stats import Estimate, paired_difference, verdict

KEYS = {"task", "out", "seeds", "data", "steps", "recipe", "overrides", "arms", "regimes", "eval"}


@dataclass
class ClassifierExperiment:
    out: str
    seeds: list[int]
    data: dict[str, Any]
    steps: int
    recipe: str
    overrides: list[str]
    arms: dict[str, list[str]]
    regimes: dict[str, bool]  # name -> hold
    eval: list[str] = field(default_factory=list)


def load_classifier_experiment(path: str | Path, raw: dict[str, Any]) -> ClassifierExperiment:
    """The experiment of a file's parsed YAML (`raw`); ExperimentError naming the file and the key otherwise."""
    from .experiment import ExperimentError

    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) {unknown}; known: {sorted(KEYS)}")
    arms = raw.get("arms") or {}
    if len(arms) != 2 or not all(isinstance(v, list) for v in arms.values()):
        raise ExperimentError(f"{path}: arms: two arms (name: [recipe overrides]) are needed, first the baseline")
    regimes = {}
    for name, values in (raw.get("regimes") or {}).items():
        bad = sorted(set(values or {}) - {"hold"})
        if bad:
            raise ExperimentError(f"{path}: regimes.{name}: unknown key(s) {bad}; known: hold")
        regimes[name] = bool((values or {}).get("hold", False))
    seeds = raw.get("seeds") or []
    if not regimes or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ExperimentError(f"{path}: regimes (at least one) and seeds (a list of integers) are needed")
    recipe = Path(raw.get("recipe", "configs/tiny-classifier.yaml"))
    if not recipe.is_absolute() and not recipe.is_file():
        recipe = Path(path).resolve().parents[2] / recipe  # the repository's configs/ when run elsewhere
    return ClassifierExperiment(
        out=str(raw.get("out", "runs/classifier-experiment")), seeds=seeds, data=dict(raw.get("data") or {}),
        steps=int(raw.get("steps", 100)), recipe=str(recipe), overrides=list(raw.get("overrides") or []),
        arms={k: list(v) for k, v in arms.items()}, regimes=regimes, eval=list(raw.get("eval") or []),
    )  # fmt: skip


def run_classifier_experiment(
    experiment: ClassifierExperiment, *, regimes: list[str] | None = None, seeds: list[int] | None = None
) -> dict[str, Any]:
    """Run (or resume) the chosen regimes and seeds; returns and writes the summary of everything finished."""
    from ..cli import main as stave
    from ..synthetic import generate
    from ..training import load_recipe, train
    from .experiment import ExperimentError

    out = Path(experiment.out)
    for name in regimes or list(experiment.regimes):
        if name not in experiment.regimes:
            raise ExperimentError(f"unknown regime {name!r}; known: {sorted(experiment.regimes)}")
        for seed in seeds or experiment.seeds:
            folder = out / name / f"seed-{seed}"
            data = folder / "data"
            if not (data / "synth.json").is_file():
                print(f"[{name} seed {seed}] generating data", flush=True)
                generate(data, overwrite=True, seed=seed, hold=experiment.regimes[name], **experiment.data)
            for arm, arm_overrides in experiment.arms.items():
                evaluation = folder / "eval" / arm
                if (evaluation / "results.json").is_file():
                    continue
                print(f"[{name} seed {seed}] training and evaluating {arm}", flush=True)
                tick = time.perf_counter()
                for stale in (folder / "train" / arm, evaluation):
                    if stale.exists():
                        shutil.rmtree(stale)
                values = [
                    f"output_dir={folder / 'train' / arm}", f"data.datasets.0.path={data / 'train.json'}",
                    "data.datasets.0.video_pattern=videos/{id}.mp4", f"training.seed={seed}", f"model.seed={seed}",
                    f"training.max_steps={experiment.steps}", *experiment.overrides, *arm_overrides,
                ]  # fmt: skip
                model = train(load_recipe(experiment.recipe, values))
                code = stave(
                    ["eval", "--task", "classification", "--model", str(model), "--benchmark", "ssv2", "--data",
                     str(data), "--benchmark-option", "videos=videos", "--benchmark-option", "extension=.mp4",
                     "--benchmark-option", "split=validation", "--output", str(evaluation), *experiment.eval]
                )  # fmt: skip
                if code != 0:
                    raise ExperimentError(f"[{name} seed {seed}] stave eval of {arm} failed (exit status {code})")
                (evaluation / "seconds.json").write_text(json.dumps({"train_and_eval": time.perf_counter() - tick}))
                shutil.rmtree(folder / "train" / arm)  # the weights: not needed for the table
    summary = summarise_classifier(experiment)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(classifier_table(summary) + "\n")
    return summary


def summarise_classifier(experiment: ClassifierExperiment) -> dict[str, Any]:
    """Per regime: each arm's top-1 per finished seed, and the paired difference (second arm - first)."""
    out = Path(experiment.out)
    first, second = experiment.arms
    summary: dict[str, Any] = {"seeds": experiment.seeds, "steps": experiment.steps, "data": experiment.data,
                               "arms": experiment.arms, "overrides": experiment.overrides, "regimes": {}}  # fmt: skip
    for name, hold in experiment.regimes.items():
        accuracy: dict[str, list[float]] = {first: [], second: []}
        done, seconds = [], 0.0
        for seed in experiment.seeds:
            places = {arm: out / name / f"seed-{seed}" / "eval" / arm for arm in experiment.arms}
            if not all((p / "results.json").is_file() for p in places.values()):
                continue
            done.append(seed)
            for arm, place in places.items():
                accuracy[arm].append(json.loads((place / "results.json").read_text())["overall"]["accuracy"])
                if (place / "seconds.json").is_file():
                    seconds += json.loads((place / "seconds.json").read_text())["train_and_eval"]
        if not done:
            continue
        difference = paired_difference(accuracy[first], accuracy[second])
        summary["regimes"][name] = {
            "hold": hold, "seeds": done, "accuracy": accuracy, "difference": asdict(difference),
            "verdict": verdict(difference, second, first, "top-1 accuracy"), "seconds": seconds,
        }  # fmt: skip
    return summary


def classifier_table(summary: dict[str, Any]) -> str:
    first, second = summary["arms"]
    lines = [
        f"| regime | seeds | {first} top-1 | {second} top-1 | difference [95% CI] | {first} per seed | "
        f"{second} per seed | train+eval s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["regimes"].items():
        acc = entry["accuracy"]
        cells = [
            name, str(len(entry["seeds"])), f"{100 * sum(acc[first]) / len(acc[first]):.1f}",
            f"{100 * sum(acc[second]) / len(acc[second]):.1f}", Estimate(**entry["difference"]).percent(signed=True),
            " ".join(f"{100 * v:.0f}" for v in acc[first]), " ".join(f"{100 * v:.0f}" for v in acc[second]),
            f"{entry['seconds']:.0f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"- {name}: {entry['verdict']}" for name, entry in summary["regimes"].items())]
    return "\n".join(lines)
