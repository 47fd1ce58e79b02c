"""The benchmark scripts run end to end on a tiny configuration (their figures are not checked here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import ROOT


def test_sta_overhead_prints_all_three_tables():
    command = [
        sys.executable, str(ROOT / "benchmarks" / "sta_overhead.py"), "--depth", "1", "--frames", "4",
        "--sizes", "56", "--batches", "1", "4", "--repeats", "1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("| 4 | 56 |") for line in lines) == 6  # 2 batches x (timing, layer, memory)
    assert "Temporal layer alone" in result.stdout and "Peak memory" in result.stdout
    header = next(line for line in lines if line.startswith("| frames | size | batch | tokens |")).split(" | ")
    assert header[5:9] == ["b/a", "predicted", "overhead / predicted overhead", "c/b"]
    for row in [line.split(" | ") for line in lines if line.startswith("| 4 | 56 |")][:2]:
        ratio, predicted, relative = float(row[5]), float(row[6]), float(row[7])
        assert relative == pytest.approx((ratio - 1) / (predicted - 1), abs=0.006 / (predicted - 1) + 0.005)


def test_sta_overhead_quick_is_one_block_at_224_and_flags_win():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sta_overhead

    assert sta_overhead.QUICK == {"frames": [16], "sizes": [224], "batches": [1, 4], "repeats": 3}
    assert sta_overhead.CPU_DEPTH == {"full": 2, "quick": 1}
    command = [
        sys.executable, str(ROOT / "benchmarks" / "sta_overhead.py"), "--quick", "--frames", "4", "--sizes", "56",
        "--batches", "1", "--repeats", "1", "--no-backward", "--no-memory",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "depth 1, float32" in result.stdout and "median of 1 after a warm-up" in result.stdout
    assert [line.split(" | ")[:3] for line in result.stdout.splitlines() if line.startswith("| 4 |")] == [
        ["| 4", "56", "1"], ["| 4", "56", "1"]
    ]  # fmt: skip


def test_train_step_prints_both_arms_with_their_flop_ratio():
    command = [
        sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--frames", "4", "--size", "56",
        "--batch", "1", "--repeats", "1", "--no-memory",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith(("lora", "sta+"))}
    assert set(rows) == {"lora", "sta+lora"} and all(len(row) == 5 for row in rows.values())
    assert float(rows["sta+lora"][3]) > float(rows["lora"][3])  # STA adds operations
    assert "FLOP ratio" in result.stdout


def test_the_2b_shape_has_qwen2_vl_2b_published_parameter_count():
    """benchmarks/train_step.py --preset qwen2-vl-2b: Qwen2-VL-2B's published shape (2,208,985,600 parameters,
    embeddings tied), built without memory on the meta device."""
    import torch

    from stave.presets import shaped_model

    model = shaped_model("qwen2-vl-2b", device="meta", dtype=torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) == 2_208_985_600
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    shallow = shaped_model("qwen2-vl-2b", device="meta", layers=1)
    assert shallow.config.vision_config.depth == shallow.config.text_config.num_hidden_layers == 1


def test_gpu_check_runs_every_measurement_on_the_cpu_with_cpu(tmp_path):
    """scripts/gpu-check.sh --cpu: the GPU run's measurements on the CPU at the smallest shapes, every table in
    the one folder — among them the bfloat16 training steps of the 2B-shaped model (one layer deep here) with
    and without STA, with samples/s."""
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}
    command = ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--cpu", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("   exit 0 after") == 3 and "exit 1" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "environment.txt", "sta_overhead-fa2.txt", "sta_overhead-sdpa.txt", "tests.txt", "train_step-2b.txt",
        "train_step.txt",
    ]  # fmt: skip
    assert "depth 1, bfloat16" in (tmp_path / "sta_overhead-sdpa.txt").read_text()
    for name, title in [("train_step", "tiny-qwen2-vl, "), ("train_step-2b", "qwen2-vl-2b (1 layers), ")]:
        table = (tmp_path / f"{name}.txt").read_text()
        assert title in table and ", cpu, " in table, table
        rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith(("lora", "sta+"))}
        assert set(rows) == {"lora", "sta+lora"} and all(float(row[2]) > 0 for row in rows.values()), table
        assert float(rows["sta+lora"][3]) > float(rows["lora"][3])  # STA's operations in the sta+lora arm
    assert ", cpu, bfloat16," in (tmp_path / "train_step-2b.txt").read_text()


def test_video_backends_benchmark_compares_every_usable_backend():
    command = [sys.executable, str(ROOT / "benchmarks" / "video_backends.py"), "--quick"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| 96p 4 s |"))
    assert row.startswith("| 96p 4 s | 8 |") and "pyav: usable" in result.stdout


def test_video_pipeline_prints_its_table_and_names_missing_reference_arms():
    """Smallest clip, one round, no memory table (its fresh processes would double the time); without
    torchvision (the test environment) only stave's arm runs and the reference arms are reported
    unavailable with the reason, not silently dropped."""
    command = [
        sys.executable, str(ROOT / "benchmarks" / "video_pipeline.py"), "--seconds", "1", "--width", "112",
        "--height", "112", "--fps", "8", "--keyframe-intervals", "4", "--repeats", "1", "--no-memory",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("| 4 | 8 / 4 (336x336) | 1152 |") for line in lines)  # the timing row
    if importlib.util.find_spec("torchvision") is None:
        assert "# ref-pyav: unavailable (ModuleNotFoundError" in result.stdout
        assert "| n/a | n/a | n/a | n/a |" in result.stdout


def test_eval_throughput_reports_items_per_second_and_one_decode_per_video_with_the_cache():
    command = [
        sys.executable, str(ROOT / "benchmarks" / "eval_throughput.py"), "--videos", "2", "--questions", "2",
        "--frames", "8", "--size", "56", "--nframes", "4", "--batch-sizes", "2",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("2 ")]
    assert [(row[1], row[2]) for row in rows] == [("off", "4"), ("on", "2")]


def test_token_compression_times_every_configuration_with_its_token_count():
    """The tiny model (no memory probes: their fresh processes would multiply the time): a row per configuration,
    the exact LLM tokens of each pooling (8 frames of 56x56: 4 temporal patches of 4 merged tokens), ratios to
    stock; and the full-depth extrapolation of a shortened model's call. (Pooling none and mean: mean:2 joins the
    list, with 8 tokens, once set_temporal_pooling takes it.)"""
    command = [
        sys.executable, str(ROOT / "benchmarks" / "token_compression.py"), "--preset", "tiny-qwen2-vl", "--frames", "8",
        "--size", "56", "--repeats", "1", "--no-memory", "--pooling", "none,mean",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| 8 |")]
    assert [(row[1], int(row[2])) for row in rows] == [("stock", 16), ("mean", 4), ("sta", 16), ("sta+mean", 4)]
    assert rows[0][5] == rows[0][7] == "1.00" and all(float(row[4]) > 0 for row in rows)
    assert int(rows[0][3]) - int(rows[1][3]) == 12  # the prompt shrinks by exactly the pooled-away video tokens

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import token_compression

    call = {"ttft": 1.0, "answer": 2.0, "vision": 0.25, "prefill": 0.125, "decode": 0.5}
    full = token_compression.extrapolate(call, 2, (32, 28))
    assert full == {"ttft": 1.0 + 15 * 0.25 + 13 * 0.125, "answer": 2.0 + 15 * 0.25 + 13 * (0.125 + 0.5)}
