"""What `task: classification` recipes add to stave.training.run: the starting classifier, the data set and
collator, and the trainer (stave.training.run.ClassifierTrainer)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..training.recipe import Recipe, RecipeError
from .clips import ClipInput
from .data import ClassificationCollator, ClassificationSet, ClassRecord, load_class_data
from .model import INPUT_KEY, TINY_CLASSIFIERS, clip_input, load_classifier, tiny_classifier

__all__ = ["classification_trainer_parts", "initial_classifier", "load_class_data", "recipe_input"]


def recipe_input(recipe: Recipe, model: nn.Module) -> ClipInput:
    """The ClipInput of a recipe's classifier: the recipe's classification values over the model's own (config
    num_frames, image_size, or what stave recorded), decoding with data.video's backend and timeout."""
    section = recipe.classification
    return clip_input(
        model, frames=section.frames, size=section.size, short_side=section.short_side, mean=tuple(section.mean),
        std=tuple(section.std), backend=recipe.data.video.backend, timeout=recipe.data.video.timeout,
    )  # fmt: skip


def initial_classifier(recipe: Recipe, labels: Sequence[str]) -> nn.Module:
    """The classifier the first stage starts from, its head over `labels`: a tiny random one (TINY_CLASSIFIERS,
    weights from model.seed) or a model folder (stave.classification.model.load_classifier). Its config records
    the recipe's input (INPUT_KEY), which every stage's saved model keeps."""
    import torch

    from ..base import resolve_model

    path = recipe.model.path
    if path in TINY_CLASSIFIERS:
        model = tiny_classifier(path, labels, seed=recipe.model.seed)
    elif resolve_model(path).is_dir():
        kwargs = {} if recipe.model.dtype == "auto" else {"dtype": getattr(torch, recipe.model.dtype)}
        model = load_classifier(resolve_model(path), labels, **kwargs)
    else:
        raise RecipeError(
            f"model.path: {path} is neither a model folder nor a tiny classifier {sorted(TINY_CLASSIFIERS)}"
        )
    setattr(model.config, INPUT_KEY, recipe_input(recipe, model).to_dict())
    return model.train()


def classification_trainer_parts(
    recipe: Recipe, model: nn.Module, records: Sequence[ClassRecord], stage_dir: Path
) -> tuple[type, ClassificationSet, ClassificationCollator, dict[str, Any]]:
    """(trainer class, training set, collator, the trainer's own options) of a classification stage."""
    from ..training.run import ClassifierTrainer

    clip = recipe_input(recipe, model)
    dataset = ClassificationSet(records, clip, on_error=recipe.data.on_error, log_dir=stage_dir)
    options = {"label_smoothing": recipe.classification.label_smoothing}
    return ClassifierTrainer, dataset, ClassificationCollator(clip), options
