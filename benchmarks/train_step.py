"""Training-step throughput and peak memory, with and without STA, side by side: the tiny recipe, or a model of
Qwen2-VL-2B's published shape with random weights (--preset qwen2-vl-2b; --layers N for a shallower one of
the same widths), in float32 or bfloat16 (--dtype bfloat16: the model built in bfloat16 and each step under
bfloat16 autocast, as a recipe with model.dtype=bfloat16 and training.bf16=true trains).

Arms (both from the same random model and the same batches, LoRA as in the recipes):
    lora      the `baseline` stage: LoRA on the vision and LLM linears, no STA
    sta+lora  the `stage2` stage: the same LoRA plus STA in every vision block
A step is forward + backward + AdamW update on a pre-built batch (decoding is identical for both arms
and left out). Arms run in interleaved rounds; medians are reported. The predicted overhead is the ratio
of floating-point operations of one step as counted by torch.utils.flop_counter on the real shapes; peak
memory is measured in a fresh process per arm (VmHWM on CPU, max_memory_allocated on CUDA).

    .venv/bin/python benchmarks/train_step.py            # tiny-qwen2-vl, 8 frames 112x112, batch 2
    .venv/bin/python benchmarks/train_step.py --quick
    .venv/bin/python benchmarks/train_step.py --device cuda --dtype bfloat16 --preset qwen2-vl-2b --frames 16 --size 336
    .venv/bin/python benchmarks/train_step.py --dtype bfloat16 --preset qwen2-vl-2b --layers 1 --quick   # CPU check
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from sta_overhead import status_kib
from torch.utils.flop_counter import FlopCounterMode

from stave.config import TemporalConfig
from stave.presets import SHAPED_PRESETS, TINY_PRESETS, shaped_model, tiny_model
from stave.processing import VideoChatProcessor
from stave.tokenizer import build_word_tokenizer
from stave.training.recipe import LoraSection, StageSpec
from stave.training.stages import prepare_stage
from stave.video import PatchSpec, VideoOptions

ARMS = {"lora": ["lora"], "sta+lora": ["temporal", "lora"]}
WORDS = "which way does the square move ? left right".split()


def build(arm: str, args):
    tokenizer = build_word_tokenizer(WORDS)
    dtype = getattr(torch, args.dtype)
    if args.preset in SHAPED_PRESETS:  # built where it runs: a 2B model is not initialised on the CPU first
        model = shaped_model(args.preset, tokenizer=tokenizer, dtype=dtype, device=args.device, layers=args.layers)
    else:
        model = tiny_model(args.preset, seed=0, tokenizer=tokenizer).to(dtype)
    model.train()
    model = prepare_stage(model, StageSpec(name=arm, trains=ARMS[arm]), TemporalConfig(), LoraSection(dropout=0.0))
    if args.checkpointing:
        base = model.get_base_model()
        if hasattr(base, "activation_checkpointing_enable"):
            base.activation_checkpointing_enable({"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    options = VideoOptions(nframes=args.frames, min_pixels=args.size**2, max_pixels=args.size**2)
    processor = VideoChatProcessor(tokenizer, PatchSpec.from_vision_config(model.config.vision_config), options)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(args.batch):
        video = rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8)
        answer = WORDS[-1 - i % 2]
        samples.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "video", "video": video}, {"type": "text", "text": "which way"}],
                    },
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    batch = processor.collate([processor.encode(s, train=True) for s in samples])
    batch = {k: v.to(args.device, dtype if v.is_floating_point() else None) for k, v in batch.items()}
    model.to(args.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, batch, optimizer


def autocast(model):
    """bfloat16 autocast for a bfloat16 model (as the Trainer's bf16=True), nothing for float32."""
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device.type
    return torch.autocast(device, dtype=dtype) if dtype != torch.float32 else nullcontext()


def step(model, batch, optimizer) -> None:
    with autocast(model):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed(model, batch, optimizer, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(model, batch, optimizer)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def flops(model, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        with autocast(model):
            loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def memory_probe(args) -> None:
    model, batch, optimizer = build(args.memory_probe, args)
    step(model, batch, optimizer)  # optimizer state exists from here on, as in a running training
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, batch, optimizer)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
        base = status_kib("VmHWM")
        step(model, batch, optimizer)
        peak = (status_kib("VmHWM") - base) * 1024
    print(json.dumps({"peak_bytes": peak}))


def peak_memory(arm: str, args) -> float:
    command = [sys.executable, __file__, "--memory-probe", arm, *_shape_args(args)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"] / 2**20


def _shape_args(args) -> list[str]:
    flags = ["--preset", args.preset, "--frames", str(args.frames), "--size", str(args.size)]
    flags += ["--batch", str(args.batch), "--device", args.device, "--dtype", args.dtype]
    flags += ["--layers", str(args.layers)] if args.layers is not None else []
    return flags + (["--checkpointing"] if args.checkpointing else [])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny-qwen2-vl", choices=sorted(TINY_PRESETS) + sorted(SHAPED_PRESETS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--layers", type=int, help="vision blocks and LLM layers of a shaped preset (default: its own)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels (a multiple of 28)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both arms")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5 rounds, no memory probe")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        return memory_probe(args)
    if args.quick:
        args.repeats, args.no_memory = 5, True

    built = {arm: build(arm, args) for arm in ARMS}
    counted = {arm: flops(model, batch) for arm, (model, batch, _) in built.items()}
    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
    warmup = 1 if args.repeats == 1 else 2  # one for a single timed round (a check of the script, not a figure)
    for round_ in range(args.repeats + warmup):
        for arm, (model, batch, optimizer) in built.items():
            seconds = timed(model, batch, optimizer, args.device)
            if round_ >= warmup:
                samples[arm].append(seconds)
    median = {arm: statistics.median(values) for arm, values in samples.items()}
    memory = {arm: None if args.no_memory else peak_memory(arm, args) for arm in ARMS}

    model, batch, _ = built["lora"]
    grid = batch["video_grid_thw"][0].tolist()
    shape = f"{args.preset}" + (f" ({args.layers} layers)" if args.layers is not None else "")
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"train step, {shape}, {parameters / 1e6:.1f}M parameters, {args.batch} x video {args.frames} frames "
        f"{args.size}x{args.size} (grid {grid}), {args.device}, {args.dtype}, "
        f"checkpointing={'on' if args.checkpointing else 'off'}, median of {args.repeats}"
    )
    header = f"{'arm':<10}{'step ms':>10}{'samples/s':>11}{'MFLOP/step':>12}{'peak MiB':>10}"
    print(header)
    print("-" * len(header))
    for arm in ARMS:
        mib = "-" if memory[arm] is None else f"{memory[arm]:.1f}"
        print(
            f"{arm:<10}{median[arm] * 1e3:>10.1f}{args.batch / median[arm]:>11.2f}{counted[arm] / 1e6:>12.1f}{mib:>10}"
        )
    measured = median["sta+lora"] / median["lora"]
    predicted = counted["sta+lora"] / counted["lora"]
    print(f"step time sta+lora / lora: {measured:.3f} (measured)   FLOP ratio: {predicted:.3f} (predicted)")
    if memory["lora"]:
        print(f"peak memory sta+lora / lora: {memory['sta+lora'] / memory['lora']:.3f}")


if __name__ == "__main__":
    main()
