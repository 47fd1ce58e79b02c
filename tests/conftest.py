"""Shared fixtures: tiny random models of every supported family and helpers that hide version differences."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import transformers

pytest_plugins = ["version_independence"]  # which tests need running on every transformers version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the straightforward reference implementation lives there

# Qwen3.5 exists from transformers 5 on; the other families on 4.57 and 5.x.
FAMILIES = ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3-vl-moe", "tiny-internvl"]
if int(transformers.__version__.split(".")[0]) >= 5:
    FAMILIES += ["tiny-qwen3.5", "tiny-qwen3.5-moe"]
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
    return request.param


#: presets whose tower sees frames as rows (InternViT: (rows, 1 + patches, D), a CLS token per row) instead of the
#: Qwen families' packed patch rows described by grid_thw
ROW_TOWER_PRESETS = {"tiny-internvl"}


def packed_towers_only(preset: str) -> None:
    """Skip a test that drives the Qwen families' packed tower (patch rows + grid_thw, merged tokens, video pads) on a
    frames-as-rows preset; tests/test_internvl.py tests the same property on InternVL's tower."""
    if preset in ROW_TOWER_PRESETS:
        pytest.skip(f"{preset}: the test drives Qwen's packed tower API; tests/test_internvl.py covers InternVL")


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
