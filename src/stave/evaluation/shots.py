"""In-context examples (EvalSettings.shots): K solved items of a benchmark's training split asked before each
question as earlier user/assistant turns, each with its own videos.

How K examples are drawn from the pool (the training split's items), with random.Random(seed):
  - the pool is grouped by answer (the class, for SSv2; the correct option's text for multiple choice), each
    group shuffled, and the order of the groups shuffled;
  - examples are taken round-robin over the groups in that order, one per group per round, so every answer
    gets K // A or K // A + 1 of them (A answers); the extra ones go to the first K % A groups of the shuffled
    order. When K < A, that means K examples of K different answers, chosen uniformly at random. A group
    that runs out is passed over (its share goes to the next groups);
  - a question never gets an example that shares a video (or image) file with it: that example is passed
    over and its group's next member is taken instead.
The draw does not depend on the question otherwise, so every question whose videos are not in the pool gets
the same K examples in the same order (the video cache decodes each of them once per run), and it does not
depend on which other questions are asked, in which order, batch or process. The example ids are logged with
every prediction.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Sequence

from ..errors import StaveError
from .items import EvalItem


class ExampleError(StaveError, ValueError):
    """In-context examples that cannot be drawn as asked; names the question and the pool."""


def media(item: EvalItem) -> frozenset[str]:
    """The video and image files of an item, as absolute paths."""
    return frozenset(os.path.abspath(path) for path in [*(v.path for v in item.videos), *item.images])


class ExampleDraw:
    """The seeded draw of `k` in-context examples from `pool` (see the module docstring)."""

    def __init__(self, pool: Sequence[EvalItem], k: int, seed: int) -> None:
        if k < 1:
            raise ValueError(f"the number of in-context examples must be >= 1, got {k}")
        rng = random.Random(seed)
        groups: dict[str, list[EvalItem]] = defaultdict(list)
        for item in sorted(pool, key=lambda item: item.qid):  # independent of the loader's order
            groups[item.answer].append(item)
        self.order = sorted(groups)
        rng.shuffle(self.order)
        for answer in self.order:
            rng.shuffle(groups[answer])
        self.groups = dict(groups)
        self.media = {item.qid: media(item) for item in pool}
        self.k, self.pool_size = k, len(pool)

    def examples(self, item: EvalItem) -> tuple[EvalItem, ...]:
        """The item's examples, in the order they are asked; raises ExampleError when the pool has fewer than k
        items that share no file with it."""
        own = media(item)
        taken: list[EvalItem] = []
        cursors = dict.fromkeys(self.order, 0)
        while len(taken) < self.k:
            progressed = False
            for answer in self.order:
                members, i = self.groups[answer], cursors[answer]
                while i < len(members) and self.media[members[i].qid] & own:
                    i += 1
                if i < len(members):
                    taken.append(members[i])
                    i += 1
                    progressed = True
                cursors[answer] = i
                if len(taken) == self.k:
                    break
            if not progressed:
                raise ExampleError(
                    f"question {item.qid!r}: {self.k} in-context examples asked for, but the training split has "
                    f"only {len(taken)} items that share no video with it (of {self.pool_size})"
                )
        return tuple(taken)
