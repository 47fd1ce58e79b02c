"""Where STA goes in LLaVA-OneVision (transformers' LlavaOnevisionForConditionalGeneration, LlavaOnevisionModel; the
tower is a SigLIP SiglipVisionModel).

Confirmed in transformers 4.57 and 5.24: a video (B, F, C, H, W) is encoded as B*F SigLIP images (rows of
(H/p)*(W/p) patch tokens, no CLS), the hidden states of `vision_feature_layer` (the published checkpoints: -1, the
last layer before post_layernorm) are projected, bilinearly pooled per frame to ceil(P/2) x ceil(P/2) tokens
(P = image_size / patch_size) and followed by one `image_newline` token; the prompt's `<video>` stands for
F * ceil(P/2)^2 + 1 tokens. Images go through the same tower in another call (anyres tiles: a base image and its
tiles, each a row); they and the tiles of one image are not time and never get a temporal update.

STA: in every SiglipEncoderLayer whose output reaches the selected feature layer (layers after
`vision_feature_layer` produce hidden states nothing uses: no STA there), over the F frames of each video, per
spatial position: the tower call of a video is B*F rows, and item k is rows k*F .. k*F+F-1 (t = F, n = P*P).
The tower cannot tell a video call from an image call, so the base model's get_video_features says it:
add_temporal_attention switches the base model to StaveLlavaOnevisionModel, whose get_video_features holds the
frame count in a context variable while the tower runs (`video_frames`, also for calling a bare tower on frames);
the tower's pre-hook reads it once per call (temporal_items), so gradient checkpointing's recomputation never
reads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import transformers
from torch import nn
from transformers.models.llava_onevision import modeling_llava_onevision as llava_ov
from transformers.models.qwen2 import modeling_qwen2 as qwen2
from transformers.models.siglip import modeling_siglip as siglip

from ..config import POOLING_KEY
from ..temporal.block import TemporalBlockMixin
from ..temporal.layout import TemporalLayout
from . import MediaFormat, UnsupportedMedia, VisionFamily
from .frame_towers import FrameSpec, feature_blocks, normalise

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
VIDEO_TOKEN, IMAGE_TOKEN = "<video>", "<image>"
# SigLIP's normalisation (llava-hf/llava-onevision-qwen2-*-ov-hf preprocessor_config.json: image_mean = image_std =
# [0.5, 0.5, 0.5]; the class defaults of transformers' LlavaOnevisionVideoProcessor are CLIP's, which the published
# checkpoints override)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)

_FRAMES: contextvars.ContextVar[int | None] = contextvars.ContextVar("stave_video_frames", default=None)


@contextlib.contextmanager
def video_frames(frames: int) -> Iterator[None]:
    """Within, a LLaVA-OneVision tower call treats its rows as videos of `frames` consecutive frames each (without:
    as images, which STA leaves alone). get_video_features of a model with STA sets it itself."""
    if frames < 1:
        raise ValueError(f"a video has at least one frame, got {frames}")
    token = _FRAMES.set(frames)
    try:
        yield
    finally:
        _FRAMES.reset(token)


def temporal_items(tower: nn.Module, args: tuple, kwargs: dict) -> list[tuple[int, int, bool]]:
    """The items of one SigLIP tower call: videos of `video_frames` frames each (t = F, n = patches per frame), or
    without a frame count one non-temporal item per row (images, tiles)."""
    pixels = args[0] if args else kwargs.get("pixel_values")
    if pixels is None or pixels.dim() != 4:
        raise ValueError("a LLaVA-OneVision vision tower with temporal attention needs pixel_values (N, C, H, W)")
    rows, _, height, width = pixels.shape
    patch = tower.config.patch_size
    n = (height // patch) * (width // patch)
    frames = _FRAMES.get()
    if frames is None:
        return [(1, n, False)] * rows
    if rows % frames:
        raise ValueError(f"{rows} frames are not whole videos of {frames} frames")
    return [(frames, n, True)] * (rows // frames)


class SiglipTemporalLayer(TemporalBlockMixin, siglip.SiglipEncoderLayer):
    """SiglipEncoderLayer with stacked temporal attention: its norms and attention have other names than the
    mixin's (layer_norm1, self_attn returning (output, weights), layer_norm2), so the same order is spelled out:
    x + self_attn(layer_norm1(x)) -> temporal_update -> x + mlp(layer_norm2(x)) (spatial_first), or the temporal
    update first (temporal_first). Hidden states are (frames, patches, D) rows."""

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


class StaveLlavaOnevisionModel(llava_ov.LlavaOnevisionModel):
    """LlavaOnevisionModel whose get_video_features tells the tower (through `video_frames`) that its rows are
    videos of F frames; otherwise the stock model (add_temporal_attention switches the instance's class,
    `tell_frames`)."""

    # the stock signature: generation (5.x) encodes videos before prefill with the arguments it names
    @functools.wraps(llava_ov.LlavaOnevisionModel.get_video_features)
    def get_video_features(self, *args: Any, **kwargs: Any):
        pixels = args[0] if args else kwargs.get("pixel_values_videos", kwargs.get("pixel_values"))
        with video_frames(pixels.shape[1]):
            return super().get_video_features(*args, **kwargs)


def tell_frames(model: nn.Module) -> None:
    """Switch the LlavaOnevisionModel inside `model` (if any: not for a bare tower) to StaveLlavaOnevisionModel,
    in place, so that a video's tower call knows its frame count."""
    for module in model.modules():
        if type(module) is llava_ov.LlavaOnevisionModel:
            module.__class__ = StaveLlavaOnevisionModel


def siglip_layers(tower: nn.Module) -> nn.ModuleList:
    """The encoder layers of a SiglipVisionModel (transformers 4.57: under `vision_model`; 5.x: on the model)."""
    inner = getattr(tower, "vision_model", tower)
    return inner.encoder.layers


@functools.wraps(llava_ov.LlavaOnevisionModel.get_video_features)  # its signature, which generation reads
def pooled_video_features(base: nn.Module, *args: Any, **kwargs: Any):
    """get_video_features with each video's projected, per-frame pooled tokens averaged over its frames: (B, n, D)
    instead of (B, F*n, D), followed by the image_newline token as stock (5.x adds it here, 4.57 in forward)."""
    features = type(base).get_video_features
    if getattr(base.config, POOLING_KEY, None) is None:
        return features(base, *args, **kwargs)
    pixels = args[0] if args else kwargs.get("pixel_values_videos", kwargs.get("pixel_values"))
    frames = pixels.shape[1]

    def pool(tokens: torch.Tensor, newline: int) -> torch.Tensor:
        per_frame = tokens[:, : tokens.shape[1] - newline]
        b, length, dim = per_frame.shape
        pooled = per_frame.reshape(b, frames, length // frames, dim).mean(1)
        return torch.cat([pooled, tokens[:, tokens.shape[1] - newline :]], dim=1)

    if TRANSFORMERS_MAJOR < 5:
        return pool(features(base, *args, **kwargs), 0)
    return_dict = kwargs.pop("return_dict", None)
    out = features(base, *args, return_dict=True, **kwargs)
    out.pooler_output = pool(out.pooler_output, 1)
    return_dict = base.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


POOLED_METHODS = (("get_video_features", pooled_video_features),)


@dataclasses.dataclass(frozen=True)
class LlavaOnevisionMedia(MediaFormat):
    """LLaVA-OneVision's media format, as transformers' LlavaOnevisionProcessor: a video's frames are resized to the
    tower's image size (bicubic), normalised with SigLIP's mean and std and stacked (1, F, 3, S, S) per video
    (`pixel_values_videos`, batched along dim 0: the videos of a batch need equal frame counts); its `<video>`
    placeholder becomes F * ceil(P/2)^2 + 1 `<video>` tokens (ceil(P/2)^2 + 1 when the model pools). Images (anyres
    tiles) are not processed by stave for this family (a ValueError); models still take them (`pixel_values`)."""

    video_token: str = VIDEO_TOKEN
    image_token: str = IMAGE_TOKEN
    wrap: tuple[str, str] = ("", "")
    token_types: bool = False
    batch_keys: tuple[str, ...] = ("pixel_values_videos", "pixel_values", "image_sizes")
    config_tokens: tuple[tuple[str, str], ...] = (
        ("image_token_index", IMAGE_TOKEN), ("video_token_index", VIDEO_TOKEN)
    )  # fmt: skip
    pixel_mean: tuple[float, float, float] = SIGLIP_MEAN
    pixel_std: tuple[float, float, float] = SIGLIP_STD

    def patch_spec(self, vision_config: Any) -> FrameSpec:
        return FrameSpec(vision_config.image_size, vision_config.patch_size, self.pixel_mean, self.pixel_std)

    def frame_options(self, options: Any, spec: FrameSpec) -> Any:
        return dataclasses.replace(options, frame_size=(spec.image_size, spec.image_size))

    def video(self, clip: Any, spec: FrameSpec, pooled: bool) -> tuple[dict[str, torch.Tensor], str]:
        pixels = normalise(clip.frames, spec)
        side = math.ceil(spec.image_size // spec.patch_size / 2)
        tokens = (1 if pooled else pixels.shape[0]) * side * side + 1
        return {"pixel_values_videos": pixels[None]}, VIDEO_TOKEN * tokens

    def image(self, frames: torch.Tensor, spec: FrameSpec) -> tuple[dict[str, torch.Tensor], str]:
        raise UnsupportedMedia(
            "LLaVA-OneVision: stave's processor takes videos only; images (anyres tiles) are not supported yet"
        )

    def minimal_tower_input(self, tower: nn.Module) -> tuple[tuple, dict[str, Any]]:
        """One blank image of the tower's size: (pixels (1, 3, S, S),)."""
        parameter = next(tower.parameters())
        size = tower.config.image_size
        return (torch.zeros(1, 3, size, size, dtype=parameter.dtype, device=parameter.device),), {}

    def blank_outputs(self, model: nn.Module, tower: nn.Module) -> list[torch.Tensor]:
        """The blank image's tower outputs, the projector on them and image_newline: the projector and the newline
        sit outside the tower, and a text-only batch must reach them too (full fine-tuning under DDP / FSDP)."""
        outputs = super().blank_outputs(model, tower)
        base = next((m for m in model.modules() if isinstance(m, llava_ov.LlavaOnevisionModel)), None)
        if base is None:  # a bare tower
            return outputs
        return [*outputs, base.multi_modal_projector(outputs[0]), base.image_newline]

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
        states (rows, P*P, D)."""
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
        *, seed: int, text_tokens: int, pooled: bool,
    ) -> dict[str, torch.Tensor]:
        """Each image one anyres image of the tower's size (a base image and one tile: 2 P^2 + P tokens), then each
        video of t frames (grids (t, P, P)) as F * ceil(P/2)^2 + 1 tokens; videos need equal frame counts."""
        config = model.config
        size, patch = config.vision_config.image_size, config.vision_config.patch_size
        side = size // patch
        for t, h, w in (*videos, *images):
            if (h, w) != (side, side):
                raise ValueError(f"LLaVA-OneVision frames are {side} x {side} patches, got a grid ({t}, {h}, {w})")
        if len({t for t, _, _ in videos}) > 1:
            raise ValueError(f"the videos of one LLaVA-OneVision batch need equal frame counts, got {list(videos)}")
        pooled_side = math.ceil(side / 2)
        ids = [config.image_token_index] * ((2 * side * side + side) * len(images))
        for t, _, _ in videos:
            ids += [config.video_token_index] * ((1 if pooled else t) * pooled_side**2 + 1)
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


LLAVA_ONEVISION = VisionFamily(
    name="LLaVA-OneVision",
    tower_class=siglip.SiglipVisionModel,
    model_classes=(llava_ov.LlavaOnevisionForConditionalGeneration, llava_ov.LlavaOnevisionModel),
    block_class=siglip.SiglipEncoderLayer,
    temporal_block_class=SiglipTemporalLayer,
    llm_layer_class=qwen2.Qwen2DecoderLayer,  # the published checkpoints' LLM (llava-onevision-qwen2-*)
    width=lambda config: config.hidden_size,
    make_norm=lambda block, dim: nn.LayerNorm(dim, eps=block.layer_norm1.eps),
    vision_linears=(
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"
    ),  # fmt: skip
    model_type="llava_onevision",
    media=LlavaOnevisionMedia(),
    vision_blocks=r"vision_tower\.(vision_model\.)?encoder\.layers\.\d+",
    vision_qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    pooled_methods=POOLED_METHODS,
    temporal_items=temporal_items,
    blocks=siglip_layers,
    feature_blocks=feature_blocks,
    prepare_model=tell_frames,
)
