"""Experiments on stave's synthetic temporal tasks: the demo (one seed, baseline and staveq2) and the multi-seed,
multi-regime experiment behind it. `arms` runs one comparison with `stave train` and `stave eval`; `stats`
holds the intervals and the computed verdicts."""

from .arms import (
    ARMS,
    DEFAULT_ARMS,
    RECIPE,
    Arm,
    arm_metrics,
    evaluate_arm,
    item_difference,
    scored_rows,
    train_arm,
    video_tokens,
)
from .demo import DemoSettings, demo_table, print_report, run_demo
from .stats import Estimate, mean_interval, paired_difference, proportion, verdict

__all__ = [
    "ARMS",
    "DEFAULT_ARMS",
    "RECIPE",
    "Arm",
    "DemoSettings",
    "Estimate",
    "arm_metrics",
    "demo_table",
    "evaluate_arm",
    "item_difference",
    "mean_interval",
    "paired_difference",
    "print_report",
    "proportion",
    "run_demo",
    "scored_rows",
    "train_arm",
    "verdict",
    "video_tokens",
]
