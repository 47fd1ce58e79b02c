"""`stave experiment FILE`: both arms over several seeds in several regimes, with paired differences.

A regime is a data option (`hold`) plus recipe overrides for both arms (e.g. model.temporal_pooling=mean,
lora.llm=false, temporal.head_scale=1.0). For each (regime, seed): a data set drawn with that seed, both arms
trained (stave.experiments.arms.train_arm: same recipe, data stream and budget) and evaluated on its held-out
split. Results per seed go to <out>/<regime>/seed-<s>/{data,train,eval}; finished evaluations are reused on
rerun, so an interrupted experiment continues where it stopped. `baseline_from: REGIME` makes a regime that
regime plus temporal.* overrides (same data, same other overrides) and reuses its baseline runs, which have no STA.

The table (<out>/results.md, results.json): per regime, each arm's mean pair accuracy over seeds, the mean paired
difference (staveq2 - baseline, per seed) with its 95% Student-t interval, the verdict computed from it, the same
for reversal consistency and static accuracy, and the wall time; for a regime with `baseline_from`, also its STA
arm against the source regime's STA arm, paired by seed (what the ablation itself changed).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import StaveError
from .arms import ARMS, arm_metrics, evaluate_arm, scored_rows, train_arm
from .stats import Estimate, paired_difference, verdict

BASELINE, STA = list(ARMS)


class ExperimentError(StaveError, ValueError):
    """An experiment file that cannot run; names the file and the key."""


@dataclass
class Regime:
    name: str
    hold: bool = False
    overrides: list[str] = field(default_factory=list)
    baseline_from: str | None = None


@dataclass
class Experiment:
    out: str
    seeds: list[int]
    data: dict[str, Any]
    steps: int
    regimes: dict[str, Regime]


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"{path}: experiment file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    known = {"out", "seeds", "data", "steps", "regimes"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    regimes = {}
    for name, values in (raw.get("regimes") or {}).items():
        values = values or {}
        bad = sorted(set(values) - {"hold", "overrides", "baseline_from"})
        if bad:
            raise ExperimentError(
                f"{path}: regimes.{name}: unknown key(s) {bad}; known: hold, overrides, baseline_from"
            )
        regimes[name] = Regime(name, **values)
    for name, values in (raw.get("regimes") or {}).items():
        # a regime with baseline_from is its source plus temporal.* overrides: it inherits the source's data
        # (hold) and its other overrides, so the reused baseline is exactly the one it would have trained
        regime = regimes[name]
        if regime.baseline_from is None:
            continue
        where = f"{path}: regimes.{name}.baseline_from"
        source = regimes.get(regime.baseline_from)
        if source is None:
            raise ExperimentError(f"{where}: no regime {regime.baseline_from!r}")
        if source.baseline_from is not None:
            raise ExperimentError(f"{where}: {source.name} reuses another regime's baseline itself; name that one")
        if "hold" in (values or {}) and source.hold != regime.hold:
            raise ExperimentError(f"{where}: {source.name} reads other data (hold)")
        if any(not o.startswith("temporal.") for o in regime.overrides):
            raise ExperimentError(f"{where}: only temporal.* overrides keep {source.name}'s baseline (it has no STA)")
        regime.hold = source.hold
        regime.overrides = [*source.overrides, *regime.overrides]
    if not regimes:
        raise ExperimentError(f"{path}: regimes: at least one regime is needed")
    seeds = raw.get("seeds") or []
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ExperimentError(f"{path}: seeds: a list of integers is needed")
    return Experiment(
        str(raw.get("out", "runs/experiment")), seeds, dict(raw.get("data") or {}), int(raw.get("steps", 300)), regimes
    )


def run_experiment(
    experiment: Experiment, *, regimes: list[str] | None = None, seeds: list[int] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) the chosen regimes and seeds; returns and writes the summary of everything finished."""
    from ..synthetic import generate

    chosen = regimes or list(experiment.regimes)
    for name in chosen:
        if name not in experiment.regimes:
            raise ExperimentError(f"unknown regime {name!r}; known: {sorted(experiment.regimes)}")
    out = Path(experiment.out)
    for name in chosen:
        regime = experiment.regimes[name]
        for seed in seeds or experiment.seeds:
            folder = out / name / f"seed-{seed}"
            data_regime = experiment.regimes[regime.baseline_from] if regime.baseline_from else regime
            data = out / data_regime.name / f"seed-{seed}" / "data"
            if not (data / "synth.json").is_file():
                print(f"[{name} seed {seed}] generating data", flush=True)
                generate(data, overwrite=True, seed=seed, hold=regime.hold, **experiment.data)
            for arm in ARMS:
                if arm == BASELINE and regime.baseline_from:
                    continue
                evaluation = folder / "eval" / arm
                if (evaluation / "results.json").is_file():
                    continue
                print(f"[{name} seed {seed}] training and evaluating {arm}", flush=True)
                tick = time.perf_counter()
                if (folder / "train" / arm).exists():
                    shutil.rmtree(folder / "train" / arm)
                overrides = [f"training.max_steps={experiment.steps}", *regime.overrides]
                model = train_arm(arm, data, folder / "train", seed=seed, overrides=overrides)
                if evaluation.exists():
                    shutil.rmtree(evaluation)
                evaluate_arm(arm, model, data, folder / "eval", progress=progress)
                (evaluation / "seconds.json").write_text(json.dumps({"train_and_eval": time.perf_counter() - tick}))
                shutil.rmtree(model.parent.parent)  # the trained weights: not needed for the table (a few MB each)
    summary = summarise(experiment)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(summary_table(summary) + "\n")
    return summary


def summarise(experiment: Experiment) -> dict[str, Any]:
    """Every finished (regime, seed): each arm's metrics, and per regime the paired differences over seeds."""
    out = Path(experiment.out)
    summary: dict[str, Any] = {
        "seeds": experiment.seeds,
        "steps": experiment.steps,
        "data": experiment.data,
        "regimes": {},
    }
    for name, regime in experiment.regimes.items():
        per_seed = {}
        for seed in experiment.seeds:
            data_regime = regime.baseline_from or name
            data = out / data_regime / f"seed-{seed}" / "data"
            places = {
                BASELINE: out / data_regime / f"seed-{seed}" / "eval" / BASELINE,
                STA: out / name / f"seed-{seed}" / "eval" / STA,
            }
            if not all((p / "results.json").is_file() for p in places.values()):
                continue
            metrics = {arm: arm_metrics(scored_rows(place, data)) for arm, place in places.items()}
            seconds = sum(
                json.loads((p / "seconds.json").read_text())["train_and_eval"]
                for p in places.values()
                if (p / "seconds.json").is_file()
            )
            per_seed[seed] = {"metrics": metrics, "seconds": seconds}
        if not per_seed:
            continue
        entry: dict[str, Any] = {"hold": regime.hold, "overrides": regime.overrides, "seeds": sorted(per_seed)}
        for metric in ("pair_accuracy", "reversal_consistency", "static_accuracy"):
            base = [per_seed[s]["metrics"][BASELINE][metric].value for s in sorted(per_seed)]
            sta = [per_seed[s]["metrics"][STA][metric].value for s in sorted(per_seed)]
            difference = paired_difference(base, sta)
            entry[metric] = {
                BASELINE: base,
                STA: sta,
                "difference": asdict(difference),
                "verdict": verdict(difference, STA, BASELINE, metric.replace("_", " ")),
            }
        entry["pairs"] = {
            task: {arm: [per_seed[s]["metrics"][arm]["pairs"][task].value for s in sorted(per_seed)] for arm in ARMS}
            for task in per_seed[min(per_seed)]["metrics"][BASELINE]["pairs"]
        }
        entry["seconds"] = sum(v["seconds"] for v in per_seed.values())
        summary["regimes"][name] = entry
    for name, entry in summary["regimes"].items():
        # a regime that reuses another's baseline changes only STA: compare its STA arm with that regime's, by seed
        source = experiment.regimes[name].baseline_from
        if source is None or source not in summary["regimes"]:
            continue
        theirs = dict(
            zip(summary["regimes"][source]["seeds"], summary["regimes"][source]["pair_accuracy"][STA], strict=True)
        )
        ours = dict(zip(entry["seeds"], entry["pair_accuracy"][STA], strict=True))
        seeds = [s for s in ours if s in theirs]
        difference = paired_difference([theirs[s] for s in seeds], [ours[s] for s in seeds])
        entry["against_source"] = {
            "source": source,
            "seeds": seeds,
            "difference": asdict(difference),
            "verdict": verdict(difference, name, source, f"{STA} pair accuracy"),
        }
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    lines = [
        f"| regime | seeds | {BASELINE} pair acc. | {STA} pair acc. | difference [95% CI] | verdict | "
        f"reversal consistency diff. | static acc. diff. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["regimes"].items():
        pair = entry["pair_accuracy"]
        mean = lambda values: 100 * sum(values) / len(values)  # noqa: E731
        difference = Estimate(**pair["difference"])
        cells = [
            name,
            str(len(entry["seeds"])),
            f"{mean(pair[BASELINE]):.1f}",
            f"{mean(pair[STA]):.1f}",
            difference.percent(signed=True),
            _short(difference),
            Estimate(**entry["reversal_consistency"]["difference"]).percent(signed=True),
            Estimate(**entry["static_accuracy"]["difference"]).percent(signed=True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    variants = {
        name: entry["against_source"] for name, entry in summary["regimes"].items() if "against_source" in entry
    }
    if variants:
        lines += [
            "",
            f"{STA} arm of a variant against the {STA} arm of the regime it derives from (paired by seed):",
            "",
        ]
        lines += [
            f"| variant | against | seeds | {STA} pair acc. difference [95% CI] | verdict |",
            "|---|---|---|---|---|",
        ]
        for name, against in variants.items():
            difference = Estimate(**against["difference"])
            cells = [name, against["source"], str(len(against["seeds"])), difference.percent(signed=True)]
            lines.append("| " + " | ".join([*cells, _short(difference, name)]) + " |")
    lines.append("")
    lines.append("Pair accuracy per seed and task:")
    lines.append("")
    lines.append("| regime | task | " + f"{BASELINE} per seed | {STA} per seed |")
    lines.append("|---|---|---|---|")
    for name, entry in summary["regimes"].items():
        for task, arms in entry["pairs"].items():
            row = [" ".join(f"{100 * v:.0f}" for v in arms[arm]) for arm in ARMS]
            lines.append(f"| {name} | {task} | {row[0]} | {row[1]} |")
    return "\n".join(lines)


def _short(difference: Estimate, name: str = STA) -> str:
    if difference.low is None:
        return "too few seeds"
    if difference.low > 0:
        return f"{name} better"
    if difference.high < 0:
        return f"{name} worse"
    return "no significant difference"
