"""Benchmark loaders: each reads one benchmark in its published layout and returns EvalItems.

    items = load_benchmark("vitatecs", "/data/VITATECS", on_missing="skip", report=(report := LoadReport()))

Every loader takes the benchmark root and the keyword arguments on_missing ("skip": a question whose video
is missing is left out and recorded in `report`, or warned about without one; "raise": BenchmarkFormatError
naming the path), seed (for loaders that draw: ssv2-mc, ssv2-t10, ssv2-vsm, vitatecs; the others ignore
it), report (a LoadReport to fill) and its own options (see each module). A file that does not follow the
published format raises BenchmarkFormatError naming the file, the record and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..items import EvalItem, LoadReport
from .mvbench import load_mvbench
from .reading import OnMissing
from .ssv2 import load_ssv2, load_ssv2_mc, load_ssv2_t10
from .ssv2_vsm import load_ssv2_vsm
from .synthetic import load_synthetic
from .tempcompass import load_tempcompass
from .videomme import load_videomme, load_videomme_subs
from .vitatecs import load_vitatecs

BENCHMARKS: dict[str, Callable[..., list[EvalItem]]] = {
    "ssv2": load_ssv2,
    "ssv2-mc": load_ssv2_mc,
    "ssv2-t10": load_ssv2_t10,
    "ssv2-vsm": load_ssv2_vsm,
    "vitatecs": load_vitatecs,
    "mvbench": load_mvbench,
    "videomme": load_videomme,
    "videomme-subs": load_videomme_subs,
    "tempcompass": load_tempcompass,
    "synthetic": load_synthetic,  # `stave synth` output
}


def load_benchmark(
    name: str,
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    **options: Any,
) -> list[EvalItem]:
    """The items of benchmark `name` (a key of BENCHMARKS) read from `root`; `options` go to its loader."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[name](root, on_missing=on_missing, seed=seed, report=report, **options)


# the loader options that give a benchmark's labelled training split, where in-context examples come from
EXAMPLE_SPLITS: dict[str, dict[str, Any]] = {
    "ssv2": {"split": "train"},  # train.json
    "ssv2-mc": {"split": "train"},
    "ssv2-t10": {"split": "train"},  # the seeded 80% that split=test never overlaps
    "ssv2-vsm": {"split": "train"},
    "synthetic": {"split": "train"},
}


def load_examples(name: str, root: str | Path, **options: Any) -> list[EvalItem]:
    """The items of benchmark `name`'s labelled training split (EXAMPLE_SPLITS), read with the same keyword
    arguments as its questions (those of load_benchmark): the pool in-context examples are drawn from
    (stave.evaluation.shots). Raises ValueError for a benchmark that has no such split (mvbench, videomme,
    videomme-subs, vitatecs, tempcompass)."""
    if name not in EXAMPLE_SPLITS:
        raise ValueError(
            f"{name} has no labelled training split to draw in-context examples from; benchmarks that have one: "
            f"{sorted(EXAMPLE_SPLITS)}"
        )
    return load_benchmark(name, root, **{**options, **EXAMPLE_SPLITS[name]})


__all__ = ["BENCHMARKS", "EXAMPLE_SPLITS", "load_benchmark", "load_examples"]
