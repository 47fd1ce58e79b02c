"""Video classification without a transformers model: frame choice and views (stave.classification.clips), opposing
class pairs, SSv2 records read as class indices (bad records named), and a classifier's evaluation — top-1, top-5,
per-class accuracy, pair confusion, multi-view averaging and resume — through stave's evaluation runner with a
plain torch classifier."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from classification_data import CLASSES, TEMPLATES, square_video, write_ssv2
from PIL import Image

from stave.classification import ClassifierAnswerer, ClipInput, Views, opposing_pairs, pair_confusion, read_views
from stave.classification.clips import crop_offsets, segment_indices
from stave.classification.data import ClassificationCollator, ClassificationSet, load_class_data, read_class_records
from stave.evaluation.items import EvalItem, VideoRef
from stave.evaluation.run import EvalError, EvalSettings, evaluate
from stave.ssv2 import SUBSETS
from stave.training.data import EMPTY_BATCH, SAMPLE_COUNTS, DataError
from stave.training.recipe import DatasetSpec, RecipeError
from stave.video import VideoSamplingError, read_video, resize_frames

pytestmark = pytest.mark.version_independent
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats" / "ssv2"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data/formats/ssv2")


def test_segment_indices_take_each_segments_frame_at_the_clips_fraction():
    assert segment_indices(16, 4) == [2, 6, 10, 14]  # floor(16 * (i + 0.5) / 4)
    assert segment_indices(16, 4, 0, 2) == [1, 5, 9, 13]  # floor(16 * (i + 0.25) / 4)
    assert segment_indices(16, 4, 1, 2) == [3, 7, 11, 15]
    assert segment_indices(3, 4) == [0, 1, 1, 2]  # fewer frames than T: repeats
    assert crop_offsets(32, 38, 32, 1) == [(0, 3)]
    assert crop_offsets(32, 38, 32, 3) == [(0, 0), (0, 3), (0, 6)]
    assert crop_offsets(40, 32, 32, 3) == [(0, 0), (4, 0), (8, 0)]


def test_read_views_equal_a_direct_computation_from_the_frames(tmp_path):
    """2 clips x 3 crops of a frame folder (lossless PNGs) equal the frames chosen, resized and cropped by hand."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(13, 40, 48, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.png")
    clip_input = ClipInput(frames=4, size=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    views = read_views(tmp_path, clip_input, Views(clips=2, crops=3))
    assert views.shape == (6, 4, 3, 32, 32) and views.dtype == torch.float32

    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    for clip in range(2):
        chosen = [int(13 * (i + (clip + 0.5) / 2) / 4) for i in range(4)]
        resized = resize_frames(torch.from_numpy(frames[chosen]).permute(0, 3, 1, 2), 32, 38)  # 40x48 -> 32x38
        for crop, left in enumerate((0, 3, 6)):
            expected = (resized[:, :, :, left : left + 32].float() / 255 - mean) / std
            assert torch.equal(views[clip * 3 + crop], expected), (clip, crop)
    assert not torch.equal(views[0], views[3])  # the two clips take different frames


def test_read_video_refuses_a_frame_choice_that_is_not_ascending(tmp_path):
    array = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(VideoSamplingError, match=r"ndarray of frames.*chose frames \[3, 1\] of 6"):
        read_video(array, choose=lambda n: [3, 1])
    assert read_video(array, choose=lambda n: [0, n - 1]).indices == [0, 5]


@pytest.mark.skipif(not SHARED.is_dir(), reason="the SSv2 format excerpts (../shared) are not here")
def test_opposing_pairs_of_the_published_ssv2_labels():
    classes = list(json.loads((SHARED / "labels.json").read_text(encoding="utf-8")))
    assert len(classes) == 174
    assert opposing_pairs(classes) == [
        ("Approaching something with your camera", "Moving away from something with your camera"),
        ("Closing something", "Opening something"),
        ("Folding something", "Unfolding something"),
        ("Moving something and something away from each other", "Moving something and something closer to each other"),
        ("Moving something away from something", "Moving something closer to something"),
        ("Moving something away from the camera", "Moving something towards the camera"),
        ("Moving something down", "Moving something up"),
        ("Pouring something into something", "Pouring something out of something"),
        (
            "Pretending to close something without actually closing it",
            "Pretending to open something without actually opening it",
        ),
        ("Pulling something from left to right", "Pulling something from right to left"),
        ("Pushing something from left to right", "Pushing something from right to left"),
        ("Pushing something off of something", "Pushing something onto something"),
        ("Turning the camera downwards while filming something", "Turning the camera upwards while filming something"),
        ("Turning the camera left while filming something", "Turning the camera right while filming something"),
    ]


def test_pair_confusion_counts_each_direction():
    rows = [("a", "b"), ("a", "a"), ("a", "c"), ("b", "a"), ("b", "a"), ("c", "a")]
    [pair] = pair_confusion(rows, [("a", "b")])
    assert pair == {"pair": ["a", "b"], "n": [3, 2], "a_as_b": 1, "b_as_a": 2, "confused": 3 / 5}
    assert pair_confusion([], [("a", "b")])[0]["confused"] is None


def test_the_synthetic_direction_classes_pair_up():
    """stave synth's 8 pair-task classes (labels.json): 4 pairs, each class and its time reverse."""
    from stave.synthetic import labels

    pairs = opposing_pairs(list(labels()))
    assert len(pairs) == 4 and {name for pair in pairs for name in pair} == set(labels())


@pytest.mark.skipif(not SHARED.is_dir(), reason="the SSv2 format excerpts (../shared) are not here")
@pytest.mark.parametrize("name", ["validation.json", "validation_T10.json", "validation_edgecases.json"])
def test_published_ssv2_records_become_class_indices(name):
    spec = DatasetSpec(path=str(SHARED / name), format="ssv2", labels=str(SHARED / "labels.json"))
    labels = list(json.loads((SHARED / "labels.json").read_text(encoding="utf-8")))
    records = read_class_records(spec, labels)
    rows = json.loads((SHARED / name).read_text(encoding="utf-8"))
    assert len(records) == len(rows) == {"validation.json": 30, "validation_T10.json": 30}.get(name, 8)
    for record, row in zip(records, rows, strict=True):
        assert labels[record.label] == row["template"].replace("[", "").replace("]", "")
        assert record.video == SHARED / f"{row['id']}.webm"


@pytest.mark.skipif(not SHARED.is_dir(), reason="the SSv2 format excerpts (../shared) are not here")
def test_the_t10_subset_numbers_its_classes_in_its_listed_order():
    spec = DatasetSpec(path=str(SHARED / "validation_T10.json"), format="ssv2", subset="T10")  # labels.json beside
    records, labels = load_class_data([spec], seed=0)
    assert labels == list(SUBSETS["T10"])
    rows = json.loads((SHARED / "validation_T10.json").read_text(encoding="utf-8"))
    assert [labels[r.label] for r in records] == [row["template"].replace("[", "").replace("]", "") for row in rows]
    assert sorted(Counter(r.label for r in records).items()) == [(k, 3) for k in range(10)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "7", "label": "x"}, r"train\.json: \[1\] \(id '7'\): missing field 'template'"),
        ({"id": 7, "template": "Holding [something]"}, r"train\.json: \[1\]: .*'id'"),
        ({"id": "8", "template": "Juggling [something]"}, r"\[1\] \(id '8'\).*'Juggling something'.*labels"),
        ({"id": "1000", "template": "Holding [something]"}, r"\[1\] \(id '1000'\): field 'id' repeats record \[0\]"),
    ],
)
def test_bad_ssv2_records_are_named_in_the_error(tmp_path, row, message):
    (tmp_path / "labels.json").write_text(json.dumps({name: str(i) for i, name in enumerate(CLASSES)}))
    good = {"id": "1000", "label": "holding a box", "template": "Holding [something]", "placeholders": ["a box"]}
    (tmp_path / "train.json").write_text(json.dumps([good, row]))
    spec = DatasetSpec(path=str(tmp_path / "train.json"), format="ssv2")
    with pytest.raises(RecipeError, match=r"data\.datasets\[0\]: .*" + message):
        load_class_data([spec], seed=0)
    with pytest.raises(DataError, match=message):
        read_class_records(spec, list(CLASSES))


def test_subsets_and_classes_choose_the_label_space(tmp_path):
    root = write_ssv2(tmp_path / "data", train=6, validation=0)
    spec = DatasetSpec(path=str(root / "train.json"), format="ssv2", classes=[CLASSES[2], CLASSES[1]])
    records, labels = load_class_data([spec], seed=0)
    assert labels == [CLASSES[2], CLASSES[1]]
    assert [r.label for r in records] == [1, 0, 1, 0]  # records 1, 2, 4, 5 (left-to-right, right-to-left)
    with pytest.raises(RecipeError, match=r"lacks the classes \['Juggling'\]"):
        load_class_data([DatasetSpec(path=str(root / "train.json"), format="ssv2", classes=["Juggling"])], seed=0)


def test_a_failing_training_video_is_named_or_skipped_logged_and_counted(tmp_path):
    root = write_ssv2(tmp_path / "data", train=3, validation=0)
    (root / "videos" / "1001.mp4").unlink()
    videos = {"root": str(root / "videos"), "video_pattern": "{id}.mp4"}
    spec = DatasetSpec(path=str(root / "train.json"), format="ssv2", **videos)
    records = read_class_records(spec, list(CLASSES))
    clip_input = ClipInput(frames=4, size=32)
    with pytest.raises(DataError, match=r"train\.json \[1\] \(id '1001'\): .*1001\.mp4"):
        ClassificationSet(records, clip_input, on_error="raise")[1]
    skipping = ClassificationSet(records, clip_input, on_error="skip", log_dir=tmp_path / "stage")
    collate = ClassificationCollator(clip_input)
    batch = collate([skipping[0], skipping[1], skipping[2]])
    assert batch["pixel_values"].shape == (2, 4, 3, 32, 32) and batch["labels"].tolist() == [0, 2]
    assert batch[SAMPLE_COUNTS]["seen"] == 3 and batch[SAMPLE_COUNTS]["skipped"] == 1
    assert "1001.mp4" in batch[SAMPLE_COUNTS]["reasons"][0]
    [line] = (tmp_path / "stage" / "skipped.jsonl").read_text().splitlines()
    assert json.loads(line)["sample"].endswith("train.json [1] (id '1001')")
    empty = collate([skipping[1]])
    assert empty[EMPTY_BATCH] == 1 and empty["pixel_values"].shape == (1, 4, 3, 32, 32)


# --- evaluation of a classifier -----------------------------------------------------------------------------------


class MotionClassifier(torch.nn.Module):
    """A plain torch classifier over CLASSES whose logits depend on the frames and the crop: per frame the
    column-weighted mean of the pixels, squashed (tanh), then a fixed linear map (random, seeded) over time."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_labels=3, id2label=dict(enumerate(CLASSES)))
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(4, 3, generator=generator))
        self.calls = 0

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        self.calls += 1
        columns = torch.linspace(-1, 1, pixel_values.shape[-1])
        per_frame = (pixel_values.mean(dim=(2, 3)) * columns).sum(-1)  # (B, T)
        return SimpleNamespace(logits=torch.tanh(per_frame * 5) @ self.weight * 10)  # not linear in the pixels


def _items(root: Path) -> list[EvalItem]:
    rows = json.loads((root / "validation.json").read_text())
    classes = tuple(CLASSES)
    return [
        EvalItem(r["id"], TEMPLATES_BACK[r["template"]], "q", (VideoRef(root / "videos" / f"{r['id']}.mp4"),), None,
                 TEMPLATES_BACK[r["template"]], classes=classes)
        for r in rows
    ]  # fmt: skip


TEMPLATES_BACK = {template: name for name, template in TEMPLATES.items()}


def _settings(root: Path, views: Views) -> EvalSettings:
    return EvalSettings(benchmark="ssv2", data=str(root), model="motion", scoring="classify",
                        views=views.to_dict(), labels=list(CLASSES))  # fmt: skip


def test_multi_view_logits_are_the_average_over_the_views_computed_by_hand(tmp_path):
    root = write_ssv2(tmp_path / "data", train=0, validation=3)
    clip_input = ClipInput(frames=4, size=32)
    views = Views(clips=2, crops=3)
    model = MotionClassifier()
    answerer = ClassifierAnswerer(model, clip_input, views, device="cpu")
    items = _items(root)
    got = torch.tensor(answerer.classify(items))
    for item, logits in zip(items, got, strict=True):
        pixels = read_views(item.videos[0].path, clip_input, views)
        by_hand = torch.stack([model(pixel_values=pixels[v : v + 1]).logits[0] for v in range(6)]).mean(0)
        assert torch.allclose(logits, by_hand, atol=1e-5)
        single = model(pixel_values=read_views(item.videos[0].path, clip_input)).logits[0]
        assert (logits - single).abs().max() > 1e-3  # the views differ: averaging is not a no-op


class FixedLogits:
    """An answerer whose logits per item are given; `fail_after` batches, it raises (an interrupted run)."""

    def __init__(self, logits: dict[str, list[float]], fail_after: int | None = None) -> None:
        self.logits, self.fail_after, self.batches = logits, fail_after, 0

    def classify(self, items):
        if self.fail_after is not None and self.batches == self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        return [self.logits[item.qid] for item in items]


def test_top1_top5_per_class_and_pair_confusion_against_hand_computed_values(tmp_path):
    labels = [f"class {i}" for i in range(7)] + list(CLASSES[1:])  # 9 labels; 7 and 8 are an opposing pair
    truth = ["class 0", "class 0", "class 1", "class 2", CLASSES[1], CLASSES[1], CLASSES[2], CLASSES[2]]
    ranked = [  # labels in order of logit, highest first
        [0, 1, 2, 3, 4, 5, 6, 7, 8],  # class 0: top-1
        [1, 2, 3, 4, 0, 5, 6, 7, 8],  # class 0: 5th
        [0, 2, 3, 4, 5, 1, 6, 7, 8],  # class 1: 6th (not in top-5)
        [2, 0, 1, 3, 4, 5, 6, 7, 8],  # class 2: top-1
        [8, 7, 0, 1, 2, 3, 4, 5, 6],  # left-to-right predicted right-to-left (confused), 2nd
        [7, 0, 1, 2, 3, 4, 5, 6, 8],  # left-to-right: top-1
        [7, 8, 0, 1, 2, 3, 4, 5, 6],  # right-to-left predicted left-to-right (confused)
        [0, 8, 1, 2, 3, 4, 5, 6, 7],  # right-to-left predicted class 0
    ]
    logits = {}
    for k, order in enumerate(ranked):
        values = [0.0] * 9
        for rank, label in enumerate(order):
            values[label] = 10.0 - rank
        logits[str(k)] = values
    items = [EvalItem(str(k), t, "q", (VideoRef(Path(f"{k}.mp4")),), None, t) for k, t in enumerate(truth)]
    settings = EvalSettings(benchmark="ssv2", data="d", model="m", scoring="classify", views={"clips": 2, "crops": 3},
                            labels=labels)  # fmt: skip
    results = evaluate(FixedLogits(logits), items, settings, tmp_path / "run", batch_size=3, progress=False)
    assert results["overall"] == {"accuracy": 3 / 8, "n": 8}  # items 0, 3, 5
    assert results["top5"] == {"accuracy": 7 / 8, "n": 8}  # all but item 2
    assert {task: v["accuracy"] for task, v in results["tasks"].items()} == {
        "class 0": 1 / 2, "class 1": 0.0, "class 2": 1.0, CLASSES[1]: 1 / 2, CLASSES[2]: 0.0,
    }  # fmt: skip
    assert results["opposing_pairs"] == {
        "confused": 2 / 4,
        "n": 4,
        "pairs": [{"pair": [CLASSES[1], CLASSES[2]], "n": [2, 2], "a_as_b": 1, "b_as_a": 1, "confused": 0.5}],
    }
    assert results["views"] == {"clips": 2, "crops": 3}
    table = (tmp_path / "run" / "results.md").read_text()
    assert "top-5 87.50" in table and "views 2 clips x 3 crops" in table


def test_an_interrupted_classifier_evaluation_resumes_to_the_same_result(tmp_path):
    root = write_ssv2(tmp_path / "data", train=0, validation=6)
    items = _items(root)
    answerer = ClassifierAnswerer(MotionClassifier(), ClipInput(frames=4, size=32), Views(2, 3), device="cpu")
    logits = {item.qid: answerer.classify([item])[0] for item in items}
    settings = _settings(root, Views(2, 3))
    whole = evaluate(FixedLogits(logits), items, settings, tmp_path / "whole", batch_size=2, progress=False)

    with pytest.raises(KeyboardInterrupt):
        evaluate(FixedLogits(logits, fail_after=2), items, settings, tmp_path / "cut", batch_size=2, progress=False)
    lines = (tmp_path / "cut" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 4
    # a kill in the middle of a write leaves half a line: it is dropped and its item classified again
    (tmp_path / "cut" / "predictions.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    rest = FixedLogits(logits)
    resumed = evaluate(rest, items, settings, tmp_path / "cut", batch_size=2, progress=False)
    assert rest.batches == 2  # items 3, 4 (the cut one, classified again) and 5: no more
    strip = lambda r: {k: v for k, v in r.items() if k != "settings"}  # noqa: E731
    assert strip(resumed) == strip(whole)
    with pytest.raises(EvalError, match="other settings"):
        evaluate(FixedLogits(logits), items, _settings(root, Views(1, 1)), tmp_path / "cut", progress=False)


def test_a_bad_video_in_evaluation_is_named(tmp_path):
    root = write_ssv2(tmp_path / "data", train=0, validation=2)
    (root / "videos" / "2001.mp4").write_bytes(b"not a video")
    answerer = ClassifierAnswerer(MotionClassifier(), ClipInput(frames=4, size=32), device="cpu")
    with pytest.raises(Exception, match=r"2001\.mp4"):
        answerer.classify(_items(root))


def test_square_videos_move_as_their_class_says():
    video = square_video(CLASSES[1], frames=8)
    columns = [np.nonzero(frame[:, :, 0].max(0) > 100)[0][0] for frame in video]
    assert columns == sorted(columns) and columns[0] < columns[-1]
