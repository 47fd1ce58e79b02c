"""Adding stacked temporal attention to a model, and finding what was added; pooling each video's visual
tokens over time before the LLM."""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, TypeVar

import torch
from torch import nn

from .config import POOLING_KEY, TemporalConfig, pooling_window
from .models import find_vision_tower
from .temporal import TemporalAttention, TemporalBlockMixin, TemporalLayout

ModelT = TypeVar("ModelT", bound=nn.Module)

#: Name of the entry in the vision config (config.json) that records the temporal attention.
CONFIG_KEY = "temporal_attention"


def add_temporal_attention(model: ModelT, config: TemporalConfig | None = None, **overrides: Any) -> ModelT:
    """Insert stacked temporal attention into the vision tower of `model`, in place.

    Args:
        model: a model of a supported family (stave.models): a Qwen-family Video-LLM, its base model or its bare
            vision tower, or a video classifier (InternVideo2ForVideoClassification, VideoMAEForVideoClassification,
            VideoMAEModel).
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
    if family.prepare_model is not None:
        family.prepare_model(model)

    vision_config = tower.config
    dim = family.width(vision_config)
    spatial_heads = family.spatial_heads(vision_config)
    if dim % spatial_heads:
        raise ValueError(f"vision width {dim} is not divisible by its {spatial_heads} heads")
    head_dim = dim // spatial_heads
    heads = config.num_heads(spatial_heads)

    blocks = family.blocks(tower)
    selected = config.selected_blocks(len(blocks))
    feeding = family.feature_blocks(model) if family.feature_blocks is not None else None
    if feeding is not None and config.layers is None:  # blocks after the selected feature layer feed nothing
        selected = [index for index in selected if index < feeding]
    elif feeding is not None and any(index >= feeding for index in selected):
        raise ValueError(
            f"blocks {[i for i in selected if i >= feeding]} come after the vision feature layer (only blocks "
            f"0..{feeding - 1} feed the LLM): temporal attention there would change nothing"
        )
    for index in selected:
        block = blocks[index]
        if type(block) is not family.block_class:
            raise TypeError(f"block {index} is {type(block).__name__}, expected {family.block_class.__name__}")
        reference = next(block.parameters())
        block.temp_attn = TemporalAttention(
            dim,
            heads,
            head_dim,
            zero_init=config.init == "zero",
            gate_init=config.gate_init if config.gate == "layerscale" else None,
            device=reference.device,
            dtype=reference.dtype,
        )
        block.norm3 = family.make_norm(block, dim).to(device=reference.device, dtype=reference.dtype)
        block.temporal_first = config.order == "temporal_first"
        block.__class__ = family.temporal_block_class
        _rebind_instance_forward(block, index, family.block_class)

    tower.stave_temporal = config
    tower.stave_head_dim = head_dim
    tower.register_forward_pre_hook(_add_temporal_layout, with_kwargs=True)
    setattr(vision_config, CONFIG_KEY, config.to_dict())
    return model


def _rebind_instance_forward(block: nn.Module, index: int, stock: type[nn.Module]) -> None:
    """Make a forward wrapped on the instance call the temporal block's forward.

    accelerate's dispatch hooks (device_map="auto", offloading) replace `block.forward` on the instance
    with a wrapper around the bound method they found, kept as `block._old_forward`; after the class
    switch that would still be the stock forward and STA would be silently bypassed. transformers 4.57's
    output capturing (check_model_inputs, e.g. LLaVA-OneVision's hidden states of the SigLIP layers) leaves the
    stock forward bound on the instance after a forward; that binding is dropped (the class's forward is the
    temporal one).
    """
    instance = vars(block)
    bound = instance.get("forward")
    if "_old_forward" in instance:
        block._old_forward = types.MethodType(type(block).forward, block)
    elif getattr(bound, "__self__", None) is block and getattr(bound, "__func__", None) is stock.forward:
        del block.forward
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
    family, _ = find_vision_tower(tower)
    config: TemporalConfig = tower.stave_temporal
    skip = config.images == "skip"
    items = family.temporal_items(tower, args, kwargs)
    items = [(t, n, temporal and not (skip and t == 1)) for t, n, temporal in items]
    first = next((v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)), None)
    kwargs["temporal_layout"] = TemporalLayout.from_items(
        items,
        head_dim=tower.stave_head_dim,
        rope_theta=config.rope_theta,
        device=first.device if first is not None else None,
        row_prefix=family.row_prefix,
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


# --- temporal pooling -------------------------------------------------------------------------------------
# The family's adapter names the base-model methods that turn videos into LLM inputs and their pooling
# replacements (VisionFamily.pooled_methods; Qwen: get_video_features and get_rope_index, stave.models.qwen_pooling);
# set_temporal_pooling installs them on the instance, so the tower still sees every frame while the LLM sees each
# video as one temporal step per pooling run; the replacements follow the config entry on every call.


def set_temporal_pooling(model: ModelT, mode: str | None) -> ModelT:
    """Pool each video's visual tokens over time before the LLM (mode "mean" or "mean:K"), or stop pooling (None);
    in place.

    With "mean", a video of grid (t, h, w) reaches the LLM as the mean over its t temporal patches (LLaVA-OneVision,
    InternVL: frames) of the tower's merged tokens: h*w/merge² tokens instead of t*h*w/merge², placed by M-RoPE as a
    grid (1, h, w).
    The LLM therefore costs t times fewer tokens per video, and cannot see the order of frames: a clip and its
    time reverse give it the same inputs, so order can only reach it through the encoder (e.g. STA). With
    "mean:K" (K >= 2) each run of K consecutive temporal patches is averaged (the last run may be shorter): the
    video reaches the LLM as ceil(t/K) temporal steps of h*w/merge² tokens, placed as a grid (ceil(t/K), h, w);
    the LLM sees the order of the runs but not of the patches within one (Qwen2.5-VL: `second_per_grid_ts` is
    scaled by K, so each run sits at the temporal position of its first patch; Qwen3-VL / Qwen3.5: each run is
    its own vision block after the mean of its patches' timestamps). "mean:1" is refused (it pools nothing;
    stave.config.pooling_window). Images are never pooled. The tower, STA and pixel inputs are unchanged
    (video_grid_thw stays the real grid); only the number of video pad tokens changes —
    VideoChatProcessor.for_model reads it from the model.

    The mode is recorded in the model config under "temporal_pooling", so save_pretrained keeps it and
    stave.load_model restores it (stock from_pretrained keeps the entry but not the pooling: use load_model).
    Independent of STA. Mechanism: instance-level wrappers of the base model's methods that its family names
    (VisionFamily.pooled_methods; Qwen: get_video_features and get_rope_index), re-installed by load_model.

    Args:
        model: a full or base model of a family with temporal pooling (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5,
            LLaVA-OneVision, InternVL), also inside peft / DDP wrappers (not a bare vision tower: pooling acts
            between tower and LLM).
        mode: "mean", "mean:K" or None.

    Returns:
        The same model.

    Raises:
        stave.config.PoolingModeError (a ValueError) for any other mode, naming it and the accepted forms.
    """
    if mode is not None:
        pooling_window(mode)
    from .positions import is_scheme_wrapper, restore_rope_index

    family, base = _pooling_side(model)
    if family.prepare_model is not None:
        family.prepare_model(model)
    methods = family.pooled_methods
    instance = vars(base)
    for name, _ in methods:
        if name in instance and not (_is_pooling_wrapper(instance[name]) or is_scheme_wrapper(instance[name])):
            raise RuntimeError(
                f"{type(base).__name__}.{name} is replaced on the instance ({instance[name]!r}); stave cannot "
                "pool video tokens behind it. Set temporal pooling before wrapping the model."
            )
    if mode is None:
        for name, _ in methods:
            instance.pop(name, None)
        if hasattr(base.config, POOLING_KEY):
            delattr(base.config, POOLING_KEY)
        restore_rope_index(base)  # a position scheme (stave.positions) keeps its get_rope_index
        return model
    if family.check_pooling is not None:
        family.check_pooling(base)
    # functools.partial rather than a bound method: survives deepcopy (bound to the copy) and pickling
    for name, function in methods:
        setattr(base, name, functools.partial(function, base))
    setattr(base.config, POOLING_KEY, mode)
    return model


def temporal_pooling(model: nn.Module) -> str | None:
    """The temporal pooling mode of a model as stored in its config ("mean", "mean:2"), or None if it does not pool.

    Raises RuntimeError for a model whose config records pooling that is not installed (loaded with stock
    from_pretrained): its video pads would not match its video tokens.
    """
    family, base = _pooling_side(model)
    mode = getattr(base.config, POOLING_KEY, None)
    if mode is not None and not all(_is_pooling_wrapper(vars(base).get(name)) for name, _ in family.pooled_methods):
        raise RuntimeError(
            f"the model config records {POOLING_KEY}={mode!r} but the model does not pool (loaded with "
            f"from_pretrained?): load it with stave.load_model, or call stave.set_temporal_pooling(model, {mode!r})"
        )
    return mode


def _is_pooling_wrapper(value: Any) -> bool:
    from .models import families

    functions = {function for family in families() for _, function in family.pooled_methods}
    return isinstance(value, functools.partial) and value.func in functions


def _pooling_side(model: nn.Module):
    """(family, base model) of a model whose family can pool; a TypeError naming the family otherwise."""
    family, _ = find_vision_tower(model)
    if not family.pooled_methods:
        raise TypeError(f"{family.name}: stave has no temporal pooling for this family")
    return family, _language_side(model)


def _language_side(model: nn.Module) -> nn.Module:
    """The base model (Qwen2VLModel, LlavaOnevisionModel, ...: the family's model_classes[1]) of a supported model:
    the module that turns pixels and token ids into LLM inputs (it owns get_video_features and, in the Qwen
    families, get_rope_index)."""
    family, _ = find_vision_tower(model)
    for module in model.modules():
        if isinstance(module, family.model_classes[1]):
            return module
    raise TypeError(
        f"{type(model).__name__}: temporal pooling acts between the vision tower and the LLM; pass the full model "
        f"({', '.join(c.__name__ for c in family.model_classes)}), not the bare tower"
    )
