"""A model as an answerer: batched greedy generation (left-padded) and per-option log-likelihoods; and
`ask`, one question about one video."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..processing import VideoChatProcessor
from ..video import VideoCache, VideoOptions
from .items import EvalItem
from .prompts import DEFAULT_TEMPLATE, messages


class ModelAnswerer:
    """Answers EvalItems with a Qwen2-VL-family model and its tokenizer; decoded videos are cached in memory
    (bounded by `cache_bytes`), so a video with several questions is decoded once."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        video_options: VideoOptions | None = None,
        template: str = DEFAULT_TEMPLATE,
        max_new_tokens: int = 16,
        cache_bytes: int = 2 * 1024**3,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.max_new_tokens = max_new_tokens
        # questions on one video (several per video in most benchmarks) decode it once per run
        self.cache = VideoCache(max_bytes=cache_bytes)
        self.processor = VideoChatProcessor.for_model(tokenizer, model, video_options, cache=self.cache)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _batch(self, encoded: list[dict[str, Any]], padding_side: str) -> dict[str, Any]:
        batch = self.processor.collate(encoded, padding_side=padding_side)
        dtype = next(self.model.parameters()).dtype
        return {
            k: v.to(self.device, dtype=dtype if v.is_floating_point() else v.dtype) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }

    @torch.no_grad()
    def generate(self, items: Sequence[EvalItem]) -> list[str]:
        encoded = [self.processor.encode(messages(i, self.template), train=False, name=i.qid) for i in items]
        return self.generate_encoded(encoded)

    def generate_encoded(self, encoded: list[dict[str, Any]]) -> list[str]:
        batch = self._batch(encoded, "left")
        out = self.model.generate(
            **batch,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    @torch.no_grad()
    def option_scores(self, items: Sequence[EvalItem]) -> list[list[float]]:
        """Mean log-probability per token of each option's text as the assistant's answer (deterministic,
        no generation; the mean keeps long options from being penalised for their length)."""
        encoded, owners = [], []
        for index, item in enumerate(items):
            for option in item.options or ():
                conversation = messages(item, self.template) + [{"role": "assistant", "content": option}]
                encoded.append(self.processor.encode(conversation, train=True, name=item.qid))
                owners.append(index)
        batch = self._batch(encoded, "right")
        labels = batch.pop("labels")
        logits = self.model(**batch).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = labels[:, 1:]
        mask = targets != -100
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        means = ((picked * mask).sum(-1) / mask.sum(-1).clamp(min=1)).tolist()
        scores: list[list[float]] = [[] for _ in items]
        for owner, value in zip(owners, means, strict=True):
            scores[owner].append(value)
        return scores


def load_answerer(path: str | Path, **kwargs: Any) -> ModelAnswerer:
    """A saved model folder (save_pretrained + tokenizer, e.g. a `stave train` stage's model/) as an answerer."""
    from transformers import AutoTokenizer

    from ..checkpoint import load_model

    model = load_model(path)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return ModelAnswerer(model, AutoTokenizer.from_pretrained(path), **kwargs)


def ask(
    model: str | Path | ModelAnswerer,
    video: str | Path,
    question: str,
    *,
    video_options: VideoOptions | None = None,
    max_new_tokens: int = 64,
) -> str:
    """Ask one question about one video; returns the model's answer."""
    answerer = model if isinstance(model, ModelAnswerer) else load_answerer(model, max_new_tokens=max_new_tokens)
    if video_options is not None:
        answerer.processor.video_options = video_options
    conversation = [
        {"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": question}]}
    ]
    encoded = answerer.processor.encode(conversation, train=False, name=str(video))
    return answerer.generate_encoded([encoded])[0]
