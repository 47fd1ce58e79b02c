"""Conversations with videos -> model inputs: the chat template, video tokens, labels, and batching.

Two public conversation formats are accepted:
  - Qwen "messages": [{"role": "user", "content": [{"type": "video", "video": PATH}, {"type": "text",
    "text": ...}]}, {"role": "assistant", "content": ...}] (or {"messages": [...]});
  - LLaVA / Qwen-finetune: {"video": PATH, "conversations": [{"from": "human", "value": "<video>\\n..."},
    {"from": "gpt", "value": ...}]} ("image"/"<image>" likewise; "system" turns allowed).
A video content item may carry its own settings, as with qwen-vl-utils: fps, nframes, min/max_frames,
min/max/total_pixels, video_start/video_end (seconds), and source_fps for frame folders.
Each video placeholder becomes <|vision_start|> <|video_pad|> x (t*h*w / merge^2) <|vision_end|>, or
x (h*w / merge^2) for a model that pools video tokens over time (stave.modeling.set_temporal_pooling).
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
from .errors import StaveError
from .modeling import POOLING_KEY, temporal_pooling
from .video import PatchSpec, VideoOptions, pack_frames, read_video, seconds_per_grid
from .video.options import IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS

IGNORE_INDEX = -100
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
# transformers 5.x's Qwen2-VL forward needs mm_token_type_ids next to input_ids; 4.57's rejects it.
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
NEEDS_MM_TOKEN_TYPES = TRANSFORMERS_MAJOR >= 5
# Model families (config.model_type) whose forward takes `second_per_grid_ts`: Qwen2.5-VL aligns the temporal
# rotary positions of video tokens with seconds of source time; Qwen2-VL counts temporal patches.
MODEL_TYPES = {"qwen2_vl": False, "qwen2_5_vl": True}


class ConversationError(StaveError, ValueError):
    """A sample that is not a valid conversation; names the sample and the field."""


def to_messages(sample: Any, name: str = "sample") -> list[dict[str, Any]]:
    """Normalise a sample in either public format to Qwen messages with list content."""
    if isinstance(sample, dict) and "messages" in sample:
        sample = sample["messages"]
    if isinstance(sample, list):
        return [_check_message(m, f"{name}[{i}]") for i, m in enumerate(sample)]
    if isinstance(sample, dict) and "conversations" in sample:
        return _from_llava(sample, name)
    raise ConversationError(f"{name}: expected 'messages' or 'conversations', got {_describe(sample)}")


def _describe(value: Any) -> str:
    return f"keys {sorted(value)}" if isinstance(value, dict) else type(value).__name__


def _check_message(message: Any, name: str) -> dict[str, Any]:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise ConversationError(f"{name}: a message needs 'role' and 'content', got {_describe(message)}")
    if message["role"] not in ("system", "user", "assistant"):
        raise ConversationError(f"{name}.role: must be system, user or assistant, got {message['role']!r}")
    content = message["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ConversationError(f"{name}.content: must be a string or a list, got {type(content).__name__}")
    for j, item in enumerate(content):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in ("text", "video", "image") or kind not in item:
            raise ConversationError(
                f"{name}.content[{j}]: expected {{'type': 'text'|'video'|'image', ...}}, got {item!r}"
            )
    return {"role": message["role"], "content": content}


def _from_llava(sample: dict[str, Any], name: str) -> list[dict[str, Any]]:
    media: dict[str, list[Any]] = {}
    for kind in ("video", "image"):
        value = sample.get(kind)
        media[kind] = [] if value is None else list(value) if isinstance(value, list) else [value]
    turns = sample["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ConversationError(f"{name}.conversations: must be a non-empty list")
    placeholders = {
        kind: sum(str(t.get("value", "")).count(f"<{kind}>") for t in turns if isinstance(t, dict)) for kind in media
    }
    messages = []
    used = {"video": 0, "image": 0}
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ConversationError(f"{name}.conversations[{i}]: needs 'from' and 'value', got {_describe(turn)}")
        role = ROLES.get(turn["from"])
        if role is None:
            raise ConversationError(f"{name}.conversations[{i}].from: unknown speaker {turn['from']!r}")
        text = str(turn["value"])
        content: list[dict[str, Any]] = []
        if role == "user" and not any(placeholders.values()) and not messages[-1:] and any(media.values()):
            # no placeholder anywhere: the media go before the first question, as LLaVA does
            for kind in ("image", "video"):
                content += [{"type": kind, kind: item} for item in media[kind]]
                used[kind] = len(media[kind])
        for piece in _split_placeholders(text):
            if piece in ("<video>", "<image>"):
                kind = piece[1:-1]
                if used[kind] >= len(media[kind]):
                    raise ConversationError(f"{name}: more {piece} placeholders than entries in '{kind}'")
                content.append({"type": kind, kind: media[kind][used[kind]]})
                used[kind] += 1
            elif piece.strip():
                content.append({"type": "text", "text": piece.strip()})
        messages.append({"role": role, "content": content})
    for kind in media:
        if used[kind] != len(media[kind]):
            raise ConversationError(f"{name}.{kind}: {len(media[kind])} given but {used[kind]} placeholder(s) used")
    return messages


def _split_placeholders(text: str) -> list[str]:
    pieces, rest = [], text
    while rest:
        positions = [(rest.find(p), p) for p in ("<video>", "<image>") if p in rest]
        if not positions:
            pieces.append(rest)
            break
        index, placeholder = min(positions)
        pieces += [rest[:index], placeholder]
        rest = rest[index + len(placeholder) :]
    return pieces


# Per-video settings a message's content item may carry (the qwen-vl-utils convention), over the run's options.
ITEM_VIDEO_KEYS = {
    "fps": "fps",
    "nframes": "nframes",
    "min_frames": "min_frames",
    "max_frames": "max_frames",
    "min_pixels": "min_pixels",
    "max_pixels": "max_pixels",
    "total_pixels": "total_pixels",
    "video_start": "start",
    "video_end": "end",
}


def item_video_options(item: dict[str, Any], options: VideoOptions) -> VideoOptions:
    """The options for one video content item: `options`, with the item's own fps/nframes/pixels/start/end.
    (fps and nframes exclude each other: an item giving one clears the other.)"""
    values = {ITEM_VIDEO_KEYS[key]: item[key] for key in ITEM_VIDEO_KEYS if item.get(key) is not None}
    if not values:
        return options
    if "fps" in values:
        values.setdefault("nframes", None)
    if "nframes" in values:
        values.setdefault("fps", None)
    return dataclasses.replace(options, **values)


@dataclass
class VideoChatProcessor:
    """Builds model inputs from conversations.

    Attributes:
        tokenizer: a tokenizer with a chat template and Qwen's vision tokens.
        spec: patch geometry of the vision tower (PatchSpec.from_vision_config(model.config.vision_config)).
        video_options: how videos are sampled and resized (logged with every run).
        data_root: media paths are relative to it.
        image_min_pixels, image_max_pixels: smart_resize bounds for images.
        model_type: the model's config.model_type, "qwen2_vl" or "qwen2_5_vl"; for Qwen2.5-VL every
            encoded sample and batch with videos carries `second_per_grid_ts` (see `seconds_per_grid`).
        cache: a VideoCache that keeps decoded videos, so a video read again with the same options (next
            epoch, next evaluation) is not decoded again.
        temporal_pooling: the model's temporal pooling (None or "mean", stave.modeling.temporal_pooling):
            with "mean" each video gets h*w/merge^2 pad tokens instead of t*h*w/merge^2 (the pixels and
            video_grid_thw are unchanged). `for_model` reads it from the model.
    """

    tokenizer: Any
    spec: PatchSpec = PatchSpec()
    video_options: VideoOptions = VideoOptions()
    data_root: Path | None = None
    image_min_pixels: int = IMAGE_MIN_PIXELS
    image_max_pixels: int = IMAGE_MAX_PIXELS
    model_type: str = "qwen2_vl"
    cache: Any = None
    temporal_pooling: str | None = None

    @classmethod
    def for_model(cls, tokenizer: Any, model: Any, video_options: VideoOptions | None = None, **kwargs: Any):
        """A processor with the patch geometry, model type and temporal pooling of `model` (a Qwen2-VL or
        Qwen2.5-VL model, also inside a peft or DDP wrapper, or its config)."""
        config = getattr(model, "config", model)
        spec = PatchSpec.from_vision_config(config.vision_config)
        pooling = temporal_pooling(model) if isinstance(model, torch.nn.Module) else getattr(config, POOLING_KEY, None)
        return cls(
            tokenizer,
            spec,
            video_options or VideoOptions(),
            model_type=config.model_type,
            temporal_pooling=pooling,
            **kwargs,
        )

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {sorted(MODEL_TYPES)}, got {self.model_type!r}")
        if self.temporal_pooling is not None and self.temporal_pooling not in TEMPORAL_POOLING_MODES:
            raise ValueError(
                f"temporal_pooling must be None or one of {list(TEMPORAL_POOLING_MODES)}, got {self.temporal_pooling!r}"
            )
        ids = {}
        for token in ("<|video_pad|>", "<|image_pad|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == self.tokenizer.unk_token_id:
                raise ValueError(f"the tokenizer has no {token} token")
            ids[token] = token_id
        self.video_token_id, self.image_token_id = ids["<|video_pad|>"], ids["<|image_pad|>"]

    def encode(self, sample: Any, *, train: bool, name: str = "sample") -> dict[str, Any]:
        """One sample -> token ids (1-D), optional labels, packed pixels and grids, and video metadata.

        With train=True the conversation must end with an assistant answer and labels are returned;
        otherwise a generation prompt is appended and there are no labels.
        """
        messages = to_messages(sample, name)
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
                    images.append(pack_frames(self._load_image(item["image"]), self.spec))

        ids, labels = self._tokenize(messages, train, name)
        merge = self.spec.merge_size**2
        counts = {  # a pooling model's LLM sees each video as one temporal patch
            self.video_token_id: [(1 if self.temporal_pooling else t) * h * w // merge for _, (t, h, w) in videos],
            self.image_token_id: [g[0] * g[1] * g[2] // merge for _, g in images],
        }
        kinds = {self.video_token_id: 2, self.image_token_id: 1}
        out_ids, out_labels, types = [], [], []
        used = {self.video_token_id: 0, self.image_token_id: 0}
        for token, label in zip(ids, labels, strict=True):
            if token in counts:
                if used[token] >= len(counts[token]):
                    raise ConversationError(f"{name}: the chat template produced more vision pads than media items")
                n = counts[token][used[token]]
                used[token] += 1
                out_ids += [token] * n
                out_labels += [IGNORE_INDEX] * n
                types += [kinds[token]] * n
            else:
                out_ids.append(token)
                out_labels.append(label)
                types.append(0)
        for token, n in used.items():
            if n != len(counts[token]):
                raise ConversationError(f"{name}: the chat template dropped a media item (its pad token is missing)")

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
        if videos and MODEL_TYPES[self.model_type]:
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

    def _tokenize(self, messages, train: bool, name: str) -> tuple[list[int], list[int]]:
        template = self.tokenizer.apply_chat_template
        ids = template(messages, tokenize=True, add_generation_prompt=not train, return_dict=False)
        ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
        labels = [IGNORE_INDEX] * len(ids)
        if not train:
            return ids, labels
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start_ids = template(messages[:k], tokenize=True, add_generation_prompt=True, return_dict=False)
            end_ids = template(messages[: k + 1], tokenize=True, add_generation_prompt=False, return_dict=False)
            start_ids = list(start_ids["input_ids"] if isinstance(start_ids, dict) else start_ids)
            end_ids = list(end_ids["input_ids"] if isinstance(end_ids, dict) else end_ids)
            if ids[: len(end_ids)] != end_ids or end_ids[: len(start_ids)] != start_ids:
                raise ConversationError(f"{name}: the chat template does not render conversations prefix by prefix")
            labels[len(start_ids) : len(end_ids)] = ids[len(start_ids) : len(end_ids)]
        return ids, labels

    def _read_video(self, item: dict[str, Any]):
        """One video content item, with its own settings over the run's (item_video_options)."""
        source = self._resolve(item["video"])
        options = item_video_options(item, self.video_options)
        source_fps = float(item.get("source_fps", 1.0))
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
        if isinstance(path, (str, Path)) and self.data_root is not None and not Path(path).is_absolute():
            return self.data_root / path
        return path

    def _load_image(self, source: Any) -> torch.Tensor:
        from PIL import Image

        from .video import VideoShapeError, resize_frames, smart_resize, to_rgb_chw

        source = self._resolve(source)
        if isinstance(source, (str, Path)):
            with Image.open(source) as image:
                frame = to_rgb_chw(image, source)
        else:
            frame = to_rgb_chw(source, "<image>")
        try:
            height, width = smart_resize(
                frame.shape[1], frame.shape[2], self.spec.factor, self.image_min_pixels, self.image_max_pixels
            )
        except ValueError as error:
            raise VideoShapeError(source, str(error)) from None
        return resize_frames(frame[None], height, width)
