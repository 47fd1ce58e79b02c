"""A word-level tokenizer with Qwen2-VL's special tokens and chat format (or the placeholders of another family's
media format), for tiny models.

Real checkpoints bring their own tokenizer; this one lets every stave path (prompting, training,
evaluation) run on a tiny model with no download. Saved with save_pretrained it is a standard Hugging
Face fast tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def chat_template(image_text: str, video_text: str) -> str:
    """Qwen2-VL's chat format: the official template, reduced to what stave uses (roles, text, images, videos),
    with `image_text` / `video_text` written for an image / a video item."""
    return QWEN2_VL_CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", image_text).replace(
        "<|vision_start|><|video_pad|><|vision_end|>", video_text
    )


QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "[UNK]",
]
BASE_WORDS = ["system", "user", "assistant", "you", "are", "a", "helpful", "."]


def build_word_tokenizer(words: Iterable[str], media: Any = None):
    """A PreTrainedTokenizerFast over SPECIAL_TOKENS + BASE_WORDS + `words` (lower-cased words and
    punctuation; whitespace is not a token). Token ids follow that order. With a model family's media format
    (stave.models.MediaFormat) whose placeholders are not Qwen's, its placeholder tokens follow as special tokens
    and the chat template writes them for images and videos."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    extra = []
    if media is not None:
        extra = [t for t in (media.image_token, media.video_token, *media.wrap, *media.special_tokens) if t]
    extra = [t for t in extra if t not in SPECIAL_TOKENS]
    for token in [*SPECIAL_TOKENS, *BASE_WORDS, *(w.lower() for w in words), *extra]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=[*SPECIAL_TOKENS[1:7], *extra],
    )
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    if extra:
        tokenizer.chat_template = chat_template(media.placeholder_text("image"), media.placeholder_text("video"))
    return tokenizer


def split_words(text: str) -> list[str]:
    """The words build_word_tokenizer makes of `text` (lower-cased; runs of letters/digits, punctuation)."""
    import re

    return re.findall(r"\w+|[^\w\s]+", text.lower())


def save_tokenizer(tokenizer, folder) -> None:
    """save_pretrained, readable by transformers 4.57 and 5.x alike. 5.x records a fast tokenizer's class as
    "TokenizersBackend" and its extra special tokens as a list under "extra_special_tokens", neither of which 4.57
    reads; "PreTrainedTokenizerFast" and "additional_special_tokens" are understood by both."""
    import json
    from pathlib import Path

    tokenizer.save_pretrained(folder)
    config_file = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    portable = dict(config)
    if portable.get("tokenizer_class") == "TokenizersBackend":
        portable["tokenizer_class"] = "PreTrainedTokenizerFast"
    if isinstance(portable.get("extra_special_tokens"), list):
        portable["additional_special_tokens"] = portable.pop("extra_special_tokens")
    if portable != config:
        config_file.write_text(json.dumps(portable, indent=2, ensure_ascii=False) + "\n")
