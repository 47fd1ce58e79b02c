"""Video classification on a tiny random transformers classifier (VideoMAEForVideoClassification, stave's
"tiny-videomae"): a classification recipe trains and `stave eval --task classification` evaluates it end to end,
training resumes to the uninterrupted result, the loss is torch's label-smoothed cross-entropy, bad videos are
counted and reported, and stages select the head, LoRA or everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from classification_data import CLASSES, classification_recipe, write_ssv2
from transformers import TrainerCallback

from stave.classification import load_classifier, tiny_classifier
from stave.classification.model import INPUT_KEY
from stave.cli import main
from stave.config import TemporalConfig
from stave.training import load_recipe, train
from stave.training.recipe import LoraSection, RecipeError, StageSpec
from stave.training.stages import prepare_stage, trainable_counts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ssv2(tmp_path_factory.mktemp("ssv2"), train=6, validation=6)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_classifier(folder).state_dict()


def test_train_and_evaluate_a_classifier_end_to_end(data, tmp_path):
    """The tiny recipe trains (a missing video skipped, counted and listed), the model records its labels and
    input, and `stave eval --task classification` gives top-1/top-5/per-class/pairs with 2 clips x 3 crops; a
    cut evaluation resumes to the same results."""
    (data / "videos" / "1004.mp4").rename(tmp_path / "away.mp4")
    try:
        folder = train(load_recipe(classification_recipe(data, tmp_path / "run")))
    finally:
        (tmp_path / "away.mp4").rename(data / "videos" / "1004.mp4")
    config = json.loads((folder / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(3)] == list(CLASSES)
    assert config[INPUT_KEY] | {} == {**config[INPUT_KEY], "frames": 4, "size": 32}
    run = json.loads((folder / "stave-run.json").read_text())
    assert run["skipped_samples"] == 1 and run["steps"] == 4
    [skipped] = (tmp_path / "run" / "full" / "skipped.jsonl").read_text().splitlines()
    assert "train.json [4] (id '1004')" in skipped and "1004.mp4" in skipped
    history = json.loads((tmp_path / "run" / "full" / "log_history.json").read_text())
    assert len([row for row in history if "loss" in row]) == 4
    start, trained = tiny_classifier("tiny-videomae", CLASSES).state_dict(), weights(folder)
    assert max((start[k] - trained[k]).abs().max().item() for k in start) > 1e-4  # every parameter trains
    assert all((start[k] - trained[k]).abs().max() > 0 for k in start if k.endswith("weight"))

    args = ["eval", "--task", "classification", "--model", str(folder), "--benchmark", "ssv2", "--data", str(data),
            "--benchmark-option", "videos=videos", "--benchmark-option", "extension=.mp4", "--clips", "2",
            "--crops", "3", "--batch-size", "4"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "eval")]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and results["views"] == {"clips": 2, "crops": 3}
    assert results["settings"]["clip_input"]["frames"] == 4 and results["settings"]["labels"] == list(CLASSES)
    assert results["overall"]["accuracy"] == sum(r["correct"] for r in rows) / 6
    assert results["top5"]["accuracy"] == 1.0  # 3 labels: always in the top 5
    assert set(results["tasks"]) == set(CLASSES) and all(v["n"] == 2 for v in results["tasks"].values())
    [pair] = results["opposing_pairs"]["pairs"]
    assert pair["pair"] == list(CLASSES[1:]) and pair["n"] == [2, 2]

    # the same model run directly on the views, averaged, names the same classes
    from stave.classification import ClassifierAnswerer, ClipInput, Views
    from stave.evaluation import load_benchmark

    model = load_classifier(folder)
    answerer = ClassifierAnswerer(model, ClipInput(**{**config[INPUT_KEY], "mean": tuple(config[INPUT_KEY]["mean"]),
                                                      "std": tuple(config[INPUT_KEY]["std"])}), Views(2, 3), "cpu")
    items = load_benchmark("ssv2", data, videos="videos", extension=".mp4")
    top = {item.qid: CLASSES[max(range(3), key=logits.__getitem__)]
           for item, logits in zip(items, answerer.classify(items), strict=True)}  # fmt: skip
    assert {r["qid"]: r["parsed"] for r in rows} == top

    # an evaluation cut after 3 items resumes to the same results
    (tmp_path / "cut").mkdir()
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    (tmp_path / "cut" / "predictions.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    (tmp_path / "cut" / "settings.json").write_text((tmp_path / "eval" / "settings.json").read_text())
    assert main([*args, "--output", str(tmp_path / "cut")]) == 0
    resumed = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert resumed["overall"] == results["overall"] and resumed["tasks"] == results["tasks"]
    assert resumed["opposing_pairs"] == results["opposing_pairs"] and resumed["top5"] == results["top5"]


class Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt  # after checkpoint-2 was sealed, before checkpoint-4


def test_interrupted_training_resumes_to_the_uninterrupted_result(data, tmp_path):
    recipe = classification_recipe(data, tmp_path / "whole", save_steps=2)
    recipe["data"]["shuffle"] = True
    whole = train(load_recipe(recipe))
    cut = recipe | {"output_dir": str(tmp_path / "cut")}
    with pytest.raises(KeyboardInterrupt):
        train(load_recipe(cut), callbacks=[Interrupt()])
    assert (tmp_path / "cut/full/checkpoint-2").is_dir() and not (tmp_path / "cut/full/model").exists()
    resumed = train(load_recipe(cut, ["resume=latest"]))
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    start = weights(tmp_path / "whole/full/checkpoint-2")
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-4  # steps 3 and 4 changed the weights


def test_the_loss_is_torchs_label_smoothed_cross_entropy(data, tmp_path):
    from transformers import TrainingArguments

    from stave.classification.data import ClassificationCollator
    from stave.classification.train import classification_trainer_parts, initial_classifier, load_class_data
    from stave.training.data import SAMPLE_COUNTS

    recipe = load_recipe(classification_recipe(data, tmp_path / "run"), ["classification.label_smoothing=0.2"])
    records, labels = load_class_data(recipe.data.datasets, 0)
    model = initial_classifier(recipe, labels)
    with torch.no_grad():
        model.classifier.weight.mul_(200)  # spread the logits: smoothing then changes the loss a lot
    trainer_class, dataset, collator, options = classification_trainer_parts(recipe, model, records, tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path / "t"), use_cpu=True, report_to="none")
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, data_collator=collator, **options)
    batch = collator([dataset[i] for i in (0, 1, 2, 4)])
    assert isinstance(collator, ClassificationCollator) and batch[SAMPLE_COUNTS]["seen"] == 4
    pixels, targets = batch["pixel_values"].clone(), batch["labels"].clone()
    loss = trainer.compute_loss(model.eval(), batch)
    logits = model(pixel_values=pixels).logits
    expected = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.2)
    plain = torch.nn.functional.cross_entropy(logits, targets)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert abs(loss.item() - plain.item()) > 0.05


def test_stages_select_the_head_lora_or_everything():
    def counts(trains):
        model = tiny_classifier("tiny-videomae", CLASSES)
        return trainable_counts(prepare_stage(model, StageSpec("s", trains), TemporalConfig(), LoraSection(r=2),
                                              task="classification"), ["classifier"])  # fmt: skip

    head = 32 * 3 + 3
    assert counts(["head"]) == {"temporal": 0, "lora": 0, "head": head, "other": 0}
    lora = counts(["lora", "head"])
    assert lora["head"] == head and lora["lora"] > 0 and lora["other"] == lora["temporal"] == 0
    total = sum(p.numel() for p in tiny_classifier("tiny-videomae", CLASSES).parameters())
    assert sum(counts(["full"]).values()) == total


def test_sta_stages_on_a_classifier():
    """STA + head on VideoMAE needs stave's VideoMAE support (branch classifier-models); until it is merged this
    test skips, naming why."""
    from stave.models import find_vision_tower

    model = tiny_classifier("tiny-videomae", CLASSES)
    try:
        find_vision_tower(model)
    except TypeError:
        pytest.skip("STA on VideoMAE is not supported yet (stave.models has no VideoMAE family)")
    prepared = prepare_stage(model, StageSpec("s", ["temporal", "head"]), TemporalConfig(), LoraSection(),
                             task="classification")  # fmt: skip
    result = trainable_counts(prepared, ["classifier"])
    assert result["temporal"] > 0 and result["head"] == 32 * 3 + 3 and result["other"] == result["lora"] == 0


def test_a_classification_recipe_is_checked(data, tmp_path):
    recipe = classification_recipe(data, tmp_path / "run")
    recipe["data"]["datasets"][0]["format"] = "conversations"
    with pytest.raises(RecipeError, match=r"data\.datasets\[0\]\.format: task classification reads SSv2"):
        load_recipe(recipe)
    with pytest.raises(RecipeError, match=r"classification\.label_smoothing: must be in \[0, 1\)"):
        load_recipe(classification_recipe(data, tmp_path / "run"), ["classification.label_smoothing=1.5"])
    with pytest.raises(RecipeError, match=r"task: must be one of \['chat', 'classification'\]"):
        load_recipe(classification_recipe(data, tmp_path / "run"), ["task=detection"])
