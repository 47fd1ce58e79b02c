"""The statistics the demo and the experiments report: proportions with Wilson intervals, paired differences
with Student-t intervals, and a verdict computed from them (never a fixed sentence)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% confidence interval (low, high) over n observations; low/high are None when n is
    too small for an interval."""

    value: float
    low: float | None
    high: float | None
    n: int

    def percent(self, signed: bool = False) -> str:
        sign = "+" if signed else ""
        if self.low is None or self.high is None:
            return f"{100 * self.value:{sign}.1f} (n={self.n})"
        return f"{100 * self.value:{sign}.1f} [{100 * self.low:{sign}.1f}, {100 * self.high:{sign}.1f}] (n={self.n})"

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def proportion(correct: int, n: int) -> Estimate:
    """The share correct/n with its Wilson score interval."""
    from scipy.stats import binomtest

    if n == 0:
        return Estimate(math.nan, None, None, 0)
    interval = binomtest(correct, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Estimate(correct / n, float(interval.low), float(interval.high), n)


def mean_interval(values: Sequence[float]) -> Estimate:
    """Mean of `values` (e.g. one arm's accuracy per seed) with the Student-t interval of that mean; no interval
    below 2 values. With all values equal the interval is that single value."""
    from scipy.stats import t

    n = len(values)
    if n == 0:
        return Estimate(math.nan, None, None, 0)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Mean of b - a over paired observations (items answered by both arms, or seeds run in both), with the
    Student-t interval of that mean. With all differences equal the interval is that single value."""
    if len(a) != len(b):
        raise ValueError(f"paired observations must match: {len(a)} vs {len(b)}")
    return mean_interval([y - x for x, y in zip(a, b, strict=True)])


def verdict(difference: Estimate, better: str, worse: str, what: str = "pair accuracy") -> str:
    """One sentence from a paired difference (of `better` minus `worse`)."""
    if difference.low is None:
        return f"too few observations (n={difference.n}) to compare {what}"
    span = f"{100 * difference.value:+.1f} points, 95% CI [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]"
    if difference.low > 0:
        return f"{better} beats {worse} on {what}: {span}"
    if difference.high < 0:
        return f"{better} is worse than {worse} on {what}: {span}"
    return f"no significant difference in {what} between {better} and {worse}: {span}"
