"""From a video file to Qwen2-VL inputs: stave's pipeline against the one users run today, side by side in one run.

Arms, each turning one H.264 file into (pixel_values_videos, video_grid_thw) with qwen-vl-utils' rules
(fps 2, 4..768 frames, an even count, linspace indices; smart_resize to multiples of 28 under the per-frame
and per-video pixel budgets; bicubic with antialias; CLIP normalisation; 2x14x14 patches, 2x2 merge order):
  stave        stave.video.read_video (demuxes first, decodes only up to the frames it takes, seeking to
               the keyframe before a wanted frame and skipping H.264 frames that are neither taken nor
               referenced, holds the taken frames and resizes them once the decoder has finished) +
               stave.video.pack_frames
  ref-pyav     what users run today: decode the whole video with PyAV into one (T, H, W, 3) array, sample and
               smart_resize the qwen-vl-utils way (re-implemented here from the rules, resize with
               torchvision, float frames as qwen-vl-utils returns them), then transformers'
               Qwen2VLVideoProcessor (torchvision backend; its min/max pixels are set to the frame size so it
               keeps the frames as they are and only normalises and patchifies)
  ref-decord   the same with decord's full decode (only where decord is installed)
  ref-decord-sampled
               qwen-vl-utils' own decord path: decord reads the frame count and rate, then decodes only the
               sampled frames (get_batch on the linspace indices); the rest as ref-pyav
Both PyAV arms decode with the same FFmpeg threading (thread_type AUTO), so only the pipelines differ.
The reference arms resize the uint8 frames with torchvision's transforms.v2.functional.resize, as
transformers' Qwen2-VL processors do and as stave does (--reference-resize processor, the default), so the
outputs must agree within --tolerance. qwen-vl-utils' own video path resizes with the older
transforms.functional.resize, which works on uint8 frames in float32 and rounds: --reference-resize
qwen-vl-utils times that one; its pixels then differ from the processors' (and stave's) by up to about 0.1
after normalisation (some levels on hard edges), so pass --tolerance 0.1 with it (benchmarks/RESULTS.md).

Table 1: seconds per video (median of --repeats interleaved rounds after a warm-up round; each round runs
every arm once, in rotating order), videos/s, stave's speed-up, and the largest absolute difference
between each reference output and stave's (outputs must agree within --tolerance, else exit status 1).
Table 2: peak memory of one video in a fresh process per arm: the rise of VmHWM (peak RSS) over the
process after its imports, and the process's whole peak.

The reference arms need torchvision, which does not import beside the project's torch 2.13; without it
only stave's arm runs and the reference arms are reported unavailable with the reason. Environment for
the full comparison (outside the repository):

    python3.11 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install torch==2.14.1 torchvision==0.29.1   # a CUDA build; runs on CPU
    /work/bench-venv/bin/pip install -e . transformers av                 # this checkout
    /work/bench-venv/bin/pip install decord                              # optional: the ref-decord arms

    /work/bench-venv/bin/python benchmarks/video_pipeline.py           # 30 s, 640x360, 30 fps, keyframes 250 / 15
    /work/bench-venv/bin/python benchmarks/video_pipeline.py --quick   # 10 s clips, 3 rounds

--torch-threads 1 measures what a DataLoader worker runs with (benchmarks/RESULTS.md has both).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sta_overhead import cpu_name, status_kib

from stave.video import VideoOptions, pack_frames, read_video
from stave.video.encode import write_video

Output = tuple[torch.Tensor, torch.Tensor]  # pixel_values_videos (N, 1176) float32, video_grid_thw (1, 3)
ARMS = ("stave", "ref-pyav", "ref-decord", "ref-decord-sampled")

# qwen-vl-utils' constants for videos (pixels per frame unless named total)
FACTOR = 28
FRAME_FACTOR = 2
MIN_FRAMES, MAX_FRAMES = 4, 768
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = 24576 * 28 * 28


# -- the clips -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    path: Path
    keyframe_interval: int
    frames: int


def synthetic_frames(count: int, height: int, width: int, fps: float, seed: int = 0) -> np.ndarray:
    """(count, height, width, 3) uint8: a drifting texture, moving discs and a little grain, so the encoder
    and decoder see motion and detail of the kind camera footage has (not a flat, free-to-decode picture)."""
    rng = np.random.default_rng(seed)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    discs = [
        (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-90, 90), rng.uniform(-60, 60),
         rng.uniform(0.05, 0.15) * min(height, width), rng.integers(0, 256, 3))
        for _ in range(6)
    ]  # fmt: skip
    phases = np.array([0.0, 2.1, 4.2], dtype=np.float32)
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        t = i / fps
        wave = np.sin((x[..., None] + 40 * t) / 23) * np.cos((y[..., None] - 25 * t) / 31 + phases)
        frame = 128 + 70 * wave + rng.normal(0, 3, (height, width, 1)).astype(np.float32)
        for cx, cy, vx, vy, radius, colour in discs:
            px, py = (cx + vx * t) % width, (cy + vy * t) % height
            frame[(x - px) ** 2 + (y - py) ** 2 < radius**2] = colour
        out[i] = np.clip(frame, 0, 255)
    return out


def make_clips(directory: Path, args) -> list[Clip]:
    count = round(args.seconds * args.fps)
    frames = synthetic_frames(count, args.height, args.width, args.fps)
    clips = []
    for interval in args.keyframe_intervals:
        path = directory / f"clip_{args.width}x{args.height}_{args.fps:g}fps_{count}f_key{interval}.mp4"
        if not path.exists():
            write_video(path, frames, args.fps, keyframe_interval=interval)
        clips.append(Clip(path, interval, count))
    return clips


# -- stave's arm ---------------------------------------------------------------------------------------


def stave_pipeline(sample_fps: float) -> Callable[[Path], Output]:
    options = VideoOptions(fps=sample_fps)

    def run(path: Path) -> Output:
        clip = read_video(path, options)
        pixels, grid = pack_frames(clip.frames)
        return pixels, torch.tensor([grid])

    return run


# -- the reference arms: qwen-vl-utils' steps, then transformers' processor ---------------------------


def reference_frame_count(total: int, video_fps: float, fps: float) -> int:
    """qwen-vl-utils' fps rule: total / video_fps * fps, clamped to [4, min(768, total)], down to even."""
    lowest = math.ceil(MIN_FRAMES / FRAME_FACTOR) * FRAME_FACTOR
    highest = math.floor(min(MAX_FRAMES, total) / FRAME_FACTOR) * FRAME_FACTOR
    wanted = min(max(total / video_fps * fps, lowest), highest, total)
    return math.floor(wanted / FRAME_FACTOR) * FRAME_FACTOR


def reference_smart_resize(height: int, width: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """Sides rounded to multiples of 28, then scaled (keeping the aspect) into [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio above 200: {height}x{width}")
    h, w = max(FACTOR, round(height / FACTOR) * FACTOR), max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(FACTOR, math.floor(height / scale / FACTOR) * FACTOR)
        w = max(FACTOR, math.floor(width / scale / FACTOR) * FACTOR)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / FACTOR) * FACTOR, math.ceil(width * scale / FACTOR) * FACTOR
    return h, w


def decode_all_pyav(path: Path) -> tuple[np.ndarray, float]:
    """Every frame as (T, H, W, 3) uint8 (a list of frames, then one stack, as torchvision's read_video
    did), and the stream's frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        fps = float(stream.average_rate)
    return np.stack(frames), fps


def decode_all_decord(path: Path) -> tuple[np.ndarray, float]:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    return frames, float(reader.get_avg_fps())


def decode_sampled_decord(path: Path, sample_fps: float) -> torch.Tensor:
    """qwen-vl-utils' `_read_video_decord`: only the sampled frames, as (n, 3, H, W) uint8."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
    n = reference_frame_count(len(reader), float(reader.get_avg_fps()), sample_fps)
    indices = torch.linspace(0, len(reader) - 1, n).round().long().tolist()
    return torch.from_numpy(reader.get_batch(indices).asnumpy()).permute(0, 3, 1, 2)


def reference_unavailable(arm: str) -> str | None:
    """Why `arm` cannot run here, or None when it can."""
    try:
        import torchvision.transforms.functional  # noqa: F401
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor  # noqa: F401

        if arm.startswith("ref-decord"):
            import decord  # noqa: F401
    except Exception as error:  # torchvision fails to import in several ways beside a mismatched torch
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
    return None


def reference_pipeline(arm: str, sample_fps: float, resize_path: str = "processor") -> Callable[[Path], Output]:
    import torchvision.transforms.functional as tvf
    import torchvision.transforms.v2.functional as tvf2
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.utils import logging

    logging.set_verbosity_error()
    decode = decode_all_decord if arm == "ref-decord" else decode_all_pyav
    kwargs = {"return_tensors": "pt"}
    if "cap_pixels_per_frame" in getattr(Qwen2VLVideoProcessor.valid_kwargs, "__annotations__", {}):
        kwargs["cap_pixels_per_frame"] = False  # the frames already carry qwen-vl-utils' budget
    processors: dict[tuple[int, int], Qwen2VLVideoProcessor] = {}  # built once per frame size, as users do

    def run(path: Path) -> Output:
        if arm == "ref-decord-sampled":
            video = decode_sampled_decord(path, sample_fps)
            n = video.shape[0]
        else:
            frames, video_fps = decode(path)
            video = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W), a view
            n = reference_frame_count(video.shape[0], video_fps, sample_fps)
            video = video[torch.linspace(0, video.shape[0] - 1, n).round().long()]
        max_pixels = max(min(VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS / n * FRAME_FACTOR), int(VIDEO_MIN_PIXELS * 1.05))
        size = reference_smart_resize(video.shape[2], video.shape[3], VIDEO_MIN_PIXELS, max_pixels)
        resize = tvf2.resize if resize_path == "processor" else tvf.resize
        video = resize(video, list(size), interpolation=tvf.InterpolationMode.BICUBIC, antialias=True).float()
        if size not in processors:
            pixels = size[0] * size[1]
            processors[size] = Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels)
        out = processors[size](videos=[video], **kwargs)
        return out["pixel_values_videos"], out["video_grid_thw"]

    return run


def build_arm(arm: str, sample_fps: float, resize_path: str = "processor") -> Callable[[Path], Output]:
    return stave_pipeline(sample_fps) if arm == "stave" else reference_pipeline(arm, sample_fps, resize_path)


# -- measuring -----------------------------------------------------------------------------------------


def interleaved(pipelines: dict[str, Callable[[Path], Output]], path: Path, repeats: int):
    """(median seconds per arm, each arm's output from the warm-up round). Round r runs the arms in an
    order rotated by r, so drift of the shared machine's speed and cache effects hit all arms alike."""
    names = list(pipelines)
    samples: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, Output] = {}
    for round_ in range(repeats + 1):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            out = pipelines[name](path)
            seconds = time.perf_counter() - start
            if round_:
                samples[name].append(seconds)
            else:
                outputs[name] = out
    return {name: statistics.median(values) for name, values in samples.items()}, outputs


def memory_probe(args) -> None:
    """Run in a fresh process: peak RSS of one video through one arm, over the process after its imports."""
    run = build_arm(args.memory_probe, args.sample_fps, args.reference_resize)
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak-RSS mark (VmHWM) to the current RSS
    base = status_kib("VmHWM")
    pixels, _ = run(Path(args.video))
    peak = status_kib("VmHWM")
    print(json.dumps({"rise_bytes": (peak - base) * 1024, "peak_bytes": peak * 1024, "rows": pixels.shape[0]}))


def peak_memory(arm: str, path: Path, args) -> dict[str, float]:
    command = [sys.executable, __file__, "--memory-probe", arm, "--video", str(path)]
    command += ["--sample-fps", str(args.sample_fps), "--reference-resize", args.reference_resize]
    if args.torch_threads:
        command += ["--torch-threads", str(args.torch_threads)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"memory probe of {arm} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def max_abs_diff(ours: Output, theirs: Output) -> float:
    if ours[1].tolist() != theirs[1].tolist() or ours[0].shape != theirs[0].shape:
        return math.inf  # a different grid: not the same output at all
    return (ours[0] - theirs[0].float()).abs().max().item()


def versions() -> str:
    parts = [f"torch {torch.__version__}"]
    for module in ("torchvision", "transformers", "av", "decord"):
        try:
            parts.append(f"{module} {__import__(module).__version__}")
        except Exception:
            parts.append(f"{module} -")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=float, default=30.0, help="the clips' frame rate")
    parser.add_argument("--keyframe-intervals", type=int, nargs="+", default=[250, 15], help="frames between keyframes")
    parser.add_argument("--sample-fps", type=float, default=2.0, help="frames taken per second of video")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed |stave - reference|")
    parser.add_argument(
        "--reference-resize",
        choices=["processor", "qwen-vl-utils"],
        default="processor",
        help="how the reference arms resize: torchvision v2 on uint8 (transformers' processors, stave) or "
        "torchvision's older functional resize in float32 (qwen-vl-utils' video path; use --tolerance 0.1)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="torch's intra-op threads for every arm (default: torch's own choice; a DataLoader worker runs with 1)",
    )
    parser.add_argument("--clips-dir", type=Path, help="keep the clips here (default: a temporary folder)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument("--quick", action="store_true", help="10 s clips, 3 rounds")
    parser.add_argument("--memory-probe", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.memory_probe:
        memory_probe(args)
        return
    if args.quick:
        args.seconds, args.repeats = min(args.seconds, 10.0), min(args.repeats, 3)

    unavailable = {arm: reason for arm in args.arms if arm != "stave" and (reason := reference_unavailable(arm))}
    arms = [arm for arm in args.arms if arm not in unavailable]
    refs = [arm for arm in args.arms if arm != "stave"]
    print(f"# Video pipeline — {args.seconds:g} s clips, {args.width}x{args.height}, {args.fps:g} fps, H.264; "
          f"sampled at {args.sample_fps:g} fps")  # fmt: skip
    print(f"# {cpu_name()}, {torch.get_num_threads()} threads; {versions()}")
    print(f"# median of {args.repeats} interleaved rounds after a warm-up; command: python {' '.join(sys.argv)}")
    for arm, reason in unavailable.items():
        print(f"# {arm}: unavailable ({reason})")

    with tempfile.TemporaryDirectory(prefix="stave-video-bench-") as tmp:
        directory = args.clips_dir or Path(tmp)
        clips = make_clips(directory, args)
        pipelines = {arm: build_arm(arm, args.sample_fps, args.reference_resize) for arm in arms}

        print()
        header = "| keyframes every | frames in / taken (size) | output rows x 1176 | stave s/video | stave videos/s |"
        rule = "|---|---|---|---|---|"
        for ref in refs:
            header += f" {ref} s/video | {ref} videos/s | speed-up stave / {ref} | max abs diff |"
            rule += "---|---|---|---|"
        print(header)
        print(rule)
        mismatches = []
        for clip in clips:
            seconds, outputs = interleaved(pipelines, clip.path, args.repeats)
            if "stave" in seconds:
                pixels, grid = outputs["stave"]
                t, h, w = grid[0].tolist()
                row = (
                    f"| {clip.keyframe_interval} | {clip.frames} / {FRAME_FACTOR * t} ({h * 14}x{w * 14}) | "
                    f"{pixels.shape[0]} | {seconds['stave']:.3f} | {1 / seconds['stave']:.2f} |"
                )
            else:
                row = f"| {clip.keyframe_interval} | {clip.frames} / – | – | – | – |"
            for ref in refs:
                if ref not in seconds:
                    row += " n/a | n/a | n/a | n/a |"
                    continue
                diff = max_abs_diff(outputs["stave"], outputs[ref]) if "stave" in outputs else math.nan
                if diff > args.tolerance:
                    mismatches.append(f"keyframes every {clip.keyframe_interval}, {ref}: max abs diff {diff:.3g}")
                speedup = f"{seconds[ref] / seconds['stave']:.2f}x" if "stave" in seconds else "–"
                row += f" {seconds[ref]:.3f} | {1 / seconds[ref]:.2f} | {speedup} | {diff:.2e} |"
            print(row, flush=True)

        if not args.no_memory:
            print()
            print("Peak memory of one video, fresh process per arm (MiB): rise of peak RSS over the process after its "
                  "imports / the process's whole peak RSS")  # fmt: skip
            print()
            header = "| keyframes every |" + "".join(f" {arm} |" for arm in args.arms)
            header += "".join(f" {ref} / stave (rise) |" for ref in refs)
            print(header)
            print("|---|" + "---|" * (len(args.arms) + len(refs)))
            for clip in clips:
                peaks = {arm: peak_memory(arm, clip.path, args) for arm in arms}
                row = f"| {clip.keyframe_interval} |"
                for arm in args.arms:
                    mib = peaks.get(arm)
                    row += f" {mib['rise_bytes'] / 2**20:.0f} / {mib['peak_bytes'] / 2**20:.0f} |" if mib else " n/a |"
                for ref in refs:
                    ok = ref in peaks and "stave" in peaks
                    row += f" {peaks[ref]['rise_bytes'] / peaks['stave']['rise_bytes']:.2f} |" if ok else " n/a |"
                print(row, flush=True)

    if mismatches:
        print()
        print(f"OUTPUTS DIFFER (tolerance {args.tolerance:g}): " + "; ".join(mismatches))
        sys.exit(1)


if __name__ == "__main__":
    main()
