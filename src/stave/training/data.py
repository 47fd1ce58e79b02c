"""Training data: conversation files (JSON or JSONL) and SSv2-style classification turned into QA, mixed by
per-dataset ratios, encoded lazily, with an explicit policy for samples that fail.

Every record is checked when the file is read (structure, fields, types); media are decoded when a sample is
used. A sample that fails then is never replaced by another one: with `on_error="raise"` training stops with
the file, the record and the reason; with `on_error="skip"` the sample leaves its batch, is counted, and is
written to `skipped.jsonl` (reported at the end of the stage).
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

from ..errors import StaveError
from ..processing import NEEDS_MM_TOKEN_TYPES, ConversationError, VideoChatProcessor, to_messages
from ..ssv2 import ssv2_class, subset_classes, t10_split
from ..video import VideoError
from .recipe import DatasetSpec, RecipeError

SKIPPED_FILE = "skipped.jsonl"
EMPTY_BATCH = "stave_failed_samples"


class DataError(StaveError, ValueError):
    """A training file or record that cannot be used; names the file, the record and the reason."""


@dataclass(frozen=True)
class Record:
    """One training sample: the conversation, where it came from, and the folder its media paths start in."""

    sample: Any
    source: str  # "file:index"
    root: Path


def read_records(spec: DatasetSpec) -> list[Record]:
    """All records of one dataset, validated; DataError names the file and record index."""
    path = Path(spec.path)
    root = Path(spec.root) if spec.root is not None else path.parent
    rows = _read_rows(path)
    records, ssv2_ids = [], []
    for i, row in enumerate(rows):
        where = f"{path}:{i}" if path.suffix != ".jsonl" else f"{path}:line {i + 1}"
        form = spec.format if spec.format != "auto" else _detect(row)
        if form is None:
            raise DataError(f"{where}: neither a conversation ('conversations'/'messages') nor an SSv2 record")
        if form == "ssv2":
            sample = _ssv2_sample(row, spec, where)
            if sample is None:
                continue
            ssv2_ids.append(row["id"])
        else:
            sample = row
            try:
                to_messages(sample, where)
            except ConversationError as error:
                raise DataError(str(error)) from None
            if spec.tasks is not None:
                task = row.get("task") if isinstance(row, dict) else None
                if not isinstance(task, str):
                    raise DataError(f"{where}.task: missing or not a string (the dataset keeps tasks {spec.tasks})")
                if task not in spec.tasks:
                    continue
        records.append(Record(sample, where, root))
    if spec.split != "all":  # the seeded SSv2-T10 split over record ids, exactly as the ssv2-t10 benchmark
        train, test = t10_split(ssv2_ids, spec.split_seed)
        keep = set(train if spec.split == "train" else test)
        records = [record for record, id_ in zip(records, ssv2_ids, strict=True) if id_ in keep]
    if not records:
        chosen = f" of subset {spec.subset}" if spec.subset else f" for classes {spec.classes}" if spec.classes else ""
        chosen = f" of tasks {spec.tasks}" if spec.tasks is not None else chosen
        raise DataError(f"{path}: no usable records{chosen}")
    return records


def _read_rows(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}:line {n}: not valid JSON: {error.msg}") from None
        return rows
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
    return rows


def _detect(row: Any) -> str | None:
    if isinstance(row, list) or isinstance(row, dict) and ("conversations" in row or "messages" in row):
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


class TrainingSet(torch.utils.data.Dataset):
    """Records encoded on access by a VideoChatProcessor. A failing sample is returned as a `Failed` marker
    under on_error="skip" (the collator drops it and the failure is logged) and raised under "raise"."""

    def __init__(
        self, records: list[Record], processor: VideoChatProcessor, *, on_error: str = "skip", log_dir=None
    ) -> None:
        self.records = records
        self.processor = processor
        self.on_error = on_error
        self.log_dir = Path(log_dir) if log_dir is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        self.processor.data_root = record.root
        try:
            encoded = self.processor.encode(record.sample, train=True, name=record.source)
        except (VideoError, ConversationError, OSError) as error:
            if self.on_error == "raise":
                raise DataError(f"{record.source}: {error}") from error
            self._log(record, error)
            return {"failed": record.source, "reason": f"{type(error).__name__}: {error}"}
        encoded.pop("clips", None)
        return encoded

    def _log(self, record: Record, error: Exception) -> None:
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"sample": record.source, "error": type(error).__name__, "reason": str(error)})
        # one small append per failure: whole lines, safe across dataloader workers and ranks
        with open(self.log_dir / SKIPPED_FILE, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class Collator:
    """Right-padded training batches; failed samples are dropped (they are already logged). A batch whose
    samples all failed becomes an EMPTY batch (one padding token, no labels, EMPTY_BATCH set): the trainer
    runs it with zero loss so that every rank still takes its step (stave.training.run.StaveTrainer)."""

    def __init__(self, processor: VideoChatProcessor) -> None:
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        good = [item for item in items if "failed" not in item]
        if not good:
            pad = torch.tensor([[self.processor.tokenizer.pad_token_id]])
            batch = {"input_ids": pad, "attention_mask": torch.ones_like(pad), EMPTY_BATCH: len(items)}
            if NEEDS_MM_TOKEN_TYPES:
                batch["mm_token_type_ids"] = torch.zeros_like(pad)
            return batch
        return self.processor.collate(good, padding_side="right")


def skipped_report(log_dir: Path) -> tuple[int, Counter]:
    """(number of skipped samples, count per error type) from a stage's skipped.jsonl."""
    path = Path(log_dir) / SKIPPED_FILE
    if not path.is_file():
        return 0, Counter()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return len(rows), Counter(row["error"] for row in rows)


def load_datasets(specs: Sequence[DatasetSpec], seed: int) -> list[Record]:
    """Read and mix every dataset of a recipe; errors name the recipe key and the file."""
    datasets = []
    for i, spec in enumerate(specs):
        try:
            datasets.append(read_records(spec))
        except DataError as error:
            raise RecipeError(f"data.datasets[{i}]: {error}") from None
    return mixture(datasets, [spec.ratio for spec in specs], seed)


def words_of(records: Sequence[Record]) -> list[str]:
    """Every text word of the records' conversations (for a word-level tokenizer of a tiny model)."""
    from ..tokenizer import split_words

    words: dict[str, None] = {}
    for record in records:
        for message in to_messages(record.sample, record.source):
            for item in message["content"]:
                if item["type"] == "text":
                    words.update(dict.fromkeys(split_words(item["text"])))
    return list(words)
