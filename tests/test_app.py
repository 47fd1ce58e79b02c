"""stave app's functions behind the page (stave.app.backend; no gradio needed): page settings -> the frames the
models get -> the streamed answer, which ends in exactly `stave ask`'s; two models given the same frames; named
errors for bad input; the models and sample clips offered. The page itself, in a browser: test_app_browser.py."""

from __future__ import annotations

import functools
import json
import re
import shlex
import sys
import threading
import time

import pytest
import torch
from training_data import moving_square

import stave
from stave.app.backend import (
    Models,
    answer_settings,
    ask_flags,
    attention_image,
    frame_strip_html,
    model_video_options,
    page_options,
    prepare,
    sample_clips,
    served_models,
    stream_answer,
)
from stave.base import TINY_BASE
from stave.cli import NO_TEXT, _video_options, build_parser, main
from stave.config import TemporalConfig
from stave.errors import error_message
from stave.presets import tiny_model
from stave.tokenizer import build_word_tokenizer
from stave.video import VideoCache, VideoOptions, read_video
from stave.video.encode import write_video

WORDS = ["which", "way", "?", "left", "right", "up", "down"]


def save_tiny(path, preset: str = "tiny-qwen2-vl", *, sta: bool = True, seed: int = 0):
    """A tiny random model with a word tokenizer (it answers several words: something to stream), saved."""
    tokenizer = build_word_tokenizer(WORDS)
    model = tiny_model(preset, tokenizer=tokenizer, seed=seed)
    if sta:
        stave.add_temporal_attention(model, TemporalConfig(init="random"))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A model with STA (Qwen2-VL), one without (Qwen2.5-VL), and an 8-frame 56 x 56 clip at 4 fps."""
    root = tmp_path_factory.mktemp("app")
    video = write_video(root / "clip.mp4", moving_square("left", frames=8), fps=4)
    return {
        "sta": save_tiny(root / "sta"),
        "plain": save_tiny(root / "plain", "tiny-qwen2.5-vl", sta=False, seed=1),
        "video": str(video),
        "root": root,
    }


def ask_command(argv: list[str], capsys) -> str:
    """What `stave ask` prints (its answer line, without the newline)."""
    assert main(argv) == 0
    return capsys.readouterr().out.removesuffix("\n")


def test_page_settings_are_the_video_options_stave_ask_gets_from_the_shown_flags():
    for options, flags in (
        (page_options("frame count", 8, 2.0, 768, 3136, 3136), ["--frames", "8"]),
        (page_options("fps", 16, 1.5, 12, 3136, 50176), ["--fps", "1.5", "--max-frames", "12"]),
        (page_options("frame count", 4.0, None, 32, 784, 3136), ["--frames", "4", "--min-pixels", "784"]),
    ):
        shown = ask_flags(options)
        assert all(flag in shown for flag in flags), shown
        args = build_parser().parse_args(["ask", "--model", "m", "--video", "v", "q", *shown])
        assert _video_options(args) == options
    assert page_options("fps", 16, 1.5, 12, 3136, 50176) == VideoOptions(fps=1.5, max_frames=12, max_pixels=50176,
                                                                         min_pixels=3136)  # fmt: skip
    for fields, reason in (
        (("frame count", 0, 2.0, 768, 3136, 3136), "VideoOptions.nframes must be a positive int, got 0"),
        (("frame count", 2.5, 2.0, 768, 3136, 3136), "frames: 2.5 is not a whole number"),
        (("frame count", 8, 2.0, 768, 3136, None), "max pixels: empty"),
        (("fps", 8, None, 768, 3136, 3136), "fps: empty"),
        (("fps", 8, -1, 768, 3136, 3136), "VideoOptions.fps must be a positive number"),
        (("frame count", 8, 2.0, 768, 6272, 3136), "min_pixels (6272) > max_pixels (3136)"),
        (("every frame", 8, 2.0, 768, 3136, 3136), "sampling: 'every frame' is none of frame count, fps"),
    ):
        with pytest.raises(ValueError, match=re.escape(reason)):
            page_options(*fields)


def test_settings_give_the_frames_and_the_streamed_answer_ends_in_stave_asks(served, capsys):
    models = Models()
    model = models.get(served["sta"])
    options = page_options("frame count", 4, None, 768, 3136, 3136)
    question = "which way ?"
    prepared = prepare([model], served["video"], question, options, VideoCache())
    clip = prepared.clip()
    expected = read_video(served["video"], options)
    assert torch.equal(clip.frames, expected.frames) and clip.timestamps == expected.timestamps
    assert tuple(clip.frames.shape) == (4, 3, 56, 56)
    assert prepared.visual_tokens == [2 * 4 * 4 // 4]  # grid (2, 4, 4), 2 x 2 merge

    pieces = list(stream_answer(model, prepared.encoded[0], max_new_tokens=6))
    answer = pieces[-1]
    argv = ["ask", "--model", served["sta"], "--video", served["video"], question, *ask_flags(options),
            "--max-new-tokens", "6"]  # fmt: skip
    assert (
        answer
        == ask_command(argv, capsys)
        == stave.evaluation.ask(served["sta"], served["video"], question, video_options=options, max_new_tokens=6)
    )
    assert len(answer.split()) >= 3, answer  # a random model rambles: several words to stream
    assert len(set(pieces)) >= 3, pieces  # streamed: the text grew word by word before it was complete
    assert all(answer.startswith(piece) for piece in pieces), pieces

    # the settings shown with the answer hold the command that gives it
    settings = answer_settings(model, prepared, 0, 6)
    command = shlex.split(settings.split("the same from the command line** `")[1].split("`")[0])
    assert command[:2] == ["stave", "ask"] and ask_command(command[1:], capsys) == answer
    times = ", ".join(f"{t:.2f}" for t in expected.timestamps) + " s"
    for shown in ("4 at 56 x 56", times, "visual tokens** 8", "STA in 2 vision blocks"):
        assert shown in settings, (shown, settings)
    strip = frame_strip_html(prepared)
    assert strip.count("<img ") == 4 and 'data-frames="4"' in strip and "56 x 56 pixels" in strip
    assert [f"{t:.2f} s</figcaption>" in strip for t in expected.timestamps] == [True] * 4


def test_no_text_is_said_as_stave_ask_says_it(capsys, tmp_path):
    """The shipped base ends at once on a question it was never trained on: the stream's last value is ""."""
    models = Models()
    base = models.get("stave/tiny-base")
    clip = sample_clips(tmp_path / "samples", n=10)[-1]
    options, _ = model_video_options("stave/tiny-base")
    prepared = prepare([base], str(clip.video), "What is happening in this video?", options, VideoCache())
    assert list(stream_answer(base, prepared.encoded[0]))[-1] == ""
    argv = ["ask", "--model", "stave/tiny-base", "--video", str(clip.video), "What is happening in this video?",
            *ask_flags(options)]  # fmt: skip
    assert ask_command(argv, capsys) == NO_TEXT


def test_two_models_get_the_same_frames_decoded_once(served):
    models = Models()
    pair = [models.get(served["sta"]), models.get(served["plain"])]  # Qwen2-VL with STA, Qwen2.5-VL without
    assert pair[1].answerer.model.config.model_type == "qwen2_5_vl"
    cache = VideoCache()
    prepared = prepare(pair, served["video"], "which way ?", page_options("fps", 8, 4.0, 6, 3136, 3136), cache)
    assert torch.equal(prepared.clip(0).frames, prepared.clip(1).frames)
    assert prepared.clip(0).timestamps == prepared.clip(1).timestamps and prepared.clip(0).frames.shape[0] == 6
    a, b = prepared.encoded
    assert torch.equal(a["pixel_values_videos"], b["pixel_values_videos"])
    assert torch.equal(a["video_grid_thw"], b["video_grid_thw"])
    assert (cache.stats()["misses"], cache.stats()["hits"]) == (1, 1)  # one decode, for both
    for model, encoded in zip(pair, prepared.encoded, strict=True):
        assert list(stream_answer(model, encoded, max_new_tokens=4))[-1] == stave.evaluation.ask(
            model.answerer, served["video"], "which way ?", video_options=prepared.options, max_new_tokens=4
        )


def test_attention_map_for_a_model_with_sta_only(served, tmp_path):
    models = Models()
    sta, plain = models.get(served["sta"]), models.get(served["plain"])
    cache = VideoCache()
    prepared = prepare([sta, plain], served["video"], "which way ?", page_options("frame count", 8, 0, 8, 3136, 3136),
                       cache)  # fmt: skip
    path = attention_image(sta, prepared, cache, tmp_path / "map.png")
    assert path == tmp_path / "map.png" and path.stat().st_size > 2000
    assert attention_image(plain, prepared, cache, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_bad_input_raises_an_error_naming_it_and_the_models_keep_answering(served, tmp_path):
    models = Models()
    model = models.get(served["sta"])
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    wide = write_video(tmp_path / "wide.mp4", torch.zeros(4, 2, 1000, 3, dtype=torch.uint8).numpy(), fps=4)
    options = page_options("frame count", 4, None, 768, 3136, 3136)
    cases = [
        (tmp_path / "corrupt.mp4", options, f"{tmp_path / 'corrupt.mp4'}: not a readable video"),
        (tmp_path / "missing.mp4", options, f"{tmp_path / 'missing.mp4'}: no such file or folder"),
        (
            served["video"],
            page_options("frame count", 16, None, 768, 3136, 3136),
            "asks for 16 frames but the clip has 8",
        ),
        (wide, options, "aspect ratio"),
        (None, options, "video: none given"),
    ]
    for video, video_options, reason in cases:
        with pytest.raises(Exception) as caught:
            prepare([model], video, "which way ?", video_options, VideoCache())
        assert reason in error_message(caught.value), (reason, error_message(caught.value))
    with pytest.raises(ValueError, match="question: empty"):
        prepare([model], served["video"], "  ", options, VideoCache())
    for name, reason in (
        (str(tmp_path / "no-model"), f"{tmp_path / 'no-model'}: no config.json"),
        ("", "model: none chosen"),
    ):
        with pytest.raises(Exception) as caught:
            models.get(name)
        assert reason in error_message(caught.value)
    prepared = prepare([models.get(served["sta"])], served["video"], "which way ?", options, VideoCache())
    assert list(stream_answer(model, prepared.encoded[0], max_new_tokens=3))[-1]  # still answers


def test_an_error_in_generation_reaches_the_reader(served, monkeypatch):
    model = Models().get(served["sta"])
    prepared = prepare([model], served["video"], "which way ?", page_options("frame count", 4, None, 8, 3136, 3136),
                       VideoCache())  # fmt: skip

    def broken(*args, **kwargs):
        raise RuntimeError("generation broke")

    monkeypatch.setattr(model.answerer.model, "generate", broken)
    with pytest.raises(RuntimeError, match="generation broke"):
        list(stream_answer(model, prepared.encoded[0]))
    assert not model.lock.locked()


def test_one_forward_at_a_time_per_model(served):
    """Two requests on one model at once: its forwards never overlap (each waits for the model's lock)."""
    model = Models().get(served["sta"])
    prepared = prepare([model], served["video"], "which way ?", page_options("frame count", 4, None, 8, 3136, 3136),
                       VideoCache())  # fmt: skip
    inside, most = [0], [0]
    forward = model.answerer.model.forward

    @functools.wraps(forward)  # generate reads the signature of forward
    def watched(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.01)  # long enough for the other request to come in if nothing held it back
        try:
            return forward(*args, **kwargs)
        finally:
            inside[0] -= 1

    model.answerer.model.forward = watched
    answers = []

    def request() -> None:
        answers.append(list(stream_answer(model, prepared.encoded[0], max_new_tokens=4)))

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 2 and answers[0][-1] == answers[1][-1]
    assert most[0] == 1


def test_served_models_are_the_base_and_the_last_demo_runs_models(tmp_path, served):
    assert served_models(["x", "y", "z"]) == (["x", "y", "z"], ["x", "y"], [])
    assert served_models([], tmp_path / "no-demo") == (["stave/tiny-base"], ["stave/tiny-base"], [])
    demo = tmp_path / "demo"
    demo.mkdir()
    arms = {"baseline": {"model": served["plain"]}, "staveq2": {"model": served["sta"]}}
    (demo / "demo.json").write_text(json.dumps({"arms": arms}))
    choices, selected, notes = served_models([], demo)
    assert choices == ["stave/tiny-base", served["plain"], served["sta"]] and selected == choices[1:] and notes == []
    arms["staveq2"]["model"] = str(tmp_path / "gone")
    (demo / "demo.json").write_text(json.dumps({"arms": arms}))
    choices, selected, notes = served_models([], demo)
    assert choices == ["stave/tiny-base", served["plain"]] and selected == ["stave/tiny-base"]
    assert notes == [f"{demo / 'demo.json'}: names models that are not there: {tmp_path / 'gone'}"]
    (demo / "demo.json").write_text("{")
    choices, _, notes = served_models([], demo)
    assert choices == ["stave/tiny-base"] and notes[0].startswith(f"{demo / 'demo.json'}: not a readable")


def test_default_sampling_settings_are_the_models_training_settings(served):
    options, source = model_video_options("stave/tiny-base")
    assert options == VideoOptions(nframes=8, min_pixels=84 * 84, max_pixels=84 * 84)
    assert source == "stave/tiny-base's training recipe"
    assert model_video_options(served["sta"]) == (VideoOptions(), f"VideoOptions' defaults ({served['sta']} has no "
                                                                  "stave-run.json)")  # fmt: skip
    assert (TINY_BASE / "stave-run.json").is_file()


def test_sample_clips_come_with_their_questions(tmp_path):
    clips = sample_clips(tmp_path / "samples", n=10)
    assert len(clips) == 10 and len({c.video for c in clips}) == 10
    assert {c.label.split("(")[1].split(")")[0] for c in clips} >= {"left_right", "up_down", "rotation", "approach"}
    for clip in clips:
        assert clip.video.is_file() and clip.answer in clip.question and clip.question in clip.label


def test_stave_app_without_gradio_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert main(["app", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stave app: error: stave app needs gradio") and "pip install 'stave[app]'" in err
