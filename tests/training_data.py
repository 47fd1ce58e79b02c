"""A small learnable video QA set for training tests: a square moving left or right, in both public
conversation formats, plus an SSv2-style file. Generated in well under a second."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from stave.video.encode import write_video

QUESTION = "which way does the square move ?"


def moving_square(direction: str, frames: int = 4, size: int = 56, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = np.full((frames, size, size, 3), 20, dtype=np.uint8)
    side, top = 14, int(rng.integers(0, size - 14))
    colour = rng.integers(128, 256, size=3)
    for i in range(frames):
        left = round(i * (size - side) / (frames - 1))
        if direction == "left":
            left = size - side - left
        video[i, top : top + side, left : left + side] = colour
    return video


def write_dataset(
    root: Path, n: int = 8, *, text_only_at: int | None = None, kinds: Sequence[str] | None = None
) -> Path:
    """`n` LLaVA-style samples (alternating right/left) in root/train.jsonl, videos in root/videos/.
    With text_only_at=i, sample i is a text-only conversation (no video). With `kinds` (one of "video",
    "image", "text" per sample; n is its length), sample i is of kind kinds[i]: an image sample shows the
    first frame of its video (root/images/, PNG). Every answer is one word, so every sample has as many
    answer tokens as any other."""
    kinds = list(kinds) if kinds is not None else ["text" if i == text_only_at else "video" for i in range(n)]
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, kind in enumerate(kinds):
        direction = "right" if i % 2 == 0 else "left"
        if kind == "text":
            lines.append(
                {"conversations": [{"from": "human", "value": "say right"}, {"from": "gpt", "value": "right"}]}
            )
            continue
        frames = moving_square(direction, seed=i)
        if kind == "image":
            name = f"images/{i:03d}.png"
            Image.fromarray(frames[0]).save(root / name)
        else:
            name = f"videos/{i:03d}.mp4"
            write_video(root / name, frames, fps=4)
        lines.append(
            {
                kind: name,
                "conversations": [
                    {"from": "human", "value": f"<{kind}>\n{QUESTION}"},
                    {"from": "gpt", "value": direction},
                ],
            }
        )
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def tiny_recipe(data: Path, output: Path, **training) -> dict:
    """The tiny CPU recipe (configs/tiny.yaml's values) on a generated data set."""
    return {
        "output_dir": str(output),
        "model": {"path": "tiny-qwen2-vl", "attn_implementation": "sdpa"},
        "data": {
            "datasets": [{"path": str(data)}],
            "video": {"nframes": 4, "min_pixels": 3136, "max_pixels": 3136},
            "shuffle": False,
        },
        "stages": ["stage1"],
        "training": {"learning_rate": 1e-3, "max_steps": 4, "report_to": "none", "disable_tqdm": True, **training},
    }
