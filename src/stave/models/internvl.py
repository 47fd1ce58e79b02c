"""Where STA goes in InternVL (transformers' InternVLForConditionalGeneration, InternVLModel; the tower is an
InternViT, InternVLVisionModel): the architecture of InternVL2.5 / InternVL3 and of InternVideo2.5-Chat.

Confirmed in transformers 4.57 and 5.24: images and videos both reach the model as `pixel_values` (R, 3, S, S),
S = 448 in the published checkpoints: an image's tiles and a video's frames, concatenated in prompt order, each
row one InternViT image of 1 + (S/p)^2 tokens (a CLS token first). A block (InternVLVisionLayer) is
    x = x + lambda_1 * attention(layernorm_before(x));   x = x + lambda_2 * mlp(layernorm_after(x))
(LayerScale; LayerNorm or RMSNorm by `norm_type`; optional qk-norm inside the attention). The hidden states of
`vision_feature_layer` (published: -1, the last layer) lose their CLS token, are pixel-shuffled by
`downsample_ratio` 0.5 to (S/2p)^2 tokens per row and projected; each row's tokens replace its `<img>` +
`<IMG_CONTEXT>` * (S/2p)^2 + `</img>` run in the prompt ("Frame{i}: " before each frame of a video).

transformers' processor keeps no record of which rows are frames of which video, so stave's processor
(InternVLMedia) adds one: `pixel_items` (num_items, 2) long, per item in prompt order (rows of pixel_values it
holds, 1 for a video / 0 for an image). A model with STA needs it and raises MissingPixelItems without it: it
never guesses groups. It reaches the tower through classes that prepare_model switches in (the model's and the
tower's forward take `pixel_items`, the base model's through get_image_features, the tower's in its forward
pre-hook, read once per tower call); the layout reaches the blocks as their `temporal_layout` keyword through the
encoder, which the stock encoder does not pass on. STA: spatial_first puts it after the attention residual
(after LayerScale lambda_1), before the MLP; over the frames of each video per spatial position, CLS left alone
(row_prefix 1); each image tile is a single-frame item (TemporalConfig.images decides). Only the blocks whose
output reaches the selected feature layer get STA: later blocks change nothing the LLM sees.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import transformers
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.internvl import modeling_internvl as internvl
from transformers.models.qwen2 import modeling_qwen2 as qwen2

from ..config import POOLING_KEY, pooling_runs, pooling_window
from ..errors import StaveError
from ..temporal.block import TemporalBlockMixin
from ..temporal.layout import TemporalLayout
from ..video import resize_frames
from ..video.options import VideoOptions
from . import MediaFormat, VisionFamily, window_means
from .frame_towers import FrameSpec, feature_blocks, normalise, split_tiles

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
if TRANSFORMERS_MAJOR >= 5:  # the PIL backend's module (the torchvision one needs torchvision)
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
else:
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
IMAGE_CONTEXT, IMAGE_START, IMAGE_END, VIDEO = "<IMG_CONTEXT>", "<img>", "</img>", "<video>"
# ImageNet's mean and std: InternVL's own preprocessing (build_transform's IMAGENET_MEAN / IMAGENET_STD in its model
# cards), which the -hf checkpoints' preprocessor configs carry over (not re-checked here: no hub access);
# transformers' GotOcr2ImageProcessor and InternVLVideoProcessor default to CLIP's
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: downsample_ratio of every published InternVL2.5 / InternVL3 checkpoint; stave's processor assumes it
PIXEL_SHUFFLE = 0.5
#: dynamic tiles of an image: the published -hf checkpoints' image processor (OpenGVLab/InternVL3-8B-hf
#: preprocessor_config.json: GotOcr2ImageProcessor(Fast), crop_to_patches true, min_patches 1, max_patches 12, 448 px)
MIN_TILES, MAX_TILES = 1, 12
#: how videos are sampled where the user gives no options: transformers' InternVLVideoProcessor samples none by default
#: (do_sample_frames False: every frame it is given), so qwen-vl-utils' rule (2 fps, at least 4 frames) capped at 32
#: frames, 8192 LLM tokens at 256 per frame; frames are resized to the tower's size (frame_options)
VIDEO_OPTIONS = VideoOptions(fps=2.0, min_frames=4, max_frames=32)
#: frames a prompt may name ("Frame1: " ... ), for the word-level tokenizers of tiny models
MAX_FRAME_WORDS = 128

_PIXEL_ITEMS: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("stave_pixel_items", default=None)
_LAYOUT: contextvars.ContextVar[TemporalLayout | None] = contextvars.ContextVar("stave_internvl_layout", default=None)


class MissingPixelItems(StaveError, ValueError):
    """An InternVL model with STA (or pooling) got pixel_values without `pixel_items`."""


def pixel_item_list(pixel_items: Any, rows: int) -> list[tuple[int, bool]]:
    """`pixel_items` (num_items, 2) -> [(rows, is_video)] per item, checked against the `rows` of pixel_values."""
    if pixel_items is None:
        raise MissingPixelItems(
            "InternVL with temporal attention (or temporal pooling) needs `pixel_items` next to pixel_values: per "
            "image or video in prompt order, (rows of pixel_values, 1 for a video / 0 for an image), so that the "
            "frames of each video are known; transformers' InternVLProcessor does not record them and stave never "
            "guesses. Build inputs with stave.VideoChatProcessor, or pass pixel_items=torch.tensor([[rows, is_video], "
            "...]) to the model's forward / generate (or to the vision tower)"
        )
    table = torch.as_tensor(pixel_items)
    if table.dim() != 2 or table.shape[-1] != 2 or table.is_floating_point():
        raise ValueError(f"pixel_items must be integers (num_items, 2), got {tuple(table.shape)} {table.dtype}")
    items = [(int(n), bool(video)) for n, video in table.tolist()]
    if any(n < 1 for n, _ in items) or any(video not in (0, 1) for _, video in table.tolist()):
        raise ValueError(f"pixel_items rows must be (rows >= 1, 0 or 1), got {table.tolist()}")
    if sum(n for n, _ in items) != rows:
        raise ValueError(
            f"pixel_items describes {sum(n for n, _ in items)} rows of pixel_values ({len(items)} items) but "
            f"pixel_values has {rows}"
        )
    return items


@contextlib.contextmanager
def _items(pixel_items: Any) -> Iterator[None]:
    """Within, tower calls read `pixel_items` (None: those of an enclosing call, e.g. the full model's)."""
    token = _PIXEL_ITEMS.set(pixel_items if pixel_items is not None else _PIXEL_ITEMS.get())
    try:
        yield
    finally:
        _PIXEL_ITEMS.reset(token)


def temporal_items(tower: nn.Module, args: tuple, kwargs: dict) -> list[tuple[int, int, bool]]:
    """The items of one InternViT call: a video of F frames -> (F, n, True); an image of k tiles -> k single-frame
    items (1, n, True) that TemporalConfig.images == "skip" leaves alone; n = patches per row (CLS excluded)."""
    pixels = args[0] if args else kwargs.get("pixel_values")
    if pixels is None or pixels.dim() != 4:
        raise ValueError("an InternVL vision tower with temporal attention needs pixel_values (rows, 3, H, W)")
    pixel_items = kwargs.get("pixel_items")
    items = pixel_item_list(pixel_items if pixel_items is not None else _PIXEL_ITEMS.get(), pixels.shape[0])
    patch = _pair(tower.config.patch_size)
    n = (pixels.shape[-2] // patch[0]) * (pixels.shape[-1] // patch[1])
    out: list[tuple[int, int, bool]] = []
    for rows, video in items:
        out += [(rows, n, True)] if video else [(1, n, True)] * rows
    return out


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class InternVLTemporalLayer(TemporalBlockMixin, internvl.InternVLVisionLayer):
    """InternVLVisionLayer with stacked temporal attention (see stave.temporal.block): spatial_first puts STA after
    the LayerScaled attention residual, before the MLP; temporal_first before the attention."""

    def forward(self, hidden_states: torch.Tensor, temporal_layout: TemporalLayout | None = None) -> torch.Tensor:
        x = hidden_states
        if self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        attention_output, _ = self.attention(self.layernorm_before(x))
        x = x + self.lambda_1 * attention_output
        if not self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        out = self.dropout(self.mlp(self.layernorm_after(x)))
        if self.lambda_2 is not None:
            out = self.lambda_2 * out
        return out + x


class InternVLTemporalEncoder(internvl.InternVLVisionEncoder):
    """InternVLVisionEncoder that hands its tower call's temporal layout to its STA blocks (the stock encoder calls
    its layers with the hidden states only); read once per call, so checkpointed recomputation gets it as an
    argument."""

    def forward(self, hidden_states: torch.Tensor, temporal_layout: TemporalLayout | None = None) -> BaseModelOutput:
        layout = temporal_layout if temporal_layout is not None else _LAYOUT.get()
        for layer in self.layer:
            if isinstance(layer, TemporalBlockMixin):
                hidden_states = layer(hidden_states, temporal_layout=layout)
            else:
                hidden_states = layer(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states)


class InternVLTemporalVisionModel(internvl.InternVLVisionModel):
    """InternVLVisionModel whose forward also takes `pixel_items` (read by the STA pre-hook) and `temporal_layout`
    (handed to the encoder)."""

    def forward(self, pixel_values: torch.Tensor, *args: Any, temporal_layout: TemporalLayout | None = None,
                pixel_items: Any = None, **kwargs: Any):  # fmt: skip
        token = _LAYOUT.set(temporal_layout)
        try:
            return super().forward(pixel_values, *args, **kwargs)
        finally:
            _LAYOUT.reset(token)


class InternVLTemporalModel(internvl.InternVLModel):
    """InternVLModel whose forward and get_image_features take `pixel_items` and hold it for the tower call (and
    for temporal pooling); otherwise the stock model."""

    def forward(self, *args: Any, pixel_items: Any = None, **kwargs: Any):
        with _items(pixel_items):
            return super().forward(*args, **kwargs)

    def get_image_features(self, pixel_values: torch.Tensor, *args: Any, pixel_items: Any = None, **kwargs: Any):
        with _items(pixel_items):
            return super().get_image_features(pixel_values, *args, **kwargs)


class InternVLTemporalForConditionalGeneration(internvl.InternVLForConditionalGeneration):
    """InternVLForConditionalGeneration whose forward takes `pixel_items` (so generate accepts it too) and holds it
    for the tower call; otherwise the stock model."""

    def forward(self, *args: Any, pixel_items: Any = None, **kwargs: Any):
        with _items(pixel_items):
            return super().forward(*args, **kwargs)


_SWITCHES = {
    internvl.InternVLForConditionalGeneration: InternVLTemporalForConditionalGeneration,
    internvl.InternVLModel: InternVLTemporalModel,
    internvl.InternVLVisionModel: InternVLTemporalVisionModel,
    internvl.InternVLVisionEncoder: InternVLTemporalEncoder,
}
for _stock, _switched in _SWITCHES.items():
    # save_pretrained writes the class name into config.json's "architectures": the stock one, so that a checkpoint
    # loads with transformers alone; the forward's signature is the stock one plus pixel_items (generate checks the
    # inputs it is given against it)
    _switched.__name__ = _stock.__name__
    if _switched is InternVLTemporalEncoder:
        continue
    _signature = inspect.signature(_stock.forward)
    _parameters = [p for p in _signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    _parameters.append(inspect.Parameter("pixel_items", inspect.Parameter.KEYWORD_ONLY, default=None))
    _parameters += [p for p in _signature.parameters.values() if p.kind is p.VAR_KEYWORD]
    _switched.forward.__signature__ = _signature.replace(parameters=_parameters)


def prepare_model(model: nn.Module) -> None:
    """Switch the InternVL modules of `model` (full, base model or bare tower) to the classes above, in place, so
    that their forwards (and generate) take `pixel_items`, it reaches the tower and the layout its blocks. Without
    STA or pooling the switched model computes exactly what the stock one does. add_temporal_attention,
    set_temporal_pooling, stave.load_model and the tiny presets call it."""
    for module in model.modules():
        switched = _SWITCHES.get(type(module))
        if switched is not None:
            module.__class__ = switched
        if isinstance(module, internvl.InternVLModel) and float(module.config.downsample_ratio) != PIXEL_SHUFFLE:
            raise ValueError(
                f"stave's InternVL support assumes downsample_ratio {PIXEL_SHUFFLE} (every published InternVL2.5 and "
                f"InternVL3 checkpoint), got {module.config.downsample_ratio}"
            )


def make_norm(block: nn.Module, dim: int) -> nn.Module:
    """A new norm of the type of the block's layernorm_before (LayerNorm or InternVL's RMSNorm), identity at init."""
    norm = block.layernorm_before
    if isinstance(norm, nn.LayerNorm):
        return nn.LayerNorm(dim, eps=norm.eps)
    return type(norm)(dim, eps=norm.variance_epsilon)


# --- temporal pooling ---------------------------------------------------------------------------------------


def pooled_image_features(base: nn.Module, pixel_values: torch.Tensor, *args: Any, pixel_items: Any = None,
                          **kwargs: Any):  # fmt: skip
    """get_image_features with each video's projected tokens averaged over runs of K consecutive frames
    (stave.config.pooling_window; all F for "mean"): a video of F rows becomes ceil(F/K) rows of (S/2p)^2 tokens;
    images (and their tiles) are unchanged. `pixel_items` is named in the signature: transformers 5's generate passes
    get_image_features the inputs its signature names."""
    features = functools.partial(type(base).get_image_features, pixel_items=pixel_items)
    mode = getattr(base.config, POOLING_KEY, None)
    if mode is None:
        return features(base, pixel_values, *args, **kwargs)
    window = pooling_window(mode)
    items = pixel_item_list(pixel_items if pixel_items is not None else _PIXEL_ITEMS.get(), pixel_values.shape[0])

    def pool(tokens: torch.Tensor) -> torch.Tensor:
        parts = tokens.split([rows for rows, _ in items])
        pooled = [window_means(part, window) if video else part for part, (_, video) in zip(parts, items, strict=True)]
        return torch.cat(pooled)

    if TRANSFORMERS_MAJOR < 5:
        return pool(features(base, pixel_values, *args, **kwargs))
    return_dict = kwargs.pop("return_dict", None)
    out = features(base, pixel_values, *args, return_dict=True, **kwargs)
    out.pooler_output = pool(out.pooler_output)
    return_dict = base.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


POOLED_METHODS = (("get_image_features", pooled_image_features),)


# --- media ----------------------------------------------------------------------------------------------------


def tokens_per_frame(spec: FrameSpec) -> int:
    """LLM tokens of one image tile or frame: (image_size / patch_size * PIXEL_SHUFFLE)^2 (256 at 448 / 14)."""
    side = int(spec.image_size // spec.patch_size * PIXEL_SHUFFLE)
    return side * side


def frame_text(tokens: int) -> str:
    """The prompt text of one image tile or frame: <img> <IMG_CONTEXT> x tokens </img>."""
    return IMAGE_START + IMAGE_CONTEXT * tokens + IMAGE_END


def video_text(frames: int, tokens: int) -> str:
    """A video's prompt text as InternVLProcessor writes it: "Frame1: <img>...</img>\\nFrame2: ..."."""
    return "\n".join(f"Frame{i + 1}: {frame_text(tokens)}" for i in range(frames))


@dataclasses.dataclass(frozen=True)
class InternVLMedia(MediaFormat):
    """InternVL's media format, as transformers' InternVLProcessor: each frame of a video and each image is resized to
    the tower's image size (bicubic, antialiased), rescaled, normalised with ImageNet's mean and std, and becomes
    one row of `pixel_values`, in prompt order; a video's `<video>` placeholder becomes "Frame{i}: <img>
    <IMG_CONTEXT> x (S/2p)^2 </img>" per frame, joined by newlines (when the model pools runs of K frames, one such
    block per run: "Frame1:" ... "Frame{ceil(F/K)}:", one "Frame1:" block for "mean"). An
    image, at its source size, becomes k dynamic tiles (image_tiles, as the processor's crop_to_patches with
    min_tiles / max_tiles: the published checkpoints' 1 and 12), k rows of pixel_values, and its `<IMG_CONTEXT>`
    placeholder "<img> <IMG_CONTEXT> x k (S/2p)^2 </img>". `pixel_items` records each item's rows and whether it is
    a video: an image's k tiles are one item of k rows, none of them time."""

    video_token: str = VIDEO
    image_token: str = IMAGE_CONTEXT
    wrap: tuple[str, str] = ("", "")
    token_types: bool = False
    batch_keys: tuple[str, ...] = ("pixel_values", "pixel_items")
    words: tuple[str, ...] = (":", *(f"frame{i}" for i in range(1, MAX_FRAME_WORDS + 1)))
    config_tokens: tuple[tuple[str, str], ...] = (("image_token_id", IMAGE_CONTEXT),)
    special_tokens: tuple[str, ...] = (IMAGE_START, IMAGE_END)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    source_size_images: bool = True
    min_tiles: int = MIN_TILES
    max_tiles: int = MAX_TILES

    def frame_size(self, spec: FrameSpec) -> tuple[int, int]:
        return (spec.image_size, spec.image_size)

    def patch_spec(self, vision_config: Any) -> FrameSpec:
        size, patch = _pair(vision_config.image_size), _pair(vision_config.patch_size)
        if size[0] != size[1] or patch[0] != patch[1]:
            raise ValueError(f"InternVL towers take square images of square patches, got {size} / {patch}")
        return FrameSpec(size[0], patch[0], self.pixel_mean, self.pixel_std)

    def frame_options(self, options: Any, spec: FrameSpec) -> Any:
        return dataclasses.replace(options, frame_size=(spec.image_size, spec.image_size))

    def video(self, clip: Any, spec: FrameSpec, window: int | None) -> tuple[dict[str, torch.Tensor], str]:
        pixels = frame_pixels(clip.frames, spec)
        frames = pixels.shape[0]
        tensors = {"pixel_values": pixels, "pixel_items": torch.tensor([[frames, 1]])}
        return tensors, video_text(len(pooling_runs(frames, window)), tokens_per_frame(spec))

    def image(
        self, frames: torch.Tensor, spec: FrameSpec, sample_images: int = 1
    ) -> tuple[dict[str, torch.Tensor], str]:
        pixels = normalise(image_tiles(frames[0], spec, self.min_tiles, self.max_tiles), spec)
        tiles = pixels.shape[0]
        tensors = {"pixel_values": pixels, "pixel_items": torch.tensor([[tiles, 0]])}
        return tensors, frame_text(tiles * tokens_per_frame(spec))

    def minimal_tower_input(self, tower: nn.Module) -> tuple[tuple, dict[str, Any]]:
        """One blank image of the tower's size: (pixels (1, 3, S, S),), pixel_items=[[1, 0]]."""
        parameter = next(tower.parameters())
        size = _pair(tower.config.image_size)
        pixels = torch.zeros(1, 3, *size, dtype=parameter.dtype, device=parameter.device)
        return (pixels,), {"pixel_items": torch.tensor([[1, 0]])}

    def blank_outputs(self, model: nn.Module, tower: nn.Module) -> list[torch.Tensor]:
        """The blank image through the tower and the projector (multi_modal_projector sits outside the tower)."""
        from . import vision_outputs

        base = next((m for m in model.modules() if isinstance(m, internvl.InternVLModel)), None)
        if base is None:  # a bare tower
            return super().blank_outputs(model, tower)
        (pixels,), kwargs = self.minimal_tower_input(tower)
        return vision_outputs(base.get_image_features(pixels, **kwargs))

    def video_grids(self, encoded: dict[str, Any], spec: FrameSpec) -> list[tuple[int, int, int]]:
        """(frames, P, P) of each video of an encoded sample (P = image_size / patch_size)."""
        side = spec.image_size // spec.patch_size
        return [(rows, side, side) for rows, video in encoded["pixel_items"].tolist() if video]

    def example_grids(self, vision_config: Any) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Videos of 4 and 2 frames and one image, at the tower's size."""
        spec = self.patch_spec(vision_config)
        side = spec.image_size // spec.patch_size
        return [(4, side, side), (2, side, side)], [(1, side, side)]

    def run_first_video(self, tower: nn.Module, encoded: dict[str, Any]) -> tuple[int, int, int]:
        """The tower on the first video's frames, with pixel_items naming them one video; (frames, P, P)."""
        start = 0
        for rows, video in encoded["pixel_items"].tolist():
            if video:
                break
            start += rows
        else:
            raise ValueError("the encoded sample holds no video")
        pixels = encoded["pixel_values"][start : start + rows].to(next(tower.parameters()))
        tower(pixels, pixel_items=torch.tensor([[rows, 1]]))
        side = pixels.shape[-1] // _pair(tower.config.patch_size)[0]
        return rows, side, side

    def tower_items(self, tower: nn.Module, inputs: dict[str, Any]) -> list[tuple[bool, torch.Tensor]]:
        """One tower call on pixel_values with pixel_items; an item's outputs are its rows' last hidden states
        (rows, 1 + P*P, D), the CLS token first."""
        pixels = inputs["pixel_values"].to(next(tower.parameters()))
        hidden = tower(pixels, pixel_items=inputs["pixel_items"]).last_hidden_state
        table = inputs["pixel_items"].tolist()
        parts = hidden.split([rows for rows, _ in table])
        return [(bool(video), part) for part, (_, video) in zip(parts, table, strict=True)]

    def random_inputs(
        self, model: nn.Module, videos: Sequence[tuple[int, int, int]], images: Sequence[tuple[int, int, int]],
        *, seed: int, text_tokens: int, window: int | None,
    ) -> dict[str, torch.Tensor]:
        """Each image as one tile, then each video of t frames, as `<IMG_CONTEXT>` x (P/2)^2 per tile / frame
        (ceil(t/window) frames' worth for a pooled video; P = image_size / patch_size), with pixel_items; no
        <img>/</img> or text between them (the model sees only the context tokens). InternVL frames have one size:
        a grid's h and w are not used (every frame is P x P patches); its t is the frame count (1 for an image)."""
        config = model.config
        spec = self.patch_spec(config.vision_config)
        for grid in images:
            if grid[0] != 1:
                raise ValueError(f"an InternVL image is one tile, got a grid {grid}")
        tokens = tokens_per_frame(spec)
        ids = [config.image_token_id] * (tokens * len(images))
        for t, _, _ in videos:
            ids += [config.image_token_id] * (tokens * len(pooling_runs(t, window)))
        generator = torch.Generator().manual_seed(seed + 1)
        ids += torch.randint(3, 100, (text_tokens,), generator=generator).tolist()
        inputs: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        }
        rows = len(images) + sum(t for t, _, _ in videos)
        if rows:
            generator = torch.Generator().manual_seed(seed)
            size = spec.image_size
            inputs["pixel_values"] = torch.randn(rows, 3, size, size, generator=generator)
            inputs["pixel_items"] = torch.tensor([[1, 0]] * len(images) + [[t, 1] for t, _, _ in videos])
        return inputs


def image_tiles(
    image: torch.Tensor, spec: FrameSpec, min_tiles: int = MIN_TILES, max_tiles: int = MAX_TILES
) -> torch.Tensor:
    """(3, H, W) uint8 -> (k, 3, S, S) uint8 dynamic tiles, as GotOcr2ImageProcessor(Fast) with crop_to_patches: the
    columns x rows grid (min_tiles <= k <= max_tiles) whose aspect ratio is closest to the image's
    (get_optimal_tiled_canvas), the image resized to fill it (bicubic, antialiased) and cut in raster order, then a
    thumbnail (the image resized to S x S) where the grid has more than one tile; one tile: the image resized."""
    size = spec.image_size
    height, width = image.shape[-2:]
    columns, rows = get_optimal_tiled_canvas((height, width), (size, size), min_tiles, max_tiles)
    thumbnail = resize_frames(image[None], size, size)
    if columns * rows == 1:
        return thumbnail
    return torch.cat([split_tiles(resize_frames(image[None], rows * size, columns * size)[0], size), thumbnail])


def frame_pixels(frames: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
    """(T, 3, S, S) uint8 frames (read at the tower's size: frame_options) -> normalised float32."""
    if frames.shape[-2:] != (spec.image_size, spec.image_size):
        raise ValueError(f"InternVL takes {spec.image_size} x {spec.image_size} frames, got {tuple(frames.shape[-2:])}")
    return normalise(frames, spec)


INTERNVL = VisionFamily(
    name="InternVL",
    tower_class=internvl.InternVLVisionModel,
    model_classes=(internvl.InternVLForConditionalGeneration, internvl.InternVLModel),
    block_class=internvl.InternVLVisionLayer,
    temporal_block_class=InternVLTemporalLayer,
    llm_layer_class=qwen2.Qwen2DecoderLayer,  # InternVL3's LLM (Qwen2.5); InternVL2.5-8B's InternLM2.5 is remote code
    width=lambda config: config.hidden_size,
    make_norm=make_norm,
    vision_linears=(
        "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.projection_layer", "mlp.fc1", "mlp.fc2"
    ),  # fmt: skip
    model_type="internvl",
    media=InternVLMedia(),
    vision_blocks=r"vision_tower\.encoder\.layer\.\d+",
    vision_qkv=("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    pooled_methods=POOLED_METHODS,
    temporal_items=temporal_items,
    row_prefix=1,
    blocks=lambda tower: tower.encoder.layer,
    feature_blocks=feature_blocks,
    prepare_model=prepare_model,
    video_options=VIDEO_OPTIONS,
)
