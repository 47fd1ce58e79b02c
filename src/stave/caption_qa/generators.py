"""The language models that write the questions: a local transformers causal LM (batched), or any
OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp's server, ...), asked concurrently with
timeouts and bounded retries.

Both take an iterable of Requests (chat messages and a seed per video) and yield one Completion per request, in
the requests' order, lazily (a run over WebVid's 10M captions streams). Each request carries its own seed, so a
video's generation depends on the seed, the prompt and the model only — not on its batch, the concurrency, or
where a resumed run started: the local model samples every row of a batch from its own torch.Generator
(SeededSampler); endpoints get the seed in the request (`seed`, which vLLM, TGI and llama.cpp honour).

The endpoint client is the standard library's (urllib.request in a concurrent.futures thread pool): the protocol
needs one POST, and the `openai` package would be a dependency for that alone, with retry rules of its own.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..errors import StaveError

RETRYABLE_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)


class GeneratorError(StaveError, RuntimeError):
    """A model that cannot write the questions: an endpoint that refuses the requests themselves (HTTP 4xx other
    than timeouts and rate limits: a wrong model name, a bad key, a bad parameter; the URL, the status and the
    server's message are named), or a local model without a chat template."""


class SamplingError(StaveError, ValueError):
    """A sampling setting out of its range; names it."""


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn. temperature 0: greedy. top_p: nucleus sampling (1: off). max_new_tokens: the most
    tokens one generation may have (`max_tokens` of the chat-completions API)."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise SamplingError(f"Sampling.temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"Sampling.top_p: must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise SamplingError(f"Sampling.max_new_tokens: must be >= 1, got {self.max_new_tokens}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Request:
    """One generation to make: chat messages ([{"role", "content"}]), its seed, and the caller's `key`."""

    key: Any
    messages: list[dict[str, str]]
    seed: int


@dataclass(frozen=True)
class Completion:
    """What came back for a Request: the text (None when every attempt failed, `error` says why), why it
    stopped ("stop", or "length" at max_new_tokens) and the number of attempts."""

    request: Request
    text: str | None
    finish_reason: str | None = None
    error: str | None = None
    attempts: int = 1


class QAGenerator(Protocol):
    def settings(self) -> dict[str, Any]:
        """Everything that decides what it writes (model, sampling): recorded, and checked when resuming."""

    def run_settings(self) -> dict[str, Any]:
        """How it runs (batch size, concurrency, timeouts): recorded, free to change on resume."""

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        """One Completion per request, in order, lazily; a generator, closed by the caller that stops early."""


# --- local transformers model ------------------------------------------------------------------------------


class SeededSampler:
    """A logits processor that draws each row's next token from its own torch.Generator (seeded per request)
    and leaves only that token possible, so greedy search takes it: every row's tokens are those of a batch of
    one, whatever else the batch holds. Apply after the temperature / top-p warpers."""

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float(), dim=-1)
        draws = [torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self.generators, strict=True)]
        chosen = torch.cat(draws)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen)), chosen] = 0.0
        return out


class LocalGenerator:
    """A transformers causal LM with a chat template (e.g. Qwen2.5-7B-Instruct, the paper's), generating
    `batch_size` prompts at a time with left padding. Only the given Sampling applies (the checkpoint's own
    generation_config sampling values are not used), so the recorded settings are the whole story."""

    def __init__(self, model, tokenizer, *, name: str, sampling: Sampling = Sampling(), batch_size: int = 8) -> None:
        if batch_size < 1:
            raise SamplingError(f"batch_size: must be >= 1, got {batch_size}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise GeneratorError(f"{name}: the tokenizer has no chat template (an instruction-tuned model is needed)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.sampling = sampling
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = getattr(model.generation_config, "eos_token_id", None)
        self.eos_token_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])

    @classmethod
    def from_pretrained(
        cls, path: str, *, sampling: Sampling = Sampling(), batch_size: int = 8, dtype: str = "auto",
        device: str | None = None,
    ) -> LocalGenerator:  # fmt: skip
        """Load a model folder (AutoModelForCausalLM + AutoTokenizer; never remote code) onto `device` (default:
        cuda when there is one, else the CPU)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)  # `dtype`: transformers >= 4.56
        return cls(model.to(device), tokenizer, name=str(path), sampling=sampling, batch_size=batch_size)

    def settings(self) -> dict[str, Any]:
        import transformers

        return {
            "kind": "local",
            "model": self.name,
            "sampling": self.sampling.to_dict(),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "transformers": transformers.__version__,
        }

    def run_settings(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "device": str(self.model.device)}

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        batch: list[Request] = []
        for request in requests:
            batch.append(request)
            if len(batch) == self.batch_size:
                yield from self._batch(batch)
                batch = []
        if batch:
            yield from self._batch(batch)

    @torch.no_grad()
    def _batch(self, batch: list[Request]) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        texts = [
            self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in batch
        ]
        self.tokenizer.padding_side = "left"
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        processors = LogitsProcessorList()
        if self.sampling.temperature > 0:
            processors.append(TemperatureLogitsWarper(self.sampling.temperature))
            if self.sampling.top_p < 1:
                processors.append(TopPLogitsWarper(self.sampling.top_p))
            processors.append(SeededSampler([r.seed for r in batch], self.model.device))
        config = GenerationConfig(
            max_new_tokens=self.sampling.max_new_tokens,
            do_sample=False,  # SeededSampler has drawn the token; greedy search takes it
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_token_ids),
        )
        output = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
        new = output[:, inputs["input_ids"].shape[1] :].tolist()
        completions = []
        for request, tokens in zip(batch, new, strict=True):
            stopped = [i for i, token in enumerate(tokens) if token in self.eos_token_ids]
            tokens = tokens[: stopped[0]] if stopped else tokens
            reason = "stop" if stopped else "length"  # a row without an end token ran to max_new_tokens
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            completions.append(Completion(request, text, finish_reason=reason))
        return completions


# --- OpenAI-compatible endpoint ----------------------------------------------------------------------------


class _Retryable(Exception):
    """A failed attempt worth repeating (connection, timeout, 5xx, 429, a malformed response)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class EndpointGenerator:
    """POST {url}/chat/completions for every request, `concurrency` at a time. An attempt fails on a connection
    error, `timeout` seconds without an answer, HTTP 408/409/425/429/5xx or a response that is not a chat
    completion; it is repeated up to `retries` times, waiting backoff * 2**k seconds (or the server's
    Retry-After, up to 60 s). A request whose attempts all failed comes back with its error (text None); HTTP
    4xx otherwise raises GeneratorError (the requests themselves are wrong: every other one would fail too)."""

    def __init__(
        self, url: str, model: str, *, sampling: Sampling = Sampling(), api_key: str | None = None,
        concurrency: int = 8, timeout: float = 120.0, retries: int = 3, backoff: float = 1.0,
    ) -> None:  # fmt: skip
        if concurrency < 1 or timeout <= 0 or retries < 0 or backoff < 0:
            raise SamplingError(
                f"endpoint: need concurrency >= 1, timeout > 0, retries >= 0, backoff >= 0; got {concurrency}, "
                f"{timeout}, {retries}, {backoff}"
            )
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model = model
        self.sampling = sampling
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def settings(self) -> dict[str, Any]:
        return {"kind": "endpoint", "model": self.model, "sampling": self.sampling.to_dict()}

    def run_settings(self) -> dict[str, Any]:
        return {
            "url": self.url, "concurrency": self.concurrency, "timeout": self.timeout, "retries": self.retries,
            "backoff": self.backoff,
        }  # fmt: skip

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        window: collections.deque[concurrent.futures.Future] = collections.deque()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="make-qa")
        try:
            for request in requests:
                window.append(pool.submit(self._ask, request))
                if len(window) >= 2 * self.concurrency:  # a bounded window: never the whole input in memory
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _ask(self, request: Request) -> Completion:
        body = {
            "model": self.model,
            "messages": request.messages,
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_tokens": self.sampling.max_new_tokens,
            "seed": request.seed,
        }
        error = ""
        for attempt in range(self.retries + 1):
            try:
                text, reason = self._post(body)
                return Completion(request, text, finish_reason=reason, attempts=attempt + 1)
            except _Retryable as failure:
                error = str(failure)
                if attempt < self.retries:
                    time.sleep(failure.wait if failure.wait is not None else self.backoff * 2**attempt)
        return Completion(request, None, error=error, attempts=self.retries + 1)

    def _post(self, body: dict[str, Any]) -> tuple[str, str | None]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        http_request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as failure:
            message = failure.read()[:500].decode("utf-8", "replace")
            if failure.code in RETRYABLE_STATUS:
                retry_after = failure.headers.get("Retry-After", "")
                wait = min(float(retry_after), 60.0) if retry_after.replace(".", "", 1).isdigit() else None
                raise _Retryable(f"HTTP {failure.code}: {message}", wait) from None
            raise GeneratorError(f"{self.url}: HTTP {failure.code}: {message}") from None
        except TimeoutError:  # socket.timeout is TimeoutError
            raise _Retryable(f"no answer within {self.timeout} s") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError) as failure:
            raise _Retryable(f"{type(failure).__name__}: {getattr(failure, 'reason', failure)}") from None
        try:
            choice = json.loads(raw)["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"not a chat completion: {raw[:300].decode('utf-8', 'replace')!r}") from None
        if not isinstance(text, str):
            raise _Retryable(f"the completion's content is not text: {text!r}"[:300])
        return text, choice.get("finish_reason")
