"""The `stave` command line: figures of `stave info`, the tiny end-to-end forward, the commands on tiny models,
and how errors reach the user (one line, exit status 2; the traceback with --debug)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys

import pytest
from conftest import generated_text

import stave
from stave import cli
from stave.cli import main, sta_cost
from stave.config import TemporalConfig
from stave.errors import StaveError
from stave.video import VideoError, VideoOptions


def test_info_prints_the_papers_figures_for_qwen2_vl_7b(capsys):
    assert main(["info", "--preset", "qwen2-vl-7b"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("qwen2-vl-7b"))
    assert "1,643,200" in line and "52,582,400" in line and "7.78%" in line and "8.33%" in line


def test_info_scales_with_head_scale_and_layers():
    half = sta_cost("qwen2-vl-7b", TemporalConfig(head_scale=0.5))
    assert half["sta_total"] == 105_041_920 and half["heads"] == "8x80"
    full = sta_cost("qwen2-vl-7b", TemporalConfig(head_scale=1.0))
    assert round(full["sta_total"] / 1e6, 1) == 210.0
    sixteen = sta_cost("qwen2-vl-2b", TemporalConfig(layers=list(range(16))))
    assert sixteen["sta_blocks"] == 16 and sixteen["sta_total"] == 16 * 1_643_200
    qwen25 = sta_cost("qwen2.5-vl-7b", TemporalConfig())
    assert qwen25["sta_per_block"] == 1_641_920  # RMSNorm has no bias


def test_info_lists_every_preset(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("qwen")}
    assert {"qwen2-vl-2b", "qwen2-vl-72b", "qwen2.5-vl-3b", "qwen2.5-vl-72b", "qwen3-vl-2b", "qwen3-vl-4b",
            "qwen3-vl-8b", "qwen3-vl-32b", "qwen3-vl-30b-a3b", "qwen3-vl-235b-a22b"} <= listed  # fmt: skip
    # Qwen3.5 needs transformers 5: listed with its figures there, named with the reason on 4.57
    for preset in ("qwen3.5-0.8b", "qwen3.5-27b", "qwen3.5-35b-a3b", "qwen3.5-397b-a17b"):
        assert preset in listed or f"({preset} left out: " in out


def test_info_prints_the_figures_of_qwen3_vl_8b(capsys):
    """Issue #14's figures: depth 27, width 1152, 16 heads of 72 -> 4 temporal heads of 72 at head_scale 0.25."""
    assert main(["info", "--preset", "qwen3-vl-8b"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("qwen3-vl-8b"))
    assert "4x72" in line and "1,331,424" in line and "35,948,448" in line


def test_bad_argument_is_reported_not_raised(capsys):
    assert main(["info", "--head-scale", "-1"]) == 2
    assert "TemporalConfig.head_scale" in capsys.readouterr().err


def test_forward_runs_end_to_end_as_a_command():
    result = subprocess.run(
        [sys.executable, "-m", "stave.cli", "forward", "--preset", "tiny-qwen2.5-vl"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "max |diff| to base = 0\n" in result.stdout
    assert result.stdout.rstrip().endswith("ok")


def test_train_prints_the_resolved_recipe_and_names_bad_keys(capsys, tmp_path):
    from conftest import ROOT

    (tmp_path / "d.jsonl").write_text("")
    recipe = str(ROOT / "configs" / "tiny.yaml")
    assert main(["train", recipe, f"data.datasets.0.path={tmp_path / 'd.jsonl'}", "lora.r=4", "--print-recipe"]) == 0
    out = capsys.readouterr().out
    assert "r: 4" in out and "stage2" in out and "nframes: 8" in out
    assert main(["train", recipe, "lora.rank=4"]) == 2
    assert "lora.rank" in capsys.readouterr().err


def test_ask_explain_and_compare_from_the_command_line(tmp_path, capsys):
    import json

    from training_data import moving_square

    import stave
    from stave.presets import tiny_model
    from stave.tokenizer import build_word_tokenizer
    from stave.video.encode import write_video

    tokenizer = build_word_tokenizer(["which", "way", "?", "left", "right"])
    model = stave.add_temporal_attention(tiny_model(tokenizer=tokenizer), TemporalConfig(init="random"))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    video = write_video(tmp_path / "clip.mp4", moving_square("left", frames=8), fps=4)
    flags = ["--model", str(tmp_path / "model"), "--video", str(video), "--frames", "4", "--max-pixels", "3136",
             "--min-pixels", "3136"]  # fmt: skip
    assert main(["ask", *flags, "which way ?", "--max-new-tokens", "3"]) == 0
    question = [
        {"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": "which way ?"}]}
    ]
    options = VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136)  # what the flags ask for
    assert capsys.readouterr().out == generated_text(model, tokenizer, question, options, max_new_tokens=3) + "\n"
    assert main(["explain", *flags, "--out", str(tmp_path / "map.png")]) == 0
    assert "grid t,h,w = (2, 4, 4)" in capsys.readouterr().out and (tmp_path / "map.png").stat().st_size > 2000

    for name, accuracy in (("a", 0.5), ("b", 0.75)):
        (tmp_path / name).mkdir()
        results = {
            "benchmark": "x",
            "overall": {"accuracy": accuracy, "n": 4},
            "tasks": {"t": {"accuracy": accuracy, "n": 4}},
        }
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--chart", str(tmp_path / "c.png")]) == 0
    assert "| overall | 50.00 (n=4) | 75.00 (n=4) | +25.00 |" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a")]) == 2


def _stave_error_classes() -> list[type[StaveError]]:
    """Every exception class defined in stave's modules (all imported; those needing an uninstalled extra skipped)."""
    for module in pkgutil.walk_packages(stave.__path__, "stave."):
        try:
            importlib.import_module(module.name)
        except ImportError:  # stave.integrations.lmms_eval without lmms-eval
            continue
    defined = []
    for name, module in list(sys.modules.items()):
        if name == "stave" or name.startswith("stave."):
            defined += [
                value
                for value in vars(module).values()
                if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name
            ]
    return sorted(set(defined), key=lambda cls: cls.__name__)


def test_every_stave_error_is_one_line_with_exit_status_2_and_the_traceback_only_with_debug(monkeypatch, capsys):
    classes = _stave_error_classes()
    names = {cls.__name__ for cls in classes}
    assert {
        "VideoDecodeError", "VideoTimeoutError", "VideoBackendError", "VideoNotFoundError", "ConversationError",
        "RecipeError", "DataError", "BenchmarkFormatError", "CheckpointError", "SynthError", "EvalError",
        "ExperimentError", "MissingExtraError",
    } <= names  # fmt: skip
    private = [cls for cls in classes if cls.__name__.startswith("_")]  # raised and caught inside one module
    assert [cls for cls in classes if not issubclass(cls, StaveError) and cls not in private] == []
    for cls in [cls for cls in classes if cls not in private]:
        error = (
            cls("clip.mp4", "the reason,\nin two lines")
            if issubclass(cls, VideoError)
            else cls("clip.mp4: the reason,\nin two lines")
        )

        def fail(args, error=error):
            raise error

        monkeypatch.setattr(cli, "cmd_info", fail)
        assert main(["info"]) == 2, cls
        assert capsys.readouterr().err == "stave info: error: clip.mp4: the reason, in two lines\n", cls
        for flags in (["--debug", "info"], ["info", "--debug"]):
            with pytest.raises(cls):
                main(flags)

    def bug(args):
        raise KeyError("a bug keeps its traceback")

    monkeypatch.setattr(cli, "cmd_info", bug)
    with pytest.raises(KeyError):
        main(["info"])


def test_ask_refuses_a_bad_video_in_one_line_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from training_data import moving_square

    import stave.checkpoint
    import stave.evaluation.model
    from stave.video.encode import write_video

    def load_answerer(*args, **kwargs):
        raise AssertionError("the model was loaded before the video was checked")

    monkeypatch.setattr(stave.evaluation.model, "load_answerer", load_answerer)
    (tmp_path / "text.mp4").write_text("not a video")
    clip = write_video(tmp_path / "clip.mp4", moving_square("left", frames=8), fps=4)
    for video, flags, reason in (
        (tmp_path / "text.mp4", [], "not a readable video"),
        (tmp_path / "missing.mp4", [], "no such file or folder"),
        (clip, ["--frames", "16"], "nframes=16 asks for 16 frames but the clip has 8"),
    ):
        command = ["ask", "--model", str(tmp_path / "no-model"), "--video", str(video), "which way ?", *flags]
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"stave ask: error: {video}: {reason}") and err.count("\n") == 1, err
    monkeypatch.setattr(stave.checkpoint, "load_model", load_answerer)  # stave explain checks first too
    assert main(["explain", "--model", str(tmp_path / "no-model"), "--video", str(tmp_path / "text.mp4")]) == 2
    assert capsys.readouterr().err.startswith(f"stave explain: error: {tmp_path / 'text.mp4'}: not a readable video")


def test_ask_says_so_when_the_model_produces_no_text(tmp_path, capsys):
    """The shipped base, asked what it was never trained on, ends its answer at once (greedy, so always)."""
    from stave.base import FRAME_SIZE, TINY_BASE, VIDEO_OPTIONS
    from stave.evaluation import ask
    from stave.synthetic import generate

    generate(tmp_path / "synth", n=2, seed=0, tasks="still")
    video, question = tmp_path / "synth" / "videos" / "00000.mp4", "What is happening in this video?"
    assert ask(TINY_BASE, video, question, video_options=VIDEO_OPTIONS) == ""  # the library's answer: nothing
    pixels = str(FRAME_SIZE**2)
    flags = ["--frames", "8", "--min-pixels", pixels, "--max-pixels", pixels]
    assert main(["ask", "--model", "stave/tiny-base", "--video", str(video), question, *flags]) == 0
    assert capsys.readouterr().out == "(the model produced no text)\n"
    question = "Where is the object vertically? Answer with one of: top, middle, bottom."  # as the base was trained
    answer = ask(TINY_BASE, video, question, video_options=VIDEO_OPTIONS)
    assert main(["ask", "--model", "stave/tiny-base", "--video", str(video), question, *flags]) == 0
    assert capsys.readouterr().out == answer + "\n" and answer in ("top", "middle", "bottom")


QWEN3_TINY = ["tiny-qwen3-vl", "tiny-qwen3-vl-moe", "tiny-qwen3.5", "tiny-qwen3.5-moe"]


@pytest.mark.parametrize("preset", [*QWEN3_TINY, "tiny-internvl"])
def test_qwen3_tiny_families_forward_train_eval_ask_and_explain_from_the_command_line(preset, tmp_path, capsys):
    """Each Qwen3-VL / Qwen3.5 tiny preset and tiny-internvl goes through every command: forward, a 2-step two-stage
    train from configs/tiny.yaml, eval of the trained model on an MVBench layout, ask and explain (4 frames: 2
    temporal patches of 4 x 4 patches; InternVL: 4 frames of 4 x 4 patches)."""
    import json

    from benchmark_fixtures import write_mvbench
    from conftest import FAMILIES, ROOT
    from training_data import moving_square, write_dataset

    from stave.video.encode import write_video

    if preset not in FAMILIES:
        pytest.skip(f"{preset} needs transformers 5")
    assert main(["forward", "--preset", preset]) == 0
    assert "max |diff| to base = 0\n" in capsys.readouterr().out

    # an image item too (InternVL: 56 x 56 is 2 x 2 dynamic tiles and the thumbnail)
    data = write_dataset(tmp_path / "data", kinds=["video", "image", "video", "video"])
    output = tmp_path / "run"
    video = ["data.video.nframes=4", "data.video.min_pixels=4096", "data.video.max_pixels=4096"]  # 64x64 at patch 16
    assert main(["train", str(ROOT / "configs" / "tiny.yaml"), f"model.path={preset}", f"data.datasets.0.path={data}",
                 f"output_dir={output}", "training.max_steps=2", "training.save_steps=2", *video]) == 0  # fmt: skip
    model = output / "stage2" / "model"
    assert stave.temporal_config(stave.load_model(model)) is not None
    capsys.readouterr()

    def clip(path):
        write_video(path, moving_square("left" if "a" in path.stem else "right", frames=8), fps=4)

    tasks = {"action_antonym": [
        {"video": "a.mp4", "question": f"which way {k} ?", "candidates": ["left", "right"], "answer": "left"}
        for k in range(2)
    ]}  # fmt: skip
    bench = write_mvbench(tmp_path / "mvbench", tasks, video_writer=clip)
    pixels = ["--frames", "4", "--min-pixels", "4096", "--max-pixels", "4096"]
    assert main(["eval", "--model", str(model), "--benchmark", "mvbench", "--data", str(bench), *pixels,
                 "--output", str(tmp_path / "eval"), "--scoring", "loglik"]) == 0  # fmt: skip
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["overall"]["n"] == 2

    clip_path = write_video(tmp_path / "clip.mp4", moving_square("left", frames=8), fps=4)
    flags = ["--model", str(model), "--video", str(clip_path), *pixels]
    capsys.readouterr()
    assert main(["ask", *flags, "which way ?", "--max-new-tokens", "2"]) == 0
    options = VideoOptions(nframes=4, min_pixels=4096, max_pixels=4096)
    answer = stave.evaluation.ask(str(model), clip_path, "which way ?", video_options=options, max_new_tokens=2)
    assert capsys.readouterr().out == (answer or "(the model produced no text)") + "\n"
    assert main(["explain", *flags, "--out", str(tmp_path / "map.png")]) == 0
    grid = (4, 4, 4) if preset == "tiny-internvl" else (2, 4, 4)
    assert f"grid t,h,w = {grid}" in capsys.readouterr().out and (tmp_path / "map.png").stat().st_size > 2000


def test_without_sampling_flags_a_command_uses_the_model_familys_video_options(tmp_path):
    """`stave ask` / `eval` / `explain` with no sampling flag pass no VideoOptions (the model family's defaults
    apply; `stave eval` reads them from the folder's config.json before the model loads, and records them); any
    flag gives VideoOptions with its own defaults for the rest, as before."""
    from stave.models.qwen3_vl import VIDEO_OPTIONS

    parser = cli.build_parser()
    assert cli._video_options(parser.parse_args(["ask", "--model", "m", "--video", "v.mp4", "q"])) is None
    flagged = cli._video_options(parser.parse_args(["ask", "--model", "m", "--video", "v.mp4", "q", "--frames", "6"]))
    assert flagged == VideoOptions(nframes=6)
    for model_type, expected in (("qwen3_vl", VIDEO_OPTIONS), ("qwen2_vl", VideoOptions())):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
        assert cli._model_video_options(str(folder)) == expected
    with pytest.raises(ValueError, match=r"config\.json: cannot read the model's model_type"):
        cli._model_video_options(str(tmp_path / "missing"))


@pytest.mark.version_independent
def test_help_of_stave_and_of_every_command_prints(capsys):
    """`stave --help` and `stave CMD --help` format every help string (a bare % in one broke them all)."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for argv in (["--help"], *([name, "--help"] for name in commands)):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        assert exit_.value.code == 0, argv
        assert "usage:" in capsys.readouterr().out
