"""Adding stacked temporal attention to a model, and finding what was added."""

from __future__ import annotations

import dataclasses
import types
from typing import Any, TypeVar

from torch import nn

from .config import TemporalConfig
from .models import find_vision_tower
from .temporal import TemporalAttention, TemporalBlockMixin, TemporalLayout

ModelT = TypeVar("ModelT", bound=nn.Module)

#: Name of the entry in the vision config (config.json) that records the temporal attention.
CONFIG_KEY = "temporal_attention"


def add_temporal_attention(model: ModelT, config: TemporalConfig | None = None, **overrides: Any) -> ModelT:
    """Insert stacked temporal attention into the vision tower of `model`, in place.

    Args:
        model: a Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration, their base models
            (Qwen2VLModel / Qwen2_5_VLModel) or their bare vision towers.
        config: the TemporalConfig; defaults to TemporalConfig().
        **overrides: TemporalConfig fields that replace those of `config`.

    Returns:
        The same model. Each selected block gains `temp_attn.qkv`, `temp_attn.proj` (nn.Linear) and
        `norm3` (the block's norm1 type), on the device and in the dtype of the block's attention; the
        vision config records the TemporalConfig under "temporal_attention" so save_pretrained keeps it.
    """
    family, tower = find_vision_tower(model)
    config = dataclasses.replace(config or TemporalConfig(), **overrides)
    if getattr(tower, "stave_temporal", None) is not None:
        raise RuntimeError(f"{type(model).__name__} already has temporal attention ({tower.stave_temporal})")

    vision_config = tower.config
    dim = family.width(vision_config)
    spatial_heads = vision_config.num_heads
    if dim % spatial_heads:
        raise ValueError(f"vision width {dim} is not divisible by its {spatial_heads} heads")
    head_dim = dim // spatial_heads
    heads = config.num_heads(spatial_heads)

    for index in config.selected_blocks(len(tower.blocks)):
        block = tower.blocks[index]
        if type(block) is not family.block_class:
            raise TypeError(f"block {index} is {type(block).__name__}, expected {family.block_class.__name__}")
        reference = block.attn.qkv.weight
        block.temp_attn = TemporalAttention(
            dim, heads, head_dim, zero_init=config.init == "zero", device=reference.device, dtype=reference.dtype
        )
        block.norm3 = family.make_norm(block, dim).to(device=reference.device, dtype=reference.dtype)
        block.temporal_first = config.order == "temporal_first"
        block.__class__ = family.temporal_block_class
        _rebind_instance_forward(block, index)

    tower.stave_temporal = config
    tower.stave_head_dim = head_dim
    tower.register_forward_pre_hook(_add_temporal_layout, with_kwargs=True)
    setattr(vision_config, CONFIG_KEY, config.to_dict())
    return model


def _rebind_instance_forward(block: nn.Module, index: int) -> None:
    """Make a forward wrapped on the instance call the temporal block's forward.

    accelerate's dispatch hooks (device_map="auto", offloading) replace `block.forward` on the instance
    with a wrapper around the bound method they found, kept as `block._old_forward`; after the class
    switch that would still be the stock forward and STA would be silently bypassed.
    """
    instance = vars(block)
    if "_old_forward" in instance:
        block._old_forward = types.MethodType(type(block).forward, block)
    elif "forward" in instance:
        raise RuntimeError(
            f"vision block {index} has a forward set on the instance ({instance['forward']!r}); stave cannot "
            "insert temporal attention behind it. Add temporal attention before wrapping the model."
        )


def _add_temporal_layout(tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of the tower: compute the item layout once and hand it to every block.

    The tower passes its extra keyword arguments on to its blocks, so the layout travels as the
    `temporal_layout` keyword (and is captured by gradient checkpointing with the other block inputs). A
    caller may precompute it and pass it in, e.g. for torch.compile with fixed shapes.
    """
    if kwargs.get("temporal_layout") is not None:
        return args, kwargs
    pixels = args[0] if args else kwargs.get("hidden_states")
    grid_thw = args[1] if len(args) > 1 else kwargs.get("grid_thw")
    if pixels is None or grid_thw is None:
        raise ValueError("a vision tower with temporal attention needs both its pixel input and grid_thw")
    config: TemporalConfig = tower.stave_temporal
    kwargs["temporal_layout"] = TemporalLayout.from_grid(
        grid_thw,
        pixels.shape[0],
        skip_single_frame=config.images == "skip",
        head_dim=tower.stave_head_dim,
        rope_theta=config.rope_theta,
        device=pixels.device,
    )
    return args, kwargs


def temporal_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs of every module stave added (temp_attn.* and norm3.* of each block)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, TemporalBlockMixin):
            for child in ("temp_attn", "norm3"):
                found.extend(getattr(module, child).named_parameters(prefix=f"{name}.{child}"))
    return found


def temporal_config(model: nn.Module) -> TemporalConfig | None:
    """The TemporalConfig of a model's tower, or None if it has no temporal attention."""
    _, tower = find_vision_tower(model)
    return getattr(tower, "stave_temporal", None)


def vision_tower(model: nn.Module) -> nn.Module:
    """The vision tower of a supported model (the model itself if it is one)."""
    return find_vision_tower(model)[1]
