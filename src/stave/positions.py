"""Position schemes of the LLM: the stock M-RoPE or VideoRoPE (Wei et al. 2025, "VideoRoPE: What Makes for Good
Video Rotary Position Embedding?"), set on a model instance.

VideoRoPE changes two things of M-RoPE, both in the LLM:
- positions (rows t, h, w): text tokens take (p, p, p), consecutive; a visual block of merged grid (T, H, W)
  starting at s places token (t, h, w) at t_pos = s + delta*t, h_pos = t_pos + h - floor((H-1)/2),
  w_pos = t_pos + w - floor((W-1)/2) (a diagonal layout: the spatial positions centred on the temporal one),
  and the text after it continues at max(t_pos) + 1. delta is the temporal spacing (2.0 in the release);
  positions are fractional where delta is (then float32, else integers as stock).
- frequencies: of the head_dim/2 rotary frequency pairs (highest frequency first), the lowest mrope_section[0]
  go to t and the others alternate h, w, h, w, ... (M-RoPE: the highest to t, then a block of h, a block of w).
The vision tower (and so STA) is untouched. Qwen2.5-VL's `second_per_grid_ts` (seconds per temporal patch) is
not used by VideoRoPE: temporal patches are delta apart whatever their duration, as in the authors' release
(a Qwen2-VL model, which has no absolute time).

Mechanism: the family adapter's PositionAdapter (stave.models.mrope) replaces the base model's get_rope_index
and the rotary embedding's frequency allocation on the instance; the classes are untouched. The scheme is
recorded in the model config ("position_scheme"), so save_pretrained keeps it and stave.load_model restores it.
Temporal pooling (stave.modeling.set_temporal_pooling) composes with it in any order: its get_rope_index wrapper
hands the pooled grids to the scheme's positions.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import torch
from torch import nn

from .config import PositionScheme, PositionSchemeError
from .errors import StaveError
from .modeling import _is_pooling_wrapper, _language_side
from .models import PositionAdapter, families, find_vision_tower

ModelT = TypeVar("ModelT", bound=nn.Module)

#: Name of the entry in the model config (config.json, top level) that records the position scheme.
SCHEME_KEY = "position_scheme"

__all__ = [
    "SCHEME_KEY",
    "PositionScheme",
    "PositionSchemeError",
    "UnsupportedPositionScheme",
    "frequency_rows",
    "position_scheme",
    "set_position_scheme",
]


class UnsupportedPositionScheme(StaveError, TypeError):
    """The model's family has no position schemes besides its stock one; the message names the family."""


def set_position_scheme(model: ModelT, scheme: str | PositionScheme, temporal_spacing: float | None = None) -> ModelT:
    """Place the LLM's tokens by `scheme`, in place: "videorope" (VideoRoPE, see the module docstring) or "mrope"
    (the model's stock positions: every change undone, the model is the stock one again).

    Args:
        model: a Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration or their base models, also
            inside peft / DDP wrappers, with or without STA and temporal pooling.
        scheme: "videorope", "mrope" or a PositionScheme.
        temporal_spacing: VideoRoPE's delta (position units per temporal patch, > 0); default 2.0.

    Returns:
        The same model; its config records the scheme under "position_scheme" (absent for "mrope").

    Raises:
        PositionSchemeError (a ValueError): unknown scheme, bad temporal spacing.
        UnsupportedPositionScheme (a TypeError): a family without position schemes (e.g. Qwen3-VL).
        TypeError: not a supported model, or a bare vision tower.
    """
    scheme = PositionScheme.of(scheme, temporal_spacing)
    base, adapter = _base_and_adapter(model, require=scheme.name != "mrope")
    if adapter is None:  # "mrope" on a family with only its stock positions: nothing to undo
        return model
    slot = vars(base).get("get_rope_index")
    if slot is not None and not (_is_scheme_wrapper(slot) or _is_pooling_wrapper(slot)):
        raise RuntimeError(
            f"{type(base).__name__}.get_rope_index is replaced on the instance ({slot!r}); stave cannot change the "
            "position scheme behind it. Set the position scheme before wrapping the model."
        )
    rotary = adapter.rotary_embedding(base)
    if scheme.name == "mrope":
        adapter.set_frequency_rows(rotary, None)
        if _is_scheme_wrapper(slot):
            del base.get_rope_index
        if hasattr(base.config, SCHEME_KEY):
            delattr(base.config, SCHEME_KEY)
        return model
    adapter.set_frequency_rows(rotary, frequency_rows(scheme, adapter.sections(base)))
    setattr(base.config, SCHEME_KEY, scheme.to_dict())
    if slot is None:  # a pooling wrapper stays: it calls the scheme's get_rope_index (scheme_rope_index)
        base.get_rope_index = functools.partial(_scheme_get_rope_index, base)
    return model


def position_scheme(model: nn.Module) -> PositionScheme:
    """The position scheme of a model (PositionScheme("mrope") for a stock one).

    Raises RuntimeError for a model whose config records a scheme that is not installed (loaded with stock
    from_pretrained): it would place tokens by the stock M-RoPE while claiming otherwise.
    """
    base, adapter = _base_and_adapter(model, require=False)
    stored = getattr(base.config, SCHEME_KEY, None)
    if stored is None:
        return PositionScheme()
    scheme = PositionScheme.from_dict(stored)
    slot = vars(base).get("get_rope_index")
    installed = adapter is not None and (_is_scheme_wrapper(slot) or _is_pooling_wrapper(slot))
    if installed:
        rows = adapter.frequency_rows(adapter.rotary_embedding(base))
        installed = rows is not None and torch.equal(rows, frequency_rows(scheme, adapter.sections(base)))
    if not installed:
        raise RuntimeError(
            f"the model config records {SCHEME_KEY}={stored!r} but the model does not use it (loaded with "
            f"from_pretrained?): load it with stave.load_model, or call stave.set_position_scheme(model, "
            f"{scheme.name!r}, temporal_spacing={scheme.temporal_spacing})"
        )
    return scheme


def frequency_rows(scheme: PositionScheme, sections: list[int]) -> torch.Tensor:
    """(sum(sections),) long: the position row (0 t, 1 h, 2 w) of each rotary frequency pair, highest frequency
    first, for M-RoPE sections (t, h, w).

    M-RoPE: t, ..., t (sections[0]), h, ... (sections[1]), w, ... (sections[2]).
    VideoRoPE: h, w, h, w, ... (sections[1] + sections[2]), then t, ..., t (sections[0], the lowest frequencies).
    """
    t, h, w = sections
    if scheme.name == "mrope":
        return torch.tensor([0] * t + [1] * h + [2] * w)
    return torch.tensor([1 + j % 2 for j in range(h + w)] + [0] * t)


def scheme_rope_index(base: nn.Module):
    """The get_rope_index (unbound: base first) of the base model's recorded scheme; the stock one for M-RoPE."""
    stored = getattr(base.config, SCHEME_KEY, None)
    adapter = next((f.positions for f in families() if isinstance(base, f.model_classes)), None)
    if stored is None or adapter is None:
        return type(base).get_rope_index
    return adapter.rope_index(PositionScheme.from_dict(stored))


def restore_rope_index(base: nn.Module) -> None:
    """Put the scheme's get_rope_index back on a base model whose slot was emptied (pooling turned off)."""
    if getattr(base.config, SCHEME_KEY, None) is not None and "get_rope_index" not in vars(base):
        base.get_rope_index = functools.partial(_scheme_get_rope_index, base)


def is_scheme_wrapper(value: Any) -> bool:
    """Whether `value` is the get_rope_index that set_position_scheme installs."""
    return _is_scheme_wrapper(value)


def _scheme_get_rope_index(base: nn.Module, *args: Any, **kwargs: Any):
    return scheme_rope_index(base)(base, *args, **kwargs)


def _is_scheme_wrapper(value: Any) -> bool:
    return isinstance(value, functools.partial) and value.func is _scheme_get_rope_index


def _base_and_adapter(model: nn.Module, require: bool = True) -> tuple[nn.Module, PositionAdapter | None]:
    family, _ = find_vision_tower(model)
    base = _language_side(model)
    if family.positions is None and require:
        raise UnsupportedPositionScheme(
            f"{family.name} ({type(base).__name__}): stave has no position schemes for this family besides its "
            "stock one; VideoRoPE is supported on Qwen2-VL and Qwen2.5-VL"
        )
    return base, family.positions
