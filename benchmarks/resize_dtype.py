"""stave.video.resize_frames (uint8 frames resized as uint8, as transformers' torchvision processors do) against
the float32 resize it replaced (convert, resize, round, clamp), on the frames video_pipeline.py resizes: 60
frames of 640x360 to 644x364, and the same frames shrunk to 448x252. Interleaved rounds (each round times both
arms, in alternating order), median seconds per call; torch's default threads.

    python benchmarks/resize_dtype.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from video_pipeline import synthetic_frames

from stave.video import resize_frames


def float32_resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The resize of stave before: in float32, rounded and clamped afterwards."""
    resized = F.interpolate(frames.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    frames = torch.from_numpy(synthetic_frames(60, 360, 640, 30.0)).permute(0, 3, 1, 2)  # as decoders give them
    arms = {"uint8 (now)": resize_frames, "float32 (before)": float32_resize}
    threads = torch.get_num_threads()
    print(f"# torch {torch.__version__}, {threads} threads; median of {args.repeats} interleaved rounds")
    print("| target | uint8 (now) s | float32 (before) s | now / before | values differing |")
    print("|---|---|---|---|---|")
    for height, width in ((364, 644), (252, 448)):
        times: dict[str, list[float]] = {name: [] for name in arms}
        for round_ in range(args.repeats + 1):
            order = list(arms) if round_ % 2 else list(reversed(arms))
            for name in order:
                start = time.perf_counter()
                arms[name](frames, height, width)
                if round_:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        now, before = (statistics.median(times[name]) for name in arms)
        differing = (resize_frames(frames, height, width) != float32_resize(frames, height, width)).float().mean()
        print(f"| {width}x{height} | {now:.3f} | {before:.3f} | {now / before:.2f} | {differing:.2%} |")


if __name__ == "__main__":
    main()
