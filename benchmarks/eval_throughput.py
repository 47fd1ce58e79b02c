"""Evaluation throughput of the tiny model on a generated MVBench-layout benchmark: items/s by batch size,
with and without the per-run video cache (several questions per video, as in real benchmarks).

    .venv/bin/python benchmarks/eval_throughput.py [--videos 8 --questions 4 --batch-sizes 1 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import stave
from stave.evaluation import EvalSettings, evaluate, load_benchmark
from stave.evaluation.benchmarks.mvbench import TASKS
from stave.evaluation.model import ModelAnswerer
from stave.presets import tiny_model
from stave.tokenizer import build_word_tokenizer
from stave.video import VideoOptions
from stave.video.encode import write_video

TASK = "action_antonym"


def make_benchmark(root: Path, videos: int, questions: int, frames: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "video" / TASKS[TASK].main_folder
    records = []
    for v in range(videos):
        write_video(folder / f"v{v}.mp4", rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8), fps=8)
        for q in range(questions):
            records.append({"video": f"v{v}.mp4", "question": f"question {q} ?", "candidates": ["left", "right"],
                            "answer": "left"})  # fmt: skip
    (root / "json").mkdir(parents=True)
    (root / "json" / f"{TASK}.json").write_text(json.dumps(records))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--questions", type=int, default=4, help="questions per video")
    parser.add_argument("--frames", type=int, default=32, help="frames in each generated video")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--nframes", type=int, default=8, help="frames sampled per video")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    words = "question answer with the option ' s letter from given choices directly left right ( ) a b".split()
    tokenizer = build_word_tokenizer([*words, *map(str, range(args.questions))])
    model = stave.add_temporal_attention(tiny_model(tokenizer=tokenizer))
    options = VideoOptions(nframes=args.nframes, min_pixels=112 * 112, max_pixels=112 * 112)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_benchmark(Path(tmp) / "mvbench", args.videos, args.questions, args.frames, args.size)
        items = load_benchmark("mvbench", root)
        print(
            f"tiny-qwen2-vl + STA, {len(items)} items ({args.videos} videos x {args.questions} questions, "
            f"{args.frames} frames {args.size}x{args.size} each, {args.nframes} sampled at 112x112), greedy, CPU"
        )
        print(f"{'batch':>6}{'video cache':>13}{'decodes':>9}{'seconds':>9}{'items/s':>9}")
        for batch_size in args.batch_sizes:
            for cached in (False, True):
                answerer = ModelAnswerer(model, tokenizer, video_options=options, max_new_tokens=4,
                                         cache_bytes=2**30 if cached else 0)  # fmt: skip
                settings = EvalSettings("mvbench", str(root), "tiny", video=options)
                start = time.perf_counter()
                evaluate(answerer, items, settings, Path(tmp) / f"run-{batch_size}-{cached}", batch_size=batch_size,
                         progress=False)  # fmt: skip
                seconds = time.perf_counter() - start
                decodes = answerer.cache.misses
                print(f"{batch_size:>6}{'on' if cached else 'off':>13}{decodes:>9}{seconds:>9.2f}"
                      f"{len(items) / seconds:>9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
