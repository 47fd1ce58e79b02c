"""stave: stacked temporal attention (STAVEQ2) for Qwen2-VL-family Video-LLMs."""

from .checkpoint import load_model
from .config import TemporalConfig
from .modeling import (
    add_temporal_attention,
    set_temporal_pooling,
    temporal_config,
    temporal_parameters,
    temporal_pooling,
    vision_tower,
)

__version__ = "0.1.0"

__all__ = [
    "TemporalConfig",
    "add_temporal_attention",
    "load_model",
    "set_temporal_pooling",
    "temporal_config",
    "temporal_parameters",
    "temporal_pooling",
    "vision_tower",
]
