"""Video classification: SSv2-style training (`task: classification` recipes, stave.classification.train) and
evaluation (`stave eval --task classification`) of classifiers called as `model(pixel_values=(B, T, 3, H, W))`
returning `.logits`; the frames and views they see (clips), their labels and head (model), and opposing class
pairs (pairs)."""

from .clips import ClipInput, Views, read_views, segment_indices
from .model import ClassifierAnswerer, ClassifierError, load_classifier, tiny_classifier
from .pairs import opposing_pairs, pair_confusion

__all__ = [
    "ClassifierAnswerer",
    "ClassifierError",
    "ClipInput",
    "Views",
    "load_classifier",
    "opposing_pairs",
    "pair_confusion",
    "read_views",
    "segment_indices",
    "tiny_classifier",
]
