"""Video classifiers that take STA: InternVideo2 in plain PyTorch (transformers' VideoMAEForVideoClassification
is used as it is). A classifier is called as `model(pixel_values=(B, T, C, H, W))` and returns `.logits`
(B, num_labels). Load one with stave.classification.load_classifier, make a tiny random one with
stave.presets.tiny_classifier."""

from .checkpoint import (
    WeightsError,
    convert_checkpoint,
    load_public_state_dict,
    read_torch_checkpoint,
)
from .internvideo2 import InternVideo2Config, InternVideo2ForVideoClassification, sincos_table

__all__ = [
    "WeightsError",
    "InternVideo2Config",
    "InternVideo2ForVideoClassification",
    "convert_checkpoint",
    "load_public_state_dict",
    "read_torch_checkpoint",
    "sincos_table",
]
