"""Opposing classes: pairs of class names that say the same action in opposite directions of space or time
("Pulling something from left to right" / "... from right to left"), whose confusion a classifier that ignores
time order cannot avoid.

Rule: two classes oppose when one becomes the other by one of the SWAPS below, each a set of phrase exchanges
made at once, on whole words (a capitalised first word keeps its capital). On SSv2's 174 classes it finds the
pairs listed in the README (tests/test_classification.py checks them against the published labels.json).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SWAPS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("left", "right"), ("up", "down"), ("upwards", "downwards")),  # directions
    (("away from", "closer to"),),  # distance between two things
    (("away from", "towards"),),  # distance to the camera
    (("approaching", "moving away from"),),  # the camera's own motion
    (("open", "close"), ("opening", "closing")),
    (("folding", "unfolding"),),
    (("clockwise", "counterclockwise"),),  # stave synth's rotation pair (no SSv2 class)
    (("into", "out of"), ("onto", "off of")),
)


def _swap(text: str, exchanges: tuple[tuple[str, str], ...]) -> str:
    table = {a: b for pair in exchanges for a, b in (pair, pair[::-1])}
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, table), key=len, reverse=True)) + r")\b", re.I)

    def replace(match: re.Match) -> str:
        word = table[match.group(0).lower()]
        return word[0].upper() + word[1:] if match.group(0)[0].isupper() else word

    return pattern.sub(replace, text)


def opposing_pairs(classes: Sequence[str]) -> list[tuple[str, str]]:
    """The opposing pairs among `classes` (SWAPS rule), each once, in the order of their first class in
    `classes`."""
    known = set(classes)
    pairs, seen = [], set()
    for name in classes:
        for exchanges in SWAPS:
            other = _swap(name, exchanges)
            if other != name and other in known and frozenset((name, other)) not in seen:
                seen.add(frozenset((name, other)))
                pairs.append((name, other))
    return pairs


def pair_confusion(
    rows: Sequence[tuple[str, str | None]], pairs: Sequence[tuple[str, str]]
) -> list[dict[str, object]]:
    """For each pair (a, b): how many items of a were predicted b and of b predicted a, out of their items.
    `rows`: (true class, predicted class) per item. `confused` is (a_as_b + b_as_a) / (n_a + n_b) (None
    without items)."""
    out = []
    for a, b in pairs:
        n_a = sum(true == a for true, _ in rows)
        n_b = sum(true == b for true, _ in rows)
        a_as_b = sum(true == a and predicted == b for true, predicted in rows)
        b_as_a = sum(true == b and predicted == a for true, predicted in rows)
        total = n_a + n_b
        out.append(
            {"pair": [a, b], "n": [n_a, n_b], "a_as_b": a_as_b, "b_as_a": b_as_a,
             "confused": (a_as_b + b_as_a) / total if total else None}
        )  # fmt: skip
    return out
