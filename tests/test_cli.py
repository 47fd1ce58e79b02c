"""The `stave` command line: figures of `stave info` and the tiny end-to-end forward."""

from __future__ import annotations

import subprocess
import sys

from stave.cli import main, sta_cost
from stave.config import TemporalConfig


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
    for preset in ("qwen2-vl-2b", "qwen2-vl-72b", "qwen2.5-vl-3b", "qwen2.5-vl-72b"):
        assert preset in out


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
    assert capsys.readouterr().out.strip() != ""
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
