"""Parsing and checking what the LLM wrote for one caption: a JSON list of {"question", "answer"} pairs.

Each pair goes through the rules below, in this order; the first it breaks is its reject reason:
    not_a_pair          an element that is not an object with string "question" and "answer"
    empty               an empty question or answer
    holds_placeholder   a media placeholder (<video>, <image>, <audio>) in the text: the training reader would
                        take it for media
    question_too_long   more than QARules.max_question_chars characters
    answer_too_long     more than QARules.max_answer_chars characters
    mentions_caption    the question or answer speaks of "the caption" (the model must talk as one who watched)
    restates_caption    the question restates the caption (it holds at least QARules.caption_overlap of the
                        caption's content words) and its answer adds no content word to the question: the pair
                        only asks the caption back ("Is a man surfing a big wave?" "Yes, a man is surfing a big
                        wave.")
    near_duplicate      the question is as similar as QARules.duplicate_similarity or more (difflib's ratio of the
                        normalised texts) to a question kept before it for the same video
    beyond_max_pairs    QARules.max_pairs pairs were kept already
A whole generation that holds no JSON list is rejected as `malformed`; a video left with fewer than
QARules.min_pairs pairs gets no training record, and its kept pairs are rejected as `too_few_pairs`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..conversations import PLACEHOLDERS
from ..errors import StaveError

REASONS = (
    "malformed",
    "not_a_pair",
    "empty",
    "holds_placeholder",
    "question_too_long",
    "answer_too_long",
    "mentions_caption",
    "restates_caption",
    "near_duplicate",
    "beyond_max_pairs",
    "too_few_pairs",
)
# Function words left out when comparing what a question, an answer and a caption say; "yes"/"no" add nothing.
STOP_WORDS = frozenset(
    "a an the this that these those there here it its is are was were be been being am do does did doing has have "
    "had having of in on at to from by with for into onto over under as and or but not no yes so than then what "
    "which who whom whose where when why how can could would should will shall may might must i you he she we "
    "they him her them his their our your my me us video clip footage shown show shows seen see".split()
)
CAPTION_WORD = re.compile(r"\bcaptions?\b", re.IGNORECASE)
FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


class QARulesError(StaveError, ValueError):
    """A QARules value out of its range; names the field."""


@dataclass(frozen=True)
class QARules:
    """What a kept pair and a kept video must satisfy (see the module docstring for the rules)."""

    min_pairs: int = 2
    max_pairs: int = 8
    max_question_chars: int = 300
    max_answer_chars: int = 600
    duplicate_similarity: float = 0.9
    caption_overlap: float = 0.8

    def __post_init__(self) -> None:
        if not 1 <= self.min_pairs <= self.max_pairs:
            raise QARulesError(f"QARules: need 1 <= min_pairs <= max_pairs, got {self.min_pairs}, {self.max_pairs}")
        for name in ("max_question_chars", "max_answer_chars"):
            if getattr(self, name) < 1:
                raise QARulesError(f"QARules.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("duplicate_similarity", "caption_overlap"):
            if not 0 < getattr(self, name) <= 1:
                raise QARulesError(f"QARules.{name}: must be in (0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Reject:
    """One rejected pair (or a whole `malformed` generation: question and answer None, `detail` says why)."""

    reason: str
    question: Any = None
    answer: Any = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class Verdict:
    """The pairs kept for a video (empty when fewer than min_pairs passed) and every reject, in the
    generation's order."""

    pairs: list[tuple[str, str]]
    rejects: list[Reject]


def parse_generation(text: str) -> list[Any]:
    """The JSON list a generation holds: the whole text, or inside a ``` fence, or from its first '[' to its
    last ']' (models often add a sentence around it). ValueError saying why when there is none."""
    body = FENCE.sub("", text.strip())
    reason = "no JSON list in the text"
    candidates = [body] + ([body[body.find("[") : body.rfind("]") + 1]] if "[" in body else [])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as error:
            if candidate is not body or "[" not in body:
                reason = f"not valid JSON: {error.msg} at character {error.pos}" if "[" in body else reason
            continue
        if isinstance(value, list):
            return value
        reason = f"a JSON {type(value).__name__}, not a list of pairs"
    raise ValueError(reason)


def validate_generation(text: str, caption: str, rules: QARules = QARules()) -> Verdict:
    """Parse a generation and apply every rule (module docstring) for a video with this caption."""
    try:
        items = parse_generation(text)
    except ValueError as error:
        return Verdict([], [Reject("malformed", detail=f"{error}; text: {text[:2000]!r}")])
    kept: list[tuple[str, str]] = []
    rejects: list[Reject] = []
    caption_words = content_words(caption)
    for index, item in enumerate(items):
        reason, detail = _pair_reason(item, caption_words, kept, rules)
        if reason is None:
            kept.append((item["question"].strip(), item["answer"].strip()))
            continue
        if isinstance(item, dict):
            rejects.append(Reject(reason, item.get("question"), item.get("answer"), detail))
        else:
            rejects.append(Reject(reason, detail=f"element {index}: {json.dumps(item)[:500]}"))
    if len(kept) < rules.min_pairs:
        detail = f"{len(kept)} pair(s) passed, min_pairs is {rules.min_pairs}"
        rejects += [Reject("too_few_pairs", q, a, detail) for q, a in kept]
        kept = []
    return Verdict(kept, rejects)


def _pair_reason(
    item: Any, caption_words: set[str], kept: list[tuple[str, str]], rules: QARules
) -> tuple[str | None, str]:
    if not isinstance(item, dict) or not isinstance(item.get("question"), str) or not isinstance(
        item.get("answer"), str
    ):
        return "not_a_pair", 'expected {"question": "...", "answer": "..."}'
    question, answer = item["question"].strip(), item["answer"].strip()
    if not question or not answer:
        return "empty", "empty question" if not question else "empty answer"
    held = [p for p in PLACEHOLDERS if p in question or p in answer]
    if held:
        return "holds_placeholder", f"{held[0]} in the text"
    if len(question) > rules.max_question_chars:
        return "question_too_long", f"{len(question)} characters > {rules.max_question_chars}"
    if len(answer) > rules.max_answer_chars:
        return "answer_too_long", f"{len(answer)} characters > {rules.max_answer_chars}"
    if CAPTION_WORD.search(question) or CAPTION_WORD.search(answer):
        return "mentions_caption", ""
    question_words = content_words(question)
    if caption_words:
        overlap = len(caption_words & question_words) / len(caption_words)
        if overlap >= rules.caption_overlap and not content_words(answer) - question_words:
            return "restates_caption", f"the question holds {overlap:.0%} of the caption's words; the answer adds none"
    for number, (earlier, _) in enumerate(kept, 1):
        similarity = difflib.SequenceMatcher(None, normalised(question), normalised(earlier)).ratio()
        if similarity >= rules.duplicate_similarity:
            return "near_duplicate", f"{similarity:.2f} similar to kept question {number}: {earlier!r}"
    if len(kept) >= rules.max_pairs:
        return "beyond_max_pairs", f"{rules.max_pairs} pairs kept already"
    return None, ""


def normalised(text: str) -> str:
    """Lower-case words and digits joined by single spaces (punctuation dropped)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def content_words(text: str) -> set[str]:
    """The words of `text` that carry content (normalised, without STOP_WORDS), stripped of the endings -s, -es,
    -ed and -ing, so that "runs", "running" and "run" are one word."""
    return {stem(word) for word in normalised(text).split() if word not in STOP_WORDS}


def stem(word: str) -> str:
    """A word without its inflection ending (-ing, -ed, -es, -s, and a doubled last consonant: running -> run)
    when at least 3 letters remain: enough to compare the words of a question, an answer and a caption."""
    for ending in ("ing", "ed", "es", "s"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            word = word[: -len(ending)]
            if ending in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            break
    return word
