"""One comparison on a synthetic data set: fine-tune each arm with `stave train`, evaluate it with `stave eval`
on the held-out split, and measure what the synthetic tasks are for.

An arm is a set of recipe overrides on a shared recipe (ARMS: `baseline` trains LoRA + the output head,
`staveq2` adds STA). Both arms read the same data in the same order (same training.seed, same recipe), for the
same number of steps, and are scored on the same items the same way — nothing differs but what trains.

Metrics (`arm_metrics`), from the evaluation's predictions.jsonl and the data set's clips.jsonl:
    pair accuracy      per pair task and overall, on the direction questions (the choice is between the two
                       classes of the true pair)
    static accuracy    still clips: shape, position, colour
    reversal consistency  the share of a clip and its exact time reverse (validation pairs) whose answers both
                       flip correctly — both clips of the pair answered right
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..synthetic import PAIR_TASKS
from ..synthetic.tasks import STILL_KINDS
from .stats import Estimate, paired_difference, proportion

logger = logging.getLogger("stave.experiments")

RECIPE = Path(__file__).parent / "finetune.yaml"
ARMS: dict[str, list[str]] = {
    "baseline": ["stages=[{name: baseline, trains: [lora, head]}]"],
    "staveq2": ["stages=[{name: staveq2, trains: [temporal, lora, head]}]"],
}
TEMPLATE = "synth-v1"


@dataclass
class ArmResult:
    """Where an arm's model and evaluation are, and its measured metrics."""

    name: str
    model: Path
    evaluation: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def train_arm(
    name: str, data: Path, out: Path, *, seed: int, recipe: str | Path = RECIPE, overrides: Sequence[str] = ()
) -> Path:
    """`stave train` of one arm on data/train.jsonl; returns its model folder."""
    from ..training import load_recipe, train

    values = [
        f"output_dir={out / name}",
        f"data.datasets=[{{path: {data / 'train.jsonl'}}}]",
        f"training.seed={seed}",
        f"model.seed={seed}",
        *ARMS[name],
        *overrides,
    ]
    return train(load_recipe(recipe, values))


def evaluate_arm(name: str, model: Path, data: Path, out: Path, *, batch_size: int = 16, progress: bool = True) -> Path:
    """`stave eval --benchmark synthetic --scoring loglik --template synth-v1` of one arm on the validation
    split; returns the evaluation folder (out/<name>)."""
    from ..base import VIDEO_OPTIONS
    from ..evaluation import EvalSettings, evaluate, load_answerer
    from ..evaluation.benchmarks.synthetic import load_synthetic

    items = load_synthetic(data, split="validation", on_missing="raise")
    settings = EvalSettings(
        benchmark="synthetic",
        data=str(data),
        model=str(model),
        scoring="loglik",
        template=TEMPLATE,
        video=VIDEO_OPTIONS,
    )
    answerer = load_answerer(model, video_options=VIDEO_OPTIONS, template=TEMPLATE)
    evaluate(answerer, items, settings, out / name, batch_size=batch_size, progress=progress)
    return out / name


def scored_rows(evaluation: Path, data: Path) -> list[dict[str, Any]]:
    """The evaluation's predictions, each with its clip's group, whether it is the reversed member, and the
    question, options and true answer as the data set states them."""
    questions = json.loads((data / "mvbench_validation.json").read_text())
    clips = {}
    for line in (data / "clips.jsonl").read_text().splitlines():
        clip = json.loads(line)
        clips[clip["id"]] = clip
    rows = []
    for line in (evaluation / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        question = questions[int(row["qid"].split("/")[1])]
        clip = clips[Path(question.get("video") or question["image"]).stem]  # media are named by clip id
        rows.append(
            {
                **row,
                "group": clip["group"],
                "reversed": clip["reversed"],
                "question": question["question"],
                "options": question["candidates"],
                "truth": question["answer"],
            }
        )
    return rows


def arm_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pair accuracy (per pair task and overall), static accuracy, reversal consistency; each an Estimate."""
    pair_rows = [r for r in rows if r["task"] in PAIR_TASKS]
    static_rows = [r for r in rows if r["task"] in STILL_KINDS]
    per_pair = {
        task: _share([r for r in pair_rows if r["task"] == task])
        for task in PAIR_TASKS
        if any(r["task"] == task for r in pair_rows)
    }
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pair_rows:
        groups[row["group"]].append(row)
    complete = [members for members in groups.values() if {m["reversed"] for m in members} == {False, True}]
    consistent = sum(all(m["correct"] for m in members) for members in complete)
    return {
        "pairs": per_pair,
        "pair_accuracy": _share(pair_rows),
        "static": {
            kind: _share([r for r in static_rows if r["task"] == kind])
            for kind in STILL_KINDS
            if any(r["task"] == kind for r in static_rows)
        },
        "static_accuracy": _share(static_rows),
        "reversal_consistency": proportion(consistent, len(complete)),
    }


def _share(rows: Sequence[dict[str, Any]]) -> Estimate:
    return proportion(sum(bool(r["correct"]) for r in rows), len(rows))


def item_difference(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], tasks: Sequence[str] = PAIR_TASKS
) -> Estimate:
    """Paired difference b - a of correctness on the items both arms answered (of the given tasks)."""
    left = {r["qid"]: float(r["correct"]) for r in a if r["task"] in tasks}
    right = {r["qid"]: float(r["correct"]) for r in b if r["task"] in tasks}
    shared = sorted(set(left) & set(right))
    return paired_difference([left[q] for q in shared], [right[q] for q in shared])
