"""One small adapter per supported model family: where the vision tower and its blocks are, how wide they
are, which norm the added `norm3` copies, and in which order the blocks see a frame's patches. Everything
else about STA is family-independent (stave.temporal)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class PositionAdapter:
    """How stave replaces a family's LLM positions (stave.positions; Qwen2-VL and Qwen2.5-VL: stave.models.mrope).

    Attributes:
        rotary_embedding: base model -> the LLM's rotary embedding module.
        sections: base model -> the stock M-RoPE's (t, h, w) frequency pairs per row (summing to head_dim / 2).
        set_frequency_rows: (rotary embedding, rows) -> None: frequency pair j uses position row rows[j]
            (0 t, 1 h, 2 w; (head_dim / 2,) long), or the stock allocation for None; on the instance.
        frequency_rows: rotary embedding -> the rows set, or None.
        rope_index: PositionScheme -> a function with the base model's get_rope_index signature (base first)
            that returns (3, batch, seq) positions and (batch, 1) rope_deltas by that scheme.
    """

    rotary_embedding: Callable[[nn.Module], nn.Module]
    sections: Callable[[nn.Module], list[int]]
    set_frequency_rows: Callable[[nn.Module, torch.Tensor | None], None]
    frequency_rows: Callable[[nn.Module], torch.Tensor | None]
    rope_index: Callable[[Any], Callable[..., tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class VisionFamily:
    """What stave needs to know about one model family.

    Attributes:
        name: human-readable family name.
        tower_class: the vision tower class (holds `blocks`, receives `(pixels, grid_thw)`).
        model_classes: the full and base model classes that contain such a tower.
        block_class: the stock vision block class.
        temporal_block_class: `block_class` with stave.temporal.TemporalBlockMixin mixed in.
        llm_layer_class: the LLM's decoder layer class.
        width: token width D of the tower, from its config.
        make_norm: a new, identity-initialised norm of the block's norm1 type, for width D.
        vision_linears: names (within a block) of the attention and MLP linears that LoRA adapts.
        token_order: (tower, h, w) -> (h*w,) long: for one temporal patch of h x w patches, the index into the
            tower's input rows (the processor's patch order, stave.video.packing) of each row its blocks see;
            the same for every temporal patch of a video.
        positions: how its LLM positions are replaced (stave.set_position_scheme); None: the family has only
            its stock positions.
    """

    name: str
    tower_class: type[nn.Module]
    model_classes: tuple[type[nn.Module], ...]
    block_class: type[nn.Module]
    temporal_block_class: type[nn.Module]
    llm_layer_class: type[nn.Module]
    width: Callable[[object], int]
    make_norm: Callable[[nn.Module, int], nn.Module]
    vision_linears: tuple[str, ...]
    token_order: Callable[[nn.Module, int, int], torch.Tensor]
    positions: PositionAdapter | None = None

    @property
    def class_names(self) -> list[str]:
        return [c.__name__ for c in (*self.model_classes, self.tower_class)]


def shard_units(model: nn.Module) -> list[str]:
    """The names of the classes FSDP shards `model` by (one unit per module of these classes): its family's
    vision blocks (STA blocks included) and LLM decoder layers, as far as `model` holds them, in a fixed order.
    Works through peft and DDP/FSDP wrappers (find_vision_tower)."""
    family, _ = find_vision_tower(model)
    units = (family.block_class, family.llm_layer_class)
    present = {type(m) for m in model.modules() if isinstance(m, units)}
    return sorted(c.__name__ for c in present)


def families() -> tuple[VisionFamily, ...]:
    from .qwen2_5_vl import QWEN2_5_VL
    from .qwen2_vl import QWEN2_VL

    return (QWEN2_VL, QWEN2_5_VL)


def supported_classes() -> dict[str, tuple[VisionFamily, type[nn.Module]]]:
    """Class name -> (family, class) for every model class stave accepts."""
    return {cls.__name__: (fam, cls) for fam in families() for cls in (*fam.model_classes, fam.tower_class)}


def find_vision_tower(model: nn.Module) -> tuple[VisionFamily, nn.Module]:
    """The family and vision tower of a supported model (also inside DDP/FSDP/DeepSpeed/peft wrappers);
    TypeError listing the supported classes otherwise."""
    for family in families():
        if isinstance(model, family.tower_class):
            return family, model
        if isinstance(model, family.model_classes):
            for module in model.modules():
                if isinstance(module, family.tower_class):
                    return family, module
            raise TypeError(f"{type(model).__name__} holds no {family.tower_class.__name__}")
    # wrappers: DDP / FSDP / DeepSpeed engines (.module) and peft models (.get_base_model())
    inner = getattr(model, "module", None)
    if inner is None and callable(getattr(model, "get_base_model", None)):
        inner = model.get_base_model()
    if isinstance(inner, nn.Module) and inner is not model:
        return find_vision_tower(inner)
    supported = "; ".join(f"{fam.name}: {', '.join(fam.class_names)}" for fam in families())
    raise TypeError(f"stave supports these model families — {supported}; got {type(model).__name__}")
