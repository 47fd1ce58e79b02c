"""lmms-eval model `stave`: evaluate stave checkpoints on lmms-eval's tasks, to set beside published numbers.

With the extra installed (`pip install "stave[lmms-eval]"`), lmms-eval finds the model through stave's
`lmms_eval.models` entry point:

    lmms-eval --model stave --model_args pretrained=PATH,nframes=16,max_pixels=200704,max_new_tokens=64 \
        --tasks mvbench --batch_size 4 --output_path results/

model_args (key=value, comma separated; a key also given as an lmms-eval option, such as batch_size or
device, takes its value from model_args):
    pretrained           a folder written by save_pretrained, with its tokenizer (read by stave.load_model)
    device               default: cuda (cuda:LOCAL_RANK under `accelerate launch`) when available, else cpu
    dtype                auto (the checkpoint's; default), bfloat16, float16 or float32
    attn_implementation  sdpa, flash_attention_2 or eager (default: transformers' choice)
    batch_size           requests per forward pass (default 1)
    max_new_tokens       for tasks whose generation_kwargs give none (default 128)
    system_prompt        a text, or a file holding it (default: the chat template's)
    fps, nframes, min_frames, max_frames, min_pixels, max_pixels, total_pixels, video_backend
                         how videos are sampled and resized (stave.video.VideoOptions; default: qwen-vl-utils')

Requests: `generate_until` answers in batches, greedy unless a task's generation_kwargs ask for sampling
(temperature > 0), and cuts each answer at the first of the task's `until` strings. `loglikelihood` gives the
summed log-probability of the continuation as the start of the assistant's reply (its tokens right after the
generation prompt; no end of turn) and whether greedy decoding would produce it. The visuals of a task's
doc_to_visual (video files or frame folders, image files, PIL images) come before the text, whose <image> and
<video> placeholders are dropped. Multi-round tasks are not supported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from ..checkpoint import load_model
from ..evaluation.model import ModelAnswerer
from ..processing import IGNORE_INDEX
from ..video import VideoOptions

if TYPE_CHECKING:
    from lmms_eval.models.registry_v2 import ModelManifest

MODEL_NAME = "stave"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def manifest() -> ModelManifest:
    """The lmms-eval registration read through the `lmms_eval.models` entry point: model `stave` is StaveModel."""
    # imported here, not above: lmms_eval.models imports this module while it builds its registry
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.StaveModel")


def generation_settings(gen_kwargs: dict[str, Any], max_new_tokens: int) -> tuple[dict[str, Any], list[str]]:
    """A task's generation_kwargs -> (keyword arguments of `generate`, stop strings). `max_new_tokens` is the
    default; sampling needs temperature > 0 (lmms-eval tasks write temperature 0 for greedy)."""
    until = gen_kwargs.get("until") or []
    settings: dict[str, Any] = {"max_new_tokens": int(gen_kwargs.get("max_new_tokens") or max_new_tokens)}
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if temperature > 0 and gen_kwargs.get("do_sample", True) is not False:
        settings.update(do_sample=True, temperature=temperature)
        settings.update({key: gen_kwargs[key] for key in ("top_p", "top_k") if gen_kwargs.get(key) is not None})
    if int(gen_kwargs.get("num_beams") or 1) > 1:
        settings["num_beams"] = int(gen_kwargs["num_beams"])
    if gen_kwargs.get("repetition_penalty") not in (None, 1, 1.0):
        settings["repetition_penalty"] = float(gen_kwargs["repetition_penalty"])
    return settings, [until] if isinstance(until, str) else list(until)


def cut_at_stop_strings(text: str, until: Iterable[str]) -> str:
    """`text` up to the first occurrence of any stop string, stripped."""
    end = min((text.index(stop) for stop in until if stop and stop in text), default=len(text))
    return text[:end].strip()


def visual_content(visual: Any) -> dict[str, Any]:
    """One of doc_to_visual's visuals as a message content item."""
    if isinstance(visual, (str, Path)):
        kind = "image" if Path(visual).suffix.lower() in IMAGE_SUFFIXES else "video"
        return {"type": kind, kind: str(visual)}
    if hasattr(visual, "convert") and hasattr(visual, "mode"):  # a PIL image
        return {"type": "image", "image": visual}
    raise TypeError(f"stave: unsupported visual {type(visual).__name__} (expected a video/image path or a PIL image)")


def _flatten(visuals: Any) -> list[Any]:
    if visuals is None:
        return []
    if isinstance(visuals, (list, tuple)):
        return [leaf for visual in visuals for leaf in _flatten(visual)]
    return [visuals]


class StaveModel(lmms):
    """A stave checkpoint as an lmms-eval "simple" model: each request brings its context text, and its visuals
    come from the task's doc_to_visual on the document (self.task_dict, filled in by lmms-eval)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        device: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        batch_size: int | str = 1,
        max_new_tokens: int = 128,
        system_prompt: str | None = None,
        fps: float | None = None,
        nframes: int | None = None,
        min_frames: int | None = None,
        max_frames: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        total_pixels: int | None = None,
        video_backend: str | None = None,
        max_batch_size: int | None = None,  # lmms-eval passes it for batch_size=auto, which stave does not do
    ) -> None:
        super().__init__()
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise ValueError(f"stave: batch_size must be a positive number, got {batch_size!r}")
        self._batch_size = int(batch_size)
        if device is None:
            device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        video = {
            "fps": fps,
            "nframes": nframes,
            "min_frames": min_frames,
            "max_frames": max_frames,
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "total_pixels": total_pixels,
            "backend": video_backend,
        }
        options = VideoOptions(**{key: value for key, value in video.items() if value is not None})
        if dtype != "auto" and not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise ValueError(f"stave: dtype must be auto or a torch dtype name such as bfloat16, got {dtype!r}")
        loading: dict[str, Any] = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
        if attn_implementation:
            loading["attn_implementation"] = attn_implementation

        from transformers import AutoTokenizer

        model = load_model(pretrained, **loading).to(self._device)
        tokenizer = AutoTokenizer.from_pretrained(pretrained)
        self.answerer = ModelAnswerer(model, tokenizer, video_options=options, max_new_tokens=int(max_new_tokens))
        self.system_prompt = self._resolve_system_prompt(system_prompt) if system_prompt else None

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None) -> StaveModel:
        """As lmms-eval's, except that model_args win over the evaluator's settings (its --batch_size and --device,
        which it always passes) instead of colliding with them."""
        settings = {key: value for key, value in (additional_config or {}).items() if value is not None}
        return cls(**{**settings, **lmms_utils.simple_parse_args_string(arg_string)})

    @property
    def model(self) -> torch.nn.Module:
        return self.answerer.model

    @property
    def tokenizer(self) -> Any:
        return self.answerer.tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def messages(self, context: str, visuals: Iterable[Any]) -> list[dict[str, Any]]:
        """The Qwen messages for one request: its visuals, then its text; with the system prompt if one is set."""
        text = context.replace("<image>", "").replace("<video>", "").strip()
        content = [visual_content(visual) for visual in visuals] + [{"type": "text", "text": text}]
        return self._apply_system_prompt([{"role": "user", "content": content}], self.system_prompt)

    def _visuals(self, doc_to_visual: Callable | None, task: str, split: str, doc_id: int) -> list[Any]:
        if doc_to_visual is None:
            return []
        return _flatten(doc_to_visual(self.task_dict[task][split][doc_id]))

    def _encode(self, context: str, visuals: list[Any], name: str) -> dict[str, Any]:
        return self.answerer.processor.encode(self.messages(context, visuals), train=False, name=name)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        # batches share their generation settings; longest contexts first, so a batch too big shows at once
        collator = lmms_utils.Collator([req.args for req in requests], lambda args: -len(args[0]), grouping=True)
        answers: list[str] = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="stave generate_until")
        for chunk in collator.get_batched(n=self.batch_size):
            gen_kwargs = chunk[0][1]
            settings, until = generation_settings(gen_kwargs, self.answerer.max_new_tokens)
            encoded = [
                self._encode(context, self._visuals(visual, task, split, doc), f"{task}/{split}/{doc}")
                for context, _, visual, doc, task, split in chunk
            ]
            texts = self.answerer.generate_encoded(encoded, **settings)
            for (context, *_), text in zip(chunk, texts, strict=True):
                answer = cut_at_stop_strings(text, until)
                answers.append(answer)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answer)
            bar.update(len(chunk))
        bar.close()
        return collator.get_original(answers)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        args = [_loglikelihood_args(request.args) for request in requests]
        # a document's continuations next to each other, so its prompt (and video) is encoded once
        order = sorted(range(len(args)), key=lambda i: (args[i][4], args[i][5], args[i][3], args[i][0]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(args)
        last_key, prompt = None, None
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="stave loglikelihood")
        for start in range(0, len(order), self.batch_size):
            batch, continuations, encoded = order[start : start + self.batch_size], [], []
            for i in batch:
                context, target, doc_to_visual, doc_id, task, split = args[i]
                if (task, split, doc_id, context) != last_key:
                    last_key = (task, split, doc_id, context)
                    visuals = self._visuals(doc_to_visual, task, split, doc_id)
                    prompt = self._encode(context, visuals, f"{task}/{split}/{doc_id}")
                continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
                continuations.append(continuation)
                encoded.append(self._with_continuation(prompt, continuation))
            scores = self.answerer.label_log_likelihoods(encoded)
            for i, continuation, (total, _, greedy) in zip(batch, continuations, scores, strict=True):
                results[i] = (total, greedy)
                self.cache_hook.add_partial("loglikelihood", (args[i][0], continuation), results[i])
            bar.update(len(batch))
        bar.close()
        return results

    def _with_continuation(self, prompt: dict[str, Any], continuation: str) -> dict[str, Any]:
        """An encoded prompt followed by the continuation's tokens, which alone are labelled."""
        ids = torch.tensor(self.tokenizer(continuation, add_special_tokens=False)["input_ids"], dtype=torch.long)
        return {
            **prompt,
            "input_ids": torch.cat([prompt["input_ids"], ids]),
            "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(ids)]),
            "labels": torch.cat([torch.full_like(prompt["input_ids"], IGNORE_INDEX), ids]),
        }

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("stave's lmms-eval model answers single-round tasks (generate_until, loglikelihood)")


def _loglikelihood_args(args: tuple) -> tuple:
    """(context, continuation or doc_to_target, doc_to_visual, doc_id, task, split); lmms-eval's unconditional
    requests (mutual-information scoring) carry only (context, continuation) and have no document."""
    if len(args) == 2:
        return (*args, None, -1, "", "")
    return tuple(args)
