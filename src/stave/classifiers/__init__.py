"""Video classifiers that take STA: InternVideo2 in plain PyTorch (transformers' VideoMAEForVideoClassification
is used as it is). A classifier is called as `model(pixel_values=(B, T, C, H, W))` and returns `.logits`
(B, num_labels)."""

from .checkpoint import (
    WeightsError,
    convert_checkpoint,
    load_plain_classifier,
    load_public_state_dict,
    read_torch_checkpoint,
    save_classifier,
)
from .internvideo2 import InternVideo2Config, InternVideo2ForVideoClassification, sincos_table

__all__ = [
    "WeightsError",
    "InternVideo2Config",
    "InternVideo2ForVideoClassification",
    "convert_checkpoint",
    "load_plain_classifier",
    "load_public_state_dict",
    "read_torch_checkpoint",
    "save_classifier",
    "sincos_table",
]
