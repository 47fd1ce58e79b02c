"""Answer extraction on real-looking model outputs, and open-ended normalisation."""

from __future__ import annotations

import pytest

from stave.evaluation.answers import exact_match, extract_choice, normalize

pytestmark = pytest.mark.version_independent  # runs once: see tests/version_independence.py

SSV2 = [
    "Pulling something from left to right",
    "Pulling something from right to left",
    "Something falling like a rock",
    "Picking something up",
]
YES_NO = ["yes", "no"]

TABLE = [
    ("B", SSV2, 1),
    ("b", SSV2, 1),
    ("(C)", SSV2, 2),
    ("A.", SSV2, 0),
    ("[D]", SSV2, 3),
    ("D) Picking something up", SSV2, 3),
    ("C. Something falling like a rock", SSV2, 2),
    ("B: pulling something from right to left", SSV2, 1),
    ("Option B", SSV2, 1),
    ("The answer is (B).", SSV2, 1),
    ("Answer: C", SSV2, 2),
    ("The correct option is D", SSV2, 3),
    ("Best answer: (A) Pulling something from left to right", SSV2, 0),
    ("Pulling something from right to left", SSV2, 1),
    ("pulling something from right to left.", SSV2, 1),
    ("I think it is something falling like a rock.", SSV2, 2),
    ("A person is picking something up", SSV2, 3),  # "A" here is the article
    ("a", SSV2, 0),
    ("Yes", YES_NO, 0),
    ("No, it is not.", YES_NO, 1),
    ("E", SSV2, None),  # no fifth option
    ("Both A and B", SSV2, None),
    ("I don't know", SSV2, None),
    ("", SSV2, None),
    ("Optional", SSV2, None),
    ("Pulling something", SSV2, None),  # a prefix of two options: ambiguous
    ("Example 2", ["Example 1", "Example 2", "none"], 1),
    ("None of them", ["Example 1", "Example 2", "none"], 2),
]


@pytest.mark.parametrize(("answer", "options", "expected"), TABLE, ids=[row[0] or "<empty>" for row in TABLE])
def test_extract_choice(answer, options, expected):
    assert extract_choice(answer, options) == expected


def test_normalize_and_exact_match():
    assert normalize("  The Pulling, of something!  ") == "pulling of something"
    assert exact_match("Pulling something from left to right.", "pulling something from left to right")
    assert not exact_match("pulling something from right to left", "pulling something from left to right")
