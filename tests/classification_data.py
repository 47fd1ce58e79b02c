"""A tiny SSv2 data set in the published layout (labels.json, train.json, validation.json, one video per record)
for classification tests: a square pulled left to right or right to left (an opposing pair), or held still.
Videos are mp4 (H.264) named {id}.mp4; generated in well under a second."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from stave.video.encode import write_video

CLASSES = (
    "Holding something",
    "Pulling something from left to right",
    "Pulling something from right to left",
)
TEMPLATES = {
    "Holding something": "Holding [something]",
    "Pulling something from left to right": "Pulling [something] from left to right",
    "Pulling something from right to left": "Pulling [something] from right to left",
}


def square_video(cls: str, frames: int = 8, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """(frames, height, width, 3) uint8: a bright square moving right, left, or still in the middle."""
    rng = np.random.default_rng(seed)
    video = np.full((frames, height, width, 3), 30, dtype=np.uint8)
    side = 14
    top = int(rng.integers(0, height - side))
    colour = rng.integers(140, 256, size=3)
    for i in range(frames):
        left = round(i * (width - side) / (frames - 1))
        if cls.endswith("right to left"):
            left = width - side - left
        elif not cls.endswith("left to right"):
            left = (width - side) // 2
        video[i, top : top + side, left : left + side] = colour
    return video


def write_ssv2(root: Path, train: int = 6, validation: int = 6, *, frames: int = 8) -> Path:
    """labels.json (3 classes), train.json and validation.json (records cycling through the classes, ids
    1000+ and 2000+) and root/videos/<id>.mp4; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.json").write_text(json.dumps({name: str(i) for i, name in enumerate(CLASSES)}))
    for split, n, base in (("train", train, 1000), ("validation", validation, 2000)):
        rows = []
        for i in range(n):
            cls = CLASSES[i % len(CLASSES)]
            video_id = str(base + i)
            write_video(root / "videos" / f"{video_id}.mp4", square_video(cls, frames, seed=base + i), fps=4)
            rows.append({"id": video_id, "label": cls.lower(), "template": TEMPLATES[cls], "placeholders": ["a box"]})
        (root / f"{split}.json").write_text(json.dumps(rows))
    return root


def classification_recipe(data: Path, output: Path, **training) -> dict:
    """configs/tiny-classifier.yaml on a generated data set (write_ssv2): its model, loss and schedule, with 4 steps
    of batch 2 in file order, and `training` values over it."""
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "tiny-classifier.yaml").read_text())
    recipe["output_dir"] = str(output)
    [dataset] = recipe["data"]["datasets"]
    dataset.update(path=str(data / "train.json"), root=str(data / "videos"), video_pattern="{id}.mp4")
    recipe["data"]["shuffle"] = False
    recipe["training"] |= {"max_steps": 4, "save_steps": 500, "disable_tqdm": True, **training}
    return recipe
