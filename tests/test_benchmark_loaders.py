"""Benchmark loaders: each published layout read into EvalItems (questions, options, answers), seeded
constructions that are deterministic and change with the seed, malformed files named precisely, and missing
videos raised or counted. The last section reads the genuine annotation excerpts in ../shared when present."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
from benchmark_fixtures import (
    SSV2_CLASSES,
    placeholder_video,
    ssv2_records,
    videomme_row,
    vitatecs_record,
    write_mvbench,
    write_ssv2,
    write_tempcompass,
    write_videomme,
    write_vitatecs,
)

from stave.evaluation.benchmarks import BENCHMARKS, load_benchmark
from stave.evaluation.benchmarks.ssv2 import QUESTION as SSV2_QUESTION
from stave.evaluation.benchmarks.ssv2_vsm import OPTIONS as VSM_OPTIONS
from stave.evaluation.benchmarks.videomme import read_srt
from stave.evaluation.items import BenchmarkFormatError, LoadReport, VideoRef
from stave.ssv2 import SUBSETS, ssv2_class, t10_split

pytestmark = pytest.mark.version_independent  # runs once: see tests/version_independence.py

T10 = SUBSETS["T10"]


def formats_dir() -> Path | None:
    """The shared folder of genuine annotation excerpts (…/shared/data/formats next to the repository)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "formats"
        if candidate.is_dir():
            return candidate
    return None


def excerpts(*parts: str) -> Path:
    base = formats_dir()
    if base is None or not base.joinpath(*parts).exists():
        pytest.skip("the shared annotation excerpts are not available here")
    return base.joinpath(*parts)


def classes_by_id(root: Path, split: str = "validation") -> dict[str, str]:
    return {r["id"]: ssv2_class(r["template"]) for r in json.loads((root / f"{split}.json").read_text())}


# -- registry -------------------------------------------------------------------------------------------------


def test_registry_names_every_benchmark():
    assert set(BENCHMARKS) == {
        "synthetic",
        "ssv2",
        "ssv2-mc",
        "ssv2-t10",
        "ssv2-vsm",
        "vitatecs",
        "mvbench",
        "videomme",
        "videomme-subs",
        "tempcompass",
    }


def test_unknown_benchmark_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'ssv3'.*'ssv2-t10'.*'vitatecs'"):
        load_benchmark("ssv3", tmp_path)


def test_unknown_on_missing_policy_is_refused(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES[:2], 1)})
    with pytest.raises(ValueError, match="on_missing"):
        load_benchmark("ssv2", tmp_path, on_missing="ignore")


def test_unknown_loader_option_is_an_error(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES[:2], 1)})
    with pytest.raises(TypeError, match="num_options"):
        load_benchmark("ssv2", tmp_path, num_options=4)


# -- SSv2 -----------------------------------------------------------------------------------------------------


def test_ssv2_open_ended_asks_for_the_class_text(tmp_path):
    records = ssv2_records(SSV2_CLASSES, 2)
    write_ssv2(tmp_path, {"validation": records})
    items = load_benchmark("ssv2", tmp_path)
    assert [item.qid for item in items] == [r["id"] for r in records]
    tipping = next(item for item in items if item.task.startswith("Tipping"))
    assert tipping.answer == "Tipping something with something in it over, so something in it falls out"
    for item, record in zip(items, records, strict=True):
        assert item.question == SSV2_QUESTION == "What is the action happening in this video?"
        assert item.options is None and item.answer_letter is None
        assert item.answer == item.task == ssv2_class(record["template"])
        assert item.videos == (VideoRef(tmp_path / f"{record['id']}.webm"),)


def test_ssv2_reads_the_train_split_and_other_published_names(tmp_path):
    records = ssv2_records(SSV2_CLASSES[:3], 2)
    write_ssv2(tmp_path / "labels", {"train": records}, videos="../20bn-something-something-v2")
    (tmp_path / "labels" / "labels.json").rename(tmp_path / "labels" / "something-something-v2-labels.json")
    items = load_benchmark("ssv2", tmp_path, split="train")
    assert [item.videos[0].path for item in items] == [
        tmp_path / "20bn-something-something-v2" / f"{r['id']}.webm" for r in records
    ]
    with pytest.raises(ValueError, match="test.json has no labels"):
        load_benchmark("ssv2", tmp_path, split="test")


def test_ssv2_videos_option_and_extension(tmp_path):
    records = ssv2_records(SSV2_CLASSES[:2], 1)
    write_ssv2(tmp_path, {"validation": records}, videos="clips")
    for record in records:
        placeholder_video(tmp_path / "mp4" / f"{record['id']}.mp4")
    assert len(load_benchmark("ssv2", tmp_path, videos="clips", on_missing="raise")) == 2
    items = load_benchmark("ssv2", tmp_path, videos=tmp_path / "mp4", extension=".mp4", on_missing="raise")
    assert items[0].videos[0].path == tmp_path / "mp4" / f"{records[0]['id']}.mp4"


def test_ssv2_mc_offers_the_true_class_among_seeded_distractors(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES, 3)})
    items = load_benchmark("ssv2-mc", tmp_path, num_options=4)
    positions = Counter()
    for item in items:
        assert len(item.options) == len(set(item.options)) == 4
        assert item.answer == item.task and item.answer in item.options
        assert set(item.options) <= set(SSV2_CLASSES)
        positions[item.answer_index] += 1
    assert len(positions) == 4  # the true class is not always in the same place
    assert load_benchmark("ssv2-mc", tmp_path, num_options=4) == items
    other = load_benchmark("ssv2-mc", tmp_path, num_options=4, seed=1)
    assert [i.qid for i in other] == [i.qid for i in items]
    assert [i.options for i in other] != [i.options for i in items]


def test_ssv2_mc_options_of_an_item_do_not_depend_on_the_other_records(tmp_path):
    records = ssv2_records(SSV2_CLASSES, 2)
    write_ssv2(tmp_path / "all", {"validation": records})
    write_ssv2(tmp_path / "one", {"validation": records[-1:]})
    full = load_benchmark("ssv2-mc", tmp_path / "all", seed=3)
    alone = load_benchmark("ssv2-mc", tmp_path / "one", seed=3)
    assert alone[0].options == full[-1].options


def test_ssv2_mc_refuses_impossible_option_counts(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES[:3], 1)}, classes=SSV2_CLASSES[:3])
    with pytest.raises(ValueError, match="num_options"):
        load_benchmark("ssv2-mc", tmp_path, num_options=11)
    with pytest.raises(ValueError, match="only 3 classes"):
        load_benchmark("ssv2-mc", tmp_path, num_options=4)


def test_t10_split_is_seeded_disjoint_and_eighty_twenty(tmp_path):
    records = ssv2_records(SSV2_CLASSES, 10)  # 10 per class: 100 T10 records, 50 others
    write_ssv2(tmp_path, {"train": records})
    test = load_benchmark("ssv2-t10", tmp_path)
    train = load_benchmark("ssv2-t10", tmp_path, split="train")
    everything = load_benchmark("ssv2-t10", tmp_path, split="all")
    assert (len(train), len(test), len(everything)) == (80, 20, 100)
    assert {i.qid for i in train}.isdisjoint({i.qid for i in test})
    assert {i.qid for i in train} | {i.qid for i in test} == {i.qid for i in everything}
    assert {i.task for i in everything} == set(T10)
    ids = [r["id"] for r in records if ssv2_class(r["template"]) in T10]
    assert [i.qid for i in test] == [i for i in ids if i in set(t10_split(ids, 0)[1])]  # file order kept
    assert load_benchmark("ssv2-t10", tmp_path) == test
    assert {i.qid for i in load_benchmark("ssv2-t10", tmp_path, seed=1)} != {i.qid for i in test}
    assert len(load_benchmark("ssv2-t10", tmp_path, test_fraction=0.5)) == 50


def test_t10_items_are_multiple_choice_among_the_ten_classes_or_open(tmp_path):
    write_ssv2(tmp_path, {"train": ssv2_records(SSV2_CLASSES, 5)})
    for item in load_benchmark("ssv2-t10", tmp_path):
        assert item.options == T10 and item.answer == item.task and item.answer in T10
        assert item.question == SSV2_QUESTION
    assert all(item.options is None for item in load_benchmark("ssv2-t10", tmp_path, format="open"))


def test_t10_split_does_not_depend_on_which_videos_exist(tmp_path):
    records = ssv2_records(T10, 5)
    write_ssv2(tmp_path, {"train": records}, missing=[r["id"] for r in records[:20]])
    report = LoadReport()
    present = load_benchmark("ssv2-t10", tmp_path, report=report)
    write_ssv2(tmp_path / "full", {"train": records})
    full = load_benchmark("ssv2-t10", tmp_path / "full")
    assert {i.qid for i in present} | {s["record"].split("id '")[1][:-2] for s in report.skipped} == {
        i.qid for i in full
    }


def test_t10_from_the_validation_file(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES, 2)})
    items = load_benchmark("ssv2-t10", tmp_path, source="validation", split="all")
    assert Counter(item.task for item in items) == {cls: 2 for cls in T10}


def test_vsm_references_match_the_answer(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES, 10)})
    classes = classes_by_id(tmp_path)
    items = load_benchmark("ssv2-vsm", tmp_path)
    assert len(items) == 100  # every T10 record is a query once
    for item in items:
        assert item.options == VSM_OPTIONS == ("Example 1", "Example 2", "none")
        assert len(item.videos) == 3
        first, second, query = (classes[video.path.stem] for video in item.videos)
        assert item.qid == item.videos[2].path.stem and item.task == query
        assert item.qid not in {item.videos[0].path.stem, item.videos[1].path.stem}
        assert {first, second} <= set(T10)
        expected = "Example 1" if first == query else "Example 2" if second == query else "none"
        assert item.answer == expected and first != second
        assert item.groups == {"reference": "none" if item.answer == "none" else "match"}
    per_class = Counter((item.task, item.answer) for item in items)
    for cls in T10:  # 8 of 10 queries per class match (alternating examples), 2 do not
        assert per_class[cls, "none"] == 2
        assert {per_class[cls, "Example 1"], per_class[cls, "Example 2"]} == {4}


def test_vsm_is_deterministic_and_differs_by_seed(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES, 6)})
    items = load_benchmark("ssv2-vsm", tmp_path, seed=7)
    assert load_benchmark("ssv2-vsm", tmp_path, seed=7) == items
    other = load_benchmark("ssv2-vsm", tmp_path, seed=8)
    assert [i.qid for i in other] == [i.qid for i in items]
    assert [(i.videos, i.answer) for i in other] != [(i.videos, i.answer) for i in items]


def test_vsm_over_all_classes_and_match_fraction(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES, 4)})
    items = load_benchmark("ssv2-vsm", tmp_path, subset=None, match_fraction=0.5)
    assert len(items) == 4 * len(SSV2_CLASSES)
    assert Counter(item.answer for item in items)["none"] == 2 * len(SSV2_CLASSES)
    none_only = load_benchmark("ssv2-vsm", tmp_path, subset=None, match_fraction=0.0)
    assert {item.answer for item in none_only} == {"none"}


def test_vsm_query_of_a_single_record_class_cannot_match(tmp_path):
    records = ssv2_records(T10[:3], 3) + ssv2_records(T10[3:4], 1, first_id=5000)
    write_ssv2(tmp_path, {"validation": records})
    lone = next(item for item in load_benchmark("ssv2-vsm", tmp_path) if item.qid == "5000")
    assert lone.answer == "none"


def test_vsm_needs_three_classes(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(T10[:2], 3)})
    with pytest.raises(ValueError, match="at least 3 classes"):
        load_benchmark("ssv2-vsm", tmp_path)


def test_vsm_skips_a_query_whose_reference_is_missing(tmp_path):
    records = ssv2_records(T10, 4)
    write_ssv2(tmp_path, {"validation": records})
    complete = load_benchmark("ssv2-vsm", tmp_path)
    gone = records[0]["id"]
    (tmp_path / f"{gone}.webm").unlink()
    report = LoadReport()
    items = load_benchmark("ssv2-vsm", tmp_path, report=report)
    affected = [i for i in complete if gone in {v.path.stem for v in i.videos}]
    assert len(items) == len(complete) - len(affected) == report.items
    assert len(report.skipped) == len(affected) and all(gone in s["reason"] for s in report.skipped)
    with pytest.raises(BenchmarkFormatError, match=f"{gone}.webm"):
        load_benchmark("ssv2-vsm", tmp_path, on_missing="raise")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"label": "x", "template": "Holding [something]"}, r"\[1\]: missing field 'id'"),
        ({"id": 17, "template": "Picking [something] up"}, r"\[1\]: expected field 'id' to be a string, got int 17"),
        ({"id": "17", "label": "x"}, r"\[1\] \(id '17'\): missing field 'template'"),
        ({"id": "17", "template": ["Picking [something] up"]}, r"field 'template' to be a string, got a list"),
        ({"id": "17", "template": "Juggling [something]"}, r"class 'Juggling something'.*not in labels.json"),
        ({"id": "1000", "template": "Picking [something] up"}, r"\[1\] \(id '1000'\): field 'id' repeats record \[0\]"),
        ("1000", r"\[1\]: expected a JSON object, got a string"),
    ],
)
def test_ssv2_malformed_record_names_file_record_and_field(tmp_path, record, message):
    write_ssv2(tmp_path, {"validation": [*ssv2_records(SSV2_CLASSES[:1], 1), record]})
    with pytest.raises(BenchmarkFormatError, match=message) as error:
        load_benchmark("ssv2", tmp_path)
    assert str(tmp_path / "validation.json") in str(error.value)


def test_ssv2_malformed_files(tmp_path):
    write_ssv2(tmp_path, {"validation": ssv2_records(SSV2_CLASSES[:2], 1)})
    (tmp_path / "validation.json").write_text('[\n{"id":"1","template":"Picking [something] up"},\n{"id":')
    with pytest.raises(BenchmarkFormatError, match=r"validation.json: not valid JSON at line 3"):
        load_benchmark("ssv2", tmp_path)
    (tmp_path / "validation.json").write_text('{"id": "1"}')
    with pytest.raises(BenchmarkFormatError, match="top level: expected a JSON list of records, got an object"):
        load_benchmark("ssv2", tmp_path)
    (tmp_path / "labels.json").write_text('{"Picking something up": 47}')
    with pytest.raises(BenchmarkFormatError, match=r"labels.json: \['Picking something up'\]: expected the class"):
        load_benchmark("ssv2", tmp_path)
    (tmp_path / "labels.json").write_text('{"Picking something up": "47", "Picking something up": "48"}')
    with pytest.raises(BenchmarkFormatError, match="appears twice"):
        load_benchmark("ssv2", tmp_path)
    (tmp_path / "labels.json").unlink()
    with pytest.raises(BenchmarkFormatError, match="labels.json not found"):
        load_benchmark("ssv2", tmp_path)


def test_ssv2_missing_video_raises_or_is_counted(tmp_path):
    records = ssv2_records(SSV2_CLASSES[:3], 1)
    write_ssv2(tmp_path, {"validation": records}, missing=[records[1]["id"]])
    missing = tmp_path / f"{records[1]['id']}.webm"
    with pytest.raises(
        BenchmarkFormatError, match=rf"\[1\] \(id '{records[1]['id']}'\): video not found: {re.escape(str(missing))}"
    ):
        load_benchmark("ssv2", tmp_path, on_missing="raise")
    report = LoadReport()
    items = load_benchmark("ssv2", tmp_path, report=report)
    assert [i.qid for i in items] == [records[0]["id"], records[2]["id"]] and report.items == 2
    assert report.skipped == [
        {
            "record": f"{tmp_path / 'validation.json'} [1] (id '{records[1]['id']}')",
            "reason": f"video not found: {missing}",
        }
    ]
    with pytest.warns(UserWarning, match="ssv2: skipped 1 question"):
        assert len(load_benchmark("ssv2", tmp_path)) == 2


# -- VITATECS -------------------------------------------------------------------------------------------------


def vitatecs_fixture(root: Path, **kwargs) -> Path:
    return write_vitatecs(
        root,
        {
            "Direction": [
                vitatecs_record("video1.mp4", "a man opens a door", "a man closes a door", "Direction"),
                vitatecs_record("video1.mp4", "someone opens a door", "someone closes a door", "Direction"),
                vitatecs_record("abc_000001_000011.mp4", "a car turns left", "a car turns right", "Direction", "VATEX"),
            ],
            "Sequence": [
                vitatecs_record("video2.mp4", f"first {n} then {n + 1}", f"first {n + 1} then {n}", "Sequence")
                for n in range(12)
            ],
        },
        **kwargs,
    )


def test_vitatecs_two_option_questions(tmp_path):
    vitatecs_fixture(tmp_path)
    items = load_benchmark("vitatecs", tmp_path, aspects=["Direction", "Sequence"], on_missing="raise")
    assert [i.qid for i in items[:4]] == ["Direction/1", "Direction/2", "Direction/3", "Sequence/1"]
    first = items[0]
    assert first.task == "Direction" and first.question == "Which caption describes the video?"
    assert set(first.options) == {"a man opens a door", "a man closes a door"}
    assert first.answer == "a man opens a door"
    assert first.videos == (VideoRef(tmp_path / "videos" / "MSRVTT" / "video1.mp4"),)
    assert items[2].videos[0].path == tmp_path / "videos" / "VATEX" / "abc_000001_000011.mp4"
    assert {item.answer_index for item in items} == {0, 1}  # the caption is not always first


def test_vitatecs_option_order_is_seeded(tmp_path):
    vitatecs_fixture(tmp_path)
    items = load_benchmark("vitatecs", tmp_path, aspects=["Direction", "Sequence"])
    assert load_benchmark("vitatecs", tmp_path, aspects=["Direction", "Sequence"]) == items
    other = load_benchmark("vitatecs", tmp_path, aspects=["Direction", "Sequence"], seed=1)
    assert [i.answer_index for i in other] != [i.answer_index for i in items]
    assert [i.answer for i in other] == [i.answer for i in items]


def test_vitatecs_reads_all_six_aspects_by_default(tmp_path):
    aspects = ("Compositionality", "Direction", "Intensity", "Localization", "Sequence", "Type")
    write_vitatecs(tmp_path, {a: [vitatecs_record(f"video{a}.mp4", "x happens", "y happens", a)] for a in aspects})
    assert [item.task for item in load_benchmark("vitatecs", tmp_path)] == list(aspects)
    (tmp_path / "data" / "Type.jsonl").unlink()
    with pytest.raises(BenchmarkFormatError, match=r"data/Type.jsonl: annotation file not found"):
        load_benchmark("vitatecs", tmp_path)
    with pytest.raises(ValueError, match="unknown VITATECS aspects"):
        load_benchmark("vitatecs", tmp_path, aspects=["Speed"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"src_dataset": "MSRVTT", "video_name": "v.mp4", "caption": "a"', r"line 2: not valid JSON"),
        (
            json.dumps({"src_dataset": "MSRVTT", "video_name": "v.mp4", "caption": "a", "aspect": "Direction"}),
            r"line 2: missing field 'counterfactual'",
        ),
        (
            json.dumps(vitatecs_record("v.mp4", "a", None, "Direction")),
            r"line 2: expected field 'counterfactual' to be a string, got null",
        ),
        (json.dumps(vitatecs_record("v.mp4", "a", "b", "Type")), r"line 2: field 'aspect' is 'Type', not 'Direction'"),
    ],
)
def test_vitatecs_malformed_line_is_named(tmp_path, line, message):
    write_vitatecs(tmp_path, {"Direction": [vitatecs_record("video1.mp4", "a", "b", "Direction"), line]})
    with pytest.raises(BenchmarkFormatError, match=message) as error:
        load_benchmark("vitatecs", tmp_path, aspects=["Direction"])
    assert "Direction.jsonl" in str(error.value)


def test_vitatecs_missing_video(tmp_path):
    vitatecs_fixture(tmp_path, missing=["abc_000001_000011.mp4"])
    with pytest.raises(BenchmarkFormatError, match=r"Direction.jsonl line 3: video not found: .*VATEX"):
        load_benchmark("vitatecs", tmp_path, aspects=["Direction"], on_missing="raise")
    report = LoadReport()
    assert len(load_benchmark("vitatecs", tmp_path, aspects=["Direction"], report=report)) == 2
    assert len(report.skipped) == 1 and report.skipped[0]["record"].endswith("Direction.jsonl line 3")


# -- MVBench --------------------------------------------------------------------------------------------------


def mvbench_question(video: str, answer: str = "it moves left", **extra) -> dict:
    record = {
        "video": video,
        "question": "Which way does the object move?",
        "candidates": ["it moves right", "it moves left", "it stays"],
        "answer": answer,
    }
    record.update(extra)
    return record


def mvbench_fixture(root: Path, layout: str = "main", **kwargs) -> Path:
    return write_mvbench(
        root,
        {
            "moving_direction": [mvbench_question("video_10000.mp4"), mvbench_question("video_10001.mp4", "it stays")],
            "action_sequence": [mvbench_question("ABC12.mp4", start=3.5, end=12)],
            "episodic_reasoning": [mvbench_question("castle_s01e01_seg02_clip_00", start=1, end=20.5)],
        },
        layout=layout,
        **kwargs,
    )


def test_mvbench_items_in_the_main_layout(tmp_path):
    mvbench_fixture(tmp_path)
    items = load_benchmark("mvbench", tmp_path, on_missing="raise")
    assert [i.qid for i in items] == [
        "action_sequence/0",
        "episodic_reasoning/0",
        "moving_direction/0",
        "moving_direction/1",
    ]
    direction = items[2]
    assert direction.task == "moving_direction" and direction.question == "Which way does the object move?"
    assert direction.options == ("it moves right", "it moves left", "it stays")
    assert direction.answer == "it moves left" and direction.answer_letter == "B"
    assert items[3].answer_letter == "C"
    assert direction.videos == (VideoRef(tmp_path / "video" / "clevrer/video_validation" / "video_10000.mp4"),)
    assert items[0].videos == (VideoRef(tmp_path / "video" / "star/Charades_v1_480" / "ABC12.mp4", 3.5, 12.0),)
    frames = items[1].videos[0]
    assert frames == VideoRef(tmp_path / "video/tvqa/frames_fps3_hq/castle_s01e01_seg02_clip_00", 1.0, 20.5, 3.0)
    assert (frames.path / "00001.jpg").is_file()


def test_mvbench_segments_layout_reads_pre_cut_clips(tmp_path):
    mvbench_fixture(tmp_path, layout="segments")
    items = load_benchmark("mvbench", tmp_path, layout="segments", tasks=["action_sequence", "episodic_reasoning"])
    assert items[0].videos == (VideoRef(tmp_path / "video" / "star/Charades_segment" / "ABC12.mp4"),)
    assert items[1].videos == (VideoRef(tmp_path / "video/tvqa/video_fps3_hq_segment/castle_s01e01_seg02_clip_00"),)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            mvbench_question("v.mp4", answer="it flies"),
            r"\[1\]: field 'answer' 'it flies' is not one of the candidates",
        ),
        ({"video": "v.mp4", "question": "q?", "answer": "a"}, r"\[1\]: missing field 'candidates'"),
        (
            {"video": "v.mp4", "question": "q?", "candidates": "a b", "answer": "a"},
            r"\[1\]: expected field 'candidates' to be a list, got a string",
        ),
        (
            {"video": "v.mp4", "question": "q?", "candidates": ["a", 2], "answer": "a"},
            r"\[1\]: expected field 'candidates'\[1\] to be a string, got int 2",
        ),
        (mvbench_question("v.mp4", start=1), r"\[1\]: missing field 'end'"),
        (mvbench_question("v.mp4", start="1", end=2), r"\[1\]: expected field 'start' to be an integer or a number"),
    ],
)
def test_mvbench_malformed_record_is_named(tmp_path, record, message):
    write_mvbench(tmp_path, {"action_prediction": [mvbench_question("ok.mp4", start=0, end=1), record]})
    with pytest.raises(BenchmarkFormatError, match=message) as error:
        load_benchmark("mvbench", tmp_path)
    assert "action_prediction.json" in str(error.value)


def test_mvbench_unknown_task_file_and_missing_json_folder(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="no MVBench task files"):
        load_benchmark("mvbench", tmp_path)
    write_mvbench(tmp_path, {"moving_count": [mvbench_question("v.mp4")]})
    (tmp_path / "json" / "moving_colour.json").write_text("[]")
    with pytest.raises(BenchmarkFormatError, match="unknown MVBench task 'moving_colour'"):
        load_benchmark("mvbench", tmp_path)
    assert len(load_benchmark("mvbench", tmp_path, tasks=["moving_count"])) == 1


def test_mvbench_missing_video_and_frame_folder(tmp_path):
    mvbench_fixture(tmp_path, missing=["video_10001.mp4", "castle_s01e01_seg02_clip_00"])
    with pytest.raises(BenchmarkFormatError, match=r"episodic_reasoning.json \[0\]: frame folder not found"):
        load_benchmark("mvbench", tmp_path, on_missing="raise")
    report = LoadReport()
    items = load_benchmark("mvbench", tmp_path, report=report)
    assert [i.qid for i in items] == ["action_sequence/0", "moving_direction/0"]
    assert [s["reason"].split(":")[0] for s in report.skipped] == ["frame folder not found", "video not found"]


# -- Video-MME ------------------------------------------------------------------------------------------------

SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\n"
    '<font color="white" size=".72c">Welcome back to the</font>\n<font color="white" size=".72c">kitchen.</font>\n\n'
    "2\r\n00:00:03,000 --> 00:00:04,000\r\n<i>Today: bread &amp; butter</i>\r\n\r\n"
)


def videomme_rows() -> list[dict]:
    return [
        videomme_row("001", "001-1", "B"),
        videomme_row("001", "001-2", "D", task_type="Counting Problem"),
        videomme_row("002", "002-1", "A", duration="long", domain="Sports Competition", sub_category="Basketball"),
    ]


def test_videomme_items(tmp_path):
    pytest.importorskip("pyarrow")
    write_videomme(tmp_path, videomme_rows(), subtitles={"yt001": SRT})
    items = load_benchmark("videomme", tmp_path, on_missing="raise")
    assert [i.qid for i in items] == ["001-1", "001-2", "002-1"]
    first = items[0]
    assert first.question == "What happens first in video 001?" and first.task == "Temporal Reasoning"
    assert first.options == ("a door opens.", "a dog barks.", "it rains.", "nothing.")
    assert first.answer == "a dog barks." and first.answer_letter == "B"
    assert first.groups == {"duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History"}
    assert first.videos == (VideoRef(tmp_path / "data" / "yt001.mp4"),) and first.subtitles is None
    assert items[1].answer == "nothing." and items[1].task == "Counting Problem"
    assert items[2].groups["duration"] == "long" and items[2].answer == "a door opens."


def test_videomme_subs_reads_srt_as_plain_text(tmp_path):
    pytest.importorskip("pyarrow")
    write_videomme(tmp_path, videomme_rows(), subtitles={"yt001": SRT})
    items = load_benchmark("videomme-subs", tmp_path)
    assert items[0].subtitles == items[1].subtitles == "Welcome back to the kitchen.\nToday: bread & butter"
    assert items[2].subtitles == ""  # no subtitle file for that video (not every video has one)


def test_read_srt_names_a_block_without_timing(tmp_path):
    path = tmp_path / "x.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\nno timing here\n")
    with pytest.raises(BenchmarkFormatError, match="x.srt: subtitle block 2: no timing line"):
        read_srt(path)


def test_videomme_video_extension_fallback_and_annotation_option(tmp_path):
    pytest.importorskip("pyarrow")
    write_videomme(tmp_path, videomme_rows()[2:], missing=["yt002"])
    placeholder_video(tmp_path / "data" / "yt002.mkv")
    shutil.move(tmp_path / "videomme", tmp_path / "elsewhere")
    with pytest.raises(BenchmarkFormatError, match="no Video-MME parquet file"):
        load_benchmark("videomme", tmp_path)
    items = load_benchmark("videomme", tmp_path, annotations="elsewhere/test-00000-of-00001.parquet")
    assert items[0].videos[0].path == tmp_path / "data" / "yt002.mkv"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "E"}, r"row 1 \(question_id '001-2'\): field 'answer' 'E' is not one of the option letters"),
        ({"options": ["A. yes", "b) no"]}, r"row 1 \(question_id '001-2'\): field 'options'\[1\] 'b\) no' does not"),
        ({"options": ["A. yes"]}, r"field 'options' has 1 entries"),
        ({"task_type": None}, r"row 1 \(question_id '001-2'\): expected field 'task_type' to be a string, got null"),
    ],
)
def test_videomme_malformed_row_is_named(tmp_path, change, message):
    pytest.importorskip("pyarrow")
    rows = videomme_rows()[:2]
    rows[1].update(change)
    write_videomme(tmp_path, rows)
    with pytest.raises(BenchmarkFormatError, match=message) as error:
        load_benchmark("videomme", tmp_path)
    assert "test-00000-of-00001.parquet" in str(error.value)


def test_videomme_wrong_type_in_a_column(tmp_path):
    pytest.importorskip("pyarrow")
    write_videomme(tmp_path, [videomme_row("001", 7), videomme_row("001", 8)])
    with pytest.raises(BenchmarkFormatError, match=r"row 0: expected field 'question_id' to be a string, got int 7"):
        load_benchmark("videomme", tmp_path)


def test_videomme_missing_column_and_duplicate_question(tmp_path):
    pytest.importorskip("pyarrow")
    rows = videomme_rows()
    for row in rows:
        del row["task_type"]
    write_videomme(tmp_path, rows)
    with pytest.raises(BenchmarkFormatError, match=r"row 0 \(question_id '001-1'\): missing field 'task_type'"):
        load_benchmark("videomme", tmp_path)
    write_videomme(tmp_path, [videomme_row("001", "001-1"), videomme_row("001", "001-1")])
    with pytest.raises(BenchmarkFormatError, match="question id '001-1' occurs twice"):
        load_benchmark("videomme", tmp_path)


def test_videomme_missing_video(tmp_path):
    pytest.importorskip("pyarrow")
    write_videomme(tmp_path, videomme_rows(), missing=["yt001"])
    with pytest.raises(BenchmarkFormatError, match=r"row 0 \(question_id '001-1'\): video not found: .*yt001.mp4"):
        load_benchmark("videomme", tmp_path, on_missing="raise")
    report = LoadReport()
    assert [i.qid for i in load_benchmark("videomme-subs", tmp_path, report=report)] == ["002-1"]
    assert len(report.skipped) == 2 and report.items == 1


def test_videomme_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "videomme").mkdir()
    (tmp_path / "videomme" / "test.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pip install 'stave\[videomme\]'"):
        load_benchmark("videomme", tmp_path)


# -- TempCompass ----------------------------------------------------------------------------------------------

TEMPCOMPASS = {
    "multi-choice": {
        "100": {
            "direction": [
                {
                    "question": "Where does the ball go?\nA. to the left\nB. to the right\nC. up",
                    "answer": "B. to the right",
                }
            ],
            "speed": [{"question": "How fast?\nA. slow\nB. fast", "answer": "A. slow"}],
        },
        "100_reverse": {
            "direction": [
                {"question": "Where does the ball go?\nA. to the left\nB. to the right", "answer": "A. to the left"}
            ]
        },
    },
    "yes_no": {
        "100": {"direction": [{"question": "Does the ball go right?", "answer": "yes"}]},
        "100_reverse": {"direction": [{"question": "Does the ball go right?", "answer": "no"}]},
    },
    "caption_matching": {
        "100": {
            "order": [
                {
                    "question": "Which caption fits?\nOption 1: The ball rolls, then stops.\nOption 2: The ball stops.",
                    "answer": "Option 1: The ball rolls, then stops.",
                },
                {
                    "question": "Which sentence fits?\nSentence A: It speeds up.\nSentence B: It slows down.",
                    "answer": "Sentence B: It slows down.",
                },
            ]
        }
    },
}


def test_tempcompass_items_of_the_three_formats(tmp_path):
    write_tempcompass(tmp_path, TEMPCOMPASS)
    items = {item.qid: item for item in load_benchmark("tempcompass", tmp_path, on_missing="raise")}
    assert len(items) == 7
    mc = items["multi-choice/100/direction/0"]
    assert (mc.task, mc.question, mc.options) == (
        "direction",
        "Where does the ball go?",
        ("to the left", "to the right", "up"),
    )
    assert mc.answer == "to the right" and mc.answer_letter == "B" and mc.groups == {"format": "multi-choice"}
    assert mc.videos == (VideoRef(tmp_path / "videos" / "100.mp4"),)
    assert items["multi-choice/100_reverse/direction/0"].videos[0].path.name == "100_reverse.mp4"
    yes_no = items["yes_no/100_reverse/direction/0"]
    assert (yes_no.question, yes_no.options, yes_no.answer) == ("Does the ball go right?", ("yes", "no"), "no")
    matching = items["caption_matching/100/order/0"]
    assert matching.question == "Which caption fits?" and matching.task == "order"
    assert matching.options == ("The ball rolls, then stops.", "The ball stops.")
    assert matching.answer == "The ball rolls, then stops." and matching.groups == {"format": "caption_matching"}
    assert items["caption_matching/100/order/1"].answer == "It slows down."


def test_tempcompass_task_selection(tmp_path):
    write_tempcompass(tmp_path, {"yes_no": TEMPCOMPASS["yes_no"]})
    assert len(load_benchmark("tempcompass", tmp_path, tasks=["yes_no"])) == 2
    with pytest.raises(BenchmarkFormatError, match="multi-choice.json: annotation file not found"):
        load_benchmark("tempcompass", tmp_path)
    with pytest.raises(ValueError, match="captioning needs a judge"):
        load_benchmark("tempcompass", tmp_path, tasks=["captioning"])


@pytest.mark.parametrize(
    ("task", "entry", "message"),
    [
        (
            "multi-choice",
            {"question": "Where?\nA. left\nB. right"},
            r"\['200'\]\['speed'\]\[0\]: missing field 'answer'",
        ),
        ("multi-choice", {"question": 5, "answer": "A. left"}, r"expected field 'question' to be a string, got int 5"),
        ("multi-choice", {"question": "Where?\nA. left\nB. right", "answer": "C. up"}, r"'C. up' names none of"),
        ("multi-choice", {"question": "Where?\nA. left\nB. right", "answer": "A. right"}, r"does not repeat option A"),
        ("multi-choice", {"question": "Where?\nA. left\nthen right", "answer": "A. left"}, r"is not an option line"),
        ("multi-choice", {"question": "A. left\nB. right", "answer": "A. left"}, r"no stem followed by option"),
        ("yes_no", {"question": "Fast?", "answer": "maybe"}, r"'maybe' is neither yes nor no"),
        ("caption_matching", {"question": "Which?\nOption 1: a\nOption 1: b", "answer": "Option 1: a"}, "repeats"),
    ],
)
def test_tempcompass_malformed_question_is_named(tmp_path, task, entry, message):
    write_tempcompass(tmp_path, {task: {"200": {"speed": [entry]}}})
    with pytest.raises(BenchmarkFormatError, match=message) as error:
        load_benchmark("tempcompass", tmp_path, tasks=[task])
    assert f"{task}.json" in str(error.value)


def test_tempcompass_wrong_nesting_is_named(tmp_path):
    write_tempcompass(tmp_path, {"yes_no": {"200": [{"question": "Fast?", "answer": "yes"}]}})
    with pytest.raises(BenchmarkFormatError, match=r"\['200'\]: expected an object \{dimension"):
        load_benchmark("tempcompass", tmp_path, tasks=["yes_no"])


def test_tempcompass_missing_video(tmp_path):
    write_tempcompass(tmp_path, TEMPCOMPASS, missing=["100_reverse"])
    with pytest.raises(BenchmarkFormatError, match=r"video not found: .*100_reverse.mp4"):
        load_benchmark("tempcompass", tmp_path, on_missing="raise")
    report = LoadReport()
    assert len(load_benchmark("tempcompass", tmp_path, report=report)) == 5
    assert [s["record"].split(".json ", 1)[1] for s in report.skipped] == [
        "['100_reverse']['direction'][0]",
        "['100_reverse']['direction'][0]",
    ]


# -- the genuine published excerpts (../shared/data/formats) ------------------------------------------------------


def ssv2_excerpt_root(tmp_path: Path, validation: str) -> Path:
    source = excerpts("ssv2")
    root = tmp_path / "ssv2"
    root.mkdir()
    shutil.copy(source / "labels.json", root / "labels.json")
    shutil.copy(source / validation, root / "validation.json")
    for record in json.loads((root / "validation.json").read_text(encoding="utf-8")):
        placeholder_video(root / f"{record['id']}.webm")
    return root


def test_real_ssv2_validation_excerpt(tmp_path):
    root = ssv2_excerpt_root(tmp_path, "validation.json")
    items = load_benchmark("ssv2", root, on_missing="raise")
    assert len(items) == 30
    assert (items[0].qid, items[0].answer) == ("74225", "Spinning something that quickly stops spinning")
    assert (items[-1].qid, items[-1].answer) == ("36585", "Something falling like a feather or paper")
    tipping = next(item for item in items if item.qid == "149956")
    assert tipping.answer == "Tipping something with something in it over, so something in it falls out"
    assert next(item for item in items if item.qid == "169362").answer == "Taking something from somewhere"
    mc = load_benchmark("ssv2-mc", root)
    assert all(item.answer in item.options and len(item.options) == 5 for item in mc)


def test_real_ssv2_labels_have_174_classes_and_t10(tmp_path):
    root = ssv2_excerpt_root(tmp_path, "validation.json")
    mc = load_benchmark("ssv2-mc", root, num_options=10)
    labels = json.loads((root / "labels.json").read_text())
    assert len(labels) == 174 and set(T10) <= set(labels)
    assert {option for item in mc for option in item.options} <= set(labels)


def test_real_ssv2_edge_cases_non_ascii_and_escaped_quotes(tmp_path):
    root = ssv2_excerpt_root(tmp_path, "validation_edgecases.json")
    items = {item.qid: item for item in load_benchmark("ssv2", root, on_missing="raise")}
    assert len(items) == 8
    assert items["113563"].answer == "Turning something upside down"
    assert items["148651"].answer == "Touching (without moving) part of something"
    assert items["212616"].answer == "Putting something on the edge of something so it is not supported and falls down"
    raw = (root / "validation.json").read_text(encoding="utf-8")
    assert "taschentücher" in raw and '\\\\\\"' in raw  # the excerpt really holds both


def test_real_ssv2_t10_excerpt(tmp_path):
    root = ssv2_excerpt_root(tmp_path, "validation_T10.json")
    items = load_benchmark("ssv2-t10", root, source="validation", split="all", on_missing="raise")
    assert Counter(item.task for item in items) == {cls: 3 for cls in T10}
    assert all(item.options == T10 for item in items)
    vsm = load_benchmark("ssv2-vsm", root, on_missing="raise")
    assert len(vsm) == 30 and {item.answer for item in vsm} <= set(VSM_OPTIONS)
    assert Counter(item.groups["reference"] for item in vsm) == {"match": 20, "none": 10}  # round(3 * 0.8) = 2


def test_real_ssv2_template_is_a_class_for_every_excerpt_record():
    source = excerpts("ssv2")
    labels = json.loads((source / "labels.json").read_text())
    for name in ("validation.json", "validation_T10.json", "validation_edgecases.json"):
        for record in json.loads((source / name).read_text(encoding="utf-8")):
            assert ssv2_class(record["template"]) in labels


def test_real_vitatecs_excerpts(tmp_path):
    source = excerpts("vitatecs")
    aspects = ("Compositionality", "Direction", "Intensity", "Localization", "Sequence", "Type")
    for folder, count in (("first20", 20), ("vatex_first5", 5)):
        root = tmp_path / folder
        shutil.copytree(source if folder == "first20" else source / folder, root / "data", ignore=_subfolders)
        report = LoadReport()
        assert load_benchmark("vitatecs", root, report=report) == [] and len(report.skipped) == 6 * count
        for path in sorted((root / "data").glob("*.jsonl")):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                placeholder_video(root / "videos" / record["src_dataset"] / record["video_name"])
        items = load_benchmark("vitatecs", root, on_missing="raise")
        assert Counter(item.task for item in items) == {aspect: count for aspect in aspects}
        first = json.loads((root / "data" / "Direction.jsonl").read_text().splitlines()[0])
        item = next(item for item in items if item.qid == "Direction/1")
        assert item.answer == first["caption"] and set(item.options) == {first["caption"], first["counterfactual"]}
        assert item.videos[0].path == root / "videos" / first["src_dataset"] / first["video_name"]


def _subfolders(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if (Path(folder) / name).is_dir()]


def test_real_tempcompass_excerpts(tmp_path):
    source = excerpts("tempcompass", "questions")
    root = tmp_path / "tempcompass"
    shutil.copytree(source, root / "questions")
    ids = json.loads((source / "multi-choice.json").read_text())
    for video_id in ids:
        placeholder_video(root / "videos" / f"{video_id}.mp4")
    items = load_benchmark("tempcompass", root, on_missing="raise")
    formats = Counter(item.groups["format"] for item in items)
    assert formats == {"multi-choice": 96, "yes_no": 170, "caption_matching": 75}
    assert {item.task for item in items} == {"action", "speed", "direction", "order", "attribute_change"}
    first = items[0]
    assert first.qid == "multi-choice/1034419625/action/0"
    assert first.question == "What is the man doing in the video?"
    assert first.options == ("dunking a basketball", "dribbling a basketball", "passing a basketball")
    assert first.answer == "dunking a basketball"
    for item in items:
        assert item.answer in item.options
        if item.groups["format"] == "caption_matching":
            assert len(item.options) == 2 and "\n" not in item.question
