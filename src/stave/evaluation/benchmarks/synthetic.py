"""The synthetic temporal benchmark written by `stave synth` (stave.synthetic): mvbench_<split>.json, a list of
{"video" (relative to the data set folder), "question", "candidates", "answer" (candidate text), "task"}; records
of a data set written with images hold "image" instead of "video" (their items have groups {"media": "image"}).

task is the question's task (left_right, up_down, rotation, approach, order, shape, position, colour...);
qid is "<split>/<index>". `split` chooses validation (default, the held-out part) or train.
"""

from __future__ import annotations

from pathlib import Path

from ..items import LETTERS, BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .reading import OnMissing, check_on_missing, expect_type, field, finish, read_json, require_file, videos_present

SPLITS = ("train", "validation")


def load_synthetic(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    split: str = "validation",
) -> list[EvalItem]:
    """Questions of one split of a `stave synth` data set. `seed` is unused (the data set fixed its own)."""
    check_on_missing(on_missing)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    path = require_file(root / f"mvbench_{split}.json", f"the {split} questions of a `stave synth` data set")
    records = expect_type(read_json(path), list, path, "top level", "a JSON list of questions")
    items, skipped = [], []
    for i, record in enumerate(records):
        where = f"[{i}]"
        media = "image" if isinstance(record, dict) and "image" in record and "video" not in record else "video"
        video = root / field(record, media, str, path, where)
        candidates = field(record, "candidates", list[str], path, where)
        answer = field(record, "answer", str, path, where)
        if not 2 <= len(candidates) <= len(LETTERS) or answer not in candidates:
            raise BenchmarkFormatError(f"{path}: {where}: 'answer' must be one of 2 to {len(LETTERS)} 'candidates'")
        if not videos_present([video], where=f"{path} {where}", on_missing=on_missing, skipped=skipped):
            continue
        items.append(
            EvalItem(
                qid=f"{split}/{i}",
                task=field(record, "task", str, path, where),
                question=field(record, "question", str, path, where),
                videos=(VideoRef(video),) if media == "video" else (),
                options=tuple(candidates),
                answer=answer,
                groups={"media": media},
                images=(video,) if media == "image" else (),
            )
        )
    return finish("synthetic", items, skipped, report)
