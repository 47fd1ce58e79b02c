"""Something-Something-v2 as an evaluation benchmark: open-ended and multiple-choice action classification,
and the paper's 10-class subset SSv2-T10.

Published layout (the official download, unchanged)::

    root/labels.json          {"Class text without brackets": "index as a string", ...}   (174 classes)
    root/validation.json      [{"id": "74225", "label": ..., "template": "Spinning [something] ...",
    root/train.json             "placeholders": [...]}, ...]
    root/<id>.webm            the videos

The annotation files are also found under root/labels/ and under their older names
`something-something-v2-<name>.json`. Videos are looked up in root, or in root/20bn-something-something-v2
(the folder the official archive extracts to) when that exists, or in the folder given by `videos=`
(relative to root or absolute); `extension=` changes ".webm" (e.g. to ".mp4" for converted copies).

The class of a record is its `template` with the brackets removed (stave.ssv2.ssv2_class); it must be a key
of labels.json. Question ids are the SSv2 video ids.

Loaders (registry names):
- `ssv2`: open-ended; question "What is the action happening in this video?", answer the class text; the
  items carry the 174 class names (listed in the prompt under EvalSettings.prompt_classes).
- `ssv2-mc`: multiple choice among `num_options` (default 5, at most 10) class names: the true class and
  `num_options - 1` distractors drawn uniformly without replacement from the other labels.json classes, then
  shuffled. Each item draws from its own random.Random seeded by (seed, video id), so its options are the
  same whichever other records are present or skipped, and change with `seed`.
- `ssv2-t10`: the 10 classes of stave.ssv2.SUBSETS["T10"]. The paper builds T10 from train.json only and
  splits it 80/20 after an unseeded shuffle, so its split cannot be rebuilt. Ours (`t10_split`): the T10
  records of the `source` file (default train.json) sorted by id, shuffled with random.Random(seed), the
  first int(n * (1 - test_fraction)) are "train", the rest "test" (default split; test_fraction 0.2, as the
  paper). split="all" keeps every record (e.g. source="validation", split="all": the official validation
  records of the 10 classes, disjoint from train.json). The split is made on the annotations before any video
  is checked, so it does not depend on which videos are present. format="mc" (default): options are the 10
  class names in the fixed order of SUBSETS["T10"] (the paper's "class names in the prompt" setting);
  format="open": no options (the items carry the 10 class names, listed in the prompt under
  EvalSettings.prompt_classes). The task of every item is its class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...ssv2 import ssv2_class, subset_classes, t10_split
from ..items import LETTERS, BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .reading import (
    OnMissing,
    check_on_missing,
    expect_type,
    field,
    finish,
    item_rng,
    read_json,
    videos_present,
)

QUESTION = "What is the action happening in this video?"
OFFICIAL_VIDEO_FOLDER = "20bn-something-something-v2"
LABELED_SPLITS = ("train", "validation")


@dataclass(frozen=True)
class SSv2Record:
    """One annotated SSv2 video: its id, its class (template without brackets) and where it was read."""

    id: str
    cls: str
    where: str


@dataclass(frozen=True)
class SSv2Annotations:
    """labels.json and one split file, checked against each other."""

    classes: dict[str, int]  # class text -> index, in index order
    records: list[SSv2Record]
    videos: Path
    extension: str

    def video(self, record: SSv2Record) -> Path:
        return self.videos / f"{record.id}{self.extension}"


def read_annotations(
    root: str | Path, split: str = "validation", *, videos: str | Path | None = None, extension: str = ".webm"
) -> SSv2Annotations:
    """Read labels.json and `split`.json (train or validation) from an SSv2 root in the published layout.

    Every record needs a string `id` and a string `template` whose class is a labels.json key; ids must be
    unique. Raises BenchmarkFormatError naming the file, the record and the field otherwise.
    """
    if split not in LABELED_SPLITS:
        raise ValueError(f"SSv2 split must be one of {LABELED_SPLITS} (test.json has no labels), got {split!r}")
    root = Path(root)
    classes = read_labels(annotation_file(root, "labels"))
    records = read_records(annotation_file(root, split), classes)
    return SSv2Annotations(classes, records, _video_folder(root, videos), extension)


def load_ssv2(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    split: str = "validation",
    videos: str | Path | None = None,
    extension: str = ".webm",
) -> list[EvalItem]:
    """SSv2 open-ended classification: one item per record of `split`; the answer is the class text.
    `seed` is unused (nothing is drawn)."""
    check_on_missing(on_missing)
    annotations = read_annotations(root, split, videos=videos, extension=extension)
    classes = tuple(annotations.classes)
    return _items("ssv2", annotations, annotations.records, on_missing, report, lambda record: None, classes)


def load_ssv2_mc(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    split: str = "validation",
    num_options: int = 5,
    videos: str | Path | None = None,
    extension: str = ".webm",
) -> list[EvalItem]:
    """SSv2 multiple choice: the true class among `num_options - 1` seeded distractors (see module docstring)."""
    check_on_missing(on_missing)
    if not 2 <= num_options <= len(LETTERS):
        raise ValueError(f"num_options must lie in [2, {len(LETTERS)}], got {num_options}")
    annotations = read_annotations(root, split, videos=videos, extension=extension)
    names = list(annotations.classes)
    if num_options > len(names):
        raise ValueError(f"num_options={num_options} but labels.json has only {len(names)} classes")

    def options(record: SSv2Record) -> tuple[str, ...]:
        rng = item_rng(seed, "ssv2-mc", record.id)
        chosen = [record.cls, *rng.sample([name for name in names if name != record.cls], num_options - 1)]
        rng.shuffle(chosen)
        return tuple(chosen)

    return _items("ssv2-mc", annotations, annotations.records, on_missing, report, options)


def load_ssv2_t10(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    source: str = "train",
    split: str = "test",
    test_fraction: float = 0.2,
    format: str = "mc",
    videos: str | Path | None = None,
    extension: str = ".webm",
) -> list[EvalItem]:
    """SSv2-T10: the `split` part ("test", "train" or "all") of the T10 records of `source`.json, multiple
    choice among the 10 classes (format="mc") or open-ended (format="open"); see the module docstring."""
    check_on_missing(on_missing)
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    if format not in ("mc", "open"):
        raise ValueError(f"format must be 'mc' or 'open', got {format!r}")
    annotations = read_annotations(root, source, videos=videos, extension=extension)
    classes = subset_classes("T10")
    missing = [name for name in classes if name not in annotations.classes]
    if missing:
        raise BenchmarkFormatError(f"{root}: labels.json lacks the T10 classes {missing}")
    records = [record for record in annotations.records if record.cls in classes]
    if split != "all":
        train, test = t10_split([record.id for record in records], seed, test_fraction)
        keep = set(test if split == "test" else train)
        records = [record for record in records if record.id in keep]
    if format == "mc":
        return _items("ssv2-t10", annotations, records, on_missing, report, lambda record: classes)
    return _items("ssv2-t10", annotations, records, on_missing, report, lambda record: None, classes)


def _items(
    benchmark: str,
    annotations: SSv2Annotations,
    records: list[SSv2Record],
    on_missing: OnMissing,
    report: LoadReport | None,
    options: Callable[[SSv2Record], tuple[str, ...] | None],
    classes: tuple[str, ...] | None = None,
) -> list[EvalItem]:
    items, skipped = [], []
    for record in records:
        path = annotations.video(record)
        if not videos_present([path], where=record.where, on_missing=on_missing, skipped=skipped):
            continue
        items.append(
            EvalItem(
                qid=record.id,
                task=record.cls,
                question=QUESTION,
                videos=(VideoRef(path),),
                options=options(record),
                answer=record.cls,
                classes=classes,
            )
        )
    return finish(benchmark, items, skipped, report)


def read_records(path: Path, classes: dict[str, int] | Sequence[str]) -> list[SSv2Record]:
    """The records of one SSv2 annotation file (train.json, validation.json). Every record needs a string `id` and
    a string `template` whose class (stave.ssv2.ssv2_class) is among `classes`; ids must be unique. Raises
    BenchmarkFormatError naming the file, the record and the field otherwise."""
    rows = expect_type(read_json(path), list, path, "top level", "a JSON list of records")
    records, seen = [], {}
    for i, row in enumerate(rows):
        where = f"[{i}]"
        video_id = field(row, "id", str, path, where)
        where = f"[{i}] (id {video_id!r})"
        template = field(row, "template", str, path, where)
        cls = ssv2_class(template)
        if cls not in classes:
            raise BenchmarkFormatError(
                f"{path}: {where}: field 'template' {template!r} gives class {cls!r}, which is not in labels.json"
            )
        if video_id in seen:
            raise BenchmarkFormatError(f"{path}: {where}: field 'id' repeats record {seen[video_id]}")
        seen[video_id] = f"[{i}]"
        records.append(SSv2Record(video_id, cls, f"{path} {where}"))
    return records


def read_labels(path: Path) -> dict[str, int]:
    """labels.json: {class text: index as a string} -> {class text: index}, in index order; BenchmarkFormatError
    naming the file and the entry for anything else."""
    labels = expect_type(read_json(path), dict, path, "top level", "an object {class: index}")
    classes = {}
    for name, index in labels.items():
        expect_type(index, str, path, f"[{name!r}]", "the class index as a string")
        if not index.isdigit():
            raise BenchmarkFormatError(f"{path}: [{name!r}]: class index {index!r} is not a number")
        classes[name] = int(index)
    return dict(sorted(classes.items(), key=lambda entry: entry[1]))


def annotation_file(root: Path, name: str) -> Path:
    """An SSv2 annotation file (labels, train, validation) in `root` or root/labels, under its current or older
    name; BenchmarkFormatError listing where it was looked for."""
    candidates = [
        folder / filename
        for folder in (root, root / "labels")
        for filename in (f"{name}.json", f"something-something-v2-{name}.json")
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BenchmarkFormatError(f"{root}: SSv2 {name}.json not found (looked for {[str(c) for c in candidates]})")


def _video_folder(root: Path, videos: str | Path | None) -> Path:
    if videos is not None:
        return root / videos  # an absolute `videos` replaces root
    official = root / OFFICIAL_VIDEO_FOLDER
    return official if official.is_dir() else root
