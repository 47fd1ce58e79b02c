"""One adapter per supported model family, the one place that knows a family: where the vision tower and its
blocks are, how wide they are, which norm the added `norm3` copies, where each item's frames sit in the tokens the
blocks see and in which order the blocks see a frame's patches, how a video or an image becomes pixels and
placeholder tokens in the prompt (`MediaFormat`), which linears LoRA adapts, and the smallest tower input that
makes every tower parameter take part in a step. Processing, training, evaluation, pooling and `stave explain` ask
the adapter; everything else about STA is family-independent (stave.temporal)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import pooling_runs
from ..errors import StaveError
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


def raster_order(tower: nn.Module, h: int, w: int) -> torch.Tensor:
    """The token order of a tower whose blocks see a frame's patches in the order of its input rows: (h*w,)."""
    return torch.arange(h * w)


def spatial_heads(vision_config: Any) -> int:
    """The heads of a vision config's blocks: `num_heads` (Qwen) or `num_attention_heads` (SigLIP, InternViT, ...)."""
    heads = getattr(vision_config, "num_heads", None)
    return heads if heads is not None else vision_config.num_attention_heads


class UnsupportedMedia(StaveError, ValueError):
    """A kind of media a family's processing does not take (LLaVA-OneVision: images); the processor names the
    sample (stave.conversations.ConversationError), so training skips it under on_error=skip."""


class MediaFormat:
    """How a family's processor turns media into model inputs and prompt text, and how its tower is called.

    Subclasses (dataclasses) set these attributes and implement the methods:
        video_token, image_token: the placeholder tokens the chat template writes for a video / an image and the
            model's config names as its video / image token (the processor replaces each with the media's text).
        wrap: (before, after) tokens the chat template writes around a placeholder ("", "" for none); a media text
            that starts and ends with them replaces them too.
        token_types: the forward takes `mm_token_type_ids` (0 text, 1 image token, 2 video token).
        batch_keys: the tensors of encoded samples that batch by concatenation along dim 0, in order.
        words: words its prompt texts are made of (timestamps), for the word-level tokenizers of tiny models.
        config_tokens: (model config key, token) of each token id the model's config holds (tiny models built
            for a tokenizer take the ids from it, stave.presets).
        special_tokens: further tokens its prompt texts hold that a tokenizer must keep whole (InternVL's <img>,
            </img>; the word-level tokenizers of tiny models add them).
        source_size_images: `image` gets each image at its source size and resizes (and tiles) it itself, as
            LLaVA-OneVision's anyres and InternVL's dynamic tiles; False: images are smart_resized within the
            processor's (or the item's) pixel bounds first (the Qwen families).
        padded_keys: batch keys whose items may differ in dim 1 (LLaVA-OneVision's tiles per image): zero-padded to
            the batch's largest there before concatenation, as transformers' processors pad a batch.
    """

    video_token: str
    image_token: str
    wrap: tuple[str, str]
    token_types: bool
    batch_keys: tuple[str, ...]
    words: tuple[str, ...] = ()
    config_tokens: tuple[tuple[str, str], ...] = ()
    special_tokens: tuple[str, ...] = ()
    source_size_images: bool = False
    padded_keys: tuple[str, ...] = ()

    def model_spec(self, config: Any) -> Any:
        """The spec of a full model's config (its patch_spec by default; a family whose processor needs more than the
        vision config, e.g. LLaVA-OneVision's anyres resolutions, reads it here)."""
        return self.patch_spec(config.vision_config)

    def placeholder_text(self, kind: str) -> str:
        """What a chat template writes for one item of `kind` ("image" or "video")."""
        return self.wrap[0] + (self.video_token if kind == "video" else self.image_token) + self.wrap[1]

    def patch_spec(self, vision_config: Any) -> Any:
        """The stave.video.PatchSpec (frame size factor, patch geometry, normalisation) of a vision config."""
        raise NotImplementedError

    def video(self, clip: Any, spec: Any, window: int | None) -> tuple[dict[str, torch.Tensor], str]:
        """One decoded video (stave.video.VideoClip) -> its tensors and the text standing for it in the prompt,
        for a model that averages each run of `window` consecutive temporal steps of a video into one before the
        LLM (temporal pooling, stave.config.pooling_window: 1 not pooled, None one run of all): the text stands
        for ceil(steps / window) temporal steps."""
        raise NotImplementedError

    def image(self, frames: torch.Tensor, spec: Any, sample_images: int = 1) -> tuple[dict[str, torch.Tensor], str]:
        """One image (1, 3, H, W) uint8 -> its tensors and the text standing for it in the prompt; `sample_images`:
        how many images its sample holds (LLaVA-OneVision tiles an image only where it is its sample's only one)."""
        raise NotImplementedError

    def frame_options(self, options: Any, spec: Any) -> Any:
        """The VideoOptions a video is read with, from the run's (and the item's) options: unchanged by default;
        a family whose tower takes fixed-size frames sets frame_size."""
        return options

    def frame_size(self, spec: Any) -> tuple[int, int] | None:
        """(height, width) in pixels of every frame the tower takes, for a family whose tower takes frames of one
        size (the frame-per-image towers: their image size); None (default) where frames keep their own size
        within pixel bounds (Qwen)."""
        return None

    def sample_tensors(
        self, clips: Sequence[Any], spec: Any, images: int = 0, window: int | None = 1
    ) -> dict[str, torch.Tensor]:
        """Tensors a sample carries besides the per-item ones, from all its videos, its number of images and the
        model's temporal pooling window (temporal patches per LLM step: 1 unpooled, None for `mean`); none by
        default."""
        return {}

    def minimal_tower_input(self, tower: nn.Module) -> tuple[tuple, dict[str, Any]]:
        """(args, kwargs) of the smallest tower call in which every tower parameter takes part (a blank image)."""
        raise NotImplementedError

    def blank_outputs(self, model: nn.Module, tower: nn.Module) -> list[torch.Tensor]:
        """Everything the LLM gets from the smallest blank input (minimal_tower_input), so that every parameter
        between pixels and LLM takes part in a step: by default the tower's outputs (vision_outputs); a family whose
        projector sits outside the tower (InternVL) runs that too."""
        args, kwargs = self.minimal_tower_input(tower)
        return vision_outputs(tower(*args, **kwargs))

    def video_grids(self, encoded: dict[str, Any], spec: Any) -> list[tuple[int, int, int]]:
        """(t, h, w) of each video of an encoded sample as the tower sees it: temporal steps, patch rows and
        columns of one step."""
        raise NotImplementedError

    def run_first_video(self, tower: nn.Module, encoded: dict[str, Any]) -> tuple[int, int, int]:
        """Run the tower on the first video of an encoded sample as the model does (stave explain captures what
        its STA layers see); returns (t, h, w): the temporal steps STA attends over and the patch rows and columns
        of one step."""
        raise NotImplementedError

    def frame_positions(self, h: int, w: int, spec: Any) -> torch.Tensor:
        """(h*w,) long: the image position (row * w + column) of each tower input row of one temporal step."""
        return torch.arange(h * w)

    def example_grids(self, vision_config: Any) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(video grids, image grids) of a small mixed batch for random_inputs (`stave forward`): Qwen's packed
        grids of different sizes by default."""
        return [(4, 4, 4), (2, 6, 4)], [(1, 4, 4)]

    def random_inputs(
        self, model: nn.Module, videos: Sequence[tuple[int, int, int]], images: Sequence[tuple[int, int, int]],
        *, seed: int, text_tokens: int, window: int | None,
    ) -> dict[str, torch.Tensor]:
        """Inputs of random pixels for a full model: one sequence holding every image, then every video, then
        `text_tokens` random text tokens (stave.testing.model_inputs; grids (t, h, w) in the family's units;
        `window`: the model's temporal pooling window, as in `video`)."""
        raise NotImplementedError

    def tower_items(self, tower: nn.Module, inputs: dict[str, Any]) -> list[tuple[bool, torch.Tensor]]:
        """Run the tower on the pixels of model inputs (random_inputs, a processor's batch) as the model does, and
        split what it hands on by item: per image and video, in the order of the inputs' pixel tensors (for
        random_inputs: every image, then every video), (is_video, outputs (steps, tokens, D)): a video's temporal
        steps, or an image's rows (tiles), each with its tokens (stave.testing.tower_items)."""
        raise NotImplementedError


@dataclass(frozen=True)
class VisionFamily:
    """What stave needs to know about one model family.

    Attributes:
        name: human-readable family name.
        tower_class: the vision tower class (holds `blocks`, receives `(pixels, grid_thw)`).
        model_classes: the full and the base model class (in this order) that contain such a tower.
        block_class: the stock vision block class.
        temporal_block_class: `block_class` with stave.temporal.TemporalBlockMixin mixed in.
        llm_layer_class: the LLM's decoder layer class; None for a family without an LLM (video classifiers).
        width: token width D of the tower, from its config.
        make_norm: a new, identity-initialised norm of the block's norm1 type, for width D.
        vision_linears: names (within a block) of the attention and MLP linears that LoRA adapts.
        token_order: (tower, h, w) -> (h*w,) long: for one temporal patch of h x w patches, the index into the
            tower's input rows (the processor's patch order, stave.video.packing) of each row its blocks see;
            the same for every temporal patch of a video. Default: the input order (raster_order).
        model_type: config.model_type of the family's full model.
        media: how its processor turns videos and images into tensors and prompt text (MediaFormat); None for
            a video classifier, which has no prompt (stave.classification reads its clips).
        vision_blocks: regular expression of the module path of a vision block (LoRA's vision linears are named
            within it); llm_layers: likewise for an LLM decoder layer.
        vision_qkv: names (within a block) of the attention input linears that LoRA gives its own rank.
        llm_linears: names (within an LLM decoder layer) of the linears LoRA adapts.
        pooled_methods: (name, function) per base-model method that temporal pooling replaces on the instance
            with functools.partial(function, base) (stave.modeling.set_temporal_pooling); () where the family
            has no temporal pooling. check_pooling: base model -> None, a RuntimeError where it cannot pool.
        positions: how its LLM positions are replaced (stave.set_position_scheme); None: the family has only
            its stock positions.
        temporal_items: (tower, args, kwargs of the tower's forward) -> the items (t, n, temporal) of the
            tokens its blocks see (stave.temporal.layout.TemporalLayout.from_items); items with t == 1 are
            further left alone under TemporalConfig.images == "skip". Default: the packed grid_thw rows.
        row_prefix: for towers whose blocks see (R, S, D) rows: tokens at the start of every row that STA leaves
            alone (a CLS token: 1).
        blocks: tower -> the ModuleList of its blocks (STA goes into these).
        spatial_heads: vision config -> the number of heads of the blocks' spatial attention (default: its
            num_heads, else num_attention_heads).
        feature_blocks: model -> how many leading blocks produce what the LLM gets (LLaVA-OneVision: those up to
            vision_feature_layer), None for all; STA goes only into those (later blocks' outputs are unused).
        video_options: how its videos are sampled and resized where the user gives no options (what its
            published processors do by default; VideoChatProcessor.for_model): qwen-vl-utils' rules for Qwen2-VL
            and Qwen2.5-VL, transformers' Qwen3VLVideoProcessor's as the checkpoints configure it for Qwen3-VL and
            Qwen3.5 (stave.models.qwen3_vl.VIDEO_OPTIONS).
        prepare_model: None, or model -> None: called by add_temporal_attention, set_temporal_pooling, load_model
            and the tiny presets, for a family whose model must carry more to its tower or blocks than its stock
            forward does; it switches module classes in place, and the switched model computes what the stock one
            does (InternVL: which rows are frames of which video; LLaVA-OneVision: each video's frame count;
            VideoMAE: an encoder that hands `temporal_layout` on to its blocks).
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
    model_type: str
    token_order: Callable[[nn.Module, int, int], torch.Tensor] = raster_order
    media: MediaFormat | None = None
    vision_blocks: str = r"visual\.blocks\.\d+"
    llm_layers: str = r"language_model\.layers\.\d+"
    vision_qkv: tuple[str, ...] = ("attn.qkv",)
    llm_linears: tuple[str, ...] = (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    )  # fmt: skip
    pooled_methods: tuple[tuple[str, Callable[..., Any]], ...] = ()
    check_pooling: Callable[[nn.Module], None] | None = None
    positions: PositionAdapter | None = None
    temporal_items: Callable[[nn.Module, tuple, dict], list[tuple[int, int, bool]]] = packed_grid_items
    row_prefix: int = 0
    blocks: Callable[[nn.Module], nn.ModuleList] = lambda tower: tower.blocks
    spatial_heads: Callable[[Any], int] = spatial_heads
    feature_blocks: Callable[[nn.Module], int | None] | None = None
    video_options: VideoOptions = VideoOptions()
    prepare_model: Callable[[nn.Module], None] | None = None

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
    from .internvl import INTERNVL
    from .llava_next_video import LLAVA_NEXT_VIDEO
    from .llava_onevision import LLAVA_ONEVISION
    from .qwen2_5_vl import QWEN2_5_VL
    from .qwen2_vl import QWEN2_VL
    from .qwen3_vl import FAMILIES as QWEN3_FAMILIES
    from .videomae import VIDEOMAE

    return (QWEN2_VL, QWEN2_5_VL, *QWEN3_FAMILIES, LLAVA_ONEVISION, LLAVA_NEXT_VIDEO, VIDEOMAE, INTERNVIDEO2, INTERNVL)


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
    5.x (an output object with pooler_output and, for Qwen3-VL, deepstack_features); a tower without a pooled
    output (SigLIP in LLaVA-OneVision, InternViT) hands on its last hidden state, and get_*_features' per-item
    lists are flattened."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and not hasattr(out, "pooler_output"):
        return [t for item in out for t in vision_outputs(item)]
    if out.pooler_output is None:
        return [out.last_hidden_state]
    if isinstance(out.pooler_output, (tuple, list)):
        return [*vision_outputs(out.pooler_output), *(getattr(out, "deepstack_features", None) or [])]
    tensors = [out.pooler_output]
    tensors += list(getattr(out, "deepstack_features", None) or [])
    return tensors


def window_means(tokens: torch.Tensor, window: int | None, dim: int = 0) -> torch.Tensor:
    """Temporal pooling of one video's tokens: the means of runs of `window` consecutive entries along `dim`
    (the temporal steps; the last run may be shorter; window None: one run of all, stave.config.pooling_runs).
    Shape: that of `tokens` with dim of size ceil(steps / window)."""
    runs = pooling_runs(tokens.shape[dim], window)
    return torch.cat([run.mean(dim, keepdim=True) for run in tokens.split(runs, dim)], dim)


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
