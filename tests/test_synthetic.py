"""stave.synthetic: deterministic clips whose paired classes are exact time reverses, in public formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from stave.cli import main
from stave.ssv2 import ssv2_class
from stave.synthetic import PAIR_TASKS, TASKS, SynthError, SynthOptions, draw_group, generate, plan, render_clip
from stave.synthetic.scene import BACKGROUND, Clip, MovingObject, ObjectState
from stave.synthetic.tasks import HORIZONTAL, VERTICAL, third_range
from stave.training.data import read_records
from stave.training.recipe import DatasetSpec
from stave.video import VideoOptions, read_video

pytestmark = pytest.mark.version_independent  # runs once: see tests/version_independence.py

N = 12  # two videos of every task


def decode(path: Path, frames: int, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8: every frame, unresized."""
    options = VideoOptions(nframes=frames, min_pixels=size * size, max_pixels=size * size)
    return read_video(path, options).frames.permute(0, 2, 3, 1).numpy()


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load(root: Path, name: str):
    text = (root / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else json.loads(text)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, n=N, seed=7)
    return root


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "held"
    generate(root, n=N, seed=7, hold=True, frames=10, size=112)
    return root


def test_same_seed_writes_identical_files_and_another_seed_different_ones(dataset, tmp_path):
    generate(tmp_path / "again", n=N, seed=7)
    assert files_of(tmp_path / "again") == files_of(dataset)
    generate(tmp_path / "other", n=N, seed=8)
    other = files_of(tmp_path / "other")
    assert other.keys() == files_of(dataset).keys()
    assert other["train.jsonl"] != files_of(dataset)["train.jsonl"]
    assert all(other[name] != data for name, data in files_of(dataset).items() if name.endswith(".mp4"))


def test_a_group_depends_only_on_seed_task_and_index_not_on_n_or_hold():
    small = plan(SynthOptions(n=12, seed=3))
    large = plan(SynthOptions(n=60, seed=3, hold=True, frames=16))
    first = {(s.group, s.member.reversed): s.member.clip for s in small}
    same = [first[s.group, s.member.reversed] == s.member.clip for s in large if (s.group, s.member.reversed) in first]
    assert len(same) == len(small) and all(same)


@pytest.mark.parametrize("task", [*PAIR_TASKS, "order"])
@pytest.mark.parametrize("hold", [False, True])
def test_partners_are_exact_time_reverses_with_the_same_frames(task, hold):
    forward, backward = draw_group(task, np.random.default_rng(11), 84)
    assert backward.clip == forward.clip.reversed()  # the same object parameters, reversed
    a = render_clip(forward.clip, 8, hold=hold)
    b = render_clip(forward.clip.reversed(), 8, hold=hold)
    assert np.array_equal(b, a[::-1])
    assert sorted(f.tobytes() for f in a) == sorted(f.tobytes() for f in b)  # no frame tells them apart
    assert not np.array_equal(a, b)  # only their order does
    assert forward.questions[0].answer != backward.questions[0].answer
    assert forward.questions[0].candidates == backward.questions[0].candidates


def test_decoded_partners_are_exact_time_reverses(dataset):
    clips = load(dataset, "clips.jsonl")
    pairs = {}
    for clip in clips:
        pairs.setdefault(clip["group"], []).append(clip)
    checked = 0
    for members in pairs.values():
        if len(members) == 2:
            a, b = (decode(dataset / m["video"], 8, 84) for m in members)
            assert np.array_equal(a, b[::-1]), members[0]["group"]
            checked += 1
    assert checked == 5  # one pair of each of the five pair-like tasks


def test_hold_repeats_every_pose_for_one_temporal_patch(held):
    for clip in load(held, "clips.jsonl"):
        frames = decode(held / clip["video"], 10, 112)
        assert frames.shape == (10, 112, 112, 3)
        assert all(np.array_equal(frames[i], frames[i + 1]) for i in range(0, 10, 2)), clip["id"]
        if clip["task"] in PAIR_TASKS:  # whole-clip motion: every temporal patch differs from the next
            assert all(not np.array_equal(frames[i], frames[i + 1]) for i in range(1, 9, 2)), clip["id"]


def test_without_hold_motion_happens_inside_temporal_patches(dataset):
    for clip in load(dataset, "clips.jsonl"):
        if clip["task"] in PAIR_TASKS:
            frames = decode(dataset / clip["video"], 8, 84)
            assert not np.array_equal(frames[0], frames[1])


def test_labels_describe_the_motion():
    for task in PAIR_TASKS:
        forward, _ = draw_group(task, np.random.default_rng(5), 84)
        video = render_clip(forward.clip, 8).astype(int)
        mask = np.abs(video - BACKGROUND).sum(-1) > 0
        ys, xs = np.mgrid[:84, :84]
        centre = [((xs * m).sum() / m.sum(), (ys * m).sum() / m.sum()) for m in mask]
        area = mask.sum(axis=(1, 2))
        if task == "left_right":
            assert centre[-1][0] > centre[0][0] + 10
        elif task == "up_down":
            assert centre[-1][1] < centre[0][1] - 10
        elif task == "approach":
            assert area[-1] > 1.5 * area[0]
    # clockwise on screen: an arrow pointing up points right after a quarter turn clockwise
    clip = Clip(84, (MovingObject("arrow", "red", ObjectState(42, 42, 30, 0), ObjectState(42, 42, 30, 90)),))
    first, last = render_clip(clip, 8)[[0, -1]].astype(int).sum(-1) != 3 * BACKGROUND
    assert first[:42].sum() > first[42:].sum()  # the head (the wider part) is at the top
    assert last[:, 42:].sum() > last[:, :42].sum()  # and then on the right


def test_still_answers_match_where_and_what_the_object_is():
    for seed in range(20):
        (member,) = draw_group("still", np.random.default_rng(seed), 84)
        obj = member.clip.objects[0]
        answers = {q.kind: q.answer for q in member.questions}
        assert answers["shape"] == obj.shape and answers["colour"] == obj.colour
        assert third_range(HORIZONTAL.index(answers["horizontal"]), 84, obj.start.size)[0] <= obj.start.x
        assert obj.start.x < (HORIZONTAL.index(answers["horizontal"]) + 1) * 28
        assert VERTICAL.index(answers["vertical"]) * 28 < obj.start.y < (VERTICAL.index(answers["vertical"]) + 1) * 28
        frames = render_clip(member.clip, 8)
        assert all(np.array_equal(frames[0], f) for f in frames)
        for question in member.questions:
            assert question.answer in question.candidates and len(set(question.candidates)) == len(question.candidates)


def test_split_is_seeded_disjoint_and_keeps_partners_together():
    samples = plan(SynthOptions(n=120, seed=1))
    train = [s for s in samples if s.split == "train"]
    validation = [s for s in samples if s.split == "validation"]
    assert {s.id for s in train}.isdisjoint(s.id for s in validation)
    assert {s.group for s in train}.isdisjoint(s.group for s in validation)
    assert {s.member.clip for s in train}.isdisjoint(s.member.clip for s in validation)
    assert {s.task for s in validation} == set(TASKS)
    assert 0.15 <= len(validation) / len(samples) <= 0.25
    assert [s.split for s in plan(SynthOptions(n=120, seed=2))] != [s.split for s in samples]


def test_counts_match_n_and_the_files(dataset):
    meta = load(dataset, "synth.json")
    assert meta["seed"] == 7 and meta["options"]["n"] == N and meta["generator_version"] >= 1
    assert len(list((dataset / "videos").glob("*.mp4"))) == N == meta["counts"]["videos"]["total"]
    clips = load(dataset, "clips.jsonl")
    assert len(clips) == N and all(sum(c["task"] == task for c in clips) == 2 for task in TASKS)
    for split in ("train", "validation"):
        counts = meta["counts"][split]
        assert (
            sum(counts["videos"].values()) == meta["counts"]["videos"][split] == sum(c["split"] == split for c in clips)
        )
        assert sum(counts["classes"].values()) == len(load(dataset, f"{split}.json"))
        assert sum(counts["questions"].values()) == len(load(dataset, f"{split}.jsonl"))
        assert sum(counts["questions"].values()) == len(load(dataset, f"mvbench_{split}.json"))
    for n in (1, 7, 13):  # odd counts leave a lone clip of a pair
        assert len(plan(SynthOptions(n=n, seed=0))) == n


def test_annotations_follow_the_public_formats(dataset):
    labels = load(dataset, "labels.json")
    assert all(isinstance(k, str) and v.isdigit() for k, v in labels.items())
    assert sorted(int(v) for v in labels.values()) == list(range(len(labels)))
    for split in ("train", "validation"):
        for record in load(dataset, f"{split}.json"):
            assert set(record) == {"id", "label", "template", "placeholders"}
            assert isinstance(record["id"], str) and record["id"].isdigit()
            assert ssv2_class(record["template"]) in labels  # the SSv2 rule: remove the brackets
            filled = re.sub(r"\[something\]", record["placeholders"][0], record["template"])
            assert record["label"] == filled[0].lower() + filled[1:]
            assert (dataset / "videos" / f"{record['id']}.mp4").is_file()
        for record in load(dataset, f"mvbench_{split}.json"):
            assert {"video", "question", "candidates", "answer"} <= set(record)
            assert record["answer"] in record["candidates"] and 2 <= len(record["candidates"]) <= 5
            assert (dataset / record["video"]).is_file()
        for record in load(dataset, f"{split}.jsonl"):
            human, gpt = record["conversations"]
            assert human["from"] == "human" and human["value"].startswith("<video>\n") and gpt["from"] == "gpt"
            assert (dataset / record["video"]).is_file()
    tasks = {r["task"] for split in ("train", "validation") for r in load(dataset, f"mvbench_{split}.json")}
    assert tasks == {*PAIR_TASKS, "order", "shape", "horizontal", "vertical", "colour"}


def test_stave_trainer_reads_the_conversations_and_the_ssv2_files(dataset):
    conversations = read_records(DatasetSpec(path=str(dataset / "train.jsonl")))
    assert len(conversations) == len(load(dataset, "train.jsonl"))
    assert all((record.root / record.sample["video"]).is_file() for record in conversations)
    ssv2 = read_records(DatasetSpec(path=str(dataset / "train.json"), format="ssv2", video_pattern="videos/{id}.mp4"))
    assert len(ssv2) == len(load(dataset, "train.json"))
    labels = load(dataset, "labels.json")
    for record in ssv2:
        assert (record.root / record.sample["video"]).is_file()
        assert record.sample["conversations"][1]["value"] in labels


def test_videos_decode_with_the_expected_frames_and_size(held):
    meta = load(held, "synth.json")
    read = VideoOptions(**meta["video"]["read_with"])
    for video in sorted((held / "videos").glob("*.mp4"))[:4]:
        clip = read_video(video, read)
        assert tuple(clip.frames.shape) == (10, 3, 112, 112) and clip.total_frames == 10
        assert clip.source_fps == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": -3}, "n must be an integer >= 1"),
        ({"n": 4, "size": 85}, "size must be a multiple of 28"),
        ({"n": 4, "size": 56}, "size must be an integer in 84..448"),
        ({"n": 4, "frames": 9}, "frames must be even"),
        ({"n": 4, "frames": 4}, "frames must be an integer in 8..64"),
        ({"n": 4, "fps": 0}, "fps must be a number"),
        ({"n": 4, "val_fraction": 1.0}, "val_fraction must be in [0, 1)"),
        ({"n": 4, "tasks": "left_right,sideways"}, "tasks must be distinct names"),
        ({"n": 4, "colour": "red"}, "unknown option(s) colour"),
        ({}, "option n (the number of videos) is required"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, options, message):
    with pytest.raises(SynthError) as error:
        generate(tmp_path / "out", **options)
    assert message in str(error.value)
    assert not (tmp_path / "out").exists()


def test_output_folder_is_never_mixed_with_other_files(tmp_path, monkeypatch):
    # a folder named like a leftover of stave synth, but not made by the runs below: they must not touch it
    (tmp_path / ".data.partial").mkdir()
    (tmp_path / ".data.partial" / "keep.txt").write_text("not stave's")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        generate(tmp_path / "busy", n=2, overwrite=True)
    generate(tmp_path / "data", n=6, tasks="still")
    with pytest.raises(SynthError, match="--overwrite"):
        generate(tmp_path / "data", n=2, tasks="still")
    generate(tmp_path / "data", n=2, tasks="still", overwrite=True)
    assert len(list((tmp_path / "data" / "videos").iterdir())) == 2
    before = files_of(tmp_path / "data")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("stave.synthetic.dataset.write_video", broken)
    with pytest.raises(OSError):
        generate(tmp_path / "data", n=4, tasks="still", overwrite=True)
    assert files_of(tmp_path / "data") == before  # a failed run leaves the folder as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.partial", "busy", "data"]  # and nothing next to it
    assert (tmp_path / ".data.partial" / "keep.txt").read_text() == "not stave's"


def test_synth_command_writes_a_data_set_and_reports_bad_arguments(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--n", "4", "--seed", "2", "--hold", "--tasks", "up_down,still"]) == 0
    assert "wrote 4 videos" in capsys.readouterr().out
    meta = load(out, "synth.json")
    assert meta["options"]["hold"] and meta["options"]["tasks"] == ["up_down", "still"]
    assert main(["synth", "--out", str(tmp_path / "bad"), "--n", "4", "--size", "99"]) == 2
    assert "stave synth: error: size must be a multiple of 28" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "bad"), "--n", "4", "--colour", "red"])
    assert "unrecognized arguments: --colour" in capsys.readouterr().err


def test_stave_eval_reads_a_synthetic_data_set(tmp_path):
    from stave.evaluation import LoadReport, load_benchmark
    from stave.synthetic import generate

    generate(tmp_path / "synth", n=12, seed=0)
    validation = load_benchmark("synthetic", tmp_path / "synth")
    train = load_benchmark("synthetic", tmp_path / "synth", split="train")
    written = json.loads((tmp_path / "synth" / "mvbench_validation.json").read_text())
    assert len(validation) == len(written) and len(train) > len(validation)
    assert {i.videos[0].path for i in validation}.isdisjoint({i.videos[0].path for i in train})
    first = validation[0]
    assert first.answer == written[0]["answer"] and first.task == written[0]["task"] and first.videos[0].path.is_file()
    first.videos[0].path.unlink()
    report = LoadReport()
    assert len(load_benchmark("synthetic", tmp_path / "synth", report=report)) == len(written) - sum(
        r["video"] == written[0]["video"] for r in written
    )
    assert report.skipped and "video not found" in report.skipped[0]["reason"]


def test_images_option_writes_each_still_frame_and_asks_its_questions_on_both_media(tmp_path):
    from PIL import Image

    from stave.evaluation.benchmarks.synthetic import load_synthetic

    result = generate(tmp_path / "d", n=5, seed=5, tasks=("still", "left_right"), images=True, val_fraction=0.0)
    stills = [s for s in result.samples if s.task == "still"]
    assert sorted(p.name for p in (tmp_path / "d" / "images").iterdir()) == sorted(f"{s.id}.png" for s in stills)
    for sample in stills:  # the PNG is the clip's frame, exactly
        image = np.asarray(Image.open(tmp_path / "d" / sample.image))
        assert np.array_equal(image, render_clip(sample.member.clip, 8)[0])
    records = load(tmp_path / "d", "train.jsonl")
    on_images = [r for r in records if "image" in r]
    assert len(on_images) == 4 * len(stills)  # shape, horizontal, vertical, colour
    assert all(r["conversations"][0]["value"].startswith("<image>\n") and "video" not in r for r in on_images)
    items = load_synthetic(tmp_path / "d", split="train", on_missing="raise")
    media = [item.groups["media"] for item in items]
    assert media.count("image") == len(on_images) and media.count("video") == len(records) - len(on_images)
    image_item = next(item for item in items if item.groups["media"] == "image")
    assert image_item.videos == () and image_item.images[0].suffix == ".png"
    generate(tmp_path / "none", n=5, seed=5, tasks=("still",))
    assert not (tmp_path / "none" / "images").exists()
