"""How an EvalItem is asked: the prompt templates (named and versioned: the name is stored with every score)."""

from __future__ import annotations

from typing import Any

from ..synthetic.tasks import ANSWER_REQUEST
from .items import LETTERS, EvalItem

TEMPLATES: dict[str, dict[str, str]] = {
    # the wording Qwen2-VL's own video benchmarks use for multiple choice, and a short-answer request
    "qwen-mc-v1": {
        "choice": "{question}\n{options}\nAnswer with the option's letter from the given choices directly.",
        "open": "{question}\nAnswer in a few words.",
        "subtitles": "This video's subtitles are listed below:\n{subtitles}\n",
    },
    # the wording of stave.synthetic's training conversations (options named in a list, answered by text):
    # fine-tunes on `stave synth` data are evaluated as they were trained
    "synth-v1": {
        "choice": "{question} " + ANSWER_REQUEST,
        "open": "{question}",
        "subtitles": "This video's subtitles are listed below:\n{subtitles}\n",
    },
}
DEFAULT_TEMPLATE = "qwen-mc-v1"


def format_options(options: tuple[str, ...]) -> str:
    return "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))


def prompt_text(item: EvalItem, template: str = DEFAULT_TEMPLATE) -> str:
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; known: {sorted(TEMPLATES)}")
    parts = TEMPLATES[template]
    if item.options is None:
        text = parts["open"].format(question=item.question)
    else:
        text = parts["choice"].format(
            question=item.question, options=format_options(item.options), option_list=", ".join(item.options)
        )
    if item.subtitles:
        text = parts["subtitles"].format(subtitles=item.subtitles) + text
    return text


def messages(item: EvalItem, template: str = DEFAULT_TEMPLATE) -> list[dict[str, Any]]:
    """The item as Qwen messages: its images, its videos (with clip bounds and frame-folder rates), then the text."""
    content: list[dict[str, Any]] = [{"type": "image", "image": str(path)} for path in item.images]
    for video in item.videos:
        entry: dict[str, Any] = {"type": "video", "video": str(video.path)}
        if video.start is not None:
            entry["video_start"] = video.start
        if video.end is not None:
            entry["video_end"] = video.end
        if video.frame_fps is not None:
            entry["source_fps"] = video.frame_fps
        content.append(entry)
    content.append({"type": "text", "text": prompt_text(item, template)})
    return [{"role": "user", "content": content}]
