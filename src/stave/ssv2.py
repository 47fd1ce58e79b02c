"""Something-Something-v2 facts shared by training and evaluation: the class of a record, and named subsets.

SSv2 records are {"id", "label", "template", "placeholders"}; the class is the template with its brackets
removed (the keys of labels.json). SSv2-T10 is the paper's 10-class subset (PAPER.md; class 122 "Rolling
something on a flat surface", not 22, as the authors' select_subset.py uses).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SUBSETS: dict[str, tuple[str, ...]] = {
    "T10": (
        "Moving something away from something",  # 40
        "Moving something closer to something",  # 42
        "Picking something up",  # 47
        "Poking a stack of something so the stack collapses",  # 53
        "Pulling something from left to right",  # 86
        "Pulling something from right to left",  # 87
        "Rolling something on a flat surface",  # 122
        "Something falling like a rock",  # 135
        "Throwing something in the air and catching it",  # 153
        "Throwing something in the air and letting it fall",  # 154
    ),
}


def ssv2_class(template: str) -> str:
    """The class of an SSv2 record: its template with the brackets removed."""
    return template.replace("[", "").replace("]", "")


def subset_classes(name: str) -> tuple[str, ...]:
    if name not in SUBSETS:
        raise ValueError(f"unknown SSv2 subset {name!r}; known: {sorted(SUBSETS)}")
    return SUBSETS[name]


def t10_split(ids: Sequence[str], seed: int, test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train ids, test ids) of the SSv2-T10 split: ids sorted, shuffled with random.Random(seed), the first
    int(n * (1 - test_fraction)) for training (the paper's 80/20 rule with a seed it did not have). Training
    (`split: train` in a recipe) and evaluation (`ssv2-t10`) use it alike, so they never share a video."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    cut = int(len(order) * (1 - test_fraction))
    return order[:cut], order[cut:]
