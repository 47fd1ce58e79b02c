"""Training data: conversation files (JSON or JSONL) and SSv2-style classification turned into QA, mixed by
per-dataset ratios, encoded lazily, with an explicit policy for samples that fail.

Every record is checked when the file is read (structure, fields, types, placeholders against media, each
video's own settings over the run's VideoOptions: stave.conversations); media are decoded when a sample is
used. A sample that fails then is never replaced by another one: with `on_error="raise"` training stops with
the file, the record and the reason; with `on_error="skip"` the sample leaves its batch, is counted, and is
written to `skipped.jsonl` (reported at the end of the stage); more than `max_skipped_fraction` of the samples
seen skipped stops the run (SkipBudget).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import jsonfiles
from ..conversations import DEFAULT_LAYOUT, ConversationError, RecordLayout, to_messages
from ..errors import StaveError
from ..processing import IGNORE_INDEX, VideoChatProcessor
from ..ssv2 import ssv2_class, subset_classes, t10_split
from ..video import VideoError, VideoOptions
from .recipe import DatasetSpec, RecipeError

SKIPPED_FILE = "skipped.jsonl"
EMPTY_BATCH = "stave_failed_samples"
SAMPLE_COUNTS = "stave_sample_counts"  # every batch: samples drawn, samples skipped, their reasons
SKIP_CHECK_AFTER = 16  # samples seen (over all ranks) before the skipped share is checked during a stage


class DataError(StaveError, ValueError):
    """A training file or record that cannot be used; names the file, the record and the reason."""


@dataclass(frozen=True)
class Record:
    """One training sample: the record as read, its conversation as Qwen messages (stave.conversations),
    where it came from, and the folder its media paths start in."""

    sample: Any
    source: str  # "file:index"
    root: Path
    messages: list[dict[str, Any]]


def read_records(spec: DatasetSpec, video: VideoOptions | None = None) -> list[Record]:
    """All records of one dataset, validated, each video's own settings over the run's options `video`;
    DataError names the file, the record and the field."""
    path, root, layout = dataset_source(spec)
    rows = _read_rows(path)
    records, ssv2_ids = [], []
    for i, row in enumerate(rows):
        where = f"{path}:{i}" if path.suffix != ".jsonl" else f"{path}:line {i + 1}"
        form = "conversations" if layout is not None else spec.format if spec.format != "auto" else _detect(row)
        if form is None:
            raise DataError(
                f"{where}: neither a conversation ('messages'/'conversations', or alpaca's 'instruction'/"
                f"'output') nor an SSv2 record ('id'/'template'); got {_keys(row)}"
            )
        if form == "ssv2":
            sample = _ssv2_sample(row, spec, where)
            if sample is None:
                continue
            ssv2_ids.append(row["id"])
        else:
            sample = row
        try:
            messages = to_messages(sample, where, layout=layout or DEFAULT_LAYOUT, video_options=video)
        except ConversationError as error:
            raise DataError(str(error)) from None
        if form != "ssv2" and spec.tasks is not None:
            task = row.get("task") if isinstance(row, dict) else None
            if not isinstance(task, str):
                raise DataError(f"{where}.task: missing or not a string (the dataset keeps tasks {spec.tasks})")
            if task not in spec.tasks:
                continue
        records.append(Record(sample, where, root, messages))
    if spec.split != "all":  # the seeded SSv2-T10 split over record ids, exactly as the ssv2-t10 benchmark
        train, test = t10_split(ssv2_ids, spec.split_seed)
        keep = set(train if spec.split == "train" else test)
        records = [record for record, id_ in zip(records, ssv2_ids, strict=True) if id_ in keep]
    if not records:
        chosen = f" of subset {spec.subset}" if spec.subset else f" for classes {spec.classes}" if spec.classes else ""
        chosen = f" of tasks {spec.tasks}" if spec.tasks is not None else chosen
        raise DataError(f"{path}: no usable records{chosen}")
    return records


def dataset_source(spec: DatasetSpec) -> tuple[Path, Path, RecordLayout | None]:
    """(data file, media root, record layout) of a dataset: its path, or its LLaMA-Factory dataset_info.json
    entry (file_name, formatting, columns, tags; media relative to dataset_info's folder, LLaMA-Factory's
    media_dir default). The layout is None for a plain file (every format detected by its keys)."""
    if spec.dataset_info is None:
        path = Path(spec.path)
        return path, Path(spec.root) if spec.root is not None else path.parent, None
    info_path = Path(spec.dataset_info)
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{info_path}: not valid JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(info, dict) or spec.dataset not in info:
        known = sorted(info) if isinstance(info, dict) else []
        raise DataError(f"{info_path}: no entry {spec.dataset!r}; entries: {known}")
    where = f"{info_path}[{spec.dataset!r}]"
    entry = info[spec.dataset]
    try:
        layout = RecordLayout.from_dataset_info(entry, where)
    except ConversationError as error:
        raise DataError(str(error)) from None
    if not isinstance(entry.get("file_name"), str):
        raise DataError(f"{where}.file_name: missing (the data file, relative to {info_path.parent})")
    path = info_path.parent / entry["file_name"]
    if not path.is_file():
        raise DataError(f"{where}.file_name: data file not found: {path}")
    return path, Path(spec.root) if spec.root is not None else info_path.parent, layout


def _keys(row: Any) -> str:
    return f"keys {sorted(row)}" if isinstance(row, dict) else type(row).__name__


def _read_rows(path: Path) -> list[Any]:
    if path.suffix == ".jsonl":
        return [row for _, row in jsonfiles.read_jsonl(path, DataError)]
    rows = jsonfiles.read_json(path, DataError)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
    return rows


def _detect(row: Any) -> str | None:
    if isinstance(row, list) or isinstance(row, dict) and any(
        key in row for key in (*DEFAULT_LAYOUT.messages, DEFAULT_LAYOUT.response)
    ):
        return "conversations"
    if isinstance(row, dict) and "template" in row and "id" in row:
        return "ssv2"
    return None


def _ssv2_sample(row: Any, spec: DatasetSpec, where: str) -> dict[str, Any] | None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: an SSv2 record is an object, got {type(row).__name__}")
    for key in ("id", "template"):
        if not isinstance(row.get(key), str):
            raise DataError(f"{where}.{key}: missing or not a string")
    answer = ssv2_class(row["template"])
    classes = spec.classes if spec.subset is None else subset_classes(spec.subset)
    if classes is not None and answer not in classes:
        return None
    return {
        "video": spec.video_pattern.format(id=row["id"]),
        "conversations": [
            {"from": "human", "value": f"<video>\n{spec.question}"},
            {"from": "gpt", "value": answer},
        ],
    }


def mixture(datasets: Sequence[list[Record]], ratios: Sequence[float], seed: int) -> list[Record]:
    """Records of several datasets, each drawn `ratio` times its size (whole repeats, then a seeded subset)."""
    rng = random.Random(seed)
    mixed = []
    for records, ratio in zip(datasets, ratios, strict=True):
        whole, part = divmod(ratio * len(records), len(records))
        mixed += list(records) * int(whole)
        mixed += rng.sample(list(records), round(part))
    return mixed


class SkippingSet(torch.utils.data.Dataset):
    """Records read on access, with the skip policy: `failed` turns a sample's error into a DataError naming its
    record (on_error="raise") or logs it (log_dir/skipped.jsonl) and returns the marker the collators drop and
    count (on_error="skip")."""

    def __init__(self, records: Sequence[Any], *, on_error: str = "skip", log_dir=None) -> None:
        self.records = list(records)
        self.on_error = on_error
        self.log_dir = Path(log_dir) if log_dir is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def failed(self, source: str, error: Exception) -> dict[str, str]:
        if self.on_error == "raise":
            raise DataError(f"{source}: {error}") from error
        log_skipped(self.log_dir, source, error)
        return {"failed": source, "reason": f"{type(error).__name__}: {error}"}


class TrainingSet(SkippingSet):
    """Records encoded on access by a VideoChatProcessor. A failing sample is returned as a `failed` marker
    under on_error="skip" (the collator drops it and the failure is logged) and raised under "raise"."""

    def __init__(
        self, records: list[Record], processor: VideoChatProcessor, *, on_error: str = "skip", log_dir=None
    ) -> None:
        super().__init__(records, on_error=on_error, log_dir=log_dir)
        self.processor = processor

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        self.processor.data_root = record.root
        try:
            encoded = self.processor.encode(record.messages, train=True, name=record.source)
        except (VideoError, ConversationError, OSError) as error:
            return self.failed(record.source, error)
        encoded.pop("clips", None)
        return encoded


def log_skipped(log_dir: Path | None, source: str, error: Exception) -> None:
    """Append a skipped sample (its source "file:index", the error type and reason) to log_dir/skipped.jsonl."""
    if log_dir is None:
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"sample": source, "error": type(error).__name__, "reason": str(error)})
    # one small append per failure: whole lines, safe across dataloader workers and ranks
    with open(log_dir / SKIPPED_FILE, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def sample_counts(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the samples that did not fail, the batch's SAMPLE_COUNTS entry: drawn, skipped and their reasons)."""
    good = [item for item in items if "failed" not in item]
    failed = [f"{item['failed']}: {item['reason']}" for item in items if "failed" in item]
    return good, {"seen": len(items), "skipped": len(failed), "reasons": failed}


class Collator:
    """Right-padded training batches; failed samples are dropped (they are already logged). A batch whose
    samples all failed becomes an EMPTY batch (one padding token, its label ignored, EMPTY_BATCH set): the trainer
    runs it with zero loss so that every rank still takes its step (stave.training.run.StaveTrainer)."""

    def __init__(self, processor: VideoChatProcessor) -> None:
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        good, counts = sample_counts(items)
        if not good:
            pad = torch.tensor([[self.processor.tokenizer.pad_token_id]])
            batch = {"input_ids": pad, "attention_mask": torch.ones_like(pad), EMPTY_BATCH: len(items)}
            # labels (all ignored) as every other batch has: the Trainer counts labelled tokens over the ranks
            # (a gather) only for batches with labels, and a rank without them would leave the others waiting
            batch["labels"] = torch.full_like(pad, IGNORE_INDEX)
            if self.processor.media.token_types:
                batch["mm_token_type_ids"] = torch.zeros_like(pad)
        else:
            batch = self.processor.collate(good, padding_side="right")
        batch[SAMPLE_COUNTS] = counts
        return batch


class SkipBudget:
    """How many skipped samples a stage may have (data.max_skipped_fraction): a DataError with the counts and
    the first reasons once more than `max_fraction` of the samples seen were skipped — checked after every
    batch from SKIP_CHECK_AFTER samples on, and at the end of the stage (`check(final=True)`), where a stage
    whose every sample failed always fails.

    `add` is called once per batch on every rank; `reduce` sums [seen, skipped] over the ranks, so every rank
    holds the same totals and stops at the same step (none is left waiting for the others)."""

    def __init__(self, max_fraction: float, log_dir: Path | None = None) -> None:
        self.max_fraction = max_fraction
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.seen = self.skipped = 0
        self.reasons: list[str] = []  # this rank's first ones

    def add(self, seen: int, skipped: int, reasons: Sequence[str] = (), reduce=None) -> None:
        self.reasons += list(reasons[: max(0, 3 - len(self.reasons))])
        seen, skipped = reduce([seen, skipped]) if reduce is not None else (seen, skipped)
        self.seen += seen
        self.skipped += skipped
        if self.seen >= SKIP_CHECK_AFTER:
            self.check()

    def check(self, final: bool = False) -> None:
        if not self.skipped:
            return
        if self.skipped / self.seen > self.max_fraction or (final and self.skipped == self.seen):
            raise DataError(self.summary())

    def summary(self) -> str:
        reasons = self.reasons
        listed = ""
        if self.log_dir is not None and (self.log_dir / SKIPPED_FILE).is_file():
            lines = (self.log_dir / SKIPPED_FILE).read_text(encoding="utf-8").splitlines()[:3]
            reasons = [f"{row['sample']}: {row['error']}: {row['reason']}" for row in map(json.loads, lines)]
            listed = f"; all listed in {self.log_dir / SKIPPED_FILE}"
        return (
            f"{self.skipped} of the {self.seen} samples seen were skipped ({self.skipped / self.seen:.0%}; "
            f"data.max_skipped_fraction is {self.max_fraction}); first reasons: " + " | ".join(reasons) + listed
        )


def skipped_report(log_dir: Path) -> tuple[int, Counter]:
    """(number of skipped samples, count per error type) from a stage's skipped.jsonl."""
    path = Path(log_dir) / SKIPPED_FILE
    if not path.is_file():
        return 0, Counter()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return len(rows), Counter(row["error"] for row in rows)


def load_datasets(specs: Sequence[DatasetSpec], seed: int, video: VideoOptions | None = None) -> list[Record]:
    """Read and mix every dataset of a recipe (videos' own settings checked over `video`); errors name the
    recipe key and the file."""
    datasets = []
    for i, spec in enumerate(specs):
        try:
            datasets.append(read_records(spec, video))
        except DataError as error:
            raise RecipeError(f"data.datasets[{i}]: {error}") from None
    return mixture(datasets, [spec.ratio for spec in specs], seed)


def words_of(records: Sequence[Record]) -> list[str]:
    """Every text word of the records' conversations (for a word-level tokenizer of a tiny model)."""
    from ..tokenizer import split_words

    words: dict[str, None] = {}
    for record in records:
        for message in record.messages:
            for item in message["content"]:
                if item["type"] == "text":
                    words.update(dict.fromkeys(split_words(item["text"])))
    return list(words)
