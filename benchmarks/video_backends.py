"""How long each installed decoding backend takes, on generated H.264 files, and how far its pixels are
from PyAV's.

Every backend decodes the same frames (chosen from one frame table). Two timings per backend: "decode",
the frame table plus the backend's decoding of the chosen frames at source resolution (what differs
between backends), and "read_video", which adds the resize shared by all of them. Files are made with
stave.video.encode.write_video: a moving gradient (so the codec has real work), with x264's default
keyframe interval (250) or a given one. Rounds are interleaved (each round runs every backend once), and
medians are reported.

    python benchmarks/video_backends.py                      # 720p 10 s and 360p 60 s, fps=2, 5 rounds
    python benchmarks/video_backends.py --quick              # one small file, 2 rounds (used by the tests)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from stave.video import VideoOptions, read_video
from stave.video.backends import BACKENDS, available_backends, get_backend
from stave.video.backends.frame_table import Deadline, read_frame_table
from stave.video.encode import write_video


def moving_gradient(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8: diagonal colour bands that move a few pixels per frame."""
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        out[t, ..., 0] = (x + 3 * t) % 256
        out[t, ..., 1] = (y + 2 * t) % 256
        out[t, ..., 2] = (x + y + 5 * t) % 256
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one 160x96 file of 40 frames, 2 rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fps", type=float, default=2.0, help="sampling rate of VideoOptions")
    args = parser.parse_args(argv)

    status = available_backends()
    usable = [name for name in BACKENDS if status[name] is None]
    for name in BACKENDS:
        print(f"{name}: {'usable' if status[name] is None else 'not usable: ' + status[name]}")
    # (label, frames, height, width, source fps, keyframe interval)
    files = (
        [("96p 4 s", 40, 96, 160, 10, None)]
        if args.quick
        else [("720p 10 s", 300, 720, 1280, 30, None), ("360p 60 s", 1800, 360, 640, 30, None),
              ("360p 60 s, key every 30", 1800, 360, 640, 30, 30)]
    )  # fmt: skip
    rounds = 2 if args.quick else args.rounds
    options = VideoOptions(fps=args.fps)
    print()
    print(f"read_video, VideoOptions(fps={args.fps}); median of {rounds} interleaved rounds")
    header = " | ".join(f"{n} decode / read_video (s)" for n in usable)
    print(f"| file | frames taken | {header} | max / mean abs(pixel - pyav) |")
    print("|---|---|" + "---|" * len(usable) + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, count, height, width, fps, keyint in files:
            path = write_video(
                Path(tmp) / "clip.mp4", moving_gradient(count, height, width), fps=fps, keyframe_interval=keyint
            )
            decode_times: dict[str, list[float]] = {name: [] for name in usable}
            read_times: dict[str, list[float]] = {name: [] for name in usable}
            clips = {}
            for _ in range(rounds):
                for name in usable:
                    per_backend = VideoOptions(**{**options.to_dict(), "backend": name})
                    start = time.perf_counter()
                    clips[name] = read_video(path, per_backend)
                    read_times[name].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    table = read_frame_table(path, per_backend.timeout)
                    for _ in get_backend(name, path)[1].decode(path, table, clips[name].indices, Deadline(600, path)):
                        pass
                    decode_times[name].append(time.perf_counter() - start)
            reference = clips["pyav"].frames.float()
            diffs = [
                f"{n}: {(clips[n].frames.float() - reference).abs().max():.0f} / "
                f"{(clips[n].frames.float() - reference).abs().mean():.2f}"
                for n in usable
                if n != "pyav"
            ]
            cells = " | ".join(
                f"{statistics.median(decode_times[n]):.3f} / {statistics.median(read_times[n]):.3f}" for n in usable
            )
            print(f"| {label} | {len(clips['pyav'].indices)} | {cells} | {'; '.join(diffs) or '-'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
