"""`stave experiment FILE`: the arms over several seeds in several regimes, with paired differences.

The arms (stave.experiments.arms.ARMS) are the file's `arms` list, default baseline and staveq2; the two-stage arm
splits the same number of steps between its stages (`stage1_fraction` of them to stage 1, default
arms.STAGE1_FRACTION). A regime is a data option (`hold`) plus recipe overrides for every arm (e.g.
model.temporal_pooling=mean, lora.llm=false, temporal.head_scale=1.0). For each (regime, seed): a data set drawn
with that seed, every arm trained (stave.experiments.arms.train_arm: same recipe, data and number of steps) and
evaluated on its held-out split, and the LLM tokens per video counted from its processor
(stave.experiments.arms.video_tokens). Results per seed go to <out>/<regime>/seed-<s>/{data,train,eval}; finished
evaluations are reused on rerun, so an interrupted experiment continues where it stopped. `baseline_from: REGIME`
makes a regime that regime plus temporal.* overrides (same data, same other overrides) and reuses its runs of the
arms without STA.

The report (<out>/results.md, results.json): per regime and arm, the mean pair accuracy over seeds with its 95%
Student-t interval and the LLM tokens per video; per regime, each pair of arms' mean paired difference (the later arm
in the file's list minus the earlier, per seed) with its 95% Student-t interval and the verdict computed from it, the
same for reversal consistency and static accuracy; for a regime with `baseline_from`, also each STA arm against the
source regime's same arm, paired by seed (what the ablation itself changed). With `plot: [REGIME, ...]`, a figure of
pair accuracy (with the intervals) against LLM tokens per video for those regimes, one line per arm
(<out>/pair_accuracy_vs_tokens.png). With `reference: {regime: R, arm: A}`, every other (regime, arm) on the same
data (the regimes with R's `hold`: the same clips seed by seed) against that one run, paired by seed, with the ratio
of their LLM tokens per video; the figure draws the reference's mean as a dashed line.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from ..errors import StaveError
from .arms import ARMS, DEFAULT_ARMS, STAGE1_FRACTION, arm_metrics, evaluate_arm, scored_rows, train_arm, video_tokens
from .stats import Estimate, mean_interval, paired_difference, verdict

KEYS = ("out", "seeds", "data", "steps", "regimes", "arms", "stage1_fraction", "plot", "reference")
METRICS = ("pair_accuracy", "reversal_consistency", "static_accuracy")
PLOT = "pair_accuracy_vs_tokens.png"


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
    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS))
    stage1_fraction: float = STAGE1_FRACTION
    plot: list[str] = field(default_factory=list)  # regimes drawn in the accuracy-vs-tokens figure
    reference: tuple[str, str] | None = None  # (regime, arm) every other run on the same data is compared with

    def check_steps(self, where: str = "steps") -> None:
        """ExperimentError when `steps` leaves a stage of an arm without steps."""
        for name in self.arms:
            try:
                ARMS[name].stage_steps(self.steps, self.stage1_fraction)
            except ValueError as error:
                raise ExperimentError(f"{where}: {error}") from None


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"{path}: experiment file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) {unknown}; known: {sorted(KEYS)}")
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
    arms = raw.get("arms", list(DEFAULT_ARMS))
    if not isinstance(arms, list) or not arms or not all(isinstance(a, str) for a in arms):
        raise ExperimentError(f"{path}: arms: a list of arm names is needed; known: {sorted(ARMS)}")
    unknown_arms = [a for a in arms if a not in ARMS]
    if unknown_arms:
        raise ExperimentError(f"{path}: arms: unknown arm(s) {unknown_arms}; known: {sorted(ARMS)}")
    if len(set(arms)) != len(arms):
        raise ExperimentError(f"{path}: arms: an arm is listed twice: {arms}")
    fraction = raw.get("stage1_fraction", STAGE1_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ExperimentError(f"{path}: stage1_fraction: a number between 0 and 1 is needed, got {fraction!r}")
    plot = raw.get("plot") or []
    if not isinstance(plot, list) or any(r not in regimes for r in plot):
        raise ExperimentError(f"{path}: plot: a list of the file's regimes is needed ({sorted(regimes)}), got {plot!r}")
    reference = raw.get("reference")
    if reference is not None:
        if not isinstance(reference, dict) or set(reference) != {"regime", "arm"}:
            raise ExperimentError(f"{path}: reference: {{regime: NAME, arm: NAME}} is needed, got {reference!r}")
        if reference["regime"] not in regimes:
            known = sorted(regimes)
            raise ExperimentError(f"{path}: reference.regime: no regime {reference['regime']!r}; known: {known}")
        if reference["arm"] not in arms:
            raise ExperimentError(f"{path}: reference.arm: {reference['arm']!r} is not one of the file's arms {arms}")
        reference = (reference["regime"], reference["arm"])
    experiment = Experiment(
        str(raw.get("out", "runs/experiment")), seeds, dict(raw.get("data") or {}), int(raw.get("steps", 300)),
        regimes, arms=list(arms), stage1_fraction=float(fraction), plot=list(plot), reference=reference,
    )  # fmt: skip
    experiment.check_steps(f"{path}: steps / stage1_fraction")
    return experiment


def run_experiment(
    experiment: Experiment, *, regimes: list[str] | None = None, seeds: list[int] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) the chosen regimes and seeds; returns and writes the summary of everything finished."""
    from ..synthetic import generate

    chosen = regimes or list(experiment.regimes)
    for name in chosen:
        if name not in experiment.regimes:
            raise ExperimentError(f"unknown regime {name!r}; known: {sorted(experiment.regimes)}")
    experiment.check_steps()
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
            for arm in experiment.arms:
                if regime.baseline_from and not ARMS[arm].temporal:
                    continue  # the source regime's run of this arm is the same run
                evaluation = folder / "eval" / arm
                if (evaluation / "results.json").is_file():
                    continue
                print(f"[{name} seed {seed}] training and evaluating {arm}", flush=True)
                tick = time.perf_counter()
                if (folder / "train" / arm).exists():
                    shutil.rmtree(folder / "train" / arm)
                overrides = [f"training.max_steps={experiment.steps}", *regime.overrides]
                model = train_arm(
                    arm, data, folder / "train", seed=seed, overrides=overrides,
                    stage1_fraction=experiment.stage1_fraction,
                )  # fmt: skip
                tokens = video_tokens(model, data)
                if evaluation.exists():
                    shutil.rmtree(evaluation)
                evaluate_arm(arm, model, data, folder / "eval", progress=progress)
                (evaluation / "tokens.json").write_text(json.dumps(_token_summary(tokens)))
                (evaluation / "seconds.json").write_text(json.dumps({"train_and_eval": time.perf_counter() - tick}))
                shutil.rmtree(folder / "train" / arm)  # the trained weights: not needed for the table (a few MB each)
    summary = summarise(experiment)
    write_report(summary, out)
    return summary


def _token_summary(counts: list[int]) -> dict[str, Any]:
    return {"videos": len(counts), "mean": sum(counts) / len(counts), "min": min(counts), "max": max(counts)}


def write_report(summary: dict[str, Any], out: Path) -> None:
    """results.json, results.md and, for the regimes in summary["plot"], the accuracy-vs-tokens figure."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = summary_table(summary)
    if accuracy_tokens_plot(summary, out / PLOT):
        table += f"\n\n![pair accuracy against LLM tokens per video]({PLOT})"
    (out / "results.md").write_text(table + "\n")


def summarise(experiment: Experiment) -> dict[str, Any]:
    """Every finished (regime, seed): each arm's metrics and tokens, and per regime the paired differences over
    seeds."""
    out = Path(experiment.out)
    arms = experiment.arms
    summary: dict[str, Any] = {
        "seeds": experiment.seeds,
        "steps": experiment.steps,
        "data": experiment.data,
        "arms": arms,
        "stage1_fraction": experiment.stage1_fraction,
        "plot": experiment.plot,
        "regimes": {},
    }
    for name, regime in experiment.regimes.items():
        per_seed = {}
        for seed in experiment.seeds:
            data_regime = regime.baseline_from or name
            data = out / data_regime / f"seed-{seed}" / "data"
            places = {
                arm: out / (name if ARMS[arm].temporal else data_regime) / f"seed-{seed}" / "eval" / arm for arm in arms
            }
            if not all((p / "results.json").is_file() for p in places.values()):
                continue
            metrics = {arm: arm_metrics(scored_rows(place, data)) for arm, place in places.items()}
            tokens = {
                arm: json.loads((p / "tokens.json").read_text())["mean"] if (p / "tokens.json").is_file() else None
                for arm, p in places.items()
            }
            seconds = sum(
                json.loads((p / "seconds.json").read_text())["train_and_eval"]
                for p in places.values()
                if (p / "seconds.json").is_file()
            )
            per_seed[seed] = {"metrics": metrics, "tokens": tokens, "seconds": seconds}
        if not per_seed:
            continue
        order = sorted(per_seed)
        entry: dict[str, Any] = {"hold": regime.hold, "overrides": regime.overrides, "seeds": order, "arms": {}}
        for arm in arms:
            values = {metric: [per_seed[s]["metrics"][arm][metric].value for s in order] for metric in METRICS}
            counted = [per_seed[s]["tokens"][arm] for s in order if per_seed[s]["tokens"][arm] is not None]
            entry["arms"][arm] = {
                **values,
                "pair_accuracy_mean": asdict(mean_interval(values["pair_accuracy"])),
                "tokens_per_video": sum(counted) / len(counted) if counted else None,
            }
        entry["differences"] = []
        for earlier, later in combinations(arms, 2):
            comparison: dict[str, Any] = {"arm": later, "against": earlier}
            for metric in METRICS:
                difference = paired_difference(entry["arms"][earlier][metric], entry["arms"][later][metric])
                comparison[metric] = {
                    "difference": asdict(difference),
                    "verdict": verdict(difference, later, earlier, metric.replace("_", " ")),
                }
            entry["differences"].append(comparison)
        entry["pairs"] = {
            task: {arm: [per_seed[s]["metrics"][arm]["pairs"][task].value for s in order] for arm in arms}
            for task in per_seed[order[0]]["metrics"][arms[0]]["pairs"]
        }
        entry["seconds"] = sum(v["seconds"] for v in per_seed.values())
        summary["regimes"][name] = entry
    for name, entry in summary["regimes"].items():
        # a regime that reuses another's baseline changes only STA: compare its STA arms with that regime's, by seed
        source = experiment.regimes[name].baseline_from
        if source is None or source not in summary["regimes"]:
            continue
        entry["against_source"] = {}
        reference = summary["regimes"][source]
        for arm in (a for a in arms if ARMS[a].temporal):
            theirs = dict(zip(reference["seeds"], reference["arms"][arm]["pair_accuracy"], strict=True))
            ours = dict(zip(entry["seeds"], entry["arms"][arm]["pair_accuracy"], strict=True))
            seeds = [s for s in ours if s in theirs]
            difference = paired_difference([theirs[s] for s in seeds], [ours[s] for s in seeds])
            entry["against_source"][arm] = {
                "source": source,
                "seeds": seeds,
                "difference": asdict(difference),
                "verdict": verdict(difference, name, source, f"{arm} pair accuracy"),
            }
    if experiment.reference is not None:
        summary["reference"] = _against_reference(experiment, summary["regimes"])
    return summary


def _against_reference(experiment: Experiment, regimes: dict[str, Any]) -> dict[str, Any]:
    """Every (regime, arm) on the reference's data against the reference run, paired by seed; the regimes drawn
    from other data (another `hold`) are named in "other_data", not compared."""
    name, arm = experiment.reference
    result: dict[str, Any] = {"regime": name, "arm": arm, "comparisons": [], "other_data": []}
    if name not in regimes:
        return result
    reference = regimes[name]["arms"][arm]
    result["pair_accuracy_mean"] = reference["pair_accuracy_mean"]
    theirs = dict(zip(regimes[name]["seeds"], reference["pair_accuracy"], strict=True))
    for other, entry in regimes.items():
        if experiment.regimes[other].hold != experiment.regimes[name].hold:
            result["other_data"].append(other)
            continue
        for other_arm in experiment.arms:
            if (other, other_arm) == (name, arm):
                continue
            ours = dict(zip(entry["seeds"], entry["arms"][other_arm]["pair_accuracy"], strict=True))
            seeds = [s for s in ours if s in theirs]
            difference = paired_difference([theirs[s] for s in seeds], [ours[s] for s in seeds])
            tokens = (reference["tokens_per_video"], entry["arms"][other_arm]["tokens_per_video"])
            result["comparisons"].append({
                "regime": other,
                "arm": other_arm,
                "seeds": seeds,
                "tokens_ratio": tokens[0] / tokens[1] if None not in tokens else None,
                "difference": asdict(difference),
                "verdict": verdict(difference, f"{other}/{other_arm}", f"{name}/{arm}", "pair accuracy"),
            })  # fmt: skip
    return result


def summary_table(summary: dict[str, Any]) -> str:
    """The report as Markdown: per regime and arm, pair accuracy and LLM tokens per video; the paired differences;
    the derived regimes' STA arms against their sources'; pair accuracy per seed and task."""
    arms = summary.get("arms", list(DEFAULT_ARMS))
    lines = [
        "| regime | arm | seeds | LLM tokens per video | pair acc. [95% CI over seeds] |",
        "|---|---|---|---|---|",
    ]
    for name, entry in summary["regimes"].items():
        for arm in arms:
            values = entry["arms"][arm]
            tokens = values["tokens_per_video"]
            cells = [
                name, arm, str(len(entry["seeds"])), "-" if tokens is None else f"{tokens:g}",
                Estimate(**values["pair_accuracy_mean"]).percent(),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired differences over seeds (arm - against), with 95% t-intervals:",
        "",
        "| regime | arm | against | seeds | pair acc. difference [95% CI] | verdict | reversal consistency diff. | "
        "static acc. diff. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["regimes"].items():
        for comparison in entry["differences"]:
            difference = Estimate(**comparison["pair_accuracy"]["difference"])
            cells = [
                name,
                comparison["arm"],
                comparison["against"],
                str(len(entry["seeds"])),
                difference.percent(signed=True),
                _short(difference, comparison["arm"]),
                Estimate(**comparison["reversal_consistency"]["difference"]).percent(signed=True),
                Estimate(**comparison["static_accuracy"]["difference"]).percent(signed=True),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    variants = [
        (name, arm, against)
        for name, entry in summary["regimes"].items()
        for arm, against in entry.get("against_source", {}).items()
    ]
    if variants:
        lines += [
            "",
            "Each STA arm of a variant against the same arm of the regime it derives from (paired by seed):",
            "",
            "| variant | arm | against | seeds | pair acc. difference [95% CI] | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for name, arm, against in variants:
            difference = Estimate(**against["difference"])
            cells = [name, arm, against["source"], str(len(against["seeds"])), difference.percent(signed=True)]
            lines.append("| " + " | ".join([*cells, _short(difference, name)]) + " |")
    reference = summary.get("reference")
    if reference and reference["comparisons"]:
        name, arm = reference["regime"], reference["arm"]
        lines += [
            "",
            f"Each run against the reference {name}/{arm}, paired by seed (the same clips), with how many times fewer "
            "LLM tokens per video it gives the LLM:",
            "",
            "| regime | arm | tokens: x fewer | seeds | pair acc. difference [95% CI] | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for comparison in reference["comparisons"]:
            difference = Estimate(**comparison["difference"])
            ratio = comparison["tokens_ratio"]
            cells = [
                comparison["regime"], comparison["arm"], "-" if ratio is None else f"{ratio:.3g}",
                str(len(comparison["seeds"])), difference.percent(signed=True),
                _short(difference, f"{comparison['regime']}/{comparison['arm']}"),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if reference["other_data"]:
            lines += ["", f"Not compared (other data: another `hold`): {', '.join(reference['other_data'])}."]
    lines += [
        "",
        "Pair accuracy per seed and task:",
        "",
        "| regime | task | " + " | ".join(f"{arm} per seed" for arm in arms) + " |",
        "|---|---|" + "---|" * len(arms),
    ]
    for name, entry in summary["regimes"].items():
        for task, values in entry["pairs"].items():
            row = [" ".join(f"{100 * v:.0f}" for v in values[arm]) for arm in arms]
            lines.append(f"| {name} | {task} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def token_curves(summary: dict[str, Any]) -> dict[str, list[tuple[float, Estimate, str]]]:
    """Per arm, the points (LLM tokens per video, pair accuracy: mean over seeds with its 95% t-interval, regime) of
    the regimes in summary["plot"] that finished with token counts for every arm, by increasing tokens."""
    regimes = [
        name
        for name in summary.get("plot", [])
        if name in summary["regimes"]
        and all(v["tokens_per_video"] is not None for v in summary["regimes"][name]["arms"].values())
    ]
    curves = {}
    for arm in summary["arms"] if regimes else []:
        values = {name: summary["regimes"][name]["arms"][arm] for name in regimes}
        curves[arm] = sorted(
            ((v["tokens_per_video"], Estimate(**v["pair_accuracy_mean"]), name) for name, v in values.items()),
            key=lambda point: point[0],
        )
    return curves


def accuracy_tokens_plot(summary: dict[str, Any], path: Path) -> Path | None:
    """The token_curves as a PNG: pair accuracy (%, 95% interval bars, the axis cut at 0-102%) against LLM tokens per
    video (log 2 axis, each tick naming its regimes; the arms drawn slightly apart), one line per arm, chance (50%)
    dotted; None (nothing written) without points."""
    curves = token_curves(summary)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    ticks: dict[float, list[str]] = {}
    for k, (arm, points) in enumerate(curves.items()):
        estimates = [estimate for _, estimate, _ in points]
        below = [0.0 if e.low is None else 100 * (e.value - e.low) for e in estimates]
        above = [0.0 if e.high is None else 100 * (e.high - e.value) for e in estimates]
        shift = 2 ** (0.04 * (k - (len(curves) - 1) / 2))  # the arms' bars side by side, not on top of each other
        x = [tokens * shift for tokens, _, _ in points]
        axis.errorbar(x, [100 * e.value for e in estimates], yerr=[below, above], marker="o", capsize=4, label=arm)
        for tokens, _, name in points:
            if name not in ticks.setdefault(tokens, []):
                ticks[tokens].append(name)
    axis.set_xscale("log", base=2)
    axis.set_xticks(list(ticks), [f"{tokens:g}\n{', '.join(names)}" for tokens, names in ticks.items()])
    axis.minorticks_off()
    axis.set_ylim(0, 102)  # an interval over few seeds can reach past 0-100%; accuracy cannot
    axis.axhline(50, color="grey", linestyle=":", linewidth=1, label="chance")
    reference = summary.get("reference") or {}
    if "pair_accuracy_mean" in reference:
        level = 100 * reference["pair_accuracy_mean"]["value"]
        label = f"{reference['regime']}/{reference['arm']}"
        axis.axhline(level, color="black", linestyle="--", linewidth=1, label=label)
    regimes = {name for points in curves.values() for _, _, name in points}
    seeds = max(len(summary["regimes"][name]["seeds"]) for name in regimes)
    axis.set(
        xlabel="LLM tokens per video (regime)",
        ylabel="pair accuracy (%)",
        title=f"Pair accuracy against LLM tokens per video ({seeds} seed{'s' * (seeds != 1)}, 95% intervals)",
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _short(difference: Estimate, name: str) -> str:
    if difference.low is None:
        return "too few seeds"
    if difference.low > 0:
        return f"{name} better"
    if difference.high < 0:
        return f"{name} worse"
    return "no significant difference"
