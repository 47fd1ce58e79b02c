"""SSv2-VSM (video set matching): is the action of a query video shown in reference video 1, 2, or neither?

Built from SSv2 annotations in their published layout (see stave.evaluation.benchmarks.ssv2), by seed.
The paper's authors built it from train.json with unseeded draws, 80% "match" and 20% "none" queries; this
construction keeps their proportions and their kinds of references, and makes every draw seeded:

- Pool: the records of `split` (default validation.json, so nothing overlaps training on train.json) whose
  class is in `subset` (default "T10", stave.ssv2.SUBSETS; None: all 174 classes). It needs >= 3 classes.
- Every pool record is a query once (qid = its video id, task = its class).
- Answers, per class: the class's queries sorted by id and shuffled with random.Random seeded by (seed,
  class); the first round(n * match_fraction) are matches (default 0.8), alternating "Example 1" / "Example
  2" from a seeded start, the rest "none". A class with a single record has no other video to match, so its
  query is "none".
- References, per query (random.Random seeded by (seed, query id)): a match gets another record of its class
  and, as the other reference, a record of a different class (class drawn uniformly, then a record of it);
  a "none" query gets records of two different classes, both other than its own. A query is never its
  own reference.
- videos = (Example 1, Example 2, query); options exactly ("Example 1", "Example 2", "none");
  groups = {"reference": "match" | "none"}.
A query whose three videos are not all present is skipped (or raises) as a whole; the draws are made on the
annotations first, so they do not depend on which videos exist.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ...ssv2 import subset_classes
from ..items import EvalItem, LoadReport, VideoRef
from .reading import OnMissing, check_on_missing, finish, item_rng, videos_present
from .ssv2 import SSv2Record, read_annotations

QUESTION = (
    "The first two videos are Example 1 and Example 2. Does either of them show the same action as the last "
    "video? Answer with the example, or none if neither does."
)
OPTIONS = ("Example 1", "Example 2", "none")


def load_ssv2_vsm(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    split: str = "validation",
    subset: str | None = "T10",
    match_fraction: float = 0.8,
    videos: str | Path | None = None,
    extension: str = ".webm",
) -> list[EvalItem]:
    """SSv2-VSM items built from `split`.json, seeded (see the module docstring for the construction)."""
    check_on_missing(on_missing)
    if not 0.0 <= match_fraction <= 1.0:
        raise ValueError(f"match_fraction must lie in [0, 1], got {match_fraction}")
    annotations = read_annotations(root, split, videos=videos, extension=extension)
    classes = None if subset is None else set(subset_classes(subset))
    by_class: dict[str, list[SSv2Record]] = defaultdict(list)
    for record in annotations.records:
        if classes is None or record.cls in classes:
            by_class[record.cls].append(record)
    if len(by_class) < 3:
        raise ValueError(f"SSv2-VSM needs records of at least 3 classes in {split}.json, found {len(by_class)}")

    answers = _answers(by_class, seed, match_fraction)
    names = sorted(by_class)
    items, skipped = [], []
    for record in (record for record in annotations.records if record.id in answers):
        answer = answers[record.id]
        references = _references(record, answer, by_class, names, seed)
        paths = [annotations.video(video) for video in (*references, record)]
        if not videos_present(paths, where=record.where, on_missing=on_missing, skipped=skipped):
            continue
        items.append(
            EvalItem(
                qid=record.id,
                task=record.cls,
                question=QUESTION,
                videos=tuple(VideoRef(path) for path in paths),
                options=OPTIONS,
                answer=answer,
                groups={"reference": "none" if answer == "none" else "match"},
            )
        )
    return finish("ssv2-vsm", items, skipped, report)


def _answers(by_class: dict[str, list[SSv2Record]], seed: int, match_fraction: float) -> dict[str, str]:
    answers = {}
    for cls, members in by_class.items():
        rng = item_rng(seed, "ssv2-vsm", "class", cls)
        order = sorted(record.id for record in members)
        rng.shuffle(order)
        matches = round(len(order) * match_fraction) if len(order) > 1 else 0
        first = rng.randrange(2)
        for i, video_id in enumerate(order):
            answers[video_id] = OPTIONS[(first + i) % 2] if i < matches else "none"
    return answers


def _references(
    query: SSv2Record, answer: str, by_class: dict[str, list[SSv2Record]], names: list[str], seed: int
) -> tuple[SSv2Record, SSv2Record]:
    rng = item_rng(seed, "ssv2-vsm", "query", query.id)
    others = [name for name in names if name != query.cls]
    if answer == "none":
        first, second = rng.sample(others, 2)
        return rng.choice(by_class[first]), rng.choice(by_class[second])
    same = rng.choice([record for record in by_class[query.cls] if record.id != query.id])
    other = rng.choice(by_class[rng.choice(others)])
    return (same, other) if answer == "Example 1" else (other, same)
