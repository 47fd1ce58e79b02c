"""What a stage trains: STA (`temporal`), LoRA adapters (`lora`), the output head (`head`), any mix of them, or
everything (`full`) — as parameter selection on one model, never as separate code paths.

LoRA goes on the vision blocks' attention/MLP linears (named per family in stave.models, within the module path
of a block the family names, so Qwen2.5-VL's vision SwiGLU is told from the LLM's MLP by its `visual.blocks.N.`
prefix; the mergers, Qwen3-VL's deepstack
mergers included, sit outside `visual.blocks` and are never adapted) and on the LLM's attention/MLP linears
(per family too: an MoE layer adapts attention and, in Qwen3.5-MoE, the shared expert, not the routed experts
or the router; see stave.models.qwen3_vl); never on the STA layers, which train in full through peft's
`modules_to_save` (so peft checkpoints hold them too), as does the head when a LoRA stage trains it.

A video classifier (task: classification) has no LLM: its head is its linear layers with num_labels outputs
(stave.classification.model.classifier_head), and LoRA adapts every other nn.Linear outside STA — the rule does
not depend on the family, so a classifier whose STA stave supports trains in the same stages.

The weights a stage creates (STA, LoRA) are random draws, each part from its own seed derived from the stage's
seed (`part_seed`): the same recipe seed gives the same weights in every process, whatever ran before in it,
and a stage adds the same LoRA weights with or without STA (the two arms of an ablation start alike).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from torch import nn

from ..config import TemporalConfig
from ..modeling import add_temporal_attention, temporal_config, temporal_parameters
from ..models import find_vision_tower
from .recipe import LoraSection, StageSpec

TEMPORAL_MODULES = ["temp_attn", "norm3"]
HEAD_MODULES = ["lm_head"]


def lora_targets(model: nn.Module, lora: LoraSection) -> str:
    """The regular expression (matched against full module names) of the linears LoRA adapts."""
    family, tower = find_vision_tower(model)
    parts = []
    if lora.vision:
        names = "|".join(re.escape(name) for name in family.vision_linears)
        parts.append(rf"{_feeding_blocks(model, family, tower)}\.({names})")
    if lora.llm:
        names = "|".join(re.escape(name) for name in family.llm_linears)
        parts.append(rf"{family.llm_layers}\.({names})")
    if not parts:
        raise ValueError("lora: neither vision nor llm is enabled; a lora stage would train nothing")
    return rf"(.*\.)?({'|'.join(parts)})"


def _feeding_blocks(model: nn.Module, family: Any, tower: nn.Module) -> str:
    """The family's vision_blocks expression, narrowed to the blocks that feed the LLM where later ones feed nothing
    (LLaVA-NeXT-Video's CLIP: vision_feature_layer -2 leaves the last layer's output unused; LoRA there would train
    weights no loss reaches)."""
    feeding = family.feature_blocks(model) if family.feature_blocks is not None else None
    if feeding is None or feeding >= len(family.blocks(tower)):
        return family.vision_blocks
    if not family.vision_blocks.endswith(r"\d+"):
        raise ValueError(f"{family.name}: vision_blocks {family.vision_blocks!r} must end in the block index \\d+")
    return family.vision_blocks[: -len(r"\d+")] + "(?:" + "|".join(str(i) for i in range(feeding)) + ")"


def lora_config(model: nn.Module, lora: LoraSection, *, with_temporal: bool, with_head: bool = False) -> Any:
    from peft import LoraConfig

    saved = [*(TEMPORAL_MODULES if with_temporal else ()), *(HEAD_MODULES if with_head else ())]
    family, _ = find_vision_tower(model)
    qkv = rf"{family.vision_blocks}\.({'|'.join(re.escape(name) for name in family.vision_qkv)})"
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_targets(model, lora),
        rank_pattern={qkv: lora.vision_qkv_r} if lora.vision else {},
        alpha_pattern={qkv: lora.vision_qkv_alpha} if lora.vision else {},
        modules_to_save=saved or None,
        task_type="CAUSAL_LM",
    )


def classifier_lora_config(model: nn.Module, lora: LoraSection, *, with_temporal: bool, head: list[str]) -> Any:
    """LoRA on a classifier: every nn.Linear outside STA and the head (named in full); STA and, when it trains,
    the head train in full through modules_to_save."""
    from peft import LoraConfig

    temporal = tuple(f".{name}." for name in TEMPORAL_MODULES)
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in head and not any(t in f".{name}." for t in temporal)
    ]
    if not targets:
        raise ValueError(f"{type(model).__name__}: no linear layer outside STA and the head for LoRA to adapt")
    saved = [*(TEMPORAL_MODULES if with_temporal else ()), *head]
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        modules_to_save=saved or None,
    )  # fmt: skip


def head_names(model: nn.Module, task: str = "chat") -> list[str]:
    """Full module names of the output head: lm_head (chat), or the classifier's head (classification)."""
    if task == "classification":
        from ..classification.model import classifier_head

        return list(classifier_head(model))
    _head(model)
    return list(HEAD_MODULES)


def part_seed(seed: int, *keys: object) -> int:
    """A seed in [0, 2**32) derived from `seed` and `keys` (e.g. the stage index and "lora"): the same arguments
    give the same seed in every process; different keys give unrelated streams."""
    digest = hashlib.sha256("/".join(str(part) for part in (seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def prepare_stage(
    model: nn.Module,
    stage: StageSpec,
    temporal: TemporalConfig,
    lora: LoraSection,
    *,
    seed: int = 0,
    task: str = "chat",
) -> nn.Module:
    """Make `model` train what `stage` trains; returns the model to train (a peft model for LoRA stages).

    STA is added (zero-initialised, from `temporal`) when the stage trains it and the model has none yet.
    Everything else is frozen (a `full` stage trains every parameter, STA included when the model has it).
    The new weights follow from `seed`: STA is drawn after seeding every RNG (python, numpy, torch) with
    part_seed(seed, "temporal"), LoRA after seeding with part_seed(seed, "lora"). `task`: chat (a Video-LLM) or
    classification (a video classifier: its own head and LoRA targets, see the module docstring).
    """
    from transformers import set_seed

    trains_temporal = "temporal" in stage.trains
    trains_head = "head" in stage.trains
    if trains_temporal and temporal_config(model) is None:
        set_seed(part_seed(seed, "temporal"))
        add_temporal_attention(model, temporal)
    full = "full" in stage.trains
    for parameter in model.parameters():
        parameter.requires_grad_(full)
    if trains_temporal:
        for _, parameter in temporal_parameters(model):
            parameter.requires_grad_(True)
    head = head_names(model, task) if trains_head else []
    for name in head:
        for parameter in model.get_submodule(name).parameters():
            parameter.requires_grad_(True)
    if "lora" in stage.trains:
        from peft import get_peft_model

        if task == "classification":
            config = classifier_lora_config(model, lora, with_temporal=trains_temporal, head=head)
        else:
            config = lora_config(model, lora, with_temporal=trains_temporal, with_head=trains_head)
        set_seed(part_seed(seed, "lora"))
        model = get_peft_model(model, config)
        if config.modules_to_save:
            # peft trains its copies of temp_attn/norm3/the head (modules_to_save); the originals stay frozen
            for name, parameter in model.named_parameters():
                if ".modules_to_save." in name:
                    parameter.requires_grad_(True)
    return model


def _head(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output head (lm_head) to train")
    if head.weight is model.get_input_embeddings().weight:
        raise ValueError("the output head shares its weight with the input embeddings; training it would train both")
    return head


def trainable_counts(model: nn.Module, head: list[str] | tuple[str, ...] = tuple(HEAD_MODULES)) -> dict[str, int]:
    """Trainable parameter counts by kind: temporal (STA), lora, head (the modules named in `head`: lm_head, or a
    classifier's head), other (every other parameter: only a `full` stage trains any)."""
    counts = {"temporal": 0, "lora": 0, "head": 0, "other": 0}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if "lora_" in name:
            counts["lora"] += parameter.numel()
        elif any(f".{m}." in name for m in TEMPORAL_MODULES):
            counts["temporal"] += parameter.numel()
        elif any(name == m or name.endswith(f".{m}") or f"{m}." in name for m in head):
            counts["head"] += parameter.numel()
        else:
            counts["other"] += parameter.numel()
    return counts


def merge_lora(model: nn.Module) -> nn.Module:
    """The plain transformers model with LoRA merged into its weights and peft's wrappers removed."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model
