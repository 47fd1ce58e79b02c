"""Model presets as data: the published vision-tower architectures and tiny random models for tests.

The published values are those of the released config.json files of each checkpoint (vision part only:
no weights are needed to count parameters or to benchmark).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

_QWEN2_VL_TOWER = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_act="quick_gelu")
_QWEN2_5_VL_TOWER = dict(
    depth=32,
    hidden_size=1280,
    num_heads=16,
    intermediate_size=3420,
    hidden_act="silu",
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
)

# Qwen3-VL and Qwen3.5: the vision_config of each checkpoint's config.json
# (https://huggingface.co/Qwen/<name>/blob/main/config.json). No hub access here: each value is taken from public
# code that quotes those files, two independent sources where there are two, checked against each other.
#   [sglang-jax] sgl-project/sglang-jax python/sgl_jax/srt/multimodal/configs/qwen_vl/qwen3_vl_config.py
#     (Qwen3VLVisionConfig.qwen3vl_2b/_4b/_8b/_32b): depth, hidden_size, intermediate_size, num_heads,
#     out_hidden_size, deepstack_visual_indexes of Qwen3-VL-2B, 4B, 8B, 32B.
#   [xtuner] InternLM/xtuner xtuner/v1/model/compose/qwen3_vl/qwen3_vl_config.py (Qwen3VLDense4BConfig,
#     Qwen3VLDense8BConfig, Qwen3VLMoE30BA3Config, Qwen3VLMoE235BA22Config; the projector's text_hidden_size is
#     out_hidden_size) and xtuner/v1/model/compose/qwen3_5/qwen3_5_config.py (Qwen3.5-35B-A3B: the 8B tower
#     without deepstack): Qwen3-VL-4B, 8B, 30B-A3B, 235B-A22B; Qwen3.5-35B-A3B.
#   [omegalax] p-doom/omegalax omegalax/models/qwen3_5/config.py (_QWEN3_5_SPECS, keyed by hub id; an empty
#     vision_config means the class defaults: depth 27, width 1152, 16 heads, MLP 4304, out 4096): every Qwen3.5.
#   [gptqmodel] ModelCloud/GPTQModel issue thread of 2026-03-19 quoting Qwen/Qwen3.5-27B's config.json in full.
# Common to all: patch 16, temporal patch 2, merge 2, num_position_embeddings 2304 (48x48), gelu_pytorch_tanh.
# Qwen3.5 checkpoints have deepstack_visual_indexes [] (omegalax has no field for it; [gptqmodel] shows [] for
# 27B). Only depth, width and heads enter STA's figures; intermediate_size enters the tower's parameter count.
_QWEN3_TOWER = dict(
    depth=27, hidden_size=1152, num_heads=16, intermediate_size=4304, hidden_act="gelu_pytorch_tanh",
    num_position_embeddings=2304, patch_size=16,
)  # fmt: skip
_QWEN3_SMALL_TOWER = dict(_QWEN3_TOWER, depth=24, hidden_size=1024, intermediate_size=4096)
_QWEN3_VL_TOWER = dict(_QWEN3_TOWER, deepstack_visual_indexes=[8, 16, 24])  # 8B, 32B, 30B-A3B, 235B-A22B
_QWEN3_VL_SMALL_TOWER = dict(_QWEN3_SMALL_TOWER, deepstack_visual_indexes=[5, 11, 17])  # 2B, 4B
_QWEN3_5_TOWER = dict(_QWEN3_TOWER, deepstack_visual_indexes=[])
_QWEN3_5_SMALL_TOWER = dict(_QWEN3_SMALL_TOWER, deepstack_visual_indexes=[])

# InternViT (transformers' InternVLVisionConfig; 448 x 448 images, patch 14, a CLS token, LayerScale): 300M, the
# tower of InternVL2.5-8B / InternVL3-8B (and of their 1B-38B siblings), has transformers' InternVLVisionConfig
# defaults, which its docstring gives as OpenGVLab/InternVL3-1B-hf's (the same InternViT-300M-448px-V2.5):
# depth 24, width 1024, 16 heads, MLP 4096, LayerNorm, no qk-norm. 6B (InternViT-6B-448px-V1-5 / V2.5, the tower of
# InternVL2.5-78B / InternVL3-78B; https://huggingface.co/OpenGVLab/InternViT-6B-448px-V1-5/blob/main/config.json):
# depth 45, width 3200, 25 heads, MLP 12800, RMSNorm, qk-norm (qk_normalization: true). Written from the
# published files without downloading them here (no hub access); only depth, width and heads enter STA's figures.
_INTERNVIT_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       norm_type="layer_norm", use_qk_norm=False)  # fmt: skip
_INTERNVIT_6B = dict(hidden_size=3200, num_hidden_layers=45, num_attention_heads=25, intermediate_size=12800,
                     norm_type="rms_norm", use_qk_norm=True)  # fmt: skip

#: preset name -> (family key, vision config values)
VISION_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen2-vl-2b": ("qwen2_vl", {**_QWEN2_VL_TOWER, "hidden_size": 1536}),
    "qwen2-vl-7b": ("qwen2_vl", {**_QWEN2_VL_TOWER, "hidden_size": 3584}),
    "qwen2-vl-72b": ("qwen2_vl", {**_QWEN2_VL_TOWER, "hidden_size": 8192}),
    "qwen2.5-vl-3b": ("qwen2_5_vl", {**_QWEN2_5_VL_TOWER, "out_hidden_size": 2048}),
    "qwen2.5-vl-7b": ("qwen2_5_vl", {**_QWEN2_5_VL_TOWER, "out_hidden_size": 3584}),
    "qwen2.5-vl-72b": ("qwen2_5_vl", {**_QWEN2_5_VL_TOWER, "out_hidden_size": 8192}),
    "qwen3-vl-2b": ("qwen3_vl", {**_QWEN3_VL_SMALL_TOWER, "out_hidden_size": 2048}),  # [sglang-jax]
    "qwen3-vl-4b": ("qwen3_vl", {**_QWEN3_VL_SMALL_TOWER, "out_hidden_size": 2560}),  # [sglang-jax], [xtuner]
    "qwen3-vl-8b": ("qwen3_vl", {**_QWEN3_VL_TOWER, "out_hidden_size": 4096}),  # [sglang-jax], [xtuner]
    "qwen3-vl-32b": ("qwen3_vl", {**_QWEN3_VL_TOWER, "out_hidden_size": 5120}),  # [sglang-jax]
    "qwen3-vl-30b-a3b": ("qwen3_vl_moe", {**_QWEN3_VL_TOWER, "out_hidden_size": 2048}),  # [xtuner]
    "qwen3-vl-235b-a22b": ("qwen3_vl_moe", {**_QWEN3_VL_TOWER, "out_hidden_size": 4096}),  # [xtuner]
    "qwen3.5-0.8b": ("qwen3_5", dict(_QWEN3_5_TOWER, depth=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                                     out_hidden_size=1024)),  # [omegalax]
    "qwen3.5-2b": ("qwen3_5", {**_QWEN3_5_SMALL_TOWER, "out_hidden_size": 2048}),  # [omegalax]
    "qwen3.5-4b": ("qwen3_5", {**_QWEN3_5_SMALL_TOWER, "out_hidden_size": 2560}),  # [omegalax]
    "qwen3.5-9b": ("qwen3_5", {**_QWEN3_5_TOWER, "out_hidden_size": 4096}),  # [omegalax]
    "qwen3.5-27b": ("qwen3_5", {**_QWEN3_5_TOWER, "out_hidden_size": 5120}),  # [omegalax], [gptqmodel]
    "qwen3.5-35b-a3b": ("qwen3_5_moe", {**_QWEN3_5_TOWER, "out_hidden_size": 2048}),  # [omegalax], [xtuner]
    "qwen3.5-122b-a10b": ("qwen3_5_moe", {**_QWEN3_5_TOWER, "out_hidden_size": 3072}),  # [omegalax]
    "qwen3.5-397b-a17b": ("qwen3_5_moe", {**_QWEN3_5_TOWER, "out_hidden_size": 4096}),  # [omegalax]
    # llava-hf/llava-onevision-qwen2-{0.5b,7b,72b}-ov-hf: SigLIP so400m less its last layer (26 layers, width 1152, 16
    # heads of 72, MLP 4304), 384 x 384 frames in 14 x 14 patches, no head; written from the published config.json
    # without re-downloading it here (no hub access)
    "llava-onevision-7b": ("llava_onevision", dict(
        num_hidden_layers=26, hidden_size=1152, num_attention_heads=16, intermediate_size=4304, image_size=384,
        patch_size=14, vision_use_head=False,
    )),  # fmt: skip
    # llava-hf/LLaVA-NeXT-Video-7B-hf: CLIP ViT-L/14 at 336 px (24 layers, width 1024, 16 heads of 64, MLP 4096),
    # vision_feature_layer -2 (STA goes into the 23 layers that feed it), average pooling with stride 2; the LLM is
    # Vicuna-7B (lmsys/vicuna-7b-v1.5: LlamaForCausalLM, vocabulary 32064 with the <video> and <image> tokens).
    # From https://huggingface.co/llava-hf/LLaVA-NeXT-Video-7B-hf/blob/6ae32f631510fd9545977939fce6c44fa1ed91ff/
    # config.json (vision_config: hidden_size 1024, image_size 336, intermediate_size 4096, num_attention_heads 16,
    # num_hidden_layers 24, patch_size 14, projection_dim 768), read through a public index, not downloaded here
    "llava-next-video-7b": ("llava_next_video", dict(
        model_type="clip_vision_model", num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
        intermediate_size=4096, image_size=336, patch_size=14, projection_dim=768,
    )),  # fmt: skip
    "internvit-300m": ("internvl", _INTERNVIT_300M),
    "internvit-6b": ("internvl", _INTERNVIT_6B),
}


# Video classifiers (issue #17): published shapes, for STA's figures (`stave info`) and benchmarks; nothing is
# downloaded. InternVideo2 (single-modality, github.com/OpenGVLab/InternVideo, InternVideo2/single_modality/
# models/internvideo2.py: `internvideo2_1B_patch14_224`, `internvideo2_6B_patch14_224`): 1B width 1408, 40 blocks,
# 16 heads, MLP int(1408 * 48/11) = 6144; 6B width 3200, 48 blocks, 25 heads, MLP 4 x 3200; both patch 14, attention
# pooling with 16 heads to 768 (clip_embed_dim). The SSv2 fine-tunes (scripts/finetuning/full_tuning/ssv2/
# {1B,6B}_ft_ssv2_f8.sh): 8 frames, tubelet 1, 224 px, 174 classes, run with flash-attn's FusedMLP (tanh GELU).
# VideoMAE (config.json of https://huggingface.co/MCG-NJU/videomae-base and .../MCG-NJU/videomae-large): base width
# 768, 12 layers, 12 heads, MLP 3072; large width 1024, 24 layers, 16 heads, MLP 4096; both patch 16, tubelet 2,
# 16 frames, 224 px; the classifiers mean-pool (use_mean_pooling) into fc_norm and the head; 174 classes as SSv2.
_INTERNVIDEO2 = dict(patch_size=14, tubelet_size=1, image_size=224, num_frames=8, pool_heads=16, pool_size=768,
                     num_labels=174, hidden_act="gelu_tanh")  # fmt: skip
_VIDEOMAE = dict(patch_size=16, tubelet_size=2, image_size=224, num_frames=16, use_mean_pooling=True, num_labels=174)
#: preset name -> (family key, classifier config values)
CLASSIFIER_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "internvideo2-1b": ("internvideo2", dict(_INTERNVIDEO2, hidden_size=1408, depth=40, num_heads=16,
                                             intermediate_size=6144)),  # fmt: skip
    "internvideo2-6b": ("internvideo2", dict(_INTERNVIDEO2, hidden_size=3200, depth=48, num_heads=25,
                                             intermediate_size=12800)),  # fmt: skip
    "videomae-base": ("videomae", dict(_VIDEOMAE, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                       intermediate_size=3072)),  # fmt: skip
    "videomae-large": ("videomae", dict(_VIDEOMAE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096)),  # fmt: skip
}
#: Tiny random classifiers for tests, by family: 16x16 frames of 4x4 patches (a 4x4 grid), 8 frames (VideoMAE: 4
#: temporal patches of 2 frames; InternVideo2: 8 frames, any other count interpolated), width 32, 2 blocks. The
#: InternVideo2 LayerScale starts at 1 so that its random blocks do real work.
TINY_CLASSIFIERS: dict[str, tuple[str, dict[str, Any]]] = {
    "internvideo2": ("internvideo2", dict(hidden_size=32, depth=2, num_heads=4, intermediate_size=64, patch_size=4,
                                          image_size=16, num_frames=8, pool_heads=4, pool_size=24,
                                          layer_scale_init=1.0)),  # fmt: skip
    "videomae": ("videomae", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  patch_size=4, image_size=16, num_frames=8, tubelet_size=2,
                                  use_mean_pooling=True)),  # fmt: skip
}


def preset_available(preset: str) -> str | None:
    """None if the installed transformers has the preset's family, else why not (the version it needs)."""
    from .models import family_for_model_type

    family = (VISION_PRESETS.get(preset) or CLASSIFIER_PRESETS.get(preset) or TINY_PRESETS.get(preset) or (None,))[0]
    try:
        family_for_model_type(family)
    except ValueError as error:
        return str(error)
    return None

# Tiny random models (FIELD_NOTES: mrope_section must sum to head_dim / 2; special ids below vocab_size).
_TINY_TEXT = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=1024,
    rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=2,
)
TINY_PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "tiny-qwen2-vl": ("qwen2_vl", dict(depth=2, embed_dim=32, num_heads=4, mlp_ratio=2, hidden_size=32), _TINY_TEXT),
    "tiny-qwen2.5-vl": (
        "qwen2_5_vl",
        dict(
            depth=3,
            hidden_size=32,
            num_heads=4,
            intermediate_size=48,
            out_hidden_size=32,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        _TINY_TEXT,
    ),
    # The architecture of stave's shipped tiny base (stave.base; FIELD_NOTES: "a base that does localise"): 84x84
    # frames, 8 frames -> grid (4, 6, 6) -> 36 LLM tokens; vision 4 x 128, text 4 x 128 with a small rope_theta so
    # M-RoPE still tells left from right at head_dim 32. M-RoPE gives time, height and width the highest, middle and
    # lowest frequencies in that order: at rope_theta 10 the width section turns only 0.12-0.24 rad per position,
    # and a 900-step pretraining learned vertical position (98%) but not horizontal (39%, chance 33%); at 3 the
    # width section turns 0.36-0.50 rad, what height had at 10. Its vocabulary covers stave.synthetic's texts.
    "tiny-base": (
        "qwen2_vl",
        dict(depth=4, embed_dim=128, num_heads=4, mlp_ratio=4, hidden_size=128),
        dict(
            _TINY_TEXT,
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rope_theta=3.0,
            rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
        ),
    ),
}


# Qwen3-VL / Qwen3.5 (transformers' Qwen3VLConfig, Qwen3VLMoeConfig, Qwen3_5Config, Qwen3_5MoeConfig): vision patch
# 16, a learned position table (here 8x8) interpolated to each grid, deepstack taps after vision blocks 0 and 1
# (Qwen3-VL); text with interleaved M-RoPE (mrope_section sums to the rotary dims / 2), Qwen3.5 with one
# linear-attention (Gated DeltaNet) and one full-attention layer, MoE with 4 experts of which 2 are routed.
_TINY_QWEN3_VISION = dict(
    depth=3, hidden_size=32, num_heads=4, intermediate_size=48, out_hidden_size=32, num_position_embeddings=64
)
_TINY_QWEN3_TEXT = dict(
    _TINY_TEXT,
    head_dim=8,
    rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True},
)
_TINY_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
_TINY_QWEN3_5_TEXT = dict(
    _TINY_TEXT,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    layer_types=["linear_attention", "full_attention"],
    linear_key_head_dim=8,
    linear_value_head_dim=8,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    rope_scaling={
        "rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True, "partial_rotary_factor": 0.5
    },
)  # fmt: skip
TINY_PRESETS.update(
    {
        "tiny-qwen3-vl": ("qwen3_vl", dict(_TINY_QWEN3_VISION, deepstack_visual_indexes=[0, 1]), _TINY_QWEN3_TEXT),
        "tiny-qwen3-vl-moe": (
            "qwen3_vl_moe",
            dict(_TINY_QWEN3_VISION, deepstack_visual_indexes=[0, 1]),
            dict(_TINY_QWEN3_TEXT, **_TINY_MOE),
        ),
        "tiny-qwen3.5": ("qwen3_5", _TINY_QWEN3_VISION, _TINY_QWEN3_5_TEXT),
        "tiny-qwen3.5-moe": (
            "qwen3_5_moe",
            _TINY_QWEN3_VISION,
            dict(_TINY_QWEN3_5_TEXT, **_TINY_MOE, shared_expert_intermediate_size=32),
        ),
    }
)

# LLaVA-OneVision (transformers' LlavaOnevisionConfig): a SigLIP tower of 32 x 32 frames in 8 x 8 patches (4 x 4
# tokens per frame, pooled to 2 x 2 for the LLM), no head, the last layer's hidden states selected as in the
# published checkpoints (vision_feature_layer -1, strategy "full"); anyres resolutions in units of 32; a Qwen2 LLM.
# TINY_TOP_LEVEL holds a preset's values of the full config besides its vision and text parts.
TINY_PRESETS["tiny-llava-onevision"] = (
    "llava_onevision",
    dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=3,
         num_attention_heads=4, image_size=32, patch_size=8, vision_use_head=False),
    dict(_TINY_TEXT, model_type="qwen2", rope_scaling=None),
)  # fmt: skip
TINY_TOP_LEVEL: dict[str, dict[str, Any]] = {
    "tiny-llava-onevision": dict(
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]],
    ),
}

# LLaVA-NeXT-Video (transformers' LlavaNextVideoConfig): a CLIP tower of 32 x 32 frames in 8 x 8 patches (a CLS token
# and 4 x 4 patches per row; average-pooled with stride 2 to 2 x 2 LLM tokens per frame), the hidden states before
# the last layer selected without CLS as in the published checkpoints (vision_feature_layer -2, strategy "default");
# anyres resolutions in units of 32; a Llama LLM (Vicuna in the published checkpoints).
TINY_PRESETS["tiny-llava-next-video"] = (
    "llava_next_video",
    dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=3,
         num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32),
    dict(_TINY_TEXT, model_type="llama", rope_scaling=None),
)  # fmt: skip
TINY_TOP_LEVEL["tiny-llava-next-video"] = dict(
    vision_feature_layer=-2,
    vision_feature_select_strategy="default",
    image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]],
    spatial_pool_mode="average",
    spatial_pool_stride=2,
)

# InternVL (transformers' InternVLConfig): an InternViT of 32 x 32 images in 8 x 8 patches (a CLS token and 4 x 4
# patches per row, pixel-shuffled to 2 x 2 LLM tokens), LayerNorm, LayerScale, qk-norm off as InternViT-300M; the
# last block's hidden states selected (vision_feature_layer -1, as the published checkpoints); a Qwen2 LLM.
TINY_PRESETS["tiny-internvl"] = (
    "internvl",
    dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48, image_size=[32, 32],
         patch_size=[8, 8]),
    dict(_TINY_TEXT, model_type="qwen2", rope_scaling=None, tie_word_embeddings=False),  # a head of its own
)  # fmt: skip

# Whole models of published shape (the released config.json values, vision and text), for benchmarks with random
# weights: nothing is downloaded.
SHAPED_PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "qwen2-vl-2b": (
        "qwen2_vl",
        VISION_PRESETS["qwen2-vl-2b"][1],
        dict(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            hidden_act="silu",
            vocab_size=151936,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151645,
        ),
    ),
}

def tiny_vocabulary(preset: str) -> list[str]:
    """Words a tiny preset's tokenizer always holds, besides those of the training texts (a tokenizer built for
    a base model must know the words of later fine-tunes too)."""
    if preset == "tiny-base":
        from .synthetic import vocabulary

        return vocabulary()
    if preset not in TINY_PRESETS:
        return []
    from .models import family_for_model_type

    return list(family_for_model_type(TINY_PRESETS[preset][0]).media.words)  # e.g. of its timestamp texts


def tiny_tokenizer(preset: str, words: Iterable[str] = ()) -> Any:
    """The word-level tokenizer of a tiny preset's family (stave.tokenizer.build_word_tokenizer with its media
    format's placeholders) over tiny_vocabulary(preset) and `words`."""
    from .models import family_for_model_type
    from .tokenizer import build_word_tokenizer

    media = family_for_model_type(TINY_PRESETS[preset][0]).media if preset in TINY_PRESETS else None
    return build_word_tokenizer([*tiny_vocabulary(preset), *words], media=media)


def _classes(family: str) -> tuple[type, type, type]:
    """(full config class, vision config class, vision tower class) of a family (its config.model_type); a
    ValueError naming the transformers version it needs where the installed one lacks it."""
    from .models import family_for_model_type

    adapter = family_for_model_type(family)
    return adapter.model_classes[0].config_class, adapter.tower_class.config_class, adapter.tower_class


def _model_class(family: str) -> type:
    from .models import family_for_model_type

    return family_for_model_type(family).model_classes[0]


def build_vision_tower(preset: str, *, device: str | torch.device = "meta", **overrides: Any) -> nn.Module:
    """The vision tower of a published preset (random weights; on the meta device by default).

    `overrides` replace vision config values (e.g. depth=4 for a shallower tower in a CPU benchmark).
    """
    if preset in CLASSIFIER_PRESETS:  # the tower alone (VideoMAE: its encoder, without the slow sin-cos table)
        from .models import family_for_model_type

        family, values = CLASSIFIER_PRESETS[preset]
        adapter = family_for_model_type(family)
        config = adapter.model_classes[0].config_class(**{**values, **overrides})
        if isinstance(config, PretrainedConfig):
            config._attn_implementation = "sdpa"
        with torch.device(device):
            return adapter.tower_class(config)
    if preset not in VISION_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted([*VISION_PRESETS, *CLASSIFIER_PRESETS])}")
    family, values = VISION_PRESETS[preset]
    _, vision_config_class, tower_class = _classes(family)
    config = vision_config_class(**{**values, **overrides})
    config._attn_implementation = "sdpa"
    with torch.device(device):
        return tower_class._from_config(config)


def tiny_model(
    preset: str = "tiny-qwen2-vl", *, seed: int = 0, attn_implementation: str = "sdpa", tokenizer: Any = None
) -> nn.Module:
    """A randomly initialised ForConditionalGeneration model of a tiny preset, in eval mode, float32.

    With a `tokenizer` (e.g. stave.tokenizer.build_word_tokenizer), the vocabulary size and the vision token
    ids come from it, so the model reads that tokenizer's input ids.
    """
    if preset not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r}; known: {sorted(TINY_PRESETS)}")
    family, vision, text = TINY_PRESETS[preset]
    text = dict(text)
    if tokenizer is not None:
        text["vocab_size"] = len(tokenizer)
    return _random_model(family, vision, text, seed, attn_implementation, tokenizer, TINY_TOP_LEVEL.get(preset, {}))


def shaped_model(
    preset: str,
    *,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    tokenizer: Any = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    layers: int | None = None,
) -> nn.Module:
    """A randomly initialised ForConditionalGeneration model of a published shape (SHAPED_PRESETS), in eval
    mode, built in `dtype` on `device` — e.g. "qwen2-vl-2b": 2.2e9 parameters, 4.4 GB in bfloat16.

    With a `tokenizer`, the vision token ids come from it (the published vocabulary size is kept, or grown to
    the tokenizer's); `layers` makes both the vision tower and the LLM that many blocks deep (same widths),
    for a run on a small machine.
    """
    if preset not in SHAPED_PRESETS:
        raise ValueError(f"unknown shaped preset {preset!r}; known: {sorted(SHAPED_PRESETS)}")
    family, vision, text = SHAPED_PRESETS[preset]
    vision, text = dict(vision), dict(text)
    if tokenizer is not None:
        text["vocab_size"] = max(text["vocab_size"], len(tokenizer))
    if layers is not None:
        vision["depth"] = text["num_hidden_layers"] = layers
        vision.pop("fullatt_block_indexes", None)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return _random_model(family, vision, text, seed, attn_implementation, tokenizer)
    finally:
        torch.set_default_dtype(default)


def _random_model(
    family: str,
    vision: dict[str, Any],
    text: dict[str, Any],
    seed: int,
    attn_implementation: str,
    tokenizer: Any,
    top_level: dict[str, Any] | None = None,
) -> nn.Module:
    from .models import family_for_model_type

    config_class, _, _ = _classes(family)
    # the family's token ids: 120, 121, ... (below the tiny vocabulary size), or the tokenizer's
    config_tokens = family_for_model_type(family).media.config_tokens
    ids = {key: 120 + k for k, (key, _) in enumerate(config_tokens)}
    text = dict(text)
    if tokenizer is not None:
        for key, token in config_tokens:
            ids[key] = tokenizer.convert_tokens_to_ids(token)
        text.update(
            bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    tied = {"tie_word_embeddings": text["tie_word_embeddings"]} if "tie_word_embeddings" in text else {}
    config = config_class(text_config=text, vision_config=dict(vision), **ids, **tied, **(top_level or {}))
    model_class = _model_class(family)
    torch.manual_seed(seed)
    model = model_class._from_config(config, attn_implementation=attn_implementation)
    prepare = family_for_model_type(family).prepare_model
    if prepare is not None:  # e.g. InternVL: its forward takes the processor's pixel_items
        prepare(model)
    return model.eval()


def classifier(preset: str, *, device: str | torch.device = "meta", **overrides: Any) -> nn.Module:
    """A video classifier of a published shape (CLASSIFIER_PRESETS), random weights, on the meta device by default;
    `overrides` replace config values (e.g. num_labels, num_frames)."""
    if preset not in CLASSIFIER_PRESETS:
        raise ValueError(f"unknown classifier preset {preset!r}; known: {sorted(CLASSIFIER_PRESETS)}")
    family, values = CLASSIFIER_PRESETS[preset]
    with torch.device(device):
        return _build_classifier(family, {**values, **overrides})


def tiny_classifier(
    family: str, *, num_labels: int = 4, labels: Sequence[str] | None = None, seed: int = 0, **overrides: Any
) -> nn.Module:
    """A tiny randomly initialised video classifier of `family` ("internvideo2" or "videomae"; TINY_CLASSIFIERS), in
    eval mode, float32, built in well under a second: `model(pixel_values=(B, 8, 3, 16, 16))` -> `.logits`
    (B, num_labels). `labels` (class names in index order) name its head's classes in config.id2label and set
    num_labels; `overrides` replace config values (e.g. num_frames). A classification recipe's `model.path:
    tiny-<family>` is this model over the recipe's labels, seeded with model.seed."""
    if family not in TINY_CLASSIFIERS:
        raise ValueError(f"unknown tiny classifier {family!r}; known: {sorted(TINY_CLASSIFIERS)}")
    key, values = TINY_CLASSIFIERS[family]
    if labels is not None:
        from .classification.model import label_config

        overrides = {**label_config(labels), **overrides}
    torch.manual_seed(seed)
    return _build_classifier(key, {**values, "num_labels": num_labels, **overrides}).eval()


def _build_classifier(family: str, values: dict[str, Any]) -> nn.Module:
    """The family's classifier (its first model class) from config values, random weights, SDPA attention."""
    from transformers import PreTrainedModel

    from .models import family_for_model_type

    model_class = family_for_model_type(family).model_classes[0]
    config = model_class.config_class(**values)
    if issubclass(model_class, PreTrainedModel):
        return model_class._from_config(config, attn_implementation="sdpa")
    return model_class(config)
