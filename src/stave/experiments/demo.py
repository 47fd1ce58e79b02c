"""`stave demo`: the paper's key ablation in miniature, on a laptop CPU — the same LoRA fine-tune of stave's tiny
base with and without STA on synthetic clips whose classes only temporal order tells apart.

Steps (all under --out, default runs/demo):
    data/                      `stave synth` clips of the pair tasks and still controls (held-out validation split)
    train/<arm>/               `stave train` of each arm (stave.experiments.arms.DEFAULT_ARMS, baseline and staveq2:
                               same recipe, data stream, steps; they differ in nothing but STA)
    eval/<arm>/                `stave eval` of each arm on the validation split (option log-likelihood)
    comparison.png, loss_curves.png, attention.png    `stave compare`'s bar chart, both arms' losses, and the
                               STA arm's temporal-attention map on one held-out clip (`stave explain`)
    demo.json, demo.md         every measured number, the settings, the wall time and peak memory
The printed conclusion is computed from the paired difference of the two arms on the same items.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.items import LETTERS
from .arms import DEFAULT_ARMS, ArmResult, arm_metrics, evaluate_arm, item_difference, scored_rows, train_arm
from .stats import Estimate, verdict

logger = logging.getLogger("stave.demo")

DEMO_TASKS = ("left_right", "up_down", "rotation", "approach", "still")


@dataclass
class DemoSettings:
    """What the demo runs. The defaults fit 10 minutes on 2 CPU cores (see docs/experiments.md)."""

    out: str = "runs/demo"
    n: int = 1000  # videos, shared by the tasks
    seed: int = 0
    tasks: tuple[str, ...] = DEMO_TASKS
    hold: bool = False
    val_fraction: float = 0.4
    steps: int = 300
    overrides: list[str] = field(default_factory=list)  # recipe overrides for both arms
    samples: int = 6


def run_demo(settings: DemoSettings, *, progress: bool = True) -> dict[str, Any]:
    """Generate, train both arms, evaluate, compare; returns (and writes) the report."""
    from ..synthetic import generate

    start = time.perf_counter()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    _say(f"[1/4] generating {settings.n} synthetic clips ({', '.join(settings.tasks)})")
    data = out / "data"
    tick = time.perf_counter()
    generate(
        data,
        overwrite=True,
        progress=progress,
        n=settings.n,
        seed=settings.seed,
        tasks=settings.tasks,
        hold=settings.hold,
        val_fraction=settings.val_fraction,
    )
    seconds["data"] = time.perf_counter() - tick

    arms: dict[str, ArmResult] = {}
    overrides = [f"training.max_steps={settings.steps}", *settings.overrides]
    for k, name in enumerate(DEFAULT_ARMS):
        _say(f"[2/4] fine-tuning arm {k + 1}/{len(DEFAULT_ARMS)}: {name} ({settings.steps} steps)")
        train_dir = out / "train"
        if (train_dir / name).exists():
            shutil.rmtree(train_dir / name)
        tick = time.perf_counter()
        model = train_arm(name, data, train_dir, seed=settings.seed, overrides=overrides)
        arms[name] = ArmResult(name, model, out / "eval" / name, seconds={"train": time.perf_counter() - tick})

    for name, arm in arms.items():
        _say(f"[3/4] evaluating {name} on the held-out split")
        if arm.evaluation.exists():
            shutil.rmtree(arm.evaluation)
        tick = time.perf_counter()
        evaluate_arm(name, arm.model, data, out / "eval", progress=progress)
        arm.seconds["eval"] = time.perf_counter() - tick
        arm.metrics = arm_metrics(scored_rows(arm.evaluation, data))

    _say("[4/4] comparing")
    rows = {name: scored_rows(arm.evaluation, data) for name, arm in arms.items()}
    baseline, sta = list(arms)
    difference = item_difference(rows[baseline], rows[sta])
    conclusion = verdict(difference, sta, baseline)
    figures = _figures(out, arms, data)
    report = {
        "settings": asdict(settings),
        "arms": {
            name: {"metrics": _plain(arm.metrics), "seconds": arm.seconds, "model": str(arm.model)}
            for name, arm in arms.items()
        },
        "pair_accuracy_difference": asdict(difference),
        "conclusion": conclusion,
        "samples": _samples(rows, settings.samples),
        "figures": figures,
        "seconds": {**seconds, "total": time.perf_counter() - start},
        "peak_memory_mib": _peak_mib(),
    }
    (out / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "demo.md").write_text(demo_table(report) + "\n")
    return report


def demo_table(report: dict[str, Any]) -> str:
    """The report as Markdown: metrics of both arms with 95% intervals, the difference, the conclusion."""
    names = list(report["arms"])
    metrics = {name: report["arms"][name]["metrics"] for name in names}
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, pick) -> None:
        cells = []
        for name in names:
            value = pick(metrics[name])
            cells.append(Estimate(**value).percent() if value else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for task in metrics[names[0]]["pairs"]:
        row(f"pair accuracy: {task}", lambda m, t=task: m["pairs"].get(t))
    row("**pair accuracy, all pairs**", lambda m: m["pair_accuracy"])
    row("reversal consistency", lambda m: m["reversal_consistency"])
    for kind in metrics[names[0]]["static"]:
        row(f"static: {kind}", lambda m, k=kind: m["static"].get(k))
    row("**static accuracy**", lambda m: m["static_accuracy"])
    difference = Estimate(**report["pair_accuracy_difference"])
    lines += [
        "",
        "Accuracies in %, [95% Wilson interval], n items; reversal consistency: both clips of a time-reversed pair "
        "answered right.",
        f"Paired difference {names[1]} - {names[0]} on the same pair items: {difference.percent(signed=True)} points.",
        "",
        f"**Conclusion: {report['conclusion']}.**",
    ]
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(demo_table(report))
    print("\nSample questions (held-out clips):")
    for sample in report["samples"]:
        answers = ", ".join(f"{name}: {answer}" for name, answer in sample["answers"].items())
        print(f"  {sample['clip']:<24} {sample['question']:<48} truth: {sample['truth']:<10} {answers}")
    print("\nFigures: " + ", ".join(report["figures"].values()))
    seconds = report["seconds"]["total"]
    print(
        f"Wall time {seconds / 60:.1f} min, peak memory {report['peak_memory_mib']:.0f} MiB; all numbers in "
        f"{Path(report['settings']['out']) / 'demo.json'}"
    )


def _figures(out: Path, arms: dict[str, ArmResult], data: Path) -> dict[str, str]:
    from ..evaluation.compare import comparison_chart
    from ..training.run import plot_history

    figures = {"comparison": str(comparison_chart([arm.evaluation for arm in arms.values()], out / "comparison.png"))}
    histories = {}
    for name, arm in arms.items():
        log = arm.model.parent / "log_history.json"
        if log.is_file():
            histories[name] = json.loads(log.read_text())
    plot_history(histories, out / "loss_curves.png")
    figures["loss_curves"] = str(out / "loss_curves.png")
    attention = _attention_map(arms, data, out / "attention.png")
    if attention is not None:
        figures["attention"] = attention
    return figures


def _attention_map(arms: dict[str, ArmResult], data: Path, path: Path) -> str | None:
    """The STA arm's temporal attention on the first held-out direction clip."""
    from transformers import AutoTokenizer

    from ..base import VIDEO_OPTIONS
    from ..checkpoint import load_model
    from ..explain import save_map, sta_blocks, temporal_attention_map
    from ..processing import VideoChatProcessor

    for arm in arms.values():
        model = load_model(arm.model)
        if not sta_blocks(model):
            continue
        questions = json.loads((data / "mvbench_validation.json").read_text())
        video = next((q["video"] for q in questions if q["task"] in ("left_right", "up_down") and "video" in q), None)
        if video is None:
            return None
        processor = VideoChatProcessor.for_model(AutoTokenizer.from_pretrained(arm.model), model, VIDEO_OPTIONS)
        result = temporal_attention_map(model, processor, str(data / video))
        return str(save_map(result, path, title=f"{arm.name}: {video}"))
    return None


def _samples(rows: dict[str, list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """A few held-out questions with every arm's answer (one per task first)."""
    names = list(rows)
    by_qid = {name: {r["qid"]: r for r in arm_rows} for name, arm_rows in rows.items()}
    chosen, seen = [], set()
    for row in rows[names[0]]:
        if row["task"] not in seen:
            seen.add(row["task"])
            chosen.append(row)
    samples = []
    for row in chosen[:count]:
        answers = {}
        for name in names:
            parsed = by_qid[name][row["qid"]]["parsed"]  # the option letter chosen (None: unparseable)
            answers[name] = row["options"][LETTERS.index(parsed)] if parsed else "?"
        clip = row["group"] + (" (reversed)" if row.get("reversed") else "")
        samples.append({"clip": clip, "question": row["question"], "truth": row["truth"], "answers": answers})
    return samples


def _plain(value: Any) -> Any:
    if isinstance(value, Estimate):
        return asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _peak_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _say(message: str) -> None:
    print(message, flush=True)
