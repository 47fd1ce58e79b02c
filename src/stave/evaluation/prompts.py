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
        "classes": "{question}\nThe possible answers are:\n{classes}\nAnswer with one of them, exactly as written.",
        "subtitles": "This video's subtitles are listed below:\n{subtitles}\n",
        "choice_answer": "{letter}",  # a solved example's answer (EvalSettings.shots)
    },
    # the wording of stave.synthetic's training conversations (options named in a list, answered by text):
    # fine-tunes on `stave synth` data are evaluated as they were trained
    "synth-v1": {
        "choice": "{question} " + ANSWER_REQUEST,
        "open": "{question}",
        "classes": "{question}\nThe possible answers are:\n{classes}\nAnswer with one of them, exactly as written.",
        "subtitles": "This video's subtitles are listed below:\n{subtitles}\n",
        "choice_answer": "{option}",
    },
}
DEFAULT_TEMPLATE = "qwen-mc-v1"


def format_options(options: tuple[str, ...]) -> str:
    return "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))


def _parts(template: str) -> dict[str, str]:
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[template]


def prompt_text(item: EvalItem, template: str = DEFAULT_TEMPLATE) -> str:
    """The text of the question (after its media): options lettered for multiple choice, the class names one
    a line when `item.prompt_classes`, subtitles first where the item has them."""
    parts = _parts(template)
    if item.prompt_classes:
        if item.options is not None or not item.classes:
            raise ValueError(f"{item.qid}: class names in the prompt need an open-ended item with its classes")
        text = parts["classes"].format(question=item.question, classes="\n".join(item.classes))
    elif item.options is None:
        text = parts["open"].format(question=item.question)
    else:
        text = parts["choice"].format(
            question=item.question, options=format_options(item.options), option_list=", ".join(item.options)
        )
    if item.subtitles:
        text = parts["subtitles"].format(subtitles=item.subtitles) + text
    return text


def answer_text(item: EvalItem, template: str = DEFAULT_TEMPLATE) -> str:
    """The answer a solved example gives as the assistant: its option's letter or text (as the template asks)
    for multiple choice, the expected answer (a class name) otherwise."""
    if item.options is None:
        return item.answer
    return _parts(template)["choice_answer"].format(letter=item.answer_letter, option=item.answer)


def _user_turn(item: EvalItem, template: str) -> dict[str, Any]:
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
    return {"role": "user", "content": content}


def messages(item: EvalItem, template: str = DEFAULT_TEMPLATE) -> list[dict[str, Any]]:
    """The item as Qwen messages: each solved example (item.examples) as a user turn (its images, its videos
    with clip bounds and frame-folder rates, its text) and the assistant's answer, then the item's own user turn."""
    turns: list[dict[str, Any]] = []
    for example in item.examples:
        turns += [_user_turn(example, template), {"role": "assistant", "content": answer_text(example, template)}]
    return [*turns, _user_turn(item, template)]
