"""Video classifiers: an nn.Module called as `model(pixel_values=...)` with pixel_values (B, T, 3, H, W) float
(VideoMAE's convention), returning an output with `.logits` (B, num_labels); its config names the labels
(id2label). Loading, the tiny random classifiers the tests and the tiny recipe use, the classifier's head, the
input it takes (stave.classification.clips), and the answerer `stave eval --task classification` asks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import StaveError
from ..evaluation.items import EvalItem
from .clips import ClipInput, Views, read_views

#: config.json entry of a classifier trained by stave: the ClipInput it was trained with (evaluation reads it)
INPUT_KEY = "stave_clip_input"

#: Tiny random classifiers (`model.path` of a classification recipe): transformers classes and config values.
TINY_CLASSIFIERS: dict[str, dict[str, Any]] = {
    "tiny-videomae": {
        "class": "VideoMAEForVideoClassification",
        "config": "VideoMAEConfig",
        "values": {
            "image_size": 32, "patch_size": 16, "num_frames": 4, "tubelet_size": 2, "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "use_mean_pooling": True,
        },
    },
}  # fmt: skip


class ClassifierError(StaveError, ValueError):
    """A classifier that does not fit its labels or its input; names the model and the fault."""


def label_config(labels: Sequence[str]) -> dict[str, Any]:
    """The config values that name a classifier's labels (index order)."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def model_labels(model: nn.Module) -> list[str]:
    """A classifier's label names in index order (config.id2label)."""
    config = model.config
    return [config.id2label[i] for i in range(config.num_labels)]


def tiny_classifier(name: str, labels: Sequence[str], *, seed: int = 0) -> nn.Module:
    """A tiny random classifier (TINY_CLASSIFIERS) over `labels`, its weights drawn after seeding with `seed`."""
    import transformers

    if name not in TINY_CLASSIFIERS:
        raise ClassifierError(f"unknown tiny classifier {name!r}; known: {sorted(TINY_CLASSIFIERS)}")
    preset = TINY_CLASSIFIERS[name]
    config = getattr(transformers, preset["config"])(**preset["values"], **label_config(labels))
    transformers.set_seed(seed)
    return getattr(transformers, preset["class"])(config)


def load_classifier(path: str | Path, labels: Sequence[str] | None = None, **kwargs: Any) -> nn.Module:
    """A classifier from a save_pretrained folder: through stave.load_model when stave supports its class (its
    STA restored), else transformers' AutoModelForVideoClassification. With `labels`, the head is made for
    them: kept when the checkpoint names the same labels, drawn fresh (reported) when it has another number of
    them or only the default names LABEL_i; a checkpoint naming other classes is refused (ClassifierError)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected a classifier written by save_pretrained)")
    config = json.loads(config_file.read_text())
    if labels is not None:
        stored = [name for _, name in sorted((int(i), n) for i, n in (config.get("id2label") or {}).items())]
        named = stored and any(name != f"LABEL_{i}" for i, name in enumerate(stored))
        if named and stored != list(labels):
            if len(stored) == len(labels):
                raise ClassifierError(
                    f"{config_file}: its head classifies {len(stored)} other labels (first differences: "
                    f"{[(a, b) for a, b in zip(stored, labels, strict=True) if a != b][:3]}); start from a model "
                    "without that head or with these labels in this order"
                )
        kwargs.update(label_config(labels), ignore_mismatched_sizes=True)
    from ..models import supported_classes

    if any(name in supported_classes() for name in config.get("architectures") or []):
        from ..checkpoint import load_model

        return load_model(path, **kwargs)
    import transformers
    from transformers import AutoModelForVideoClassification

    if "dtype" in kwargs and int(transformers.__version__.split(".")[0]) < 5:  # 4.57 calls it torch_dtype
        kwargs["torch_dtype"] = kwargs.pop("dtype")
    return AutoModelForVideoClassification.from_pretrained(path, **kwargs)


def classifier_head(model: nn.Module) -> dict[str, nn.Module]:
    """The head of a classifier by a general rule: its nn.Linear layers with config.num_labels outputs (VideoMAE:
    `classifier`), by full module name. ClassifierError when there is none."""
    num_labels = model.config.num_labels
    head = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == num_labels
    }
    if not head:
        raise ClassifierError(f"{type(model).__name__} has no linear layer with {num_labels} outputs (its head)")
    return head


def clip_input(model: nn.Module, **given: Any) -> ClipInput:
    """The input `model` takes: what its config records (INPUT_KEY, written by stave's training), else its
    config's num_frames and image_size with ImageNet normalisation; values in `given` that are not None win."""
    config = model.config
    recorded = dict(getattr(config, INPUT_KEY, None) or {})
    values = {"frames": getattr(config, "num_frames", None), "size": getattr(config, "image_size", None)}
    values.update(recorded)
    values.update({k: v for k, v in given.items() if v is not None})
    for key in ("mean", "std"):
        if key in values:
            values[key] = tuple(values[key])
    missing = [key for key in ("frames", "size") if values.get(key) is None]
    if missing:
        raise ClassifierError(f"{type(model).__name__}: its config gives no {missing}; set them")
    if isinstance(values["size"], (list, tuple)):
        values["size"] = int(values["size"][0])
    return ClipInput(**values)


class ClassifierAnswerer:
    """Classifies evaluation items: each item's video read as `views` (stave.classification.clips), the model run
    on all views of a batch at once, the logits averaged over each item's views. `labels` are the model's."""

    def __init__(self, model: nn.Module, clip_input: ClipInput, views: Views | None = None, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.clip_input = clip_input
        self.views = views or Views()
        self.labels = model_labels(model)

    def pixels(self, item: EvalItem) -> torch.Tensor:
        """(views, T, 3, size, size) of the item's one video (its start/end seconds honoured)."""
        if len(item.videos) != 1:
            raise ClassifierError(f"question {item.qid!r}: a classifier takes one video, not {len(item.videos)}")
        video = item.videos[0]
        return read_views(video.path, replace(self.clip_input, start=video.start, end=video.end), self.views)

    @torch.no_grad()
    def classify(self, items: Sequence[EvalItem]) -> list[list[float]]:
        """Per item, the logits (num_labels floats) averaged over its views."""
        pixels = torch.stack([self.pixels(item) for item in items])  # (B, V, T, 3, S, S)
        batch, views = pixels.shape[:2]
        dtype = next(self.model.parameters()).dtype
        flat = pixels.flatten(0, 1).to(self.device, dtype)
        logits = self.model(pixel_values=flat).logits.float().view(batch, views, -1)
        return logits.mean(dim=1).cpu().tolist()

    def generate(self, items: Sequence[EvalItem]) -> list[str]:
        raise ClassifierError("a classifier names a class; evaluate it with scoring 'classify'")

    def option_scores(self, items: Sequence[EvalItem]) -> list[list[float]]:
        raise ClassifierError("a classifier names a class; evaluate it with scoring 'classify'")
