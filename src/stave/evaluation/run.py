"""Running an evaluation: ask every item, append each prediction as it is made, score, write the results.

Output folder of a run:
    settings.json       every setting that affects the numbers (a rerun must match them to resume)
    predictions.jsonl   one line per item: qid, task, groups, prompt, raw answer, parsed answer, correct, and
                        with in-context examples (shots) the ids of the examples asked before it
                        (predictions.rank<R>.jsonl per process under accelerate launch / torchrun, each
                        answering every num_processes-th item)
    results.json        scores overall, per task and per group, counts, unparseable rate, settings, versions,
                        and the prompt text when every item was asked the same; a classifier's run (scoring
                        "classify") adds top-5 accuracy and the confusion of opposing class pairs, its per-class
                        accuracy being the per-task one (an SSv2 item's task is its class)
    results.md          the same as a Markdown table
A rerun in the same folder skips the items already answered (a line cut short by a kill is dropped and
its item asked again) and ends with the same scores as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import transformers

from .. import __version__
from ..distributed import owned_process_group, process_state
from ..errors import StaveError
from ..runfiles import read_jsonl, settings_differences
from ..training.checkpoints import write_json_atomic
from ..video import VideoOptions
from .answers import exact_match, extract_choice, match_text
from .items import LETTERS, EvalItem, LoadReport
from .prompts import DEFAULT_TEMPLATE, prompt_text
from .shots import ExampleDraw

SCORINGS = ("generate", "loglik", "classify")
TOP_K = 5  # a classifier's top-k accuracy


class EvalError(StaveError, ValueError):
    """An evaluation that cannot run or resume as asked; names the file or setting."""


@dataclass
class EvalSettings:
    """Every setting a score depends on; stored with the results and checked when resuming."""

    benchmark: str
    data: str
    model: str
    # generate (greedy answer, rule-based extraction) | loglik (option likelihood) | classify (a video classifier's
    # logits over its labels: stave.classification)
    scoring: str = "generate"
    template: str = DEFAULT_TEMPLATE
    video: VideoOptions = field(default_factory=VideoOptions)
    max_new_tokens: int = 16
    seed: int = 0
    limit: int | None = None
    benchmark_options: dict[str, Any] = field(default_factory=dict)  # the loader's own keyword arguments
    prompt_classes: bool = False  # the question lists the class names; answers scored by match to one of them
    shots: int = 0  # in-context examples from the benchmark's training split before each question
    shots_seed: int = 0  # seed of their draw (stave.evaluation.shots)
    position_scheme: dict[str, Any] | None = None  # the model's, as used (PositionScheme.to_dict; None: stock)
    temporal_pooling: str | None = None  # the model's, as used ("mean", "mean:K"; None: not pooled)
    # scoring "classify": the classifier's input (ClipInput.to_dict), its views (clips x crops, logits averaged)
    # and its labels (index order)
    clip_input: dict[str, Any] | None = None
    views: dict[str, int] | None = None
    labels: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        # the video options as VideoOptions.to_dict writes them, so runs started before a field was added resume
        return {**dataclasses.asdict(self), "video": self.video.to_dict()}

    def record_model(self, model: Any) -> EvalSettings:
        """Fill in what the Video-LLM `model` brings to the scores: its position scheme (None: the stock M-RoPE)
        and its temporal pooling."""
        from ..modeling import temporal_pooling
        from ..positions import position_scheme

        scheme = position_scheme(model)
        self.position_scheme = None if scheme.name == "mrope" else scheme.to_dict()
        self.temporal_pooling = temporal_pooling(model)
        return self


class Answerer(Protocol):
    """What the runner asks: free answers for a batch, or per-option log-likelihoods."""

    def generate(self, items: Sequence[EvalItem]) -> list[str]: ...

    def option_scores(self, items: Sequence[EvalItem]) -> list[list[float]]: ...

    def classify(self, items: Sequence[EvalItem]) -> list[list[float]]: ...


def evaluate(
    answerer: Answerer,
    items: Sequence[EvalItem],
    settings: EvalSettings,
    output: str | Path,
    *,
    batch_size: int = 4,
    load_report: LoadReport | None = None,
    progress: bool = True,
    examples: Sequence[EvalItem] | None = None,
    examples_report: LoadReport | None = None,
) -> dict[str, Any]:
    """Answer every item not yet in `output`, then score all of them; returns the results (also written).
    Under a launcher each process answers every num_processes-th item (stave.distributed.process_state: one
    run, or a LaunchError), and results are scored on the main process; returns {} on the others.
    `examples`: the pool of solved items that settings.shots draws from (the benchmark's training split:
    stave.evaluation.benchmarks.load_examples), and `examples_report` what its loader skipped (both counted in
    the results' "example_pool")."""
    if settings.scoring not in SCORINGS:
        raise EvalError(f"scoring must be one of {list(SCORINGS)}, got {settings.scoring!r}")
    if settings.scoring == "classify" and not settings.labels:
        raise EvalError("scoring 'classify' needs the classifier's labels (EvalSettings.labels)")
    with owned_process_group():
        pool = (examples, examples_report)
        return _evaluate(answerer, items, settings, Path(output), batch_size, load_report, progress, pool)


def prepare(items: Sequence[EvalItem], settings: EvalSettings, examples: Sequence[EvalItem] | None) -> list[EvalItem]:
    """The items as `settings` asks them: with the class names in the prompt (prompt_classes) and with their
    in-context examples drawn from `examples` (shots); raises EvalError for items these do not apply to."""
    if settings.prompt_classes:
        unfit = next((item for item in [*items, *(examples or ())] if item.options or not item.classes), None)
        if unfit is not None:
            what = "is multiple choice (its options name the answers)" if unfit.options else "has no class names"
            raise EvalError(
                f"{settings.benchmark}: prompt_classes lists the class names of an open-ended classification "
                f"benchmark (ssv2; ssv2-t10 with format=open), but question {unfit.qid!r} {what}"
            )
        items = [dataclasses.replace(item, prompt_classes=True) for item in items]
    if settings.shots < 0:
        raise EvalError(f"shots must be >= 0, got {settings.shots}")
    if not settings.shots:
        return list(items)
    if not examples:
        raise EvalError(f"{settings.benchmark}: shots={settings.shots} needs labelled examples (none were given)")
    pool = [dataclasses.replace(item, prompt_classes=settings.prompt_classes) for item in examples]
    draw = ExampleDraw(pool, settings.shots, settings.shots_seed)
    return [dataclasses.replace(item, examples=draw.examples(item)) for item in items]


def _evaluate(answerer, items, settings: EvalSettings, output: Path, batch_size, load_report, progress, pool) -> dict:
    from tqdm.auto import tqdm

    state = process_state()
    items = list(items)[: settings.limit] if settings.limit else list(items)
    _check_unique(items)
    examples, examples_report = pool
    items = prepare(items, settings, examples)
    if state.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        _check_or_write_settings(output, settings)
    state.wait_for_everyone()

    name = "predictions.jsonl" if state.num_processes == 1 else f"predictions.rank{state.process_index}.jsonl"
    path = output / name
    done = {row["qid"] for row in read_jsonl(path, repair=True)}
    # questions on the same video next to each other, so a caching video reader decodes each video once
    mine = [item for item in items[state.process_index :: state.num_processes] if item.qid not in done]
    mine.sort(key=lambda item: tuple(str(v.path) for v in item.videos))
    bar = tqdm(total=len(mine), desc=f"{settings.benchmark}", disable=not progress or not state.is_main_process)
    with open(path, "a", encoding="utf-8") as handle:
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size]
            for row in _answer(answerer, batch, settings):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(batch))
    bar.close()
    state.wait_for_everyone()

    results: dict[str, Any] = {}
    if state.is_main_process:
        rows = [row for p in sorted(output.glob("predictions*.jsonl")) for row in read_jsonl(p)]
        wanted = {item.qid for item in items}
        rows = list({row["qid"]: row for row in rows if row["qid"] in wanted}.values())
        results = score(rows, settings, load_report)
        if settings.shots:
            skipped = examples_report.skipped if examples_report else []
            results["example_pool"] = {"items": len(examples), "skipped_on_load": len(skipped), "skipped": skipped}
        write_json_atomic(output / "results.json", results)
        (output / "results.md").write_text(results_table(results))
    state.wait_for_everyone()
    return results


def _answer(answerer: Answerer, batch: list[EvalItem], settings: EvalSettings) -> list[dict[str, Any]]:
    if settings.scoring == "classify":
        return _classify(answerer, batch, settings)
    if settings.scoring == "loglik":
        if any(item.options is None for item in batch):
            raise EvalError(f"{settings.benchmark}: loglik scoring needs multiple-choice items")
        scores = answerer.option_scores(batch)
        raw = [LETTERS[max(range(len(s)), key=s.__getitem__)] for s in scores]
    else:
        scores = [None] * len(batch)
        raw = answerer.generate(batch)
    rows = []
    for item, answer, option_scores in zip(batch, raw, scores, strict=True):
        if item.prompt_classes:
            index = match_text(answer, item.classes)
            parsed = None if index is None else item.classes[index]
            correct = parsed == item.answer
        elif item.options is None:
            parsed, correct = answer.strip(), exact_match(answer, item.answer)
        else:
            index = extract_choice(answer, item.options)
            parsed = None if index is None else LETTERS[index]
            correct = index == item.answer_index
        row = {
            "qid": item.qid,
            "task": item.task,
            "groups": item.groups,
            "prompt": prompt_text(item, settings.template),
            "raw": answer,
            "parsed": parsed,
            "answer": item.answer_letter or item.answer,
            "correct": bool(correct),
        }
        if option_scores is not None:
            row["option_scores"] = option_scores
        if settings.shots:
            row["examples"] = [example.qid for example in item.examples]
        rows.append(row)
    return rows


def _classify(answerer: Answerer, batch: list[EvalItem], settings: EvalSettings) -> list[dict[str, Any]]:
    """Rows of a classifier's answers: its top-1 class (parsed), its top-5 classes with their logits (averaged
    over the views), and whether the item's class is the top-1 (correct) or among the top-5 (correct_top5)."""
    labels = settings.labels
    unknown = next((item for item in batch if item.answer not in labels), None)
    if unknown is not None:
        raise EvalError(
            f"question {unknown.qid!r}: its class {unknown.answer!r} is not among the classifier's {len(labels)} "
            "labels (evaluate on the classes it was trained on, e.g. ssv2-t10 for a T10 model)"
        )
    rows = []
    for item, logits in zip(batch, answerer.classify(batch), strict=True):
        if len(logits) != len(labels):
            raise EvalError(f"question {item.qid!r}: the classifier gave {len(logits)} logits for {len(labels)} labels")
        top = sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:TOP_K]
        rows.append(
            {
                "qid": item.qid,
                "task": item.task,
                "groups": item.groups,
                "prompt": None,
                "raw": labels[top[0]],
                "parsed": labels[top[0]],
                "answer": item.answer,
                "correct": labels[top[0]] == item.answer,
                "correct_top5": item.answer in [labels[i] for i in top],
                "top5": [[labels[i], logits[i]] for i in top],
            }
        )
    return rows


def score(rows: list[dict[str, Any]], settings: EvalSettings, load_report: LoadReport | None = None) -> dict:
    """Accuracy overall, per task and per group value; counts; the share of unparseable answers."""

    def accuracy(subset: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(subset)
        return {"accuracy": sum(r["correct"] for r in subset) / n if n else None, "n": n}

    by_task: dict[str, list] = defaultdict(list)
    by_group: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_task[row["task"]].append(row)
        for key, value in row.get("groups", {}).items():
            by_group[key][value].append(row)
    # answers that must name an option (or, with class names in the prompt, a class)
    choice_rows = [r for r in rows if settings.prompt_classes or r["parsed"] is None or len(str(r["parsed"])) == 1]
    unparseable = sum(r["parsed"] is None for r in rows)
    prompts = {r["prompt"] for r in rows}
    classifier = {}
    if settings.scoring == "classify":
        from ..classification.pairs import opposing_pairs, pair_confusion

        n = len(rows)
        pairs = pair_confusion([(r["answer"], r["parsed"]) for r in rows], opposing_pairs(settings.labels))
        shown = [p for p in pairs if sum(p["n"])]
        pooled = sum(sum(p["n"]) for p in shown)
        classifier = {
            "top5": {"accuracy": sum(r["correct_top5"] for r in rows) / n if n else None, "n": n},
            "views": settings.views,
            "opposing_pairs": {
                "confused": sum(p["a_as_b"] + p["b_as_a"] for p in shown) / pooled if pooled else None,
                "n": pooled,
                "pairs": shown,
            },
        }
    return {
        "benchmark": settings.benchmark,
        "overall": accuracy(rows),
        "tasks": {task: accuracy(subset) for task, subset in sorted(by_task.items())},
        "groups": {k: {v: accuracy(s) for v, s in sorted(vals.items())} for k, vals in sorted(by_group.items())},
        "counts": {
            "items": len(rows),
            "unparseable": unparseable,
            "skipped_on_load": len(load_report.skipped) if load_report else 0,
        },
        "unparseable_rate": unparseable / len(choice_rows) if choice_rows else 0.0,
        "skipped": load_report.skipped if load_report else [],
        "settings": settings.to_dict(),
        "prompt": prompts.pop() if len(prompts) == 1 else None,
        **classifier,
        "versions": {"stave": __version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }


def _model_setting(settings: dict[str, Any]) -> str:
    """What the model brought besides its weights, for the results table: ' (temporal pooling mean:2, VideoRoPE
    positions, spacing 2.0)', '' for a stock model."""
    parts = []
    if settings.get("temporal_pooling"):
        parts.append(f"temporal pooling {settings['temporal_pooling']}")
    if settings.get("position_scheme"):
        scheme = settings["position_scheme"]
        parts.append(f"{scheme['name']} positions, spacing {scheme['temporal_spacing']}")
    return f" ({', '.join(parts)})" if parts else ""


def results_table(results: dict[str, Any]) -> str:
    settings = results["settings"]
    video = settings["video"]
    sampling = f"nframes={video['nframes']}" if video["nframes"] else f"fps={video['fps']}"
    seen = (
        f"template {settings['template']}, {sampling}, frames {video['min_frames']}..{video['max_frames']}, pixels "
        f"{video['min_pixels']}..{video['max_pixels']} per frame (total {video['total_pixels']})"
    )
    if settings.get("clip_input"):  # a classifier's input (stave.classification.clips)
        clip = settings["clip_input"]
        seen = (
            f"{clip['frames']} frames (one per segment), shorter side {clip['short_side'] or clip['size']}, "
            f"{clip['size']}x{clip['size']} crops, mean {clip['mean']}, std {clip['std']}"
        )
    lines = [
        f"# {results['benchmark']}: {percent(results['overall']['accuracy'])} ({results['overall']['n']} items)",
        "",
        f"model `{settings['model']}`{_model_setting(settings)}, scoring {settings['scoring']}, {seen}; unparseable "
        f"{results['counts']['unparseable']} ({results['unparseable_rate']:.1%}); skipped on load "
        f"{results['counts']['skipped_on_load']}; stave {results['versions']['stave']}, transformers "
        f"{results['versions']['transformers']}",
        "",
    ]
    if settings.get("prompt_classes") or settings.get("shots"):
        lines += [
            f"class names in the prompt: {'yes' if settings.get('prompt_classes') else 'no'}; in-context examples: "
            f"{settings.get('shots', 0)} (seed {settings.get('shots_seed', 0)}, ids in predictions)",
            "",
        ]
    if "top5" in results:
        views = results["views"] or {"clips": 1, "crops": 1}
        pairs = results["opposing_pairs"]
        lines += [
            f"classifier: top-1 {percent(results['overall']['accuracy'])}, "
            f"top-5 {percent(results['top5']['accuracy'])}; "
            f"views {views['clips']} clips x {views['crops']} crops (logits averaged); opposing pairs confused "
            f"{percent(pairs['confused'])} of their {pairs['n']} items",
            "",
        ]
        if pairs["pairs"]:
            lines += ["| opposing pair (a / b) | n a / n b | a as b | b as a | confused |", "|---|---:|---:|---:|---:|"]
            lines += [
                f"| {p['pair'][0]} / {p['pair'][1]} | {p['n'][0]} / {p['n'][1]} | {p['a_as_b']} | {p['b_as_a']} | "
                f"{percent(p['confused'])} |"
                for p in pairs["pairs"]
            ]
            lines += [""]
    if results.get("prompt"):
        lines += ["prompt (every question; after its video):", "", "```", results["prompt"], "```", ""]
    lines += [
        "| task | accuracy | n |",
        "|---|---:|---:|",
    ]
    lines += [f"| {task} | {percent(v['accuracy'])} | {v['n']} |" for task, v in results["tasks"].items()]
    for key, values in results["groups"].items():
        lines += ["", f"| {key} | accuracy | n |", "|---|---:|---:|"]
        lines += [f"| {value} | {percent(v['accuracy'])} | {v['n']} |" for value, v in values.items()]
    return "\n".join(lines) + "\n"


def percent(value: float | None) -> str:
    """An accuracy as a percentage with two decimals ("-" when there were no items)."""
    return "-" if value is None else f"{100 * value:.2f}"


def _check_unique(items: Sequence[EvalItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.qid in seen:
            raise EvalError(f"question id {item.qid!r} appears twice: results could not be resumed")
        seen.add(item.qid)


def _check_or_write_settings(output: Path, settings: EvalSettings) -> None:
    # a setting added since the run was started had its default there
    added = {f.name: f.default for f in dataclasses.fields(EvalSettings) if f.default is not dataclasses.MISSING}
    added["benchmark_options"] = {}
    added["video"] = VideoOptions().to_dict()  # VideoOptions fields added since: as before them (budget, frame_factor)
    differ = settings_differences(output / "settings.json", settings.to_dict(), defaults=added)
    if differ:
        raise EvalError(f"{output} holds predictions made with other settings ({'; '.join(differ)}); use a new folder")
