"""What the frame-per-image families share (LLaVA-OneVision's SigLIP, InternVL's InternViT): towers that take every
frame as an image of one fixed size, and an LLM fed by a selected layer of the tower (`vision_feature_layer`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """How a frame-per-image tower takes a frame: resized to image_size x image_size, cut into patch_size patches,
    normalised with mean and std; `factor` (what stave.video rounds frame sides to) is the image size."""

    image_size: int
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def factor(self) -> int:
        return self.image_size

    @property
    def temporal_patch_size(self) -> int:
        """Frames per temporal step: every frame is its own (PatchSpec's counterpart)."""
        return 1


def normalise(frames: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
    """(T, 3, S, S) uint8 -> float32 (x / 255 - mean) / std, as transformers' image and video processors (rescale,
    then normalise)."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (frames.to(torch.float32) * (1 / 255) - mean) / std


def feature_layers(config: Any) -> int:
    """How many encoder layers feed the selected feature layer(s) (hidden_states[i] is the output of layer i - 1;
    hidden_states[0] the embeddings): STA in a later layer would change nothing the LLM sees."""
    layers = config.vision_config.num_hidden_layers
    selected = config.vision_feature_layer
    selected = [selected] if isinstance(selected, int) else list(selected)
    return max(index % (layers + 1) for index in selected)


def feature_blocks(model: nn.Module) -> int | None:
    """How many of the tower's blocks feed the LLM (feature_layers), from the config of a full or base model;
    None for a bare tower (its config does not say)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "vision_feature_layer"):
        return None
    return feature_layers(config)
