"""The one reader of users' JSON and JSON Lines files (stave.jsonfiles), through the readers that use it: training
data, benchmark annotations and caption sources name the file and line of a bad record, refuse an object with a
key twice (json would keep the last one silently), and read a file with a UTF-8 byte-order mark."""

from __future__ import annotations

import json

import pytest

from stave.caption_qa.sources import CaptionSourceError, _jsonl_rows
from stave.evaluation.benchmarks.reading import read_jsonl as read_annotations
from stave.evaluation.items import BenchmarkFormatError
from stave.training.data import DataError, read_records
from stave.training.recipe import DatasetSpec

pytestmark = pytest.mark.version_independent

RECORD = {"video": "a.mp4", "conversations": [{"from": "human", "value": "<video>Q?"}, {"from": "gpt", "value": "A."}]}


def _training(path):
    return read_records(DatasetSpec(path=str(path)))


@pytest.mark.parametrize(
    "read, error",
    [(_training, DataError), (lambda p: list(read_annotations(p)), BenchmarkFormatError),
     (lambda p: list(_jsonl_rows(p)), CaptionSourceError)],
    ids=["training", "benchmark", "captions"],
)  # fmt: skip
def test_every_reader_names_the_line_of_a_duplicate_key_or_bad_json_and_reads_a_bom(tmp_path, read, error):
    good = json.dumps(RECORD)
    path = tmp_path / "d.jsonl"
    path.write_text(good + "\n" + good[:-1] + ', "video": "b.mp4"}\n', encoding="utf-8")
    with pytest.raises(error, match=r"d\.jsonl:line 2: key 'video' appears twice"):
        read(path)
    path.write_text(good + "\n\n" + good[:-1] + "\n", encoding="utf-8")
    with pytest.raises(error, match=r"d\.jsonl:line 3: not valid JSON"):
        read(path)
    path.write_text(good + "\n", encoding="utf-8-sig")
    assert len(read(path)) == 1
