"""Side-by-side results of several evaluation runs (e.g. baseline vs STA): a table with per-task deltas
against the first run, and a grouped bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .run import EvalError, percent


def load_results(run: str | Path) -> dict[str, Any]:
    path = Path(run)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise EvalError(f"{run}: no results.json (run `stave eval` first)")
    return json.loads(path.read_text())


def comparison(runs: list[str | Path]) -> tuple[list[str], list[str], dict[str, list[tuple[float | None, int]]]]:
    """(run names, row names, row -> [(accuracy, n) per run]); rows are 'overall' then every task."""
    if len(runs) < 2:
        raise EvalError("compare needs at least two runs")
    results = [load_results(run) for run in runs]
    benchmarks = {r["benchmark"] for r in results}
    if len(benchmarks) > 1:
        raise EvalError(f"the runs evaluate different benchmarks: {sorted(benchmarks)}")
    names = [Path(run).name if Path(run).is_dir() else Path(run).parent.name for run in runs]
    tasks = sorted({task for r in results for task in r["tasks"]})
    rows = {"overall": [(r["overall"]["accuracy"], r["overall"]["n"]) for r in results]}
    for task in tasks:
        rows[task] = [(r["tasks"].get(task, {}).get("accuracy"), r["tasks"].get(task, {}).get("n", 0)) for r in results]
    return names, list(rows), rows


def comparison_table(runs: list[str | Path]) -> str:
    names, order, rows = comparison(runs)
    header = ["task", *[f"{name}" for name in names], *[f"Δ {name}" for name in names[1:]]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in order:
        values = rows[row]
        cells = [f"{percent(acc)} (n={n})" for acc, n in values]
        base = values[0][0]
        deltas = ["-" if acc is None or base is None else f"{100 * (acc - base):+.2f}" for acc, _ in values[1:]]
        lines.append("| " + " | ".join([row, *cells, *deltas]) + " |")
    return "\n".join(lines) + "\n"


def comparison_chart(runs: list[str | Path], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, order, rows = comparison(runs)
    width = 0.8 / len(names)
    figure, axis = plt.subplots(figsize=(max(6, 0.9 * len(order) * len(names)), 4))
    for k, name in enumerate(names):
        heights = [100 * (rows[row][k][0] or 0) for row in order]
        axis.bar([i + k * width for i in range(len(order))], heights, width, label=name)
    axis.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(order))])
    axis.set_xticklabels(order, rotation=30, ha="right")
    axis.set_ylabel("accuracy (%)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
