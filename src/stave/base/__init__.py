"""stave's shipped tiny base: a Qwen2-VL-architecture model of 2.3M parameters with a word-level tokenizer,
pretrained from scratch on static questions (shape and coarse position of one object, in images and still videos)
by `configs/tiny-pretrain.yaml`. It is what the demo and the synthetic experiment fine-tune: no download needed.

    TINY_BASE            the folder (config.json, model.safetensors in bfloat16, tokenizer files); recipes and
                         commands also accept the name "stave/tiny-base" for it (resolve_model)
    VIDEO_OPTIONS        how it reads `stave synth` clips: 8 frames of 84 x 84, unresized
    check_base(path)     its accuracy per question kind and medium on a fresh synthetic sample (`stave check-base`)
    export_base(src, dst)  write a trained model folder as a base (bfloat16 weights + tokenizer)
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from ..video import VideoOptions

TINY_BASE = Path(__file__).parent / "tiny"
FRAME_SIZE = 84
VIDEO_OPTIONS = VideoOptions(nframes=8, min_pixels=FRAME_SIZE**2, max_pixels=FRAME_SIZE**2)
POSITION_KINDS = ("horizontal", "vertical")
POSITION_BAR = 0.90  # what the shipped base must reach on position questions about held-out images
SHIPPED = {"stave/tiny-base": TINY_BASE}


def resolve_model(path: str | Path) -> Path:
    """A model folder: a shipped model's name ("stave/tiny-base") becomes its folder; anything else is a path."""
    return SHIPPED.get(str(path), Path(path))


def export_base(source: str | Path, target: str | Path = TINY_BASE, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Save the model folder `source` (e.g. runs/tiny-pretrain/pretrain/model) as a base in `target`."""
    from transformers import AutoTokenizer

    from ..checkpoint import load_model
    from ..tokenizer import save_tokenizer
    from ..training.checkpoints import save_atomic

    model = load_model(source, dtype=torch.float32).to(dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        _portable_rope(tmp / "config.json")
        save_tokenizer(tokenizer, tmp)
        run = Path(source) / "stave-run.json"
        if run.is_file():  # how it was trained: recipe, steps, versions
            (tmp / "stave-run.json").write_text(run.read_text())

    save_atomic(Path(target), write)
    return Path(target)


def _portable_rope(config_file: Path) -> None:
    """Add transformers 4.57's names for the text rotary settings (rope_theta, rope_scaling) next to 5.x's
    rope_parameters, so the shipped config loads with the same rotary embedding on both."""
    config = json.loads(config_file.read_text())
    text = config.get("text_config", {})
    rope = text.get("rope_parameters")
    if rope and "mrope_section" in rope:
        text["rope_theta"] = rope["rope_theta"]
        text["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
        config_file.write_text(json.dumps(config, indent=2) + "\n")


def check_base(
    model: str | Path = TINY_BASE,
    *,
    n: int = 150,
    seed: int = 20261123,
    batch_size: int = 16,
    output: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of a (base) model on every question of `n` fresh still clips and their images (`stave synth
    --tasks still --images`, seed `seed`, all of it held out), scored by option log-likelihood.

    Returns {"accuracy": {kind: {medium: (correct, n)}}, "position_images": accuracy of horizontal + vertical
    questions on images, "passed": position_images >= POSITION_BAR}.
    """
    from ..evaluation import EvalSettings, evaluate, load_answerer
    from ..evaluation.benchmarks.synthetic import load_synthetic
    from ..synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(data, n=n, seed=seed, tasks=("still",), images=True, val_fraction=0.0)
        items = load_synthetic(data, split="train", on_missing="raise")  # val_fraction 0: every clip is unseen
        answerer = load_answerer(model, video_options=VIDEO_OPTIONS, template="synth-v1", dtype=torch.float32)
        settings = EvalSettings(
            benchmark="synthetic",
            data=f"stave synth --n {n} --seed {seed} --tasks still --images",
            model=str(model),
            scoring="loglik",
            template="synth-v1",
            video=VIDEO_OPTIONS,
            seed=seed,
        )
        out = Path(output) if output is not None else Path(tmp) / "eval"
        evaluate(answerer, items, settings, out, batch_size=batch_size, progress=progress)
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for row in rows:
        cell = table[row["task"]][row["groups"]["media"]]
        cell[0] += bool(row["correct"])
        cell[1] += 1
    position = [table[kind]["image"] for kind in POSITION_KINDS]
    correct, total = sum(c for c, _ in position), sum(t for _, t in position)
    accuracy = correct / total if total else 0.0
    return {
        "accuracy": {kind: {medium: tuple(cell) for medium, cell in media.items()} for kind, media in table.items()},
        "position_images": accuracy,
        "passed": accuracy >= POSITION_BAR,
        "n_clips": n,
        "seed": seed,
    }


def base_report(result: dict[str, Any]) -> str:
    """check_base's result as a Markdown table."""
    lines = ["| question | image | still video |", "|---|---|---|"]
    for kind, media in sorted(result["accuracy"].items()):
        cells = []
        for medium in ("image", "video"):
            correct, total = media.get(medium, (0, 0))
            cells.append(f"{100 * correct / total:.1f}% ({correct}/{total})" if total else "-")
        lines.append(f"| {kind} | {' | '.join(cells)} |")
    verdict = "passes" if result["passed"] else "FAILS"
    lines.append(
        f"\nposition on images: {100 * result['position_images']:.1f}% — {verdict} the {100 * POSITION_BAR:.0f}% bar"
    )
    return "\n".join(lines)
