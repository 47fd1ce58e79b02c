"""The functions behind `stave app` (stave.app.page builds the Gradio page on them; nothing here imports gradio).

One request of the page, step by step:
    page_options(...)          the page's sampling fields -> VideoOptions (a bad value raises an error naming it)
    Models.get(name)           a model folder or shipped name, loaded on first use; one that does not load raises
                               its named error (and is tried again when asked for again)
    prepare(models, ...)       the video sampled once and the question encoded for every model: all models' processors
                               read the video through one VideoCache, so they are given the same frames
    stream_answer(model, ...)  the answer as it is generated (transformers' TextIteratorStreamer); the last value is
                               exactly what `stave ask` prints for the same model, video, question and settings
    frame_strip_html, answer_settings, attention_image
                               what the model was given (frames with timestamps, resolution, visual tokens), the
                               settings to report with the answer, and STA's temporal attention (`stave explain`)
Each model runs one forward at a time (ServedModel.lock); the page queues requests.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..base import SHIPPED, resolve_model
from ..errors import error_message
from ..evaluation.model import ModelAnswerer, load_answerer
from ..explain import save_map, sta_blocks, temporal_attention_map
from ..modeling import temporal_pooling
from ..processing import VideoChatProcessor
from ..video import VideoCache, VideoClip, VideoOptions

TINY_BASE_NAME = next(iter(SHIPPED))
SAMPLING_MODES = ("frame count", "fps")
SAMPLE_TASKS = ("left_right", "up_down", "rotation", "approach", "still")
MAX_NEW_TOKENS = 64  # stave ask's default
STRIP_SIDE = 256  # frames larger than this are shown scaled down (the caption gives the size the model got)


# -- models ---------------------------------------------------------------------------------------------------


@dataclass
class ServedModel:
    """A model of the page: its answerer (model, tokenizer) as `stave ask` loads it, and a lock held for every
    forward, so that one runs at a time per model."""

    name: str  # as the user gave it: a model folder or a shipped name
    answerer: ModelAnswerer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def processor(self, options: VideoOptions, cache: VideoCache | None = None) -> VideoChatProcessor:
        """The model's processor with these sampling settings (reading videos through `cache`)."""
        return VideoChatProcessor.for_model(self.answerer.tokenizer, self.answerer.model, options, cache=cache)

    @property
    def sta_blocks(self) -> list[int]:
        """Vision blocks with temporal attention (empty: a model without STA)."""
        return sta_blocks(self.answerer.model)

    def description(self) -> str:
        """One line: family, size, dtype, device, STA blocks, temporal pooling."""
        model = self.answerer.model
        parameter = next(model.parameters())
        blocks = self.sta_blocks
        sta = f"STA in {len(blocks)} vision blocks {blocks}" if blocks else "no STA"
        size = sum(p.numel() for p in model.parameters())
        return (
            f"{model.config.model_type}, {size / 1e6:.1f}M parameters, {str(parameter.dtype).removeprefix('torch.')}"
            f" on {parameter.device}; {sta}; temporal pooling: {temporal_pooling(model) or 'none'}"
        )


class Models:
    """Models by name, loaded on first use (as `stave ask` loads them), at most `max_loaded` kept (the least
    recently used is let go first). A name that does not load raises its error, and is tried again next time."""

    def __init__(self, max_loaded: int = 4) -> None:
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, ServedModel] = OrderedDict()
        self._lock = threading.Lock()  # one load at a time

    def get(self, name: str) -> ServedModel:
        name = (name or "").strip()
        if not name:
            raise ValueError("model: none chosen; pick one or type a model folder")
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            model = ServedModel(name, load_answerer(name, max_new_tokens=MAX_NEW_TOKENS))
            self._loaded[name] = model
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return model


def served_models(given: Sequence[str] = (), demo: str | Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """The models the page offers, the (at most two) it selects, and notes to show.

    With `given` (`stave app --model ...`): those, the first two selected. Without: the shipped tiny base and, when
    the `stave demo` run in `demo` (default: the demo's own default, runs/demo) has both, its two fine-tuned models,
    which are then selected side by side; else the base alone."""
    if given:
        return list(given), list(given[:2]), []
    from ..experiments.demo import DemoSettings

    report = Path(demo if demo is not None else DemoSettings().out) / "demo.json"
    choices, notes = [TINY_BASE_NAME], []
    if report.is_file():
        try:
            arms = json.loads(report.read_text())["arms"]
            models = [str(arm["model"]) for arm in arms.values()]
        except (OSError, ValueError, KeyError, TypeError) as error:
            notes.append(
                f"{report}: not a readable `stave demo` report ({error_message(error)}); its models are not offered"
            )
            models = []
        missing = [m for m in models if not (Path(m) / "config.json").is_file()]
        if missing:
            notes.append(f"{report}: names models that are not there: {', '.join(missing)}")
        choices += [m for m in models if m not in missing]
    return choices, (choices[1:3] if len(choices) >= 3 else choices[:1]), notes


def model_video_options(name: str) -> tuple[VideoOptions, str]:
    """The sampling settings a model was trained with (data.video of the recipe in its stave-run.json) and where
    they come from; VideoOptions' defaults for a model without that record."""
    record = resolve_model(name) / "stave-run.json"
    if not record.is_file():
        return VideoOptions(), f"VideoOptions' defaults ({name} has no stave-run.json)"
    try:
        return VideoOptions(**json.loads(record.read_text())["recipe"]["data"]["video"]), f"{name}'s training recipe"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return VideoOptions(), f"VideoOptions' defaults ({record} has no usable data.video: {error_message(error)})"


# -- sampling settings ------------------------------------------------------------------------------------------


def whole_number(value: Any, name: str) -> int:
    if value is None or value == "":
        raise ValueError(f"{name}: empty; give a whole number")
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{name}: {value} is not a whole number")
    return int(number)


def page_options(mode: str, frames: Any, fps: Any, max_frames: Any, min_pixels: Any, max_pixels: Any) -> VideoOptions:
    """VideoOptions from the page's sampling fields: `mode` "frame count" (exactly `frames` frames) or "fps" (at
    `fps` frames per second, at most `max_frames`); `min_pixels` / `max_pixels` per frame. The other settings
    are VideoOptions' defaults, so `ask_flags` gives `stave ask` the same options."""
    values: dict[str, Any] = {
        "max_frames": whole_number(max_frames, "max frames"),
        "min_pixels": whole_number(min_pixels, "min pixels"),
        "max_pixels": whole_number(max_pixels, "max pixels"),
    }
    if mode == "frame count":
        values["nframes"] = whole_number(frames, "frames")
    elif mode == "fps":
        if fps is None or fps == "":
            raise ValueError("fps: empty; give a number of frames per second")
        values["fps"] = float(fps)
    else:
        raise ValueError(f"sampling: {mode!r} is none of {', '.join(SAMPLING_MODES)}")
    return VideoOptions(**values)


def ask_flags(options: VideoOptions) -> list[str]:
    """The `stave ask` flags that give these options (made by page_options: other fields at their defaults)."""
    how = ["--frames", str(options.nframes)] if options.nframes is not None else ["--fps", f"{options.fps or 2.0:g}"]
    pixels = ["--min-pixels", str(options.min_pixels), "--max-pixels", str(options.max_pixels)]
    return [*how, "--max-frames", str(options.max_frames), *pixels]


# -- one request ------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One question about one video, encoded for each model from the same sampled frames.

    Attributes:
        video: the video file; question: as asked; options: the sampling settings.
        encoded: per model (in the order given), the processor's encoding (input_ids, pixels, grid, clips).
        visual_tokens: per model, the video placeholder tokens (<|video_pad|>, <video>) the LLM gets for the video.
        grids: per model, the video's (t, h, w) as its tower sees it (stave.models.MediaFormat.video_grids).
    """

    video: str
    question: str
    options: VideoOptions
    encoded: list[dict[str, Any]]
    visual_tokens: list[int]
    grids: list[tuple[int, int, int]]

    def clip(self, index: int = 0) -> VideoClip:
        """The frames model `index` was given: (T, 3, H, W) uint8 and their timestamps."""
        return self.encoded[index]["clips"][0]


def prepare(
    models: Sequence[ServedModel], video: str | Path | None, question: str, options: VideoOptions, cache: VideoCache
) -> Prepared:
    """Sample `video` with `options` and encode `question` for each model, as `stave ask` does; every processor
    reads through `cache`, so the video is decoded once and all models of one patch geometry get the same frames.
    Raises the video's named error (missing, unreadable, too short for the settings, aspect ratio ...)."""
    if not video:
        raise ValueError("video: none given; upload one or pick a sample clip")
    if not question or not question.strip():
        raise ValueError("question: empty; type one")
    conversation = [
        {"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": question}]}
    ]
    encoded, tokens, grids = [], [], []
    for model in models:
        processor = model.processor(options, cache)
        item = processor.encode(conversation, train=False, name=str(video))
        encoded.append(item)
        tokens.append(int((item["input_ids"] == processor.video_token_id).sum()))
        grids.append(processor.media.video_grids(item, processor.spec)[0])
    return Prepared(str(video), question, options, encoded, tokens, grids)


def stream_answer(
    model: ServedModel, encoded: dict[str, Any], *, max_new_tokens: int = MAX_NEW_TOKENS
) -> Iterator[str]:
    """Greedy generation for one encoded question (prepare's), streamed: yields the answer so far each time the
    model has produced more text; the last value is the whole answer, exactly what `stave ask` returns ("" when
    the model generated no text). Generation runs in a thread holding the model's lock, and finishes (within
    `max_new_tokens`) even when the caller stops reading."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(model.answerer.tokenizer, skip_prompt=True, skip_special_tokens=True)
    outcome: dict[str, Any] = {}

    def generate() -> None:
        try:
            with model.lock:
                outcome["answer"] = model.answerer.generate_encoded(
                    [encoded], max_new_tokens=max_new_tokens, streamer=streamer
                )[0]
        except BaseException as error:  # handed to the reader, which raises it
            outcome["error"] = error
            streamer.end()

    thread = threading.Thread(target=generate, name=f"stave-app-generate-{model.name}", daemon=True)
    thread.start()
    text, shown = "", ""
    for piece in streamer:
        text += piece
        if text.strip() != shown:
            shown = text.strip()
            yield shown
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["answer"]


def attention_image(model: ServedModel, prepared: Prepared, cache: VideoCache, path: str | Path) -> Path | None:
    """`stave explain`'s temporal attention map (last STA block) of this video, saved as a PNG at `path`; None for a
    model without STA."""
    if not model.sta_blocks:
        return None
    with model.lock:
        result = temporal_attention_map(model.answerer.model, model.processor(prepared.options, cache), prepared.video)
    return save_map(result, path, title=f"{Path(model.name).name}: STA block {result.block}")


def _frame_uri(frame: torch.Tensor) -> str:
    from PIL import Image

    image = Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy())
    if max(image.size) > STRIP_SIDE:
        image.thumbnail((STRIP_SIDE, STRIP_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def frame_strip_html(prepared: Prepared) -> str:
    """The frames the (first) model was given, in a row, each with its time in the source, and a line on their
    number, resolution after resizing and the visual tokens each model got."""
    clip = prepared.clip()
    t, _, height, width = clip.frames.shape
    figures = "".join(
        f'<figure class="stave-frame"><img src="{_frame_uri(frame)}" alt="frame {i} at {time:.2f} s" '
        f'style="height:84px;image-rendering:pixelated"><figcaption>{time:.2f} s</figcaption></figure>'
        for i, (frame, time) in enumerate(zip(clip.frames, clip.timestamps, strict=True))
    )
    tokens = " / ".join(str(n) for n in prepared.visual_tokens)
    summary = (
        f"{t} frames, {width} x {height} pixels each after resizing, sampled at {clip.sampled_fps:.2f} fps from a "
        f"{clip.duration:.2f} s clip of {clip.total_frames} frames at {clip.source_fps:.2f} fps; "
        f"visual tokens: {tokens}"
    )
    return (
        f'<div class="stave-strip" data-frames="{t}"><p class="stave-strip-summary">{summary}</p>'
        f'<div style="display:flex;gap:6px;overflow-x:auto">{figures}</div></div>'
    )


def answer_settings(model: ServedModel, prepared: Prepared, index: int, max_new_tokens: int) -> str:
    """Markdown: everything one needs to report this answer — the model, the frames and tokens it got, the
    sampling and generation settings, versions, and the `stave ask` command that gives the same answer."""
    import transformers

    from .. import __version__

    clip = prepared.clip(index)
    t, _, height, width = clip.frames.shape
    grid = prepared.grids[index]
    options = ", ".join(f"{k}={v}" for k, v in prepared.options.to_dict().items())
    command = shlex.join(
        ["stave", "ask", "--model", model.name, "--video", prepared.video, prepared.question,
         *ask_flags(prepared.options), "--max-new-tokens", str(max_new_tokens)]
    )  # fmt: skip
    return "\n".join(
        [
            f"- **model** `{model.name}`: {model.description()}",
            f"- **frames** {t} at {width} x {height} ({', '.join(f'{s:.2f}' for s in clip.timestamps)} s; "
            f"decoder {clip.backend})",
            f"- **visual tokens** {prepared.visual_tokens[index]} (grid t, h, w = {grid})",
            f"- **sampling** {options}",
            f"- **generation** greedy, at most {max_new_tokens} new tokens",
            f"- **versions** stave {__version__}, transformers {transformers.__version__}, torch {torch.__version__}",
            f"- **the same from the command line** `{command}`",
        ]
    )


# -- sample clips -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleClip:
    """A generated clip with a question it answers (`stave synth`)."""

    label: str
    video: Path
    question: str
    answer: str


def sample_clips(directory: str | Path, *, n: int = 10, seed: int = 0) -> list[SampleClip]:
    """Generate `n` synthetic clips into `directory` (absent or empty) and return one question for each (the
    first of its records): direction pairs that only temporal order tells apart, and still clips."""
    from ..synthetic import generate

    directory = Path(directory)
    generate(directory, n=n, seed=seed, tasks=SAMPLE_TASKS, val_fraction=0.0)
    clips: dict[str, SampleClip] = {}
    for line in (directory / "train.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["video"] in clips:
            continue
        question = record["conversations"][0]["value"].removeprefix("<video>").strip()
        answer = record["conversations"][1]["value"]
        label = f"{Path(record['video']).stem} ({record['task']}): {question}"
        clips[record["video"]] = SampleClip(label, directory / record["video"], question, answer)
    return list(clips.values())
