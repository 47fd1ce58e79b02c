"""What stacked temporal attention costs in a Qwen2-VL vision tower, side by side in one run.

Arms, all with the same random weights:
  (a) plain    the unmodified tower
  (b) stave    the tower with stave's STA (head_scale 0.25, every block)
  (c) naive    the same STA computed the way the authors' release does it (one item at a time, explicit
               float32 softmax of q k^T, no fused attention; benchmarks/straightforward_sta.py)

Tables:
  1. blocks forward (timed from the first block's input to the last block's output) and tower
     forward+backward, with b/a next to the ratio predicted from the multiply-adds of the shapes ("predicted"),
     STA's measured overhead relative to its predicted overhead ("overhead / predicted overhead" =
     (b/a - 1) / (predicted - 1): 1.00 when STA costs what its multiply-adds predict, 2.00 when twice that),
     and c/b;
  2. the temporal layer alone, forward+backward, stave vs naive;
  3. peak memory of tower forward+backward with gradient checkpointing, plain vs stave.

CPU (float32) by default; on a GPU pass --device cuda --dtype bfloat16 [--attn flash_attention_2].
A reduced --depth keeps CPU runs short; the per-block ratios do not depend on it.

    python benchmarks/sta_overhead.py --quick          # 16 frames at 224, batch 1 and 4, 1 block, 3 repeats
    python benchmarks/sta_overhead.py                  # 8/16/32 frames, 448 and 224, batch 1 and 4, 5 repeats

--quick is sized for about 4 minutes on 2 idle CPU cores (an estimate from the per-call times in
benchmarks/RESULTS.md; see there); any flag given with it wins.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from straightforward_sta import straightforward_temporal_update

import stave
from stave.presets import build_vision_tower
from stave.temporal import TemporalAttention, TemporalLayout
from stave.testing import random_pixels

Grid = tuple[int, int, int]
# What a run covers unless a flag says otherwise; depth (blocks): the preset's on a GPU, DEPTH on a CPU.
FULL = {"frames": [8, 16, 32], "sizes": [448, 224], "batches": [1, 4], "repeats": 5}
QUICK = {"frames": [16], "sizes": [224], "batches": [1, 4], "repeats": 3}
CPU_DEPTH = {"full": 2, "quick": 1}


class NaiveTemporalAttention(TemporalAttention):
    """Arm (c): stave's weights, the straightforward computation (reads the batch's grid from `grid`)."""

    grid: list[list[int]] = []

    def forward(self, hidden_states: torch.Tensor, layout: TemporalLayout) -> torch.Tensor:
        return straightforward_temporal_update(hidden_states, self.grid, self.qkv, self.proj, self.num_heads)


def batch_grids(frames: int, size: int, batch: int) -> list[Grid]:
    """One video, or four mixed-size videos (two of the same shape, so grouping is exercised)."""
    t, side = frames // 2, size // 14
    if batch == 1:
        return [(t, side, side)]
    half = max(2, (side // 2) // 2 * 2)
    return [(t, side, side), (max(1, t // 2), side, side), (t, half, half), (t, side, side)]


def predicted_macs(tower: torch.nn.Module, grids: list[Grid], with_sta: bool) -> tuple[float, float]:
    """(multiply-adds of all blocks, of the whole tower) for one forward, from the shapes alone."""
    config = tower.config
    dim, heads = config.embed_dim, config.num_heads
    block = tower.blocks[0]
    block_linear = sum(
        m.weight.numel()
        for n, m in block.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.startswith("temp_attn")
    )
    inner = round(heads * 0.25) * (dim // heads)
    tokens = sum(t * h * w for t, h, w in grids)
    blocks = 0.0
    for t, h, w in grids:
        n = h * w
        blocks += t * n * block_linear + 2 * t * n * n * dim  # linears + spatial attention (q k^T and a v)
        if with_sta and t > 1:
            blocks += t * n * (dim * 3 * inner + inner * dim) + 2 * n * t * t * inner
    blocks *= len(tower.blocks)
    embed = tokens * tower.patch_embed.proj.weight.numel()
    merger = tokens // 4 * sum(m.weight.numel() for m in tower.merger.modules() if isinstance(m, torch.nn.Linear))
    return blocks, blocks + embed + merger


def make_arm(name: str, args) -> torch.nn.Module:
    """One arm's tower; every arm gets the same weights (fixed seeds)."""
    torch.manual_seed(0)
    tower = build_vision_tower(args.preset, device="cpu", depth=args.depth)
    tower.config._attn_implementation = args.attn
    if name != "plain":
        torch.manual_seed(1)
        stave.add_temporal_attention(tower, init="random")
    if name == "naive":
        for block in tower.blocks:
            block.temp_attn.__class__ = NaiveTemporalAttention
    return tower.to(device=args.device, dtype=getattr(torch, args.dtype)).eval()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def once(fn: Callable[[], object], device: str) -> float:
    """Seconds of one call."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median of `repeats` rounds after a warm-up round; each round runs every arm once, in turn, so
    that drift of the machine's speed hits all arms alike."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for round_ in range(repeats + 1):
        for name, measure in measures.items():
            seconds = measure()
            if round_:
                samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def blocks_forward_once(tower, pixels, grid_thw, device: str) -> float:
    """Seconds from the first block's input to the last block's output, inside one tower forward."""
    marks: list[float] = []

    def mark(*_):
        synchronize(device)
        marks.append(time.perf_counter())

    handles = [tower.blocks[0].register_forward_pre_hook(mark), tower.blocks[-1].register_forward_hook(mark)]
    try:
        with torch.no_grad():
            tower(pixels, grid_thw=grid_thw)
    finally:
        for handle in handles:
            handle.remove()
    return marks[-1] - marks[0]


def fwd_bwd(tower, pixels, grid_thw) -> None:
    out = tower(pixels, grid_thw=grid_thw)
    out = out.pooler_output if hasattr(out, "pooler_output") else out
    out.float().square().mean().backward()
    tower.zero_grad(set_to_none=True)


def temporal_layer_times(arms, grids, args) -> dict[str, float]:
    """Forward+backward of the temporal layer alone on the batch's tokens, in seconds: stave's layer, the
    naive one, and the two linears (qkv, proj) that both share, run on their own."""
    layer = arms["stave"].blocks[0].temp_attn
    dtype = getattr(torch, args.dtype)
    naive = NaiveTemporalAttention(layer.qkv.in_features, layer.num_heads, layer.head_dim)
    naive.load_state_dict(layer.state_dict())
    naive.to(device=args.device, dtype=dtype)
    naive.grid = [list(g) for g in grids]
    tokens = sum(t * h * w for t, h, w in grids)
    x = torch.randn(tokens, layer.qkv.in_features, device=args.device, dtype=dtype, requires_grad=True)
    layout = TemporalLayout.from_grid(
        grids, tokens, skip_single_frame=True, head_dim=layer.head_dim, rope_theta=10000.0, device=args.device
    )
    inner = layer.proj.in_features

    def linears(x, layout):
        return layer.proj(layer.qkv(x)[:, :inner])

    def run(fn):
        def step():
            fn(x, layout).float().square().mean().backward()
            layer.zero_grad(set_to_none=True)
            naive.zero_grad(set_to_none=True)
            x.grad = None

        return lambda: once(step, args.device)

    return interleaved({"stave": run(layer), "naive": run(naive), "linears": run(linears)}, args.repeats)


def memory_probe(args) -> None:
    """Run in a fresh process: peak memory of one tower forward+backward with gradient checkpointing."""
    tower = make_arm(args.memory_probe, args).train()
    if hasattr(tower, "activation_checkpointing_enable"):
        tower.activation_checkpointing_enable({"use_reentrant": False})
    else:
        tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    grids = batch_grids(args.frames[0], args.sizes[0], args.batches[0])
    pixels, grid_thw = random_pixels(grids, tower.config, device=args.device, dtype=getattr(torch, args.dtype))
    pixels.requires_grad_(True)  # as when the tower sits behind trainable layers; makes checkpointing recompute
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fwd_bwd(tower, pixels, grid_thw)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak-RSS mark (VmHWM) to the current RSS
        base = status_kib("VmHWM")
        fwd_bwd(tower, pixels, grid_thw)
        peak = (status_kib("VmHWM") - base) * 1024
    print(json.dumps({"peak_bytes": peak}))


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory(arm: str, frames: int, size: int, batch: int, args) -> float:
    command = [
        sys.executable,
        __file__,
        "--memory-probe",
        arm,
        "--frames",
        str(frames),
        "--sizes",
        str(size),
        "--batches",
        str(batch),
        "--preset",
        args.preset,
        "--depth",
        str(args.depth),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--attn",
        args.attn,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"] / 2**20


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="qwen2-vl-7b")
    parser.add_argument("--depth", type=int, help="blocks (default: 2 on CPU, 1 with --quick; 32 on GPU)")
    parser.add_argument("--frames", type=int, nargs="+", help="default: 8 16 32")
    parser.add_argument("--sizes", type=int, nargs="+", help="default: 448 224")
    parser.add_argument("--batches", type=int, nargs="+", help="default: 1 4")
    parser.add_argument("--repeats", type=int, help="timed rounds after the warm-up (default: 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--attn", default="sdpa", help="spatial attention: sdpa, eager, flash_attention_2")
    parser.add_argument("--no-backward", action="store_true", help="skip forward+backward timings")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument(
        "--quick", action="store_true", help="a few CPU minutes: 16 frames, size 224, 1 block, 3 repeats (flags win)"
    )
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.depth = args.depth or (None if on_gpu else CPU_DEPTH["quick" if args.quick else "full"])
    if args.depth is None:
        args.depth = 32
    if args.memory_probe:
        memory_probe(args)
        return

    threads = torch.get_num_threads()
    device_name = torch.cuda.get_device_name() if on_gpu else f"{cpu_name()}, {threads} threads"
    print(f"# STA overhead — {args.preset} tower, depth {args.depth}, {args.dtype}, spatial attention {args.attn}")
    print(f"# {device_name}; torch {torch.__version__}; median of {args.repeats} after a warm-up")
    print(f"# command: python {' '.join(sys.argv)}")
    arms = {name: make_arm(name, args) for name in ("plain", "stave", "naive")}
    dtype = getattr(torch, args.dtype)

    print()
    print(
        "| frames | size | batch | tokens | blocks fwd a / b / c (s) | b/a | predicted "
        "| overhead / predicted overhead | c/b | tower fwd+bwd a / b / c (s) | b/a | predicted | c/b |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    layer_rows = []
    for frames in args.frames:
        for size in args.sizes:
            for batch in args.batches:
                grids = batch_grids(frames, size, batch)
                pixels, grid_thw = random_pixels(grids, arms["plain"].config, device=args.device, dtype=dtype)
                NaiveTemporalAttention.grid = [list(g) for g in grids]
                fwd = interleaved(
                    {
                        name: lambda m=m, p=pixels, g=grid_thw: blocks_forward_once(m, p, g, args.device)
                        for name, m in arms.items()
                    },
                    args.repeats,
                )
                base_blocks, base_tower = predicted_macs(arms["plain"], grids, False)
                sta_blocks, sta_tower = predicted_macs(arms["stave"], grids, True)
                pred_blocks, pred_tower = sta_blocks / base_blocks, sta_tower / base_tower
                ratio = fwd["stave"] / fwd["plain"]
                row = (
                    f"| {frames} | {size} | {batch} | {pixels.shape[0]} | "
                    f"{fwd['plain']:.3f} / {fwd['stave']:.3f} / {fwd['naive']:.3f} | {ratio:.3f} | "
                    f"{pred_blocks:.3f} | {(ratio - 1) / (pred_blocks - 1):.2f} | {fwd['naive'] / fwd['stave']:.2f} |"
                )
                if args.no_backward:
                    row += " – | – | – | – |"
                else:
                    for m in arms.values():
                        m.train()
                    both = interleaved(
                        {
                            name: lambda m=m, p=pixels, g=grid_thw: once(lambda: fwd_bwd(m, p, g), args.device)
                            for name, m in arms.items()
                        },
                        args.repeats,
                    )
                    for m in arms.values():
                        m.eval()
                    row += (
                        f" {both['plain']:.3f} / {both['stave']:.3f} / {both['naive']:.3f} | "
                        f"{both['stave'] / both['plain']:.3f} | {pred_tower:.3f} | "
                        f"{both['naive'] / both['stave']:.2f} |"
                    )
                print(row, flush=True)
                layer_rows.append((frames, size, batch, temporal_layer_times(arms, grids, args)))

    print()
    print("Temporal layer alone, forward+backward (core = layer minus its qkv and proj linears, run alone)")
    print()
    print(
        "| frames | size | batch | stave (s) | naive (s) | naive / stave | linears (s) | core stave / naive (s) "
        "| core naive / stave |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for frames, size, batch, t in layer_rows:
        core_stave, core_naive = t["stave"] - t["linears"], t["naive"] - t["linears"]
        print(
            f"| {frames} | {size} | {batch} | {t['stave']:.4f} | {t['naive']:.4f} | {t['naive'] / t['stave']:.2f} "
            f"| {t['linears']:.4f} | {core_stave:.4f} / {core_naive:.4f} | {core_naive / core_stave:.2f} |"
        )

    if not args.no_memory:
        print()
        kind = "CUDA max_memory_allocated" if on_gpu else "peak RSS increase of a fresh process"
        print(f"Peak memory of tower forward+backward, gradient checkpointing on ({kind})")
        print()
        print("| frames | size | batch | plain (MiB) | stave (MiB) | stave / plain |")
        print("|---|---|---|---|---|---|")
        for frames in args.frames:
            for size in args.sizes:
                for batch in args.batches:
                    plain = peak_memory("plain", frames, size, batch, args)
                    ours = peak_memory("stave", frames, size, batch, args)
                    print(
                        f"| {frames} | {size} | {batch} | {plain:.0f} | {ours:.0f} | {ours / plain:.3f} |", flush=True
                    )


if __name__ == "__main__":
    main()
