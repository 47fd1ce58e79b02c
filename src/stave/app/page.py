"""The Gradio page of `stave app`: a thin layer over stave.app.backend (which holds everything it computes).

Layout: on the left the video (upload, or a generated sample clip), the question, the sampling settings (with
where their defaults come from) and the models (A, and B to compare); on the right a status line, the strip of
frames the models were given, and per model the streamed answer, the settings to report with it and, for a model
with STA, its temporal attention map. Errors in a request are shown in the status line (`Error: ...`, the message
`stave` prints for the same input); the server keeps serving.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cli import NO_TEXT, REPORTED_ERRORS
from ..errors import error_message
from ..video import VideoCache
from . import require_gradio
from .backend import (
    MAX_NEW_TOKENS,
    SAMPLING_MODES,
    Models,
    answer_settings,
    attention_image,
    frame_strip_html,
    model_video_options,
    page_options,
    prepare,
    sample_clips,
    served_models,
    stream_answer,
    whole_number,
)

NO_MODEL = "(none)"
SIDES = ("a", "b")


def build_page(
    choices: Sequence[str],
    selected: Sequence[str],
    samples: Sequence[Any],
    work: Path,
    *,
    notes: Sequence[str] = (),
    max_upload_mb: float = 200,
    cache_bytes: int = 2 * 1024**3,
):
    """The page (a gradio.Blocks, not launched): `choices` the models offered, `selected` the one or two chosen at
    first, `samples` SampleClips, `work` a folder for attention maps."""
    gr = require_gradio()
    models = Models()
    cache = VideoCache(max_bytes=cache_bytes)  # every model's processor reads through it: the same frames for all
    defaults, source = model_video_options(selected[0]) if selected else model_video_options(choices[0])
    by_label = {sample.label: sample for sample in samples}

    def pick_sample(label: str | None):
        sample = by_label.get(label or "")
        if sample is None:
            return gr.update(), gr.update()
        return str(sample.video), sample.question

    def ask(video, question, mode, frames, fps, max_frames, min_pixels, max_pixels, max_new_tokens, model_a, model_b):
        """Yields (status, strip, answer, settings and map of A, the same of B) as the request goes on."""
        state: dict[str, Any] = {
            "status": "",
            "strip": "",
            "answer": ["", ""],
            "settings": ["", ""],
            "map": [None, None],
        }

        def view(status: str | None = None):
            if status is not None:
                state["status"] = status
            per_side = [
                (
                    state["answer"][i],
                    state["settings"][i],
                    gr.update(value=state["map"][i], visible=bool(state["map"][i])),
                )
                for i in range(2)
            ]
            return (state["status"], state["strip"], *per_side[0], *per_side[1])

        start = time.perf_counter()
        try:
            options = page_options(mode, frames, fps, max_frames, min_pixels, max_pixels)
            tokens = whole_number(max_new_tokens, "max new tokens")
            names = [model_a] + ([model_b] if model_b and model_b != NO_MODEL else [])
            yield view(f"Loading {', '.join(f'`{n}`' for n in names)} ...")
            served = [models.get(name) for name in names]
            yield view("Sampling the video ...")
            prepared = prepare(served, video, question, options, cache)
            state["strip"] = frame_strip_html(prepared)
            for i, model in enumerate(served):
                yield view(f"Answering with `{model.name}` ...")
                for text in stream_answer(model, prepared.encoded[i], max_new_tokens=tokens):
                    state["answer"][i] = text
                    yield view()
                state["answer"][i] = state["answer"][i] or NO_TEXT
                state["settings"][i] = answer_settings(model, prepared, i, tokens)
                if model.sta_blocks:
                    yield view(f"Temporal attention of `{model.name}` ...")
                    # gradio copies each shown picture into its cache, so one file per side is written over
                    state["map"][i] = str(attention_image(model, prepared, cache, work / f"sta-{SIDES[i]}.png"))
            yield view(f"Done in {time.perf_counter() - start:.1f} s.")
        except REPORTED_ERRORS as error:
            yield view(f"Error: {error_message(error)}")
        except Exception as error:  # a bug: shown, with the traceback in the server's log; the server goes on
            traceback.print_exc()
            yield view(f"Unexpected error (a bug; the traceback is in the server's log): {type(error).__name__}: "
                       f"{error_message(error)}")  # fmt: skip

    def model_defaults(name: str):
        """The sampling fields set to the defaults of model A (its training recipe's), and where they come from."""
        options, origin = model_video_options(name) if name else (defaults, source)
        return (
            f"Defaults: {origin}.",
            "frame count" if options.nframes is not None else "fps",
            options.nframes or 16,
            options.fps or 2.0,
            options.max_frames,
            options.min_pixels,
            options.max_pixels,
        )

    # uploads and shown pictures stay in gradio's cache for a day (checked hourly), then are deleted
    with gr.Blocks(title="stave app", analytics_enabled=False, delete_cache=(3600, 86400)) as page:
        gr.Markdown(
            "# stave: ask a video\nUpload a video (or pick a generated sample clip), ask, and see the frames the model "
            "was given, its answer as it is generated and, for a model with stacked temporal attention (STA), where "
            "it looked across time. With model B set, both answer from the same frames."
        )
        for note in notes:
            gr.Markdown(f"Note: {note}")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.File(label=f"Video (up to {max_upload_mb:g} MB)", type="filepath", elem_id="video")
                sample = gr.Dropdown(
                    [s.label for s in samples], value=None, label="... or a sample clip (stave synth)", elem_id="sample"
                )
                question = gr.Textbox(label="Question", lines=2, elem_id="question")
                with gr.Accordion("Sampling", open=True):
                    origin = gr.Markdown(f"Defaults: {source}.", elem_id="sampling-defaults")
                    mode = gr.Radio(
                        list(SAMPLING_MODES),
                        value="frame count" if defaults.nframes is not None else "fps",
                        label="Take frames by",
                        elem_id="mode",
                    )
                    with gr.Row():
                        frames = gr.Number(defaults.nframes or 16, label="frames", precision=0, elem_id="frames-n")
                        fps = gr.Number(defaults.fps or 2.0, label="fps", elem_id="fps")
                        max_frames = gr.Number(
                            defaults.max_frames, label="max frames", precision=0, elem_id="max-frames"
                        )
                    with gr.Row():
                        min_pixels = gr.Number(
                            defaults.min_pixels, label="min pixels per frame", precision=0, elem_id="min-pixels"
                        )
                        max_pixels = gr.Number(
                            defaults.max_pixels, label="max pixels per frame", precision=0, elem_id="max-pixels"
                        )
                        max_new_tokens = gr.Number(
                            MAX_NEW_TOKENS, label="max new tokens", precision=0, elem_id="tokens"
                        )
                model_a = gr.Dropdown(
                    list(choices), value=selected[0] if selected else choices[0], allow_custom_value=True,
                    label="Model A (a model folder or stave/tiny-base)", elem_id="model-a",
                )  # fmt: skip
                model_b = gr.Dropdown(
                    [NO_MODEL, *choices], value=selected[1] if len(selected) > 1 else NO_MODEL, allow_custom_value=True,
                    label="Model B, to compare (same frames)", elem_id="model-b",
                )  # fmt: skip
                button = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                strip = gr.HTML(elem_id="frames")
                outputs: list[Any] = [status, strip]
                columns = []
                with gr.Row():
                    for side in SIDES:
                        with gr.Column(visible=side == "a" or len(selected) > 1) as column:
                            columns.append(column)
                            outputs.append(
                                gr.Textbox(label=f"Answer {side.upper()}", lines=2, elem_id=f"answer-{side}")
                            )
                            outputs.append(gr.Markdown(elem_id=f"settings-{side}"))
                            outputs.append(
                                gr.Image(label=f"Temporal attention, {side.upper()}", type="filepath",
                                         elem_id=f"attention-{side}", interactive=False, visible=False)
                            )  # fmt: skip
        sample.change(pick_sample, [sample], [video, question])
        model_b.change(lambda name: gr.update(visible=bool(name) and name != NO_MODEL), [model_b], [columns[1]])
        model_a.input(model_defaults, [model_a], [origin, mode, frames, fps, max_frames, min_pixels, max_pixels])
        inputs = [video, question, mode, frames, fps, max_frames, min_pixels, max_pixels, max_new_tokens]
        event = dict(fn=ask, inputs=[*inputs, model_a, model_b], outputs=outputs, concurrency_limit=1)
        button.click(**event)
        question.submit(**event)
    return page


def serve(
    given: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = 200,
    samples: int = 10,
    demo: str | Path | None = None,
) -> None:
    """Build the page and serve it until interrupted: the `given` models (default: the shipped base and the last
    `stave demo` run's models), `samples` generated clips, uploads up to `max_upload_mb`, one request at a time
    in the queue. Binds to `host` (only this machine by default)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no calls out (version check, telemetry)
    require_gradio()
    choices, selected, notes = served_models(given, demo)
    work = Path(tempfile.mkdtemp(prefix="stave-app-"))
    try:
        clips = sample_clips(work / "samples", n=samples) if samples else []
        page = build_page(choices, selected, clips, work, notes=notes, max_upload_mb=max_upload_mb)
        print(f"stave app: models {', '.join(choices)}; {len(clips)} sample clips in {work / 'samples'}", flush=True)
        page.queue(max_size=64).launch(
            server_name=host,
            server_port=port,
            max_file_size=f"{max_upload_mb:g}mb",
            allowed_paths=[str(work)],
            share=False,
            show_error=True,
            ssr_mode=False,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
