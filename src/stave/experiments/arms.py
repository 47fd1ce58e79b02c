"""One comparison on a synthetic data set: fine-tune each arm with `stave train`, evaluate it with `stave eval`
on the held-out split, and measure what the synthetic tasks are for.

An arm is what trains, stage by stage, on a shared recipe (ARMS): `baseline` trains LoRA + the output head,
`staveq2` adds STA, and `staveq2-two-stage` is the paper's regimen — stage 1 trains STA and the output head (the
synthetic answers are new words), stage 2 STA + LoRA + the head, from stage 1's model. Every arm reads the same data
(same training.seed, same recipe), takes the same total number of optimizer steps (a two-stage arm splits
training.max_steps between its stages: `stage1_fraction` of them to stage 1, the rest to stage 2), and is scored on
the same items the same way. `stave demo` runs DEFAULT_ARMS (baseline, staveq2): those two differ in nothing but
STA; the two-stage arm also changes the schedule (half the LoRA steps at the default split, each stage with its own
warm-up and decay), so its difference from the baseline mixes STA with the regimen.

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
TEMPLATE = "synth-v1"
# the share of the steps a two-stage arm gives stage 1: the paper gives no split; halves give STA as many steps
# alone as with LoRA, and at the same total the LoRA of the two-stage arm trains half as long as the one-stage arms'
STAGE1_FRACTION = 0.5


@dataclass(frozen=True)
class Arm:
    """An arm: its stages in order, each (stage name, what it trains: stave.training.recipe.TRAINABLE). A one-stage
    arm trains for the recipe's whole training.max_steps; a two-stage arm gives stage 1 round(max_steps *
    stage1_fraction) steps and stage 2 the rest (each stage is its own Trainer run from the previous stage's model,
    with its own warm-up and learning-rate schedule: stave.training.run)."""

    name: str
    stages: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def temporal(self) -> bool:
        """Whether the arm trains STA (an arm without it does not depend on temporal.* settings)."""
        return any("temporal" in trains for _, trains in self.stages)

    def stage_steps(self, steps: int, stage1_fraction: float = STAGE1_FRACTION) -> list[int]:
        """Optimizer steps per stage for a total of `steps`; ValueError when a stage would get none."""
        if len(self.stages) == 1:
            return [steps]
        if not 0 < stage1_fraction < 1:
            raise ValueError(f"stage1_fraction must be in (0, 1), got {stage1_fraction}")
        first = round(steps * stage1_fraction)
        if not 0 < first < steps:
            raise ValueError(
                f"arm {self.name}: {steps} step(s) at stage1_fraction {stage1_fraction} leave a stage without steps"
            )
        return [first, steps - first]

    def overrides(self, steps: int, stage1_fraction: float = STAGE1_FRACTION) -> list[str]:
        """The recipe overrides that make a recipe of `steps` optimizer steps train this arm."""
        counts = self.stage_steps(steps, stage1_fraction)
        entries = []
        for (stage, trains), count in zip(self.stages, counts, strict=True):
            budget = f", training: {{max_steps: {count}}}" if len(self.stages) > 1 else ""
            entries.append(f"{{name: {stage}, trains: [{', '.join(trains)}]{budget}}}")
        return [f"stages=[{', '.join(entries)}]"]


ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm("baseline", (("baseline", ("lora", "head")),)),
        Arm("staveq2", (("staveq2", ("temporal", "lora", "head")),)),
        Arm("staveq2-two-stage", (("stage1", ("temporal", "head")), ("stage2", ("temporal", "lora", "head")))),
    )
}
DEFAULT_ARMS = ("baseline", "staveq2")


@dataclass
class ArmResult:
    """Where an arm's model and evaluation are, and its measured metrics."""

    name: str
    model: Path
    evaluation: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def train_arm(
    name: str,
    data: Path,
    out: Path,
    *,
    seed: int,
    recipe: str | Path = RECIPE,
    overrides: Sequence[str] = (),
    stage1_fraction: float = STAGE1_FRACTION,
) -> Path:
    """`stave train` of one arm on data/train.jsonl for the recipe's training.max_steps (after `overrides`), split
    between the arm's stages (Arm.stage_steps); returns the folder of its last stage's model."""
    from ..training import load_recipe, train

    values = [
        f"output_dir={out / name}",
        f"data.datasets=[{{path: {data / 'train.jsonl'}}}]",
        f"training.seed={seed}",
        f"model.seed={seed}",
    ]
    steps = load_recipe(recipe, [*values, *overrides]).training.get("max_steps")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"{recipe}: training.max_steps: an arm's budget is a number of steps, got {steps!r}")
    return train(load_recipe(recipe, [*values, *ARMS[name].overrides(steps, stage1_fraction), *overrides]))


def video_tokens(model: Path, data: Path, split: str = "validation") -> list[int]:
    """LLM tokens per video of a `stave synth` data set's split, as the model's processor writes its prompts
    (VideoChatProcessor.for_model on the saved model's config: its temporal pooling, patch geometry; the videos
    read with stave.base.VIDEO_OPTIONS, as evaluate_arm reads them): the placeholder tokens that carry each
    video's features, one count per distinct video, in file order."""
    from transformers import AutoConfig, AutoTokenizer

    from ..base import VIDEO_OPTIONS
    from ..processing import VideoChatProcessor

    processor = VideoChatProcessor.for_model(
        AutoTokenizer.from_pretrained(model), AutoConfig.from_pretrained(model), VIDEO_OPTIONS, data_root=data
    )
    questions = json.loads((data / f"mvbench_{split}.json").read_text())
    videos = list(dict.fromkeys(q["video"] for q in questions if "video" in q))
    counts = []
    for video in videos:
        sample = [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "?"}]}]
        ids = processor.encode(sample, train=False, name=video)["input_ids"]
        counts.append(int((ids == processor.video_token_id).sum()))
    return counts


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
    settings.record_model(answerer.model)
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
