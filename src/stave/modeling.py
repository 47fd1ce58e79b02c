"""Adding stacked temporal attention to a model, and finding what was added; pooling each video's visual
tokens over time before the LLM."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import transformers
from torch import nn

from .config import TEMPORAL_POOLING_MODES, TemporalConfig
from .models import find_vision_tower
from .temporal import TemporalAttention, TemporalBlockMixin, TemporalLayout

ModelT = TypeVar("ModelT", bound=nn.Module)

#: Name of the entry in the vision config (config.json) that records the temporal attention.
CONFIG_KEY = "temporal_attention"
#: Name of the entry in the model config (config.json, top level) that records temporal pooling.
POOLING_KEY = "temporal_pooling"


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

    vision_config = tower.config
    dim = family.width(vision_config)
    spatial_heads = family.spatial_heads(vision_config)
    if dim % spatial_heads:
        raise ValueError(f"vision width {dim} is not divisible by its {spatial_heads} heads")
    head_dim = dim // spatial_heads
    heads = config.num_heads(spatial_heads)

    blocks = family.blocks(tower)
    for index in config.selected_blocks(len(blocks)):
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
        _rebind_instance_forward(block, index)

    if family.temporal_tower_class is not None:  # a tower that does not pass keywords on to its blocks
        tower.__class__ = family.temporal_tower_class
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
# The base model (Qwen2VLModel / Qwen2_5_VLModel) turns videos into LLM inputs in two methods, on transformers
# 5.x and 4.57 alike: get_video_features (runs the tower on the real grid; its per-video tokens are scattered
# onto the video pads, after a count check) and get_rope_index (M-RoPE positions from video_grid_thw; called by
# forward and by generation). Pooling wraps both on the instance, so the tower still sees every frame while
# the LLM sees each video as one temporal patch; the wrappers follow the config entry on every call.
_POOLED_METHODS = ("get_video_features", "get_rope_index")
_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def set_temporal_pooling(model: ModelT, mode: str | None) -> ModelT:
    """Pool each video's visual tokens over time before the LLM (mode "mean"), or stop pooling (None); in place.

    With "mean", a video of grid (t, h, w) reaches the LLM as the mean over its t temporal patches of the
    tower's merged tokens: h*w/merge² tokens instead of t*h*w/merge², placed by M-RoPE as a grid (1, h, w).
    The LLM therefore costs t times fewer tokens per video, and cannot see the order of frames: a clip and its
    time reverse give it the same inputs, so order can only reach it through the encoder (e.g. STA). Images
    are never pooled. The tower, STA and pixel inputs are unchanged (video_grid_thw stays the real grid); only
    the number of video pad tokens changes — VideoChatProcessor.for_model reads it from the model.

    The mode is recorded in the model config under "temporal_pooling", so save_pretrained keeps it and
    stave.load_model restores it (stock from_pretrained keeps the entry but not the pooling: use load_model).
    Independent of STA. Mechanism: instance-level wrappers of the base model's get_video_features and
    get_rope_index (see the comment above `_POOLED_METHODS`), re-installed by load_model.

    Args:
        model: a Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration or their base models,
            also inside peft / DDP wrappers (not a bare vision tower: pooling acts between tower and LLM).
        mode: "mean" or None.

    Returns:
        The same model.
    """
    if mode is not None and mode not in TEMPORAL_POOLING_MODES:
        raise ValueError(f"temporal pooling must be None or one of {list(TEMPORAL_POOLING_MODES)}, got {mode!r}")
    from .positions import is_scheme_wrapper, restore_rope_index

    base = _language_side(model)
    instance = vars(base)
    for name in _POOLED_METHODS:
        if name in instance and not (_is_pooling_wrapper(instance[name]) or is_scheme_wrapper(instance[name])):
            raise RuntimeError(
                f"{type(base).__name__}.{name} is replaced on the instance ({instance[name]!r}); stave cannot "
                "pool video tokens behind it. Set temporal pooling before wrapping the model."
            )
    if mode is None:
        for name in _POOLED_METHODS:
            instance.pop(name, None)
        if hasattr(base.config, POOLING_KEY):
            delattr(base.config, POOLING_KEY)
        restore_rope_index(base)  # a position scheme (stave.positions) keeps its get_rope_index
        return model
    if "video_grid_thw" not in inspect.signature(type(base).get_rope_index).parameters:
        raise RuntimeError(
            f"transformers {transformers.__version__}: {type(base).__name__}.get_rope_index takes no video_grid_thw; "
            "stave's temporal pooling supports transformers 4.57 and 5.x"
        )
    # functools.partial rather than a bound method: survives deepcopy (bound to the copy) and pickling
    base.get_video_features = functools.partial(_pooled_video_features, base)
    base.get_rope_index = functools.partial(_pooled_rope_index, base)
    setattr(base.config, POOLING_KEY, mode)
    return model


def temporal_pooling(model: nn.Module) -> str | None:
    """The temporal pooling mode of a model ("mean"), or None if it does not pool.

    Raises RuntimeError for a model whose config records pooling that is not installed (loaded with stock
    from_pretrained): its video pads would not match its video tokens.
    """
    base = _language_side(model)
    mode = getattr(base.config, POOLING_KEY, None)
    if mode is not None and not all(_is_pooling_wrapper(vars(base).get(name)) for name in _POOLED_METHODS):
        raise RuntimeError(
            f"the model config records {POOLING_KEY}={mode!r} but the model does not pool (loaded with "
            f"from_pretrained?): load it with stave.load_model, or call stave.set_temporal_pooling(model, {mode!r})"
        )
    return mode


def mean_over_time(tokens: Sequence[torch.Tensor], grid_thw: torch.Tensor, merge_size: int) -> tuple[torch.Tensor, ...]:
    """Per video, the mean of its merged tokens over its temporal patches.

    Args:
        tokens: per video, (t*h*w/merge_size², D) merged tokens, t-major (as the tower outputs them).
        grid_thw: (num_videos, 3) the videos' real grids.

    Returns:
        per video, (h*w/merge_size², D).
    """
    pooled = []
    for item, (t, h, w) in zip(tokens, grid_thw.tolist(), strict=True):
        pooled.append(item.reshape(t, h * w // merge_size**2, item.shape[-1]).mean(0))
    return tuple(pooled)


def _pooled_grid(grid_thw: torch.Tensor) -> torch.Tensor:
    """The grid the LLM sees for pooled videos: (1, h, w) per video."""
    pooled = grid_thw.clone()
    pooled[:, 0] = 1
    return pooled


def _pooled_video_features(base: nn.Module, pixel_values_videos: torch.Tensor, video_grid_thw=None, **kwargs):
    """get_video_features with each video's tokens (and Qwen3-VL's deepstack features, which the LLM adds onto
    the same video positions) averaged over its temporal patches."""
    features = type(base).get_video_features
    if getattr(base.config, POOLING_KEY, None) is None:
        return features(base, pixel_values_videos, video_grid_thw, **kwargs)
    merge = base.config.vision_config.spatial_merge_size
    sizes = (video_grid_thw.prod(-1) // merge**2).tolist()

    def pool(per_video: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        if isinstance(per_video, torch.Tensor):  # one level of 4.57's deepstack: all videos concatenated
            per_video = per_video.split(sizes)
        return mean_over_time(per_video, video_grid_thw, merge)

    if _TRANSFORMERS_MAJOR < 5:
        out = features(base, pixel_values_videos, video_grid_thw, **kwargs)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):  # Qwen3-VL: (tokens, deepstack)
            return pool(out[0]), [torch.cat(pool(level)) for level in out[1]]
        return pool(out)  # a tuple of per-video tensors
    # 5.x: an output object whose pooler_output holds the per-video tokens (as a tuple if return_dict=False)
    return_dict = kwargs.pop("return_dict", None)
    out = features(base, pixel_values_videos, video_grid_thw, return_dict=True, **kwargs)
    out.pooler_output = pool(out.pooler_output)
    if getattr(out, "deepstack_features", None) is not None:
        out.deepstack_features = [pool(level) for level in out.deepstack_features]
    return_dict = base.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


def _pooled_rope_index(base: nn.Module, *args: Any, **kwargs: Any):
    from .positions import scheme_rope_index

    bound = inspect.signature(type(base).get_rope_index).bind(base, *args, **kwargs)
    grid = bound.arguments.get("video_grid_thw")
    if grid is not None and getattr(base.config, POOLING_KEY, None) is not None:
        bound.arguments["video_grid_thw"] = _pooled_grid(grid)
    return scheme_rope_index(base)(*bound.args, **bound.kwargs)  # the stock M-RoPE, or the model's position scheme


def _is_pooling_wrapper(value: Any) -> bool:
    return isinstance(value, functools.partial) and value.func in (_pooled_video_features, _pooled_rope_index)


def _language_side(model: nn.Module) -> nn.Module:
    """The base model (Qwen2VLModel / Qwen2_5_VLModel) of a supported model: the module that turns pixels and
    token ids into LLM inputs (it owns get_video_features and get_rope_index)."""
    family, _ = find_vision_tower(model)
    for module in model.modules():
        if isinstance(module, family.model_classes) and hasattr(type(module), "get_rope_index"):
            return module
    raise TypeError(
        f"{type(model).__name__}: temporal pooling acts between the vision tower and the LLM; pass the full model "
        f"({', '.join(c.__name__ for c in family.model_classes)}), not the bare tower"
    )
