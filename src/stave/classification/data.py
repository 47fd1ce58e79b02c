"""Classification training data: SSv2 annotation files in the published layout (labels.json mapping each class
text to its index; train.json / validation.json records {"id", "label", "template", "placeholders"}), each record
a video and its class index, read into ClipInput pixels (stave.classification.clips) when used, with the skip
policy of chat training (stave.training.data: a failing video is counted, listed in skipped.jsonl and bounded by
data.max_skipped_fraction under on_error=skip, or stops the run naming the file under on_error=raise).

Labels: all labels.json classes in index order (174 for SSv2), or a named subset (`subset: T10`,
stave.ssv2.SUBSETS, in its listed order) or an explicit `classes` list; the index of a class is its place in
that list, and the trained model's config.json names them (id2label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..evaluation.benchmarks.ssv2 import annotation_file, read_labels, read_records
from ..evaluation.items import BenchmarkFormatError
from ..ssv2 import subset_classes, t10_split
from ..training.data import EMPTY_BATCH, SAMPLE_COUNTS, DataError, SkippingSet, mixture, sample_counts
from ..training.recipe import DatasetSpec, RecipeError
from ..video import VideoError
from .clips import ClipInput, read_views


@dataclass(frozen=True)
class ClassRecord:
    """One training video: its file, its label index and where its record was read ("file [i] (id ...)")."""

    video: Path
    label: int
    source: str


def dataset_labels(spec: DatasetSpec) -> list[str]:
    """The class names of a dataset, index order: its subset, its classes, or every class of its labels.json."""
    labels = read_labels(_labels_file(spec))
    chosen = subset_classes(spec.subset) if spec.subset is not None else spec.classes
    if chosen is None:
        return list(labels)
    missing = [name for name in chosen if name not in labels]
    if missing:
        raise DataError(f"{_labels_file(spec)}: lacks the classes {missing} of the dataset's subset/classes")
    return list(chosen)


def read_class_records(spec: DatasetSpec, labels: Sequence[str]) -> list[ClassRecord]:
    """The records of one SSv2 annotation file whose class is in `labels`, in file order (the seeded T10
    split's part under spec.split); every record checked (id, template, class in labels.json), a
    DataError naming the file, the record and the field otherwise."""
    path = Path(spec.path)
    root = Path(spec.root) if spec.root is not None else path.parent
    try:
        records = read_records(path, read_labels(_labels_file(spec)))
    except BenchmarkFormatError as error:
        raise DataError(str(error)) from None
    index = {name: i for i, name in enumerate(labels)}
    records = [record for record in records if record.cls in index]
    if spec.split != "all":  # the seeded split of the ssv2-t10 benchmark
        train, test = t10_split([record.id for record in records], spec.split_seed)
        keep = set(train if spec.split == "train" else test)
        records = [record for record in records if record.id in keep]
    if not records:
        raise DataError(f"{path}: no records of the classes {list(labels)[:3]}... (split {spec.split})")
    return [ClassRecord(root / spec.video_pattern.format(id=r.id), index[r.cls], r.where) for r in records]


def _labels_file(spec: DatasetSpec) -> Path:
    if spec.labels is not None:
        return Path(spec.labels)
    try:
        return annotation_file(Path(spec.path).parent, "labels")
    except BenchmarkFormatError as error:
        raise DataError(f"{error}; give data.datasets[].labels") from None


def load_class_data(specs: Sequence[DatasetSpec], seed: int) -> tuple[list[ClassRecord], list[str]]:
    """(records of every dataset, mixed by their ratios, as stave.training.data.mixture; the label names). Every
    dataset must have the same labels; errors name the recipe key and the file."""
    datasets, labels = [], None
    for i, spec in enumerate(specs):
        try:
            own = dataset_labels(spec)
            if labels is not None and own != labels:
                raise DataError(f"{spec.path}: its labels differ from data.datasets[0]'s ({len(own)} vs {len(labels)})")
            labels = own
            datasets.append(read_class_records(spec, labels))
        except (DataError, BenchmarkFormatError) as error:
            raise RecipeError(f"data.datasets[{i}]: {error}") from None
    return mixture(datasets, [spec.ratio for spec in specs], seed), labels


class ClassificationSet(SkippingSet):
    """Records read on access as {"pixel_values": (T, 3, size, size) float32, "labels": int} (one view: the
    middle frame of each of T segments, centre crop). A failing video is a `failed` marker under
    on_error="skip" (logged in log_dir/skipped.jsonl, dropped and counted by the collator) and a DataError
    naming the record under "raise"."""

    def __init__(
        self, records: Sequence[ClassRecord], clip_input: ClipInput, *, on_error: str = "skip", log_dir=None
    ) -> None:
        super().__init__(records, on_error=on_error, log_dir=log_dir)
        self.clip_input = clip_input

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        try:
            pixels = read_views(record.video, self.clip_input)[0]
        except (VideoError, OSError) as error:
            return self.failed(record.source, error)
        return {"pixel_values": pixels, "labels": record.label}


class ClassificationCollator:
    """Batches {"pixel_values": (B, T, 3, S, S), "labels": (B,)}; failed samples dropped and counted
    (SAMPLE_COUNTS). A batch whose samples all failed is one blank clip with EMPTY_BATCH set (zero loss; every
    rank still takes its step)."""

    def __init__(self, clip_input: ClipInput) -> None:
        self.clip_input = clip_input

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        good, counts = sample_counts(items)
        if good:
            batch = {
                "pixel_values": torch.stack([item["pixel_values"] for item in good]),
                "labels": torch.tensor([item["labels"] for item in good], dtype=torch.long),
            }
        else:
            size, frames = self.clip_input.size, self.clip_input.frames
            batch = {
                "pixel_values": torch.zeros(1, frames, 3, size, size),
                "labels": torch.zeros(1, dtype=torch.long),
                EMPTY_BATCH: len(items),
            }
        batch[SAMPLE_COUNTS] = counts
        return batch
