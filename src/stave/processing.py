"""Conversations with videos -> model inputs: the chat template, video tokens, labels, and batching.

Samples may be in any format stave.conversations reads (Qwen messages; LLaMA-Factory's and ms-swift's
ShareGPT/OpenAI style with "videos"/"images" lists; Qwen's qwen-vl-finetune / LLaVA; alpaca), checked and
normalised there. A video content item may carry its own settings, as with qwen-vl-utils: fps, nframes,
min/max_frames, min/max/total_pixels, video_start/video_end (seconds), and source_fps for frame folders and
frame lists; an image item its own min/max_pixels.
Each video placeholder becomes <|vision_start|> <|video_pad|> x (t*h*w / merge^2) <|vision_end|>, or
x (h*w / merge^2) for a model that pools video tokens over time (stave.modeling.set_temporal_pooling). In
Qwen3-VL and Qwen3.5 (families with a VideoPrompt, stave.models) each temporal patch is its own vision block
after its `<t.t seconds>` text, as transformers' Qwen3VLProcessor writes it; a pooled video is one block whose
timestamp is the mean time of the video's sampled frames (the same for a clip and its reverse).
For training, labels are -100 everywhere except the tokens of assistant answers.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from .config import TEMPORAL_POOLING_MODES
from .conversations import ConversationError, item_video_options, to_messages
from .modeling import POOLING_KEY, temporal_pooling
from .models import VisionFamily, family_for_model_type
from .video import PatchSpec, VideoOptions, pack_frames, read_image, read_video, seconds_per_grid
from .video.options import IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS

IGNORE_INDEX = -100
# transformers 5.x's forward needs mm_token_type_ids next to input_ids; 4.57's rejects it.
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
NEEDS_MM_TOKEN_TYPES = TRANSFORMERS_MAJOR >= 5
VISION_START, VISION_END, VIDEO_PAD, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>"


@dataclass
class VideoChatProcessor:
    """Builds model inputs from conversations.

    Attributes:
        tokenizer: a tokenizer with a chat template and Qwen's vision tokens.
        spec: patch geometry and pixel normalisation of the vision tower (`for_model` takes them from the
            model's vision config and family).
        video_options: how videos are sampled and resized (logged with every run); None: as the model family's
            own processors do by default (VisionFamily.video_options).
        data_root: media paths are relative to it.
        image_min_pixels, image_max_pixels: smart_resize bounds for images.
        model_type: the model's config.model_type (a supported family, stave.models); for Qwen2.5-VL every
            encoded sample and batch with videos carries `second_per_grid_ts` (see `seconds_per_grid`), for
            Qwen3-VL / Qwen3.5 every temporal patch gets its own timestamped vision block.
        cache: a VideoCache that keeps decoded videos, so a video read again with the same options (next
            epoch, next evaluation) is not decoded again.
        temporal_pooling: the model's temporal pooling (None or "mean", stave.modeling.temporal_pooling):
            with "mean" each video gets h*w/merge^2 pad tokens instead of t*h*w/merge^2 (the pixels and
            video_grid_thw are unchanged). `for_model` reads it from the model.
    """

    tokenizer: Any
    spec: PatchSpec = PatchSpec()
    video_options: VideoOptions | None = None
    data_root: Path | None = None
    image_min_pixels: int = IMAGE_MIN_PIXELS
    image_max_pixels: int = IMAGE_MAX_PIXELS
    model_type: str = "qwen2_vl"
    cache: Any = None
    temporal_pooling: str | None = None

    @classmethod
    def for_model(cls, tokenizer: Any, model: Any, video_options: VideoOptions | None = None, **kwargs: Any):
        """A processor with the patch geometry, model type and temporal pooling of `model` (a model of a
        supported family, also inside a peft or DDP wrapper, or its config). Without `video_options`, videos are
        sampled and resized as the family's own processors do by default (VisionFamily.video_options)."""
        config = getattr(model, "config", model)
        family = family_for_model_type(config.model_type)
        spec = dataclasses.replace(
            PatchSpec.from_vision_config(config.vision_config), mean=family.pixel_mean, std=family.pixel_std
        )
        pooling = temporal_pooling(model) if isinstance(model, torch.nn.Module) else getattr(config, POOLING_KEY, None)
        return cls(
            tokenizer,
            spec,
            video_options,
            model_type=config.model_type,
            temporal_pooling=pooling,
            **kwargs,
        )

    def __post_init__(self) -> None:
        self.family: VisionFamily = family_for_model_type(self.model_type)
        if self.video_options is None:
            self.video_options = self.family.video_options
        if self.temporal_pooling is not None and self.temporal_pooling not in TEMPORAL_POOLING_MODES:
            raise ValueError(
                f"temporal_pooling must be None or one of {list(TEMPORAL_POOLING_MODES)}, got {self.temporal_pooling!r}"
            )
        ids = {}
        for token in (VIDEO_PAD, IMAGE_PAD, VISION_START, VISION_END):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == self.tokenizer.unk_token_id:
                raise ValueError(f"the tokenizer has no {token} token")
            ids[token] = token_id
        self.video_token_id, self.image_token_id = ids[VIDEO_PAD], ids[IMAGE_PAD]

    def encode(self, sample: Any, *, train: bool, name: str = "sample") -> dict[str, Any]:
        """One sample -> token ids (1-D), optional labels, packed pixels and grids, and video metadata.

        With train=True the conversation must end with an assistant answer and labels are returned;
        otherwise a generation prompt is appended and there are no labels.
        """
        messages = to_messages(sample, name, video_options=self.video_options)
        if train and messages[-1]["role"] != "assistant":
            raise ConversationError(f"{name}: a training conversation must end with an assistant answer")
        videos, images, clips = [], [], []
        for message in messages:
            for item in message["content"]:
                if item["type"] == "video":
                    clip = self._read_video(item)
                    clips.append(clip)
                    videos.append(pack_frames(clip.frames, self.spec))
                elif item["type"] == "image":
                    images.append(pack_frames(self._load_image(item), self.spec))

        merge = self.spec.merge_size**2
        video_texts = [self._video_text(clip, grid) for clip, (_, grid) in zip(clips, videos, strict=True)]
        image_texts = [IMAGE_PAD * (g[0] * g[1] * g[2] // merge) for _, g in images]
        out_ids, out_labels = self._tokenize(messages, train, name, video_texts, image_texts)
        kinds = {self.video_token_id: 2, self.image_token_id: 1}
        types = [kinds.get(token, 0) for token in out_ids]

        encoded: dict[str, Any] = {"input_ids": torch.tensor(out_ids), "mm_token_type_ids": torch.tensor(types)}
        if train:
            encoded["labels"] = torch.tensor(out_labels)
        for key, packed in (("videos", videos), ("images", images)):
            if packed:
                encoded[f"pixel_values_{key}" if key == "videos" else "pixel_values"] = torch.cat(
                    [p for p, _ in packed]
                )
                encoded["video_grid_thw" if key == "videos" else "image_grid_thw"] = torch.tensor(
                    [g for _, g in packed], dtype=torch.long
                )
        if videos and self.family.seconds_per_grid:
            encoded["second_per_grid_ts"] = self._second_per_grid_ts(clips)
        encoded["clips"] = clips
        return encoded

    def collate(self, items: Sequence[dict[str, Any]], *, padding_side: str = "right") -> dict[str, Any]:
        """Pad a list of encoded samples into a batch: right padding for training, left for generation."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        length = max(len(item["input_ids"]) for item in items)
        pad = self.tokenizer.pad_token_id

        def padded(rows: list[torch.Tensor], value: int) -> torch.Tensor:
            out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
            for i, row in enumerate(rows):
                if padding_side == "right":
                    out[i, : len(row)] = row
                else:
                    out[i, length - len(row) :] = row
            return out

        def column(key: str) -> list[torch.Tensor]:
            return [item[key] for item in items]

        batch: dict[str, Any] = {
            "input_ids": padded(column("input_ids"), pad),
            "attention_mask": padded([torch.ones(len(ids), dtype=torch.long) for ids in column("input_ids")], 0),
        }
        if NEEDS_MM_TOKEN_TYPES:
            batch["mm_token_type_ids"] = padded(column("mm_token_type_ids"), 0)
        if all("labels" in item for item in items):
            batch["labels"] = padded(column("labels"), IGNORE_INDEX)
        for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "pixel_values", "image_grid_thw"):
            parts = [item[key] for item in items if key in item]
            if parts:
                batch[key] = torch.cat(parts)
        return batch

    def _video_text(self, clip, grid: Sequence[int]) -> str:
        """The text that stands for one video in the prompt, from <|vision_start|> to <|vision_end|>: one vision
        block of pads (Qwen2-VL, Qwen2.5-VL), or the family's VideoPrompt blocks (Qwen3-VL, Qwen3.5: each
        temporal patch after its timestamp; one block with the mean frame time when the model pools)."""
        t, h, w = grid
        pads = h * w // self.spec.merge_size**2
        patches = 1 if self.temporal_pooling else t
        prompt = self.family.video_prompt
        if prompt is None:
            return VISION_START + VIDEO_PAD * (patches * pads) + VISION_END
        times = list(clip.timestamps)  # seconds of each sampled frame in the source
        if self.temporal_pooling:  # one block for the whole video, at a time that reversing the clip keeps
            stamps = [sum(times) / len(times)]
        else:
            stamps = prompt.patch_times(times, self.spec.temporal_patch_size)
        blocks = prompt.blocks(stamps, pads)
        text = "".join(f"{before}{VISION_START}{VIDEO_PAD * count}{VISION_END}" for before, count in blocks)
        return f"{VISION_START}{text}{VISION_END}" if prompt.outer_vision_tokens else text

    def _render(
        self, messages, generation_prompt: bool, name: str, video_texts, image_texts
    ) -> tuple[list[int], dict[str, int]]:
        """Token ids of the chat template's text for `messages`, each vision placeholder (in order of appearance)
        replaced with its media's text, as transformers' processors replace them in the rendered prompt; and how
        many placeholders of each kind were replaced."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        parts, used = [], {VIDEO_PAD: 0, IMAGE_PAD: 0}
        media = {VIDEO_PAD: video_texts, IMAGE_PAD: image_texts}
        position = 0
        triple = VISION_START + VIDEO_PAD + VISION_END
        while True:
            found = [(text.find(pad, position), pad) for pad in (VIDEO_PAD, IMAGE_PAD)]
            found = [(index, pad) for index, pad in found if index >= 0]
            if not found:
                break
            index, pad = min(found)
            if used[pad] >= len(media[pad]):
                raise ConversationError(f"{name}: the chat template produced more vision pads than media items")
            replacement = media[pad][used[pad]]
            used[pad] += 1
            if pad == VIDEO_PAD and text.startswith(triple, index - len(VISION_START)):
                # the media's text holds its own <|vision_start|> ... <|vision_end|>
                parts.append(text[position : index - len(VISION_START)])
                position = index + len(VIDEO_PAD) + len(VISION_END)
            elif pad == VIDEO_PAD:
                parts.append(text[position:index])
                replacement = replacement[len(VISION_START) : -len(VISION_END)]
                position = index + len(VIDEO_PAD)
            else:
                parts.append(text[position:index])
                position = index + len(IMAGE_PAD)
            parts.append(replacement)
        parts.append(text[position:])
        return list(self.tokenizer("".join(parts), add_special_tokens=False)["input_ids"]), used

    def _tokenize(self, messages, train: bool, name: str, video_texts, image_texts) -> tuple[list[int], list[int]]:
        ids, used = self._render(messages, not train, name, video_texts, image_texts)
        if used != {VIDEO_PAD: len(video_texts), IMAGE_PAD: len(image_texts)}:
            raise ConversationError(f"{name}: the chat template dropped a media item (its pad token is missing)")
        labels = [IGNORE_INDEX] * len(ids)
        if not train:
            return ids, labels
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start_ids, _ = self._render(messages[:k], True, name, video_texts, image_texts)
            end_ids, _ = self._render(messages[: k + 1], False, name, video_texts, image_texts)
            if ids[: len(end_ids)] != end_ids or end_ids[: len(start_ids)] != start_ids:
                raise ConversationError(f"{name}: the chat template does not render conversations prefix by prefix")
            labels[len(start_ids) : len(end_ids)] = ids[len(start_ids) : len(end_ids)]
        return ids, labels

    def _read_video(self, item: dict[str, Any]):
        """One video content item, with its own settings over the run's (item_video_options)."""
        source = self._resolve(item["video"])
        options = item_video_options(item, self.video_options)
        source_fps = float(item.get("source_fps") or 1.0)
        reader = self.cache.read if self.cache is not None else read_video
        return reader(source, options, factor=self.spec.factor, source_fps=source_fps)

    def _second_per_grid_ts(self, clips) -> torch.Tensor:
        values = seconds_per_grid([clip.sampled_fps for clip in clips], self.spec)
        if TRANSFORMERS_MAJOR < 5 and not torch.equal(values, values.trunc()):
            # transformers 4.57 casts each value to an integer before use (measured: 0.5 puts every frame of
            # a video at one temporal position, 1.5 acts as 1.0); 5.x uses the fractional value.
            warnings.warn(
                f"transformers {transformers.__version__} truncates Qwen2.5-VL's second_per_grid_ts to whole "
                f"seconds: {values.tolist()} act as {values.trunc().tolist()}; transformers 5 uses them as they are",
                stacklevel=3,
            )
        return values

    def _resolve(self, path: Any) -> Any:
        """A media path (or a list of frame paths) relative to data_root; media in memory as they are."""
        if isinstance(path, (list, tuple)) and path and all(isinstance(p, (str, Path)) for p in path):
            return [self._resolve(p) for p in path]
        if isinstance(path, (str, Path)) and self.data_root is not None and not Path(path).is_absolute():
            return self.data_root / path
        return path

    def _load_image(self, item: dict[str, Any]) -> torch.Tensor:
        """One image content item, resized within its own min/max_pixels or the processor's."""
        return read_image(
            self._resolve(item["image"]),
            min_pixels=item.get("min_pixels") or self.image_min_pixels,
            max_pixels=item.get("max_pixels") or self.image_max_pixels,
            factor=self.spec.factor,
        )
