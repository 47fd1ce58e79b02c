"""Conversations with videos -> model inputs: the chat template, video tokens, labels, and batching.

Samples may be in any format stave.conversations reads (Qwen messages; LLaMA-Factory's and ms-swift's
ShareGPT/OpenAI style with "videos"/"images" lists; Qwen's qwen-vl-finetune / LLaVA; alpaca), checked and
normalised there. A video content item may carry its own settings, as with qwen-vl-utils: fps, nframes,
min/max_frames, min/max/total_pixels, video_start/video_end (seconds), and source_fps for frame folders and
frame lists; an image item its own min/max_pixels.
How a video or an image becomes tensors and the text that replaces its placeholder in the prompt is the model
family's (its adapter's MediaFormat, stave.models): in the Qwen families each video placeholder becomes
<|vision_start|> <|video_pad|> x (t*h*w / merge^2) <|vision_end|>, or x (ceil(t/K)*h*w / merge^2) for a model that
pools video tokens over runs of K temporal patches, x (h*w / merge^2) over all of them
(stave.modeling.set_temporal_pooling); in Qwen3-VL and Qwen3.5 each temporal patch is its
own vision block after its `<t.t seconds>` text, as transformers' Qwen3VLProcessor writes it
(stave.models.qwen_media). This module reads the media, renders the chat template, places the media texts,
labels and batches.
For training, labels are -100 everywhere except the tokens of assistant answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from .config import pooling_window
from .conversations import ConversationError, item_video_options, to_messages
from .modeling import POOLING_KEY, temporal_pooling
from .models import UnsupportedMedia, VisionFamily, family_for_model_type
from .video import PatchSpec, VideoOptions, read_image, read_video
from .video.options import IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS

IGNORE_INDEX = -100
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
# transformers 5.x's Qwen forward needs mm_token_type_ids next to input_ids; 4.57's rejects it (a family's
# MediaFormat.token_types says whether its forward takes them).
NEEDS_MM_TOKEN_TYPES = TRANSFORMERS_MAJOR >= 5


@dataclass
class VideoChatProcessor:
    """Builds model inputs from conversations.

    Attributes:
        tokenizer: a tokenizer with a chat template and the model family's placeholder tokens.
        spec: patch geometry and pixel normalisation of the vision tower (`for_model` takes them from the
            model's vision config and family).
        video_options: how videos are sampled and resized (logged with every run); None: as the model family's
            own processors do by default (VisionFamily.video_options).
        data_root: media paths are relative to it.
        image_min_pixels, image_max_pixels: smart_resize bounds for images (the Qwen families; families that tile
            images at their source size, MediaFormat.source_size_images, do not use them).
        model_type: the model's config.model_type (a supported family, stave.models): its adapter's MediaFormat
            makes the tensors and prompt texts of media (e.g. Qwen2.5-VL's `second_per_grid_ts`, Qwen3-VL's
            timestamped vision blocks).
        cache: a VideoCache that keeps decoded videos, so a video read again with the same options (next
            epoch, next evaluation) is not decoded again.
        temporal_pooling: the model's temporal pooling (None, "mean" or "mean:K", stave.modeling.temporal_pooling):
            with "mean" each video gets the placeholder tokens of one temporal step, with "mean:K" those of
            ceil(steps/K) (the pixels are unchanged). `for_model` reads it from the model.
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
        family = _chat_family(config.model_type)
        spec = family.media.model_spec(config)
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
        self.family: VisionFamily = _chat_family(self.model_type)
        if self.video_options is None:
            self.video_options = self.family.video_options
        pooling_window(self.temporal_pooling)  # a PoolingModeError naming a bad mode
        self.media = self.family.media
        ids = {}
        for token in (self.media.video_token, self.media.image_token, *self.media.wrap):
            if not token:
                continue
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == self.tokenizer.unk_token_id:
                raise ValueError(f"the tokenizer has no {token} token")
            ids[token] = token_id
        self.video_token_id, self.image_token_id = ids[self.media.video_token], ids[self.media.image_token]

    def encode(self, sample: Any, *, train: bool, name: str = "sample") -> dict[str, Any]:
        """One sample -> token ids (1-D), optional labels, packed pixels and grids, and video metadata.

        With train=True the conversation must end with an assistant answer and labels are returned;
        otherwise a generation prompt is appended and there are no labels.
        """
        messages = to_messages(sample, name, video_options=self.video_options)
        if train and messages[-1]["role"] != "assistant":
            raise ConversationError(f"{name}: a training conversation must end with an assistant answer")
        videos, images, clips, ordered = [], [], [], []  # ordered: the tensors of every item in prompt order
        window = pooling_window(self.temporal_pooling)  # temporal steps averaged per LLM step (1: not pooled)
        sample_images = sum(item["type"] == "image" for message in messages for item in message["content"])
        for message in messages:
            for item in message["content"]:
                if item["type"] == "video":
                    clip = self._read_video(item)
                    clips.append(clip)
                    videos.append(self.media.video(clip, self.spec, window))
                    ordered.append(videos[-1][0])
                elif item["type"] == "image":
                    try:
                        images.append(self.media.image(self._load_image(item), self.spec, sample_images))
                    except UnsupportedMedia as error:
                        raise ConversationError(f"{name}: {error}") from None
                    ordered.append(images[-1][0])

        video_texts = [text for _, text in videos]
        image_texts = [text for _, text in images]
        out_ids, out_labels = self._tokenize(messages, train, name, video_texts, image_texts)
        kinds = {self.video_token_id: 2, self.image_token_id: 1}
        types = [kinds.get(token, 0) for token in out_ids]

        encoded: dict[str, Any] = {"input_ids": torch.tensor(out_ids), "mm_token_type_ids": torch.tensor(types)}
        if train:
            encoded["labels"] = torch.tensor(out_labels)
        for tensors in ordered:  # a key that images and videos share (InternVL's pixel_values) holds them in order
            for key, value in tensors.items():
                encoded.setdefault(key, []).append(value)
        for key in {key for tensors in ordered for key in tensors}:
            encoded[key] = torch.cat(encoded[key])
        encoded.update(self.media.sample_tensors(clips, self.spec, len(images), window))
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
        if self.media.token_types:
            batch["mm_token_type_ids"] = padded(column("mm_token_type_ids"), 0)
        if all("labels" in item for item in items):
            batch["labels"] = padded(column("labels"), IGNORE_INDEX)
        for key in self.media.batch_keys:
            parts = [item[key] for item in items if key in item]
            if parts and key in self.media.padded_keys:
                most = max(part.shape[1] for part in parts)  # e.g. LLaVA-OneVision's tiles per image
                parts = [nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, most - p.shape[1])) for p in parts]
            if parts:
                batch[key] = torch.cat(parts)
        return batch

    def _render(
        self, messages, generation_prompt: bool, name: str, video_texts, image_texts
    ) -> tuple[list[int], dict[str, int]]:
        """Token ids of the chat template's text for `messages`, each vision placeholder (in order of appearance)
        replaced with its media's text, as transformers' processors replace them in the rendered prompt; and how
        many placeholders of each kind were replaced."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        video_pad, image_pad = self.media.video_token, self.media.image_token
        before, after = self.media.wrap
        parts, used = [], {video_pad: 0, image_pad: 0}
        media = {video_pad: video_texts, image_pad: image_texts}
        position = 0
        triple = before + video_pad + after
        while True:
            found = [(text.find(pad, position), pad) for pad in (video_pad, image_pad)]
            found = [(index, pad) for index, pad in found if index >= 0]
            if not found:
                break
            index, pad = min(found)
            if used[pad] >= len(media[pad]):
                raise ConversationError(f"{name}: the chat template produced more vision pads than media items")
            replacement = media[pad][used[pad]]
            used[pad] += 1
            if pad == video_pad and (before or after) and text.startswith(triple, index - len(before)):
                # the media's text holds its own wrapping tokens (<|vision_start|> ... <|vision_end|>)
                parts.append(text[position : index - len(before)])
                position = index + len(video_pad) + len(after)
            elif pad == video_pad:
                parts.append(text[position:index])
                replacement = replacement[len(before) : len(replacement) - len(after)]
                position = index + len(video_pad)
            else:
                parts.append(text[position:index])
                position = index + len(image_pad)
            parts.append(replacement)
        parts.append(text[position:])
        return list(self.tokenizer("".join(parts), add_special_tokens=False)["input_ids"]), used

    def _tokenize(self, messages, train: bool, name: str, video_texts, image_texts) -> tuple[list[int], list[int]]:
        ids, used = self._render(messages, not train, name, video_texts, image_texts)
        if used != {self.media.video_token: len(video_texts), self.media.image_token: len(image_texts)}:
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
        options = self.media.frame_options(item_video_options(item, self.video_options), self.spec)
        source_fps = float(item.get("source_fps") or 1.0)
        reader = self.cache.read if self.cache is not None else read_video
        return reader(source, options, factor=self.spec.factor, source_fps=source_fps)

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
            resize=not self.media.source_size_images,
        )


def _chat_family(model_type: str) -> VisionFamily:
    """The family of a Video-LLM model type; a TypeError for a video classifier (no prompt, no MediaFormat)."""
    family = family_for_model_type(model_type)
    if family.media is None:
        raise TypeError(
            f"{family.name} ({model_type}) is a video classifier: it takes clips, not conversations "
            "(train it with `task: classification`, evaluate it with `stave eval --task classification`)"
        )
    return family
