"""stave: stacked temporal attention (STAVEQ2) for Video-LLMs: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5 and
LLaVA-OneVision; and for video classifiers: InternVideo2 and VideoMAE."""

from .checkpoint import load_model
from .config import PositionScheme, TemporalConfig
from .modeling import (
    add_temporal_attention,
    set_temporal_pooling,
    temporal_config,
    temporal_parameters,
    temporal_pooling,
    vision_tower,
)
from .positions import position_scheme, set_position_scheme

__version__ = "0.1.0"

__all__ = [
    "PositionScheme",
    "TemporalConfig",
    "add_temporal_attention",
    "load_model",
    "position_scheme",
    "set_position_scheme",
    "set_temporal_pooling",
    "temporal_config",
    "temporal_parameters",
    "temporal_pooling",
    "vision_tower",
]
