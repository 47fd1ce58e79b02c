"""Where STA goes in Qwen3-VL and Qwen3.5, dense and MoE: one builder for the four families, which share the
vision tower's shape (transformers' Qwen3VLVisionModel and its copies Qwen3VLMoeVisionModel, Qwen3_5VisionModel,
Qwen3_5MoeVisionModel).

Confirmed in transformers 4.57 and 5.24: a block is norm1 (LayerNorm) -> attn (fused qkv, 2-D rotary over h/w)
-> residual -> norm2 -> MLP (linear_fc1, linear_fc2) -> residual; patch 16, temporal patch 2, spatial merge 2.
The tower's tokens are packed item after item, temporal patch after temporal patch, each temporal patch in the
processor's 2x2 merge-block order and identical for every temporal patch; there is no window permutation, so
the blocks see the processor's order (token_order is the identity) and stave.temporal.layout applies as for
Qwen2-VL. A learned 48x48 position table, interpolated to (h, w) and repeated over t, is added before the
blocks: nothing in the tower knows time. Qwen3-VL's `deepstack_visual_indexes` hand the outputs of some blocks
(through their own mergers) to the first LLM layers; STA in those blocks changes those features too.

In the prompt each temporal patch of a video is its own vision block after a `<t.t seconds>` text (the mean
time of its two frames), and get_rope_index places each temporal patch as a grid (1, h, w)
(`video_prompt` below). Qwen3.5 exists from transformers 5 on: on 4.57 it is unknown (stave.models.UNAVAILABLE
names the version it needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import transformers
from torch import nn

from ..temporal.block import TemporalBlockMixin
from ..video.options import VideoOptions
from . import VideoPrompt, VisionFamily
from .qwen_media import QwenMedia
from .qwen_pooling import POOLED_METHODS, check_pooling

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def patch_timestamps(frame_times: Sequence[float], temporal_patch: int) -> list[float]:
    """Seconds of each temporal patch as Qwen3-VL's processor writes them: the mean of the times of its first and
    last frame, the last frame repeated to fill the last patch (transformers' Qwen3VLProcessor._calculate_timestamps).

    Args:
        frame_times: seconds of each sampled frame, in order (source frame index / source fps).
        temporal_patch: frames per temporal patch (2).
    Returns:
        one value per temporal patch.
    """
    times = list(frame_times)
    if not times:
        raise ValueError("a video needs at least one frame time")
    times += [times[-1]] * (-len(times) % temporal_patch)
    return [(times[i] + times[i + temporal_patch - 1]) / 2 for i in range(0, len(times), temporal_patch)]


def timestamp_text(seconds: float) -> str:
    """The text before a temporal patch's vision block: `<1.5 seconds>` (one decimal, as the processor)."""
    return f"<{seconds:.1f} seconds>"


def qwen3_video_prompt(timestamps: Sequence[float], pads_per_patch: int) -> list[tuple[str, int]]:
    """One (text, pads) entry per temporal patch: its timestamp text and the number of video pads of its own
    vision block (see VideoPrompt)."""
    return [(timestamp_text(seconds), pads_per_patch) for seconds in timestamps]


# What transformers' Qwen3VLVideoProcessor does with a video when the user gives no settings, as the published
# checkpoints configure it (video_preprocessor_config.json of Qwen3-VL and Qwen3.5: size shortest_edge 4096 and
# longest_edge 25165824, i.e. 4 to 24576 merged 32x32 patches over the whole video; the class's fps 2, 4 to 768
# frames; identical on transformers 4.57 and 5.24, where the transitional cap_pixels_per_frame is unset and so
# off): frames at 2 per second of the source, their count int(seconds * 2) clamped to [4, 768] and to the frames
# there, an odd count padded with the last frame; one size for all frames with frames x height x width within the
# budget. (The class's own size, 128 to 768 patches over the whole video, is what no checkpoint uses.)
PATCH_FACTOR = 32  # patch 16 x merge 2
VIDEO_OPTIONS = VideoOptions(
    fps=2.0, min_frames=4, max_frames=768, min_pixels=4 * PATCH_FACTOR**2, max_pixels=24576 * PATCH_FACTOR**2,
    budget="video", frame_factor=1,
)  # fmt: skip


def _family(name: str, model_type: str, module_name: str, prefix: str, *, moe: bool) -> VisionFamily:
    module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    block_class = getattr(module, f"{prefix}VisionBlock")
    temporal_block_class = type(
        f"{prefix}TemporalBlock",
        (TemporalBlockMixin, block_class),
        {"__doc__": f"{block_class.__name__} with stacked temporal attention (see stave.temporal.block).",
         "__module__": __name__},
    )  # fmt: skip
    globals()[temporal_block_class.__name__] = temporal_block_class  # importable by name (pickling, deepcopy)
    layer_name = "DecoderLayer" if prefix.startswith("Qwen3_5") else "TextDecoderLayer"
    return VisionFamily(
        name=name,
        tower_class=getattr(module, f"{prefix}VisionModel"),
        model_classes=(getattr(module, f"{prefix}ForConditionalGeneration"), getattr(module, f"{prefix}Model")),
        block_class=block_class,
        temporal_block_class=temporal_block_class,
        llm_layer_class=getattr(module, f"{prefix}{layer_name}"),
        width=lambda config: config.hidden_size,
        make_norm=lambda block, dim: nn.LayerNorm(dim, eps=block.norm1.eps),
        vision_linears=("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"),
        model_type=model_type,
        pooled_methods=POOLED_METHODS,
        check_pooling=check_pooling,
        media=QwenMedia(
            # 5.x's processor keeps the template's own vision tokens around the blocks; 4.57's replaces them
            video_prompt=VideoPrompt(
                patch_timestamps,
                qwen3_video_prompt,
                outer_vision_tokens=TRANSFORMERS_MAJOR >= 5,
                # "<12.5 seconds>", for clips of up to two minutes
                words=("<", ">", "seconds", ".", *(str(n) for n in range(121))),
            ),
            # Qwen3-VL-8B-Instruct / Qwen3.5 preprocessor_config.json: image_mean = image_std = [0.5, 0.5, 0.5]
            pixel_mean=(0.5, 0.5, 0.5),
            pixel_std=(0.5, 0.5, 0.5),
        ),
        llm_linears=_LLM_LINEARS_MOE if moe else _LLM_LINEARS,
        video_options=VIDEO_OPTIONS,
    )


# LoRA on the LLM. Dense: attention (Qwen3.5's full-attention layers as Qwen3-VL's; its linear-attention layers
# through the Gated DeltaNet's large projections in_proj_qkv, in_proj_z and out_proj, not the per-head gate
# projections in_proj_a / in_proj_b) and the MLP. MoE: the same attention, the MLP of any dense layer
# (mlp_only_layers) and Qwen3.5-MoE's shared expert; not the routed experts, which are two fused 3-D parameters
# per layer (experts.gate_up_proj, experts.down_proj) that peft's LoRA cannot wrap as linears, and not the router
# (mlp.gate) nor the shared expert's gate, so that which experts a token reaches stays as pretrained.
_ATTENTION = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj",
)  # fmt: skip
_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_LLM_LINEARS = (*_ATTENTION, *_MLP)
_LLM_LINEARS_MOE = (
    *_ATTENTION, *_MLP, "mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj", "mlp.shared_expert.down_proj"
)  # fmt: skip

QWEN3_VL = _family("Qwen3-VL", "qwen3_vl", "qwen3_vl", "Qwen3VL", moe=False)
QWEN3_VL_MOE = _family("Qwen3-VL-MoE", "qwen3_vl_moe", "qwen3_vl_moe", "Qwen3VLMoe", moe=True)
if TRANSFORMERS_MAJOR >= 5:
    QWEN3_5 = _family("Qwen3.5", "qwen3_5", "qwen3_5", "Qwen3_5", moe=False)
    QWEN3_5_MOE = _family("Qwen3.5-MoE", "qwen3_5_moe", "qwen3_5_moe", "Qwen3_5Moe", moe=True)
    FAMILIES: tuple[VisionFamily, ...] = (QWEN3_VL, QWEN3_VL_MOE, QWEN3_5, QWEN3_5_MOE)
else:
    FAMILIES = (QWEN3_VL, QWEN3_VL_MOE)

#: model_type -> the transformers version a family needs, for the families this transformers lacks.
NEEDS_NEWER = {} if TRANSFORMERS_MAJOR >= 5 else {"qwen3_5": "5", "qwen3_5_moe": "5"}
