"""From a model's raw answer to a scored choice: rule-based extraction for multiple choice, normalised exact
match for open-ended answers. No LLM judge is needed for any benchmark.

Multiple choice, in order (the first rule that decides wins):
  1. the answer is a letter alone, possibly decorated: "B", "(B)", "B.", "B)", "[B]", "Option B", "B: ...",
     "B. the text";
  2. a lead-in then a letter: "The answer is (B)", "Answer: B", "the correct option is B";
  3. the text of exactly one option appears in the answer (longest match first, case-insensitive), or the
     answer appears in exactly one option;
otherwise the answer is unparseable (counted and reported, scored wrong). Open-ended answers to a prompt
that lists the class names (EvalSettings.prompt_classes) are scored by rule 3 alone against the class names
(`match_text`), unparseable alike when no one class is named.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from .items import LETTERS

_LETTER = r"([A-J])"
_ALONE = re.compile(r"^\s*(option|choice)?\s*([\(\[])?([A-J])(?![A-Za-z])([\)\]])?(.*)$", re.IGNORECASE | re.DOTALL)
_LEAD = re.compile(
    rf"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?{_LETTER}[\)\]]?(?![A-Za-z])", re.IGNORECASE
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def extract_choice(answer: str, options: Sequence[str]) -> int | None:
    """The index of the option an answer picks, or None when it cannot be told."""
    letters = LETTERS[: len(options)]
    text = answer.strip()
    match = _ALONE.match(text)
    if match and match.group(3).upper() in letters:
        index = letters.index(match.group(3).upper())
        prefix, opening, closing, rest = match.group(1, 2, 4, 5)
        # "A" followed by a sentence is the article: a letter counts when it stands alone, is decorated
        # ("(A)", "A.", "A:", "Option A") or is followed by its own option's text
        decorated = bool(prefix or opening or closing) or rest[:1] in (".", ":", ",", ")")
        if not rest.strip() or decorated or _same_option(rest, options[index]):
            return index
    match = _LEAD.search(text)
    if match and match.group(1).upper() in letters:
        return letters.index(match.group(1).upper())
    return match_text(text, options)


def match_text(answer: str, names: Sequence[str]) -> int | None:
    """The index of the one name (an option's or a class's text) an answer gives, after normalisation: the
    longest names that appear in the answer as whole words, if that is one name; else the one name the
    answer appears in; else None. (How class names in the prompt are scored, and rule 3 above.)"""
    said = normalize(answer)
    if not said:
        return None
    normalized = [normalize(name) for name in names]
    inside = [i for i, option in enumerate(normalized) if option and re.search(rf"\b{re.escape(option)}\b", said)]
    if len(inside) > 1:  # keep the longest matches only ("left" inside "left to right")
        longest = max(len(normalized[i]) for i in inside)
        inside = [i for i in inside if len(normalized[i]) == longest]
    if len(inside) == 1:
        return inside[0]
    around = [i for i, option in enumerate(normalized) if said in option]
    return around[0] if len(around) == 1 else None


def _same_option(rest: str, option: str) -> bool:
    return normalize(rest) == normalize(option) or normalize(option).startswith(normalize(rest))


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (for open-ended exact match)."""
    text = text.lower().translate(str.maketrans({c: " " for c in string.punctuation}))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, expected: str) -> bool:
    return normalize(answer) == normalize(expected)
