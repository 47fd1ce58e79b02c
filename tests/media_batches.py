"""A processed batch of tiled images and a video, for the frame-per-image families (LLaVA-OneVision's anyres tiles,
InternVL's dynamic tiles): what their LLMs get from it, with and without STA."""

from __future__ import annotations

import numpy as np
import torch
from conftest import randomize_temporal

import stave
from stave.processing import VideoChatProcessor
from stave.video import VideoOptions


def conversations() -> list[list[dict]]:
    """Three samples: a wide 30 x 64 image (several tiles in both families), a small 20 x 20 one (LLaVA-OneVision: a
    base image and one tile; InternVL: one tile), a video of 8 frames (4 taken)."""
    rng = np.random.default_rng(0)

    def sample(kind: str, media: np.ndarray) -> list[dict]:
        content = [{"type": kind, kind: media, **({"source_fps": 4.0} if kind == "video" else {})},
                   {"type": "text", "text": "what happens ?"}]  # fmt: skip
        return [{"role": "user", "content": content}]

    return [
        sample("image", rng.integers(0, 255, (30, 64, 3), dtype=np.uint8)),
        sample("image", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)),
        sample("video", rng.integers(0, 255, (8, 40, 56, 3), dtype=np.uint8)),
    ]


def llm_inputs(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The inputs_embeds (B, L, D) the model's language model gets for `batch` (its image and video tokens in place)."""
    language_model = next(m for name, m in model.named_modules() if name.endswith("language_model"))
    captured = {}

    def hook(module, args, kwargs):
        captured["embeds"] = kwargs["inputs_embeds"]

    handle = language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        handle.remove()
    return captured["embeds"]


def check_sta_leaves_tiles_alone_and_changes_the_video(model: torch.nn.Module, tokenizer) -> dict:
    """With random STA, the LLM inputs of the two image samples (their tiles rows of one tower call) are those of the
    stock model bit for bit, the video sample's differ; each image sample's are the same alone as in the batch (the
    batch pads or concatenates its tiles). Returns the batch."""
    processor = VideoChatProcessor.for_model(tokenizer, model, VideoOptions(nframes=4))
    samples = [processor.encode(messages, train=False) for messages in conversations()]
    batch = processor.collate(samples)
    before = llm_inputs(model, batch)
    alone = [llm_inputs(model, processor.collate([sample])) for sample in samples[:2]]
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    after = llm_inputs(model, batch)
    assert torch.equal(before[:2], after[:2])
    assert (after[2] - before[2]).abs().max() > 1e-3
    for i, embeds in enumerate(alone):
        assert torch.allclose(before[i, : embeds.shape[1]], embeds[0], atol=1e-6), i
    return batch
