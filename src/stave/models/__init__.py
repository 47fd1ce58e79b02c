"""One small adapter per supported model family: where the vision tower and its blocks are, how wide they
are, which norm the added `norm3` copies, where each item's frames sit in the tokens the blocks see, and in which
order the blocks see a frame's patches. Everything else about STA is family-independent (stave.temporal)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..temporal.layout import grid_items
from ..video.options import VideoOptions


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
class VideoPrompt:
    """How a family's prompt holds a video (Qwen3-VL, Qwen3.5: one vision block per temporal patch, each after
    its timestamp text).

    Attributes:
        patch_times: (frame_times, temporal_patch_size) -> the time (seconds) of each temporal patch, from the
            source times of the sampled frames.
        blocks: (timestamps, pads_per_patch) -> one (text, pads) entry per vision block, in order: the text
            written before the block and the number of video pads in it. `timestamps` has one value (seconds) per
            temporal patch the LLM sees.
        outer_vision_tokens: whether the template's own <|vision_start|> ... <|vision_end|> around the video pad
            stay around the blocks (transformers 5.x replaces only the pad) or are replaced with it (4.57).
        words: the words its block texts are made of, for word-level tokenizers of tiny models (stave.presets).
    """

    patch_times: Callable[[Sequence[float], int], list[float]]
    blocks: Callable[[Sequence[float], int], list[tuple[str, int]]]
    outer_vision_tokens: bool
    words: tuple[str, ...] = ()


def packed_grid_items(tower: nn.Module, args: tuple, kwargs: dict) -> list[tuple[int, int, bool]]:
    """The items of a Qwen2-VL-family tower call `tower(pixels, grid_thw)`: one per grid_thw row (t, h*w), in
    the packed order, every one may be temporal (single-frame items are left to TemporalConfig.images)."""
    pixels = args[0] if args else kwargs.get("hidden_states")
    grid_thw = args[1] if len(args) > 1 else kwargs.get("grid_thw")
    if pixels is None or grid_thw is None:
        raise ValueError("a vision tower with temporal attention needs both its pixel input and grid_thw")
    return grid_items(grid_thw, pixels.shape[0])


@dataclass(frozen=True)
class VisionFamily:
    """What stave needs to know about one model family.

    Attributes:
        name: human-readable family name.
        tower_class: the vision tower class (holds `blocks`, receives `(pixels, grid_thw)`).
        model_classes: the full and base model classes that contain such a tower.
        block_class: the stock vision block class.
        temporal_block_class: `block_class` with stave.temporal.TemporalBlockMixin mixed in.
        llm_layer_class: the LLM's decoder layer class; None for a family without an LLM (video classifiers).
        width: token width D of the tower, from its config.
        make_norm: a new, identity-initialised norm of the block's norm1 type, for width D.
        vision_linears: names (within a block) of the attention and MLP linears that LoRA adapts.
        token_order: (tower, h, w) -> (h*w,) long: for one temporal patch of h x w patches, the index into the
            tower's input rows (the processor's patch order, stave.video.packing) of each row its blocks see;
            the same for every temporal patch of a video.
        model_type: config.model_type of the family's full model.
        seconds_per_grid: the forward takes `second_per_grid_ts` (Qwen2.5-VL: temporal rotary positions follow
            seconds of source time).
        video_prompt: None: a video is one vision block of t*h*w/merge^2 pads (Qwen2-VL, Qwen2.5-VL); else how
            its prompt is laid out (VideoPrompt), and the LLM places each vision block as a grid (1, h, w).
        llm_linears: names (within an LLM decoder layer) of the linears LoRA adapts.
        pixel_mean, pixel_std: per-channel normalisation of the family's processors (published
            preprocessor_config.json): CLIP's for Qwen2-VL / Qwen2.5-VL, 0.5 for Qwen3-VL / Qwen3.5.
        positions: how its LLM positions are replaced (stave.set_position_scheme); None: the family has only
            its stock positions.
        temporal_items: (tower, args, kwargs of the tower's forward) -> the items (t, n, temporal) of the
            tokens its blocks see (stave.temporal.layout.TemporalLayout.from_items); items with t == 1 are
            further left alone under TemporalConfig.images == "skip". Default: the packed grid_thw rows.
        row_prefix: for towers whose blocks see (R, S, D) rows: tokens at the start of every row that STA leaves
            alone (a CLS token: 1).
        blocks: tower -> the ModuleList of its blocks (STA goes into these).
        spatial_heads: vision config -> the number of heads of the blocks' spatial attention.
        temporal_tower_class: for a tower whose forward does not hand `temporal_layout` on to its blocks (VideoMAE's
            encoder): a subclass of tower_class that does, switched in by add_temporal_attention; None: the tower's
            own forward passes its keyword arguments on.
        video_options: how its videos are sampled and resized where the user gives no options (what its
            published processors do by default; VideoChatProcessor.for_model): qwen-vl-utils' rules for Qwen2-VL
            and Qwen2.5-VL, transformers' Qwen3VLVideoProcessor's as the checkpoints configure it for Qwen3-VL and
            Qwen3.5 (stave.models.qwen3_vl.VIDEO_OPTIONS).
    """

    name: str
    tower_class: type[nn.Module]
    model_classes: tuple[type[nn.Module], ...]
    block_class: type[nn.Module]
    temporal_block_class: type[nn.Module]
    llm_layer_class: type[nn.Module] | None
    width: Callable[[object], int]
    make_norm: Callable[[nn.Module, int], nn.Module]
    vision_linears: tuple[str, ...]
    token_order: Callable[[nn.Module, int, int], torch.Tensor]
    model_type: str
    seconds_per_grid: bool = False
    video_prompt: VideoPrompt | None = None
    llm_linears: tuple[str, ...] = (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    )  # fmt: skip
    pixel_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    pixel_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    positions: PositionAdapter | None = None
    temporal_items: Callable[[nn.Module, tuple, dict], list[tuple[int, int, bool]]] = packed_grid_items
    row_prefix: int = 0
    blocks: Callable[[nn.Module], nn.ModuleList] = lambda tower: tower.blocks
    spatial_heads: Callable[[Any], int] = lambda config: config.num_heads
    temporal_tower_class: type[nn.Module] | None = None
    video_options: VideoOptions = VideoOptions()

    @property
    def class_names(self) -> list[str]:
        return list(dict.fromkeys(c.__name__ for c in (*self.model_classes, self.tower_class)))


def shard_units(model: nn.Module) -> list[str]:
    """The names of the classes FSDP shards `model` by (one unit per module of these classes): its family's
    vision blocks (STA blocks included) and LLM decoder layers, as far as `model` holds them, in a fixed order.
    Works through peft and DDP/FSDP wrappers (find_vision_tower)."""
    family, _ = find_vision_tower(model)
    units = tuple(c for c in (family.block_class, family.llm_layer_class) if c is not None)
    present = {type(m) for m in model.modules() if isinstance(m, units)}
    return sorted(c.__name__ for c in present)


def families() -> tuple[VisionFamily, ...]:
    from .internvideo2 import INTERNVIDEO2
    from .qwen2_5_vl import QWEN2_5_VL
    from .qwen2_vl import QWEN2_VL
    from .qwen3_vl import FAMILIES as QWEN3_FAMILIES
    from .videomae import VIDEOMAE

    return (QWEN2_VL, QWEN2_5_VL, *QWEN3_FAMILIES, VIDEOMAE, INTERNVIDEO2)


def missing_family(model_type: str) -> str | None:
    """Why the installed transformers lacks the family of `model_type` (the version it needs), or None."""
    from .qwen3_vl import NEEDS_NEWER

    if model_type not in NEEDS_NEWER:
        return None
    import transformers

    installed = transformers.__version__
    return f"model_type {model_type!r} needs transformers >= {NEEDS_NEWER[model_type]} (installed: {installed})"


def family_for_model_type(model_type: str) -> VisionFamily:
    """The family whose full model has config.model_type `model_type`; a ValueError naming the transformers
    version a family needs when the installed one lacks it, or the supported model types."""
    for family in families():
        if family.model_type == model_type:
            return family
    if missing_family(model_type):
        raise ValueError(missing_family(model_type))
    raise ValueError(f"model_type must be one of {[f.model_type for f in families()]}, got {model_type!r}")


def vision_outputs(out: object) -> list[torch.Tensor]:
    """Every tensor a vision tower's forward hands on to the LLM: the merged tokens, and Qwen3-VL's deepstack
    features. Accepts what towers return on transformers 4.57 (a tensor; Qwen3-VL: (tokens, [deepstack])) and
    5.x (an output object with pooler_output and, for Qwen3-VL, deepstack_features)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and not hasattr(out, "pooler_output"):
        return [t for item in out for t in vision_outputs(item)]
    tensors = [out.pooler_output]
    tensors += list(getattr(out, "deepstack_features", None) or [])
    return tensors


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
