"""Conversation records in the published formats -> Qwen messages, checked field by field.

Formats, told apart by a record's keys; every one goes through the same normalisation and the same
placeholder rule:
  - Qwen messages: [{"role", "content"}, ...] or {"messages": [...]}, content a string or a list of typed items
    {"type": "text", "text"} | {"type": "video", "video", <video settings>} | {"type": "image", "image"}.
  - ShareGPT / OpenAI style of LLaMA-Factory and ms-swift: {"messages" | "conversations": [{"role", "content"}
    | {"from", "value"}, ...], "videos": [...], "images": [...], "system": ...}; string contents hold <video> and
    <image> placeholders, matched in order to the media lists; ms-swift's "chat_template_kwargs" gives video
    settings for the record's videos.
  - Qwen's qwen-vl-finetune (and LLaVA): {"video" | "image": PATH or [PATH, ...], "conversations": [...]}.
  - alpaca (LLaMA-Factory, ms-swift): {"instruction", "input", "output", "system", "history", "videos", "images"}.
A LLaMA-Factory dataset_info.json entry can rename every key (RecordLayout.from_dataset_info).

One rule for every format: per kind, the number of <video> / <image> placeholders in string contents equals
the number of media in the record's top-level lists. A placeholder without media, media without a
placeholder, or a placeholder string inside a typed text item is a ConversationError naming the record and the
counts: a placeholder never reaches the model as text. A video is a path (a file or a folder of frames) or a
list of frame image paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StaveError
from .video import VideoOptions


class ConversationError(StaveError, ValueError):
    """A sample that is not a valid conversation; names the sample and the field."""


PLACEHOLDERS = {"<video>": "video", "<image>": "image", "<audio>": "audio"}
MEDIA_KINDS = ("video", "image")
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
TOOL_ROLES = ("observation", "function_call", "function", "tool", "tool_call", "tool_response")

# Per-video settings a video item (or ms-swift's chat_template_kwargs) may carry, in qwen-vl-utils' names, and
# the VideoOptions field each one sets for that video.
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
ITEM_IMAGE_KEYS = ("min_pixels", "max_pixels")
NOT_READ_ITEM_KEYS = {  # qwen-vl-utils settings stave does not implement
    "resized_height": "give min_pixels/max_pixels instead",
    "resized_width": "give min_pixels/max_pixels instead",
}
NOT_READ_RECORD_KEYS = {  # keys of the frameworks' formats that would change training if they were dropped
    "tools": "tool descriptions (function calling) are not supported",
    "audios": "audio is not supported",
    "audio": "audio is not supported",
    "rejected_response": "preference data (DPO/KTO) is not supported",
    "rejected_messages": "preference data (DPO/KTO) is not supported",
    "chosen": "preference data (DPO/KTO) is not supported",
    "rejected": "preference data (DPO/KTO) is not supported",
    "kto_tag": "preference data (DPO/KTO) is not supported",
}
NOT_READ_TURN_KEYS = {
    "loss": "per-turn loss switches (ms-swift) are not supported: every answer is trained on",
    "loss_scale": "per-turn loss scales (ms-swift) are not supported: every answer is trained on",
    "weight": "per-turn weights are not supported: every answer is trained on",
    "tool_calls": "tool calls are not supported",
}


@dataclass(frozen=True)
class RecordLayout:
    """Which keys of a record stave reads. The default reads every published format by its documented keys;
    a LLaMA-Factory dataset_info.json entry names its own (`from_dataset_info`).

    Attributes:
        formatting: "auto" (alpaca when the record has no turns key, else turns), "turns" or "alpaca".
        messages: the keys that may hold the turns (a record has exactly one of them).
        speakers: the (role key, content key) pairs a turn may use.
        roles: speaker value -> "user", "assistant" or "system".
        tool_roles: speaker values of tool-use turns (refused by name).
        system: keys of a system prompt given beside the turns.
        videos, images: keys of the top-level media lists (a record has at most one per kind).
        prompt, query, response, history: alpaca's keys (history: None = not read).
    """

    formatting: str = "auto"
    messages: tuple[str, ...] = ("messages", "conversations")
    speakers: tuple[tuple[str, str], ...] = (("role", "content"), ("from", "value"))
    roles: dict[str, str] = field(default_factory=lambda: dict(ROLES))
    tool_roles: tuple[str, ...] = TOOL_ROLES
    system: tuple[str, ...] = ("system",)
    videos: tuple[str, ...] = ("videos", "video")
    images: tuple[str, ...] = ("images", "image")
    prompt: str = "instruction"
    query: str | None = "input"
    response: str = "output"
    history: str | None = "history"

    @classmethod
    def from_dataset_info(cls, entry: Any, where: str) -> RecordLayout:
        """The layout of one LLaMA-Factory dataset_info.json entry: its `formatting` (alpaca, the default,
        sharegpt or openai), `columns` and `tags`, with LLaMA-Factory's defaults (data/README.md there).
        Settings stave cannot honour (hub datasets, ranking, tools, audio, num_samples...) are refused by name."""
        if not isinstance(entry, dict):
            raise ConversationError(f"{where}: an entry is an object, got {type(entry).__name__}")
        for key in entry:
            if key in DATASET_INFO_REFUSED:
                raise ConversationError(f"{where}.{key}: {DATASET_INFO_REFUSED[key]}")
            if key not in ("file_name", "formatting", "columns", "tags", "split", "ranking"):
                raise ConversationError(
                    f"{where}.{key}: not a dataset_info.json key stave reads "
                    "(file_name, formatting, columns, tags, split)"
                )
        if entry.get("ranking"):
            raise ConversationError(f"{where}.ranking: preference data (DPO/KTO) is not supported")
        if entry.get("split", "train") != "train":
            raise ConversationError(f"{where}.split: a local file has one split, 'train'; got {entry['split']!r}")
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("alpaca", "sharegpt", "openai"):
            raise ConversationError(f"{where}.formatting: must be alpaca, sharegpt or openai, got {formatting!r}")
        columns = _string_map(entry.get("columns", {}), f"{where}.columns", COLUMNS, COLUMNS_REFUSED)
        tags = _string_map(entry.get("tags", {}), f"{where}.tags", TAGS, {})
        media = {key: (columns[key],) if key in columns else () for key in ("videos", "images", "system")}
        if formatting == "alpaca":
            return cls(
                formatting="alpaca",
                prompt=columns.get("prompt", "instruction"),
                query=columns.get("query", "input"),
                response=columns.get("response", "output"),
                history=columns.get("history"),
                **media,
            )
        return cls(
            formatting="turns",
            messages=(columns.get("messages", "conversations"),),
            speakers=((tags.get("role_tag", "from"), tags.get("content_tag", "value")),),
            roles={
                tags.get("user_tag", "human"): "user",
                tags.get("assistant_tag", "gpt"): "assistant",
                tags.get("system_tag", "system"): "system",
            },
            tool_roles=(tags.get("observation_tag", "observation"), tags.get("function_tag", "function_call")),
            **media,
        )


COLUMNS = ("prompt", "query", "response", "history", "messages", "system", "images", "videos")
COLUMNS_REFUSED = {
    "tools": "tool descriptions (function calling) are not supported",
    "audios": "audio is not supported",
    "chosen": "preference data (DPO/KTO) is not supported",
    "rejected": "preference data (DPO/KTO) is not supported",
    "kto_tag": "preference data (DPO/KTO) is not supported",
}
TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
DATASET_INFO_REFUSED = {
    **{key: "stave reads local files: download the data and give its file_name" for key in (
        "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "subset", "folder")},
    "num_samples": "draw a share of the file with the dataset's `ratio` instead (e.g. ratio: 0.1)",
    # LLaMA-Factory's video settings are run settings of its training config, not dataset_info keys
    "video_fps": "a run setting: data.video.fps",
    "video_maxlen": "a run setting: data.video.max_frames",
    "video_max_pixels": "a run setting: data.video.max_pixels",
    "video_min_pixels": "a run setting: data.video.min_pixels",
}  # fmt: skip


def _string_map(value: Any, where: str, known: tuple[str, ...], refused: dict[str, str]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConversationError(f"{where}: expected an object, got {type(value).__name__}")
    for key, name in value.items():
        if key in refused:
            raise ConversationError(f"{where}.{key}: {refused[key]}")
        if key not in known:
            raise ConversationError(f"{where}.{key}: unknown; known: {list(known)}")
        if not isinstance(name, str) or not name:
            raise ConversationError(f"{where}.{key}: expected a key name, got {name!r}")
    return value


DEFAULT_LAYOUT = RecordLayout()


def to_messages(
    sample: Any,
    name: str = "sample",
    *,
    layout: RecordLayout = DEFAULT_LAYOUT,
    video_options: VideoOptions | None = None,
) -> list[dict[str, Any]]:
    """A record in any published format (module docstring) -> Qwen messages, each {"role", "content": [typed
    items]}, media in place of their placeholders.

    Checked here, naming `name` and the field: structure and value types, roles, non-empty answers, the
    placeholder rule, media values, and each video's own settings, by building its VideoOptions over
    `video_options` (default: VideoOptions()) — so a bad `nframes` fails here, not when the video is read."""
    record, turns = _turns(sample, name, layout)
    media = {kind: _media_list(record, kind, layout, name) for kind in MEDIA_KINDS}
    settings = _record_settings(record, name)
    messages: list[dict[str, Any]] = []
    system = _system_prompt(record, layout, name)
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}], "where": f"{name}.system"})
    for role, content, where, typed in turns:
        messages.append({"role": role, "content": _content(content, where, typed), "where": where})
    _place_media(messages, media, name)
    for i, message in enumerate(messages):
        _check_message(message, i, messages, name)
        for j, item in enumerate(message["content"]):
            if item["type"] == "video":
                for key, value in settings.items():
                    item.setdefault(key, value)
                _check_video_settings(item, f"{message['where']}[{j}]", video_options)
            elif item["type"] == "image":
                for key in ITEM_IMAGE_KEYS:
                    if key in settings:
                        item.setdefault(key, settings[key])
                _check_image_settings(item, f"{message['where']}[{j}]")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _describe(value: Any) -> str:
    return f"keys {sorted(value)}" if isinstance(value, dict) else type(value).__name__


Turn = tuple[str, Any, str, bool]  # role, content, field path, whether typed items are allowed


def _turns(sample: Any, name: str, layout: RecordLayout) -> tuple[dict[str, Any], list[Turn]]:
    """(the record, [(role, content, field path, typed)]) for a record of any format; typed item lists are
    Qwen's, in role/content turns only."""
    if isinstance(sample, list):
        return {}, [_speaker(turn, f"{name}[{i}]", layout) for i, turn in enumerate(sample)]
    if not isinstance(sample, dict):
        raise ConversationError(f"{name}: expected a record (an object) or a list of messages, got {_describe(sample)}")
    for key, reason in NOT_READ_RECORD_KEYS.items():
        if sample.get(key) not in (None, "", []):
            raise ConversationError(f"{name}.{key}: {reason}")
    keys = [key for key in layout.messages if key in sample]
    alpaca = layout.formatting == "alpaca" or (layout.formatting == "auto" and not keys and layout.response in sample)
    if alpaca:
        return sample, _alpaca_turns(sample, name, layout)
    if len(keys) != 1:
        found = f"both {keys[0]!r} and {keys[1]!r}" if len(keys) > 1 else _describe(sample)
        expected = " or ".join(repr(k) for k in layout.messages)
        if layout.formatting == "auto":
            expected += f" (or alpaca's {layout.prompt!r} and {layout.response!r})"
        raise ConversationError(f"{name}: expected {expected}, got {found}")
    turns = sample[keys[0]]
    if not isinstance(turns, list) or not turns:
        raise ConversationError(f"{name}.{keys[0]}: must be a non-empty list, got {_describe(turns)}")
    return sample, [_speaker(turn, f"{name}.{keys[0]}[{i}]", layout) for i, turn in enumerate(turns)]


def _speaker(turn: Any, where: str, layout: RecordLayout) -> Turn:
    pair = next((p for p in layout.speakers if p[0] in turn or p[1] in turn), None) if isinstance(turn, dict) else None
    if pair is None or pair[0] not in turn or pair[1] not in turn:
        wanted = " (or ".join(f"{r!r} and {c!r}" for r, c in layout.speakers) + ")" * (len(layout.speakers) - 1)
        if pair is not None:
            wanted = f"{pair[0]!r} and {pair[1]!r}"
        raise ConversationError(f"{where}: a message needs {wanted}, got {_describe(turn)}")
    role_key, content_key = pair
    for key in turn:
        if key in NOT_READ_TURN_KEYS:
            raise ConversationError(f"{where}.{key}: {NOT_READ_TURN_KEYS[key]}")
        if key not in pair:
            raise ConversationError(
                f"{where}.{key}: unknown key; a message holds only {role_key!r} and {content_key!r}"
            )
    speaker = turn[role_key]
    role = layout.roles.get(speaker) if isinstance(speaker, str) else None
    if role is None:
        if speaker in layout.tool_roles:
            raise ConversationError(f"{where}.{role_key}: tool-use turns ({speaker!r}) are not supported")
        raise ConversationError(
            f"{where}.{role_key}: unknown speaker {speaker!r}; expected one of {sorted(layout.roles)}"
        )
    return role, turn[content_key], f"{where}.{content_key}", content_key == "content"


def _alpaca_turns(record: dict[str, Any], name: str, layout: RecordLayout) -> list[Turn]:
    turns: list[Turn] = []
    history = record.get(layout.history) if layout.history else None
    if history is not None:
        if not isinstance(history, list):
            raise ConversationError(f"{name}.{layout.history}: must be a list of [question, answer] pairs")
        for i, pair in enumerate(history):
            where = f"{name}.{layout.history}[{i}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise ConversationError(f"{where}: must be a [question, answer] pair, got {pair!r}")
            turns += [("user", pair[0], f"{where}[0]", False), ("assistant", pair[1], f"{where}[1]", False)]
    parts = []
    for key in (layout.prompt, layout.query):
        value = record.get(key) if key else None
        if value is not None and not isinstance(value, str):
            raise ConversationError(f"{name}.{key}: must be a string, got {type(value).__name__} {value!r}")
        if value:
            parts.append(value)
    turns.append(("user", "\n".join(parts), f"{name}.{layout.prompt}", False))  # LLaMA-Factory's "instruction\ninput"
    if layout.response not in record:
        raise ConversationError(f"{name}.{layout.response}: missing (the answer)")
    turns.append(("assistant", record[layout.response], f"{name}.{layout.response}", False))
    return turns


def _system_prompt(record: dict[str, Any], layout: RecordLayout, name: str) -> str | None:
    for key in layout.system:
        value = record.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ConversationError(f"{name}.{key}: a system prompt is a string, got {type(value).__name__}")
        return value
    return None


def _media_list(record: dict[str, Any], kind: str, layout: RecordLayout, name: str) -> tuple[str | None, list]:
    """(key, media) of one kind from the record's top-level keys; a single path counts as a list of one."""
    keys = [key for key in (layout.videos if kind == "video" else layout.images) if record.get(key) is not None]
    if len(keys) > 1:
        raise ConversationError(f"{name}: both {keys[0]!r} and {keys[1]!r} given; use one")
    if not keys:
        return None, []
    key = keys[0]
    value = record[key]
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        _check_media(item, kind, f"{name}.{key}" + (f"[{i}]" if isinstance(value, list) else ""))
    return key, list(items)


def _check_media(value: Any, kind: str, where: str) -> None:
    """A video is a path, a list of frame paths, or frames in memory; an image is a path or an image in memory."""
    expected = "a path or a list of frame image paths" if kind == "video" else "a path"
    if isinstance(value, (str, Path)):
        if not str(value).strip():
            raise ConversationError(f"{where}: an empty path")
        return
    if isinstance(value, (list, tuple)):
        if kind != "video":
            raise ConversationError(f"{where}: an image is {expected}, got a list")
        if not value:
            raise ConversationError(f"{where}: an empty list of frames")
        paths = [isinstance(frame, (str, Path)) for frame in value]
        for k, frame in enumerate(value):
            if (
                frame is None
                or isinstance(frame, (bool, int, float, dict, list, tuple))
                or (isinstance(frame, (str, Path)) and not str(frame).strip())
                or (any(paths) and not paths[k])
            ):
                raise ConversationError(f"{where}[{k}]: a frame is an image path, got {frame!r}")
        return
    if value is None or isinstance(value, (bool, int, float, dict)):
        raise ConversationError(f"{where}: a {kind} is {expected}, got {type(value).__name__} {value!r}")
    # anything else is frames or an image in memory (array, tensor, PIL image), checked when it is read


def _record_settings(record: dict[str, Any], name: str) -> dict[str, Any]:
    """ms-swift's per-record chat_template_kwargs: qwen-vl-utils settings for each video (pixels also images)."""
    settings = record.get("chat_template_kwargs")
    if settings is None:
        return {}
    where = f"{name}.chat_template_kwargs"
    if not isinstance(settings, dict):
        raise ConversationError(f"{where}: expected an object, got {type(settings).__name__}")
    for key in settings:
        if key in NOT_READ_ITEM_KEYS:
            raise ConversationError(f"{where}.{key}: not supported; {NOT_READ_ITEM_KEYS[key]}")
        if key not in ITEM_VIDEO_KEYS:
            raise ConversationError(f"{where}.{key}: not read by stave; it reads {sorted(ITEM_VIDEO_KEYS)}")
    return dict(settings)


def _content(content: Any, where: str, typed: bool) -> list[dict[str, Any]]:
    """Typed items; a string's placeholders become {"type": "placeholder", "kind"} markers. `typed`: the
    content may also be a list of typed items (Qwen messages: the "content" of role/content turns)."""
    if isinstance(content, str):
        items: list[dict[str, Any]] = []
        for piece in _split_placeholders(content):
            if piece in PLACEHOLDERS:
                if PLACEHOLDERS[piece] == "audio":
                    raise ConversationError(f"{where}: holds <audio>; audio is not supported")
                items.append({"type": "placeholder", "kind": PLACEHOLDERS[piece]})
            elif piece.strip():
                items.append({"type": "text", "text": piece.strip()})
        return items
    if not isinstance(content, list) or not typed:
        expected = "a string (or a list of typed items)" if typed else "a string"
        raise ConversationError(f"{where}: must be {expected}, got {type(content).__name__} {content!r}")
    return [_typed_item(item, f"{where}[{j}]") for j, item in enumerate(content)]


def _typed_item(item: Any, where: str) -> dict[str, Any]:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind not in ("text", "video", "image") or kind not in item:
        raise ConversationError(f"{where}: expected {{'type': 'text'|'video'|'image', ...}}, got {item!r}")
    known = {"type", kind} | (
        set(ITEM_VIDEO_KEYS) | {"source_fps"} if kind == "video" else set(ITEM_IMAGE_KEYS) if kind == "image" else set()
    )
    for key in item:
        if key in NOT_READ_ITEM_KEYS:
            raise ConversationError(f"{where}.{key}: not supported; {NOT_READ_ITEM_KEYS[key]}")
        if key not in known:
            raise ConversationError(f"{where}.{key}: unknown key of a {kind} item; known: {sorted(known)}")
    if kind == "text":
        text = item["text"]
        if not isinstance(text, str):
            raise ConversationError(f"{where}.text: must be a string, got {type(text).__name__} {text!r}")
        for placeholder in PLACEHOLDERS:
            if placeholder in text:
                raise ConversationError(
                    f"{where}.text: holds {placeholder}, but typed content gives media as items "
                    f"({{'type': '{PLACEHOLDERS[placeholder]}', ...}}), not placeholders"
                )
    else:
        _check_media(item[kind], kind, f"{where}.{kind}")
    return dict(item)


def _split_placeholders(text: str) -> list[str]:
    pieces, rest = [], text
    while rest:
        positions = [(rest.find(p), p) for p in PLACEHOLDERS if p in rest]
        if not positions:
            pieces.append(rest)
            break
        index, placeholder = min(positions)
        pieces += [rest[:index], placeholder]
        rest = rest[index + len(placeholder) :]
    return pieces


def _place_media(messages: list[dict[str, Any]], media: dict[str, tuple[str | None, list]], name: str) -> None:
    """The one placeholder rule: per kind, placeholders == top-level media; each placeholder takes the next one."""
    for kind, (key, given) in media.items():
        found = sum(item.get("kind") == kind for m in messages for item in m["content"])
        if found != len(given):
            source = f"in {key!r}" if key else "given (no top-level list of them)"
            hint = ""
            if kind == "video" and found == 1 and len(given) > 1 and all(isinstance(v, str) for v in given):
                hint = "; a video given as frames is a list inside the list: [[frame, frame, ...]]"
            elif found == 0:
                hint = f"; put a <{kind}> where each {kind} goes"
            raise ConversationError(
                f"{name}: {found} <{kind}> placeholder(s) in the text but {len(given)} {kind}(s) {source}{hint}"
            )
    used = {kind: 0 for kind in media}
    for message in messages:
        for j, item in enumerate(message["content"]):
            if item["type"] == "placeholder":
                kind = item["kind"]
                message["content"][j] = {"type": kind, kind: media[kind][1][used[kind]]}
                used[kind] += 1


def _check_message(message: dict[str, Any], index: int, messages: list[dict[str, Any]], name: str) -> None:
    where, role, content = message["where"], message["role"], message["content"]
    if role == "system" and index != 0:
        raise ConversationError(f"{where}: a system prompt must come first")
    if not content:
        raise ConversationError(f"{where}: an empty {'answer' if role == 'assistant' else 'message'}")
    if role == "assistant" and not any(item["type"] == "text" and item["text"].strip() for item in content):
        raise ConversationError(f"{where}: an answer must hold non-empty text")


def item_video_options(item: dict[str, Any], options: VideoOptions) -> VideoOptions:
    """The options for one video content item: `options`, with the item's own fps/nframes/pixels/start/end.
    (fps and nframes exclude each other: an item giving one clears the other.) ValueError names a bad value."""
    values = {ITEM_VIDEO_KEYS[key]: item[key] for key in ITEM_VIDEO_KEYS if item.get(key) is not None}
    if not values:
        return options
    if "fps" in values:
        values.setdefault("nframes", None)
    if "nframes" in values:
        values.setdefault("fps", None)
    return dataclasses.replace(options, **values)


def _check_video_settings(item: dict[str, Any], where: str, options: VideoOptions | None) -> None:
    try:
        item_video_options(item, options or VideoOptions())
    except (TypeError, ValueError) as error:
        raise ConversationError(f"{where}: {error}") from None
    source_fps = item.get("source_fps")
    if source_fps is not None and (
        isinstance(source_fps, bool) or not isinstance(source_fps, (int, float)) or source_fps <= 0
    ):
        raise ConversationError(f"{where}.source_fps: must be a positive number, got {source_fps!r}")


def _check_image_settings(item: dict[str, Any], where: str) -> None:
    for key in ITEM_IMAGE_KEYS:
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConversationError(f"{where}.{key}: must be a positive int, got {value!r}")
    if item.get("min_pixels") and item.get("max_pixels") and item["min_pixels"] > item["max_pixels"]:
        raise ConversationError(f"{where}: min_pixels ({item['min_pixels']}) > max_pixels ({item['max_pixels']})")
