"""What the frame-per-image families share (LLaVA-OneVision's SigLIP, LLaVA-NeXT-Video's CLIP, InternVL's InternViT):
towers that take every frame as an image of one fixed size, and an LLM fed by a selected layer of the tower
(`vision_feature_layer`); for the LLaVA families also how a tower call learns which rows are frames of one video
and their encoder layers' shape."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..config import pooling_runs
from ..temporal.block import TemporalBlockMixin
from ..temporal.layout import TemporalLayout
from . import MediaFormat, UnsupportedMedia


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


def split_tiles(canvas: torch.Tensor, size: int) -> torch.Tensor:
    """(3, rows * size, columns * size) -> (rows * columns, 3, size, size): the tiles of a canvas in raster order (row
    by row, left to right), as transformers' image processors cut anyres and dynamic tiles."""
    channels, height, width = canvas.shape
    if height % size or width % size:
        raise ValueError(f"a {height} x {width} canvas does not split into {size} x {size} tiles")
    rows, columns = height // size, width // size
    return canvas.reshape(channels, rows, size, columns, size).permute(1, 3, 0, 2, 4).reshape(-1, channels, size, size)


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


# --- which rows of a tower call are frames of one video --------------------------------------------------------
# A tower that takes a video (B, F, C, H, W) as B*F images cannot tell a video call from an image call; the base
# model's get_video_features knows F. prepare_model switches the base model to a frame_counting_model subclass whose
# get_video_features holds F in a context variable while the tower runs (`video_frames`, also for calling a bare
# tower on frames); the tower's STA pre-hook reads it once per call (frame_items), so gradient checkpointing's
# recomputation never reads it.

_FRAMES: contextvars.ContextVar[int | None] = contextvars.ContextVar("stave_video_frames", default=None)


@contextlib.contextmanager
def video_frames(frames: int) -> Iterator[None]:
    """Within, a frame-per-image tower call (LLaVA-OneVision, LLaVA-NeXT-Video) treats its rows as videos of `frames`
    consecutive frames each (without: as images, which STA leaves alone). get_video_features of a model with STA
    sets it itself."""
    if frames < 1:
        raise ValueError(f"a video has at least one frame, got {frames}")
    token = _FRAMES.set(frames)
    try:
        yield
    finally:
        _FRAMES.reset(token)


def frame_items(tower: nn.Module, args: tuple, kwargs: dict) -> list[tuple[int, int, bool]]:
    """The items of one tower call of (N, C, H, W) pixels: videos of `video_frames` frames each (t = F, n = patches
    per frame, a CLS token not counted), or without a frame count one non-temporal item per row (images, tiles)."""
    pixels = args[0] if args else kwargs.get("pixel_values")
    if pixels is None or pixels.dim() != 4:
        raise ValueError(f"a {type(tower).__name__} with temporal attention needs pixel_values (N, C, H, W)")
    rows, _, height, width = pixels.shape
    patch = tower.config.patch_size
    n = (height // patch) * (width // patch)
    frames = _FRAMES.get()
    if frames is None:
        return [(1, n, False)] * rows
    if rows % frames:
        raise ValueError(f"{rows} frames are not whole videos of {frames} frames")
    return [(frames, n, True)] * (rows // frames)


def frame_counting_model(stock: type[nn.Module], name: str, module: str) -> type[nn.Module]:
    """A subclass `name` of the base model class `stock` whose get_video_features (pixel_values_videos (B, F, C, H, W)
    first) tells the tower, through `video_frames`, that its rows are videos of F frames; otherwise the stock model.
    Assign it to `name` in `module` (the family's adapter), where pickle finds it."""

    # the stock signature: generation (5.x) encodes videos before prefill with the arguments it names
    @functools.wraps(stock.get_video_features)
    def get_video_features(self, *args: Any, **kwargs: Any):
        pixels = args[0] if args else kwargs.get("pixel_values_videos", kwargs.get("pixel_values"))
        with video_frames(pixels.shape[1]):
            return super(switched, self).get_video_features(*args, **kwargs)

    doc = f"{stock.__name__} whose get_video_features tells the tower each video's frame count."
    namespace = {"get_video_features": get_video_features, "__module__": module, "__qualname__": name, "__doc__": doc}
    switched = type(name, (stock,), namespace)
    return switched


def switch_classes(model: nn.Module, switches: dict[type[nn.Module], type[nn.Module]]) -> None:
    """Switch every module of `model` whose class is a key of `switches` to its value, in place."""
    for module in model.modules():
        switched = switches.get(type(module))
        if switched is not None:
            module.__class__ = switched


def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    """The encoder layers of a SiglipVisionModel or CLIPVisionModel (transformers 4.57: under `vision_model`; 5.x:
    on the model)."""
    inner = getattr(tower, "vision_model", tower)
    return inner.encoder.layers


class PreNormTemporalLayer(TemporalBlockMixin):
    """STA in an encoder layer of SigLIP's / CLIP's shape, whose norms and attention have other names than the
    mixin's (layer_norm1, self_attn returning (output, weights), layer_norm2, mlp), so the same order is spelled
    out: x + self_attn(layer_norm1(x)) -> temporal_update -> x + mlp(layer_norm2(x)) (spatial_first), or the
    temporal update first (temporal_first). Hidden states are (frames, tokens, D) rows. Mix in before the stock
    layer class."""

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any,
        temporal_layout: TemporalLayout | None = None, **kwargs: Any,
    ) -> torch.Tensor:  # fmt: skip
        x = hidden_states
        if self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        x = x + self.self_attn(hidden_states=self.layer_norm1(x), attention_mask=attention_mask, **kwargs)[0]
        if not self.temporal_first:
            x = self.temporal_update(x, temporal_layout)
        return x + self.mlp(self.layer_norm2(x))


@dataclasses.dataclass(frozen=True)
class StackedVideoMedia(MediaFormat):
    """The media format of the LLaVA families (transformers' LlavaOnevisionProcessor, LlavaNextVideoProcessor): a
    video's frames, brought to the tower's image size S x S (square_frames, after frame_options) and normalised with
    pixel_mean and pixel_std, are stacked (1, F, 3, S, S) per video (`pixel_values_videos`, batched along dim 0: the
    videos of a batch need equal frame counts); its `<video>` placeholder becomes video_tokens(G, P) `<video>`
    tokens (P = S / patch; G = F frames, or the ceil(F/K) runs the LLM sees when the model pools runs of K frames,
    stave.config.pooling_runs). Images (anyres tiles) are not processed by stave (UnsupportedMedia naming
    `family`); models still take them (`pixel_values`, `image_sizes`). Subclasses set family, pixel_mean and
    pixel_std and implement frame_options and video_tokens (and square_frames where frames are not read at S x S)."""

    family: str
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    video_token: str = "<video>"
    image_token: str = "<image>"
    wrap: tuple[str, str] = ("", "")
    token_types: bool = False
    batch_keys: tuple[str, ...] = ("pixel_values_videos", "pixel_values", "image_sizes")
    config_tokens: tuple[tuple[str, str], ...] = (("image_token_index", "<image>"), ("video_token_index", "<video>"))

    def frame_size(self, spec: FrameSpec) -> tuple[int, int]:
        return (spec.image_size, spec.image_size)

    def video_tokens(self, groups: int, side: int) -> int:
        """The LLM tokens of a video the LLM sees as `groups` frames (or pooled runs of frames) of side x side
        patches."""
        raise NotImplementedError

    def square_frames(self, frames: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
        """The frames frame_options read, (T, 3, h, w) uint8 -> (T, 3, S, S): as they are by default."""
        return frames

    def patch_spec(self, vision_config: Any) -> FrameSpec:
        return FrameSpec(vision_config.image_size, vision_config.patch_size, self.pixel_mean, self.pixel_std)

    def video(self, clip: Any, spec: FrameSpec, window: int | None) -> tuple[dict[str, torch.Tensor], str]:
        pixels = normalise(self.square_frames(clip.frames, spec), spec)
        tokens = self.video_tokens(len(pooling_runs(pixels.shape[0], window)), spec.image_size // spec.patch_size)
        return {"pixel_values_videos": pixels[None]}, self.video_token * tokens

    def image(
        self, frames: torch.Tensor, spec: FrameSpec, sample_images: int = 1
    ) -> tuple[dict[str, torch.Tensor], str]:
        raise UnsupportedMedia(
            f"{self.family}: stave's processor takes videos only; images (anyres tiles) are not supported yet"
        )

    def minimal_tower_input(self, tower: nn.Module) -> tuple[tuple, dict[str, Any]]:
        """One blank image of the tower's size: (pixels (1, 3, S, S),)."""
        parameter = next(tower.parameters())
        size = tower.config.image_size
        return (torch.zeros(1, 3, size, size, dtype=parameter.dtype, device=parameter.device),), {}

    def blank_outputs(self, model: nn.Module, tower: nn.Module) -> list[torch.Tensor]:
        """The blank image through the whole tower (layers after the feature layer take part too) and, for a full or
        base model, as an anyres image through get_image_features: the projector and image_newline sit outside the
        tower."""
        from . import find_vision_tower, vision_outputs

        outputs = super().blank_outputs(model, tower)
        family, _ = find_vision_tower(model)
        base = next((m for m in model.modules() if isinstance(m, family.model_classes[1])), None)
        if base is None:  # a bare tower
            return outputs
        (pixels,), _ = self.minimal_tower_input(tower)
        config, size = base.config, pixels.shape[-1]
        tiles = 1 + max(h * w for h, w in config.image_grid_pinpoints) // (size * size)  # the most an image takes
        image = base.get_image_features(
            pixels.expand(tiles, -1, -1, -1)[None], torch.tensor([[size, size]], device=pixels.device),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        )  # fmt: skip
        return outputs + vision_outputs(image)

    def video_grids(self, encoded: dict[str, Any], spec: FrameSpec) -> list[tuple[int, int, int]]:
        side = spec.image_size // spec.patch_size
        return [(videos.shape[0], side, side) for videos in encoded["pixel_values_videos"]]

    def run_first_video(self, tower: nn.Module, encoded: dict[str, Any]) -> tuple[int, int, int]:
        pixels = encoded["pixel_values_videos"][0].to(next(tower.parameters()))  # (F, 3, S, S)
        with video_frames(pixels.shape[0]):
            tower(pixels)
        side = tower.config.image_size // tower.config.patch_size
        return pixels.shape[0], side, side

    def tower_items(self, tower: nn.Module, inputs: dict[str, Any]) -> list[tuple[bool, torch.Tensor]]:
        """Images (pixel_values (N, tiles, 3, S, S), every tile taken), then videos (pixel_values_videos
        (B, F, 3, S, S), under video_frames(F)), one tower call each; an item's outputs are its rows' last hidden
        states (rows, tokens per row, D)."""
        parameter = next(tower.parameters())
        items: list[tuple[bool, torch.Tensor]] = []
        if "pixel_values" in inputs:
            images = inputs["pixel_values"]
            hidden = tower(images.flatten(0, 1).to(parameter)).last_hidden_state
            items += [(False, part) for part in hidden.split(images.shape[1])]
        if "pixel_values_videos" in inputs:
            videos = inputs["pixel_values_videos"]
            with video_frames(videos.shape[1]):
                hidden = tower(videos.flatten(0, 1).to(parameter)).last_hidden_state
            items += [(True, part) for part in hidden.split(videos.shape[1])]
        return items

    def example_grids(self, vision_config: Any) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Two videos of 4 frames (a batch's videos have equal frame counts) and one image, at the tower's size."""
        side = vision_config.image_size // vision_config.patch_size
        return [(4, side, side), (4, side, side)], [(1, side, side)]

    def random_inputs(
        self, model: nn.Module, videos: Sequence[tuple[int, int, int]], images: Sequence[tuple[int, int, int]],
        *, seed: int, text_tokens: int, window: int | None,
    ) -> dict[str, torch.Tensor]:
        """Each image one anyres image of the tower's size (a base image and one tile: 2 P^2 + P tokens, CLS
        dropped where the tower has one), then each video of t frames (grids (t, P, P)) as video_tokens(ceil(t /
        window), P) tokens (t for window 1, unpooled); videos need equal frame counts."""
        config = model.config
        size, patch = config.vision_config.image_size, config.vision_config.patch_size
        side = size // patch
        for t, h, w in (*videos, *images):
            if (h, w) != (side, side):
                raise ValueError(f"{self.family} frames are {side} x {side} patches, got a grid ({t}, {h}, {w})")
        if len({t for t, _, _ in videos}) > 1:
            raise ValueError(f"the videos of one {self.family} batch need equal frame counts, got {list(videos)}")
        ids = [config.image_token_index] * ((2 * side * side + side) * len(images))
        for t, _, _ in videos:
            ids += [config.video_token_index] * self.video_tokens(len(pooling_runs(t, window)), side)
        generator = torch.Generator().manual_seed(seed + 1)
        ids += torch.randint(3, 100, (text_tokens,), generator=generator).tolist()
        inputs: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        }
        if images:
            generator = torch.Generator().manual_seed(seed)
            inputs["pixel_values"] = torch.randn(len(images), 2, 3, size, size, generator=generator)
            inputs["image_sizes"] = torch.tensor([[size, size]] * len(images))
        if videos:
            generator = torch.Generator().manual_seed(seed + 2)
            inputs["pixel_values_videos"] = torch.randn(len(videos), videos[0][0], 3, size, size, generator=generator)
        return inputs
