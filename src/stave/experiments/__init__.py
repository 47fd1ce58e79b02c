"""Experiments on stave's synthetic temporal tasks: the demo (one seed, both arms) and the multi-seed,
multi-regime experiment behind it. `arms` runs one comparison with `stave train` and `stave eval`; `stats`
holds the intervals and the computed verdicts."""

from .arms import ARMS, RECIPE, arm_metrics, evaluate_arm, item_difference, scored_rows, train_arm
from .demo import DemoSettings, demo_table, print_report, run_demo
from .stats import Estimate, paired_difference, proportion, verdict

__all__ = [
    "ARMS",
    "RECIPE",
    "DemoSettings",
    "Estimate",
    "arm_metrics",
    "demo_table",
    "evaluate_arm",
    "item_difference",
    "paired_difference",
    "print_report",
    "proportion",
    "run_demo",
    "scored_rows",
    "train_arm",
    "verdict",
]
