"""Shared fixtures: tiny random models of every supported family and helpers that hide version differences."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import transformers

import stave
import stave.models

pytest_plugins = ["version_independence"]  # which tests need running on every transformers version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the straightforward reference implementation lives there

# Qwen3.5 exists from transformers 5 on; the other families on 4.57 and 5.x.
FAMILIES = [
    "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3-vl-moe", "tiny-internvl", "tiny-llava-onevision",
    "tiny-llava-next-video",
]  # fmt: skip
if int(transformers.__version__.split(".")[0]) >= 5:
    FAMILIES += ["tiny-qwen3.5", "tiny-qwen3.5-moe"]
#: one preset per distinct vision tower, for the properties of the tower alone: the MoE families run their dense
#: sibling's tower code (transformers' Qwen3VLMoeVisionModel and Qwen3_5MoeVisionModel are copies of
#: Qwen3VLVisionModel and Qwen3_5VisionModel), so a tower property checked on tiny-qwen3-vl holds for
#: tiny-qwen3-vl-moe; what differs between them (the LLM) is tested on every preset (`preset`).
TOWERS = [p for p in FAMILIES if p not in ("tiny-qwen3-vl-moe", "tiny-qwen3.5-moe")]
# scripts/test.sh sets STAVE_EXPECT_EXTRAS=1 in the extras environment (torchvision, torchcodec, decord2), where the
# tests of the optional backends and the live comparisons with transformers' processors must run, and
# STAVE_EXPECT_DEEPSPEED=1 in the main environment, where scripts/setup.sh installs deepspeed and the ZeRO tests
# must run: there a skip of those tests is a failure.


def skip_optional(reason: str, *, expected: str = "STAVE_EXPECT_EXTRAS") -> None:
    """Skip a test that needs an optional library, naming why; a failure where the environment variable
    `expected` (STAVE_EXPECT_EXTRAS or STAVE_EXPECT_DEEPSPEED) is 1."""
    if os.environ.get(expected) == "1":
        pytest.fail(f"{expected}=1, but {reason}")
    pytest.skip(reason)


def require_torchvision() -> None:
    """Skip a test that needs torchvision (transformers' torchvision processors) where it does not import; a failure
    where STAVE_EXPECT_EXTRAS=1."""
    try:
        import torchvision  # noqa: F401
    except Exception as error:  # torchvision fails to import in several ways beside a mismatched torch
        skip_optional(f"torchvision cannot be imported: {type(error).__name__}: {error}")


def require_deepspeed() -> None:
    """Skip a test that needs deepspeed where it is not installed; a failure where STAVE_EXPECT_DEEPSPEED=1."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        skip_optional("deepspeed is not installed (scripts/setup.sh installs it)", expected="STAVE_EXPECT_DEEPSPEED")


def pytest_configure(config) -> None:
    """Under pytest-xdist (scripts/test.sh), each worker process gets its share of the cores for torch's threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


@pytest.fixture(params=FAMILIES)
def preset(request) -> str:
    """Every tiny model family (its tower and its LLM)."""
    return request.param


@pytest.fixture(params=TOWERS)
def tower_preset(request) -> str:
    """One tiny model per distinct vision tower (TOWERS), for properties of the tower alone."""
    return request.param


def _packs_patch_rows(preset: str) -> bool:
    from stave.models import family_for_model_type, packed_grid_items
    from stave.presets import TINY_PRESETS

    return family_for_model_type(TINY_PRESETS[preset][0]).temporal_items is packed_grid_items


@pytest.fixture(params=[p for p in FAMILIES if _packs_patch_rows(p)])
def packed_preset(request) -> str:
    """The families whose tower takes packed patch rows described by grid_thw and hands the LLM its merged tokens as
    they are (the Qwen families), for tests of that packing and of the LLM positions of its grids."""
    return request.param


def example_batch(model) -> dict[str, list[tuple[int, int, int]]]:
    """A small mixed batch the family's model takes, as model_inputs arguments: its MediaFormat.example_grids
    (Qwen: videos of other sizes and lengths; InternVL: other lengths; LLaVA-OneVision: equal lengths, as it
    batches videos) and one image."""
    videos, images = stave.models.find_vision_tower(model)[0].media.example_grids(model.config.vision_config)
    return dict(videos=list(videos), images=list(images))


def random_frames(model, grid: tuple[int, int, int], *, seed: int = 0, held: bool = False) -> torch.Tensor:
    """(frames, 3, H, W) uint8 random frames of a video the family's processing makes a grid (t, h, w) of (frames =
    t temporal steps of its temporal patch size; H, W = h, w patches, or the fixed frame size of a frame-per-image
    tower, whatever h and w). `held`: each temporal step one still
    frame, so that reversing the frames only reverses the order of whole steps."""
    media = stave.models.find_vision_tower(model)[0].media
    spec = media.patch_spec(model.config.vision_config)
    t, h, w = grid
    size = media.frame_size(spec) or (h * spec.patch_size, w * spec.patch_size)
    frames = torch.randint(0, 256, (t * spec.temporal_patch_size, 3, *size),
                           generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)  # fmt: skip
    if held:
        frames = frames[:: spec.temporal_patch_size].repeat_interleave(spec.temporal_patch_size, dim=0)
    return frames


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def merged_tokens(tower, pixels, grid_thw, **kwargs) -> torch.Tensor:
    """The tower's merged output tokens in item order, on transformers 4.57 (a tensor) and 5.x (an output object)."""
    return tower_outputs(tower, pixels, grid_thw, **kwargs)[0]


def tower_outputs(tower, pixels, grid_thw, **kwargs) -> list[torch.Tensor]:
    """Everything the tower hands the LLM: its merged tokens, then Qwen3-VL's deepstack features, if any."""
    from stave.models import vision_outputs

    return vision_outputs(tower(pixels, grid_thw=grid_thw, **kwargs))


def enable_checkpointing(model, reentrant: bool) -> None:
    """Gradient checkpointing of every block, under the name each transformers version gives it."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x; 4.57 has the old name
        model.activation_checkpointing_enable({"use_reentrant": reentrant})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})


def randomize_temporal(model, std: float = 0.3, seed: int = 1) -> None:
    """Give every added temporal parameter random values (zero init makes STA a no-op)."""
    import stave

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in stave.temporal_parameters(model):
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def generated_text(model, tokenizer, messages, video_options, max_new_tokens: int) -> str:
    """What `model.generate` itself answers (greedy) to the processor's inputs for `messages`, decoded as stave's
    answerer decodes; asserts that it generated some text, so that a comparison with it compares real text.
    (Tiny random models differ between transformers versions: their weights are drawn by each version's init.)"""
    from stave.processing import VideoChatProcessor

    processor = VideoChatProcessor.for_model(tokenizer, model, video_options)
    encoded = processor.encode(messages, train=False)
    with torch.no_grad():
        out = model.eval().generate(
            **processor.collate([encoded]), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    new = out[0, len(encoded["input_ids"]) :].tolist()
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    assert text, new
    return text
