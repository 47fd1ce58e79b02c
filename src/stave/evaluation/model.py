"""A model as an answerer: batched greedy generation (left-padded) and per-option log-likelihoods; and
`ask`, one question about one video."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import PositionScheme
from ..processing import IGNORE_INDEX, VideoChatProcessor
from ..video import VideoCache, VideoOptions, check_video
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

    def generate_encoded(self, encoded: list[dict[str, Any]], **generation: Any) -> list[str]:
        """Answers to encoded prompts (processor.encode(..., train=False)), batched with left padding.
        Greedy with `self.max_new_tokens` unless `generation` (keyword arguments of `generate`) says otherwise."""
        batch = self._batch(encoded, "left")
        settings = {"max_new_tokens": self.max_new_tokens, "do_sample": False, **generation}
        out = self.model.generate(**batch, **settings, pad_token_id=self.tokenizer.pad_token_id)
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
                encoded.append(_final_answer_only(self.processor.encode(conversation, train=True, name=item.qid)))
                owners.append(index)
        scores: list[list[float]] = [[] for _ in items]
        for owner, (total, count, _) in zip(owners, self.label_log_likelihoods(encoded), strict=True):
            scores[owner].append(total / max(count, 1))
        return scores

    @torch.no_grad()
    def label_log_likelihoods(self, encoded: list[dict[str, Any]]) -> list[tuple[float, int, bool]]:
        """Score the labelled tokens of encoded samples (processor.encode(..., train=True), or any with
        "labels", -100 where unscored), in one right-padded forward pass.

        Returns, per sample: the summed log-probability of its labelled tokens (nats), their number, and
        whether every one of them is the model's most likely next token (what greedy decoding would give).
        """
        batch = self._batch(encoded, "right")
        targets = batch.pop("labels")[:, 1:]  # position p predicts token p + 1
        mask = targets != IGNORE_INDEX
        # logits only from the first scored position on: a video prompt is thousands of tokens long (the slice
        # is for models that ignore logits_to_keep, as transformers 4.57's Qwen2-VL does)
        start = int(mask.int().argmax(-1)[mask.any(-1)].min()) if mask.any() else targets.shape[1]
        keep = targets.shape[1] + 1 - start
        logits = self.model(**batch, logits_to_keep=keep).logits[:, -keep:-1]
        targets, mask = targets[:, start:], mask[:, start:]
        rows = mask.nonzero()[:, 0]
        logprobs = torch.log_softmax(logits[mask].float(), dim=-1)  # (scored tokens, vocabulary)
        picked = logprobs.gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)
        misses = (logprobs.argmax(-1) != targets[mask]).float()
        totals = torch.zeros(len(encoded), device=picked.device).index_add_(0, rows, picked)
        wrong = torch.zeros(len(encoded), device=picked.device).index_add_(0, rows, misses)
        counts = mask.sum(-1)
        return [(float(t), int(n), not bool(w)) for t, n, w in zip(totals, counts, wrong, strict=True)]


def _final_answer_only(encoded: dict[str, Any]) -> dict[str, Any]:
    """An encoded conversation whose labels keep only its last assistant answer (the last run of labelled
    tokens): the answers of in-context examples before it are not scored."""
    labels = encoded["labels"].clone()
    scored = (labels != IGNORE_INDEX).nonzero().flatten()
    if len(scored):
        gaps = (scored[1:] != scored[:-1] + 1).nonzero().flatten()
        start = int(scored[gaps[-1] + 1]) if len(gaps) else int(scored[0])
        labels[:start] = IGNORE_INDEX
    return {**encoded, "labels": labels}


def load_answerer(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    position_scheme: str | PositionScheme | None = None,
    **kwargs: Any,
) -> ModelAnswerer:
    """A saved model folder (save_pretrained + tokenizer, e.g. a `stave train` stage's model/, or a shipped model's
    name, stave.base.SHIPPED) as an answerer;
    `dtype` converts the weights (default: as stored); `position_scheme` places the LLM's tokens by this scheme
    when the folder records none (e.g. "videorope" for a public VideoRoPE checkpoint; stave.load_model)."""
    from transformers import AutoTokenizer

    from ..base import resolve_model
    from ..checkpoint import load_model

    path = resolve_model(path)
    model = load_model(path, position_scheme=position_scheme, **({"dtype": dtype} if dtype is not None else {}))
    if torch.cuda.is_available():  # under a launcher, this process's GPU (LOCAL_RANK), as accelerate assigns it
        model = model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()))
    return ModelAnswerer(model, AutoTokenizer.from_pretrained(path), **kwargs)


def ask(
    model: str | Path | ModelAnswerer,
    video: str | Path,
    question: str,
    *,
    video_options: VideoOptions | None = None,
    max_new_tokens: int | None = None,
    position_scheme: str | PositionScheme | None = None,
) -> str:
    """Ask one question about one video; returns the model's answer ("" if it generated no text).

    `model` is a model folder (or shipped name) or a ModelAnswerer; `max_new_tokens` None means the
    answerer's own setting (64 for a folder); `position_scheme` as in load_answerer, for a folder. Given a folder,
    the video is checked first (stave.video.check_video:
    it exists, is a video, its frames can be taken), so a bad video is reported at once, not after the model
    has loaded."""
    if isinstance(model, ModelAnswerer):
        answerer = model
    else:
        check_video(video, video_options)
        answerer = load_answerer(model, max_new_tokens=max_new_tokens or 64, position_scheme=position_scheme)
    if video_options is not None:
        answerer.processor.video_options = video_options
    conversation = [
        {"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": question}]}
    ]
    encoded = answerer.processor.encode(conversation, train=False, name=str(video))
    generation = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    return answerer.generate_encoded([encoded], **generation)[0]
