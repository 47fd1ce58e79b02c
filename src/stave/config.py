"""TemporalConfig: everything that describes the stacked temporal attention added to a vision tower; the
temporal pooling modes and their parser (stave.modeling.set_temporal_pooling); PositionScheme, how the LLM places
visual tokens (stave.positions)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from .errors import StaveError

ORDERS = ("spatial_first", "temporal_first")
INITS = ("zero", "random")
IMAGE_POLICIES = ("skip", "apply")
GATES = ("none", "layerscale")
#: Name of the entry in the model config (config.json, top level) that records temporal pooling.
POOLING_KEY = "temporal_pooling"
#: How the LLM's rotary embedding places tokens: "mrope" (the model's stock M-RoPE) or "videorope" (VideoRoPE).
POSITION_SCHEMES = ("mrope", "videorope")
#: VideoRoPE's temporal spacing (delta) in the authors' release.
VIDEOROPE_TEMPORAL_SPACING = 2.0


class PoolingModeError(StaveError, ValueError):
    """A temporal pooling mode other than "mean" and "mean:K" (K >= 2, pooling_window); the message names the value
    and the accepted forms."""


def pooling_window(mode: str | None) -> int | None:
    """How many consecutive temporal steps of a video one LLM step averages under temporal pooling `mode`.

    Args:
        mode: None (no pooling), "mean" (all of a video's temporal steps) or "mean:K" (runs of K consecutive
            steps, K an integer >= 2, written without sign or leading zeros; the last run of a video may be
            shorter). "mean:1" is refused: it averages nothing, the same as no pooling under another name.

    Returns:
        1 for None, None for "mean" (one run of all steps), K for "mean:K".

    Raises:
        PoolingModeError naming the value and the accepted forms.
    """
    if mode is None:
        return 1
    if mode == "mean":
        return None
    match = re.fullmatch(r"mean:([1-9][0-9]*)", mode) if isinstance(mode, str) else None
    if match is None:
        raise PoolingModeError(
            f"temporal pooling {mode!r}: the modes are 'mean' (the average over all of a video's temporal patches) "
            "and 'mean:K' with K an integer >= 2 (over each run of K consecutive temporal patches)"
        )
    window = int(match.group(1))
    if window == 1:
        raise PoolingModeError(
            "temporal pooling 'mean:1': averages nothing (every temporal patch is its own run); the modes are 'mean' "
            "(all of a video's temporal patches) and 'mean:K' with K an integer >= 2; no pooling is None (null)"
        )
    return window


def pooling_runs(steps: int, window: int | None) -> list[int]:
    """The lengths of the runs of consecutive temporal steps that one video of `steps` steps is averaged in, in
    order: `window` each and the remainder last; one run of all for window None (pooling_window). The LLM sees
    len(pooling_runs(...)) = ceil(steps / window) temporal steps of the video."""
    size = max(steps, 1) if window is None else window
    return [min(size, steps - start) for start in range(0, steps, size)]


@dataclass
class TemporalConfig:
    """How stacked temporal attention (STA) is added to a vision tower.

    Attributes:
        head_scale: temporal heads = max(1, round(spatial heads * head_scale)); head_dim is the tower's.
        layers: indices of the vision blocks that get STA; None means every block.
        order: "spatial_first" (spatial attn -> temporal attn -> MLP, the paper's default) or
            "temporal_first" (temporal attn -> spatial attn -> MLP).
        init: "zero" zero-initialises the output projection so the tower starts exactly equal to the
            pretrained one (the paper); "random" keeps nn.Linear's default init (the authors' release).
        images: "skip" leaves items with a single temporal patch (images) untouched; "apply" runs the
            temporal layer on them too (attention over one position).
        rope_theta: base of the 1-D rotary position embedding along time.
        gate: "none" (the update goes onto the residual stream as it is) or "layerscale" (it is multiplied by a
            learned per-channel vector `temp_attn.gate`, initialised to gate_init; the authors' InternVideo2 +
            STA). Independent of `init`: with init="zero" the tower is unchanged at insertion either way.
        gate_init: the LayerScale's initial value (gate="layerscale" only).
    """

    head_scale: float = 0.25
    layers: list[int] | None = None
    order: Literal["spatial_first", "temporal_first"] = "spatial_first"
    init: Literal["zero", "random"] = "zero"
    images: Literal["skip", "apply"] = "skip"
    rope_theta: float = 10000.0
    gate: Literal["none", "layerscale"] = "none"
    gate_init: float = 1e-5

    def __post_init__(self) -> None:
        _check_number("head_scale", self.head_scale)
        _check_number("rope_theta", self.rope_theta)
        _check_number("gate_init", self.gate_init)
        if self.layers is not None:
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                raise ValueError(f"TemporalConfig.layers must be a list of block indices or None, got {self.layers!r}")
            layers = list(self.layers)
            for i in layers:
                if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                    raise ValueError(f"TemporalConfig.layers must hold non-negative ints, got {i!r}")
            if len(set(layers)) != len(layers):
                raise ValueError(f"TemporalConfig.layers has duplicates: {layers}")
            if not layers:
                raise ValueError("TemporalConfig.layers is empty; use None for every block")
            self.layers = sorted(layers)
        for name, allowed in (("order", ORDERS), ("init", INITS), ("images", IMAGE_POLICIES), ("gate", GATES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"TemporalConfig.{name} must be one of {allowed}, got {value!r}")

    def num_heads(self, spatial_heads: int) -> int:
        """Number of temporal heads for a tower whose spatial attention has `spatial_heads` heads."""
        return max(1, round(spatial_heads * self.head_scale))

    def selected_blocks(self, depth: int) -> list[int]:
        """Indices of the blocks that get STA in a tower of `depth` blocks."""
        if self.layers is None:
            return list(range(depth))
        too_big = [i for i in self.layers if i >= depth]
        if too_big:
            raise ValueError(f"TemporalConfig.layers {too_big} out of range for a tower of {depth} blocks")
        return list(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TemporalConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TemporalConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"TemporalConfig.{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"TemporalConfig.{name} must be a positive finite number, got {value!r}")


class PositionSchemeError(StaveError, ValueError):
    """An unknown position scheme or a bad temporal spacing; the message names the value."""


@dataclass(frozen=True)
class PositionScheme:
    """How the LLM of a Qwen2-VL-family model places text and visual tokens (stave.positions).

    Attributes:
        name: "mrope" (the stock M-RoPE of the model) or "videorope" (VideoRoPE, Wei et al. 2025: diagonal layout
            with temporal spacing, low-frequency temporal allocation, interleaved height/width frequencies).
        temporal_spacing: VideoRoPE's delta, in position units per temporal patch (> 0, may be fractional;
            default 2.0, the authors' release); None for "mrope", which has no such setting.
    """

    name: str = "mrope"
    temporal_spacing: float | None = None

    def __post_init__(self) -> None:
        if self.name not in POSITION_SCHEMES:
            raise PositionSchemeError(f"position scheme must be one of {list(POSITION_SCHEMES)}, got {self.name!r}")
        spacing = self.temporal_spacing
        if self.name == "mrope":
            if spacing is not None:
                raise PositionSchemeError(
                    f"temporal_spacing is VideoRoPE's; the 'mrope' scheme takes none, got {spacing!r}"
                )
            return
        if spacing is None:
            object.__setattr__(self, "temporal_spacing", VIDEOROPE_TEMPORAL_SPACING)
            return
        if isinstance(spacing, bool) or not isinstance(spacing, (int, float)):
            raise PositionSchemeError(f"temporal_spacing must be a number, got {spacing!r}")
        if not math.isfinite(spacing) or spacing <= 0:
            raise PositionSchemeError(f"temporal_spacing must be a positive finite number, got {spacing!r}")
        object.__setattr__(self, "temporal_spacing", float(spacing))

    @classmethod
    def of(cls, scheme: str | PositionScheme, temporal_spacing: float | None = None) -> PositionScheme:
        """A PositionScheme from a name (with an optional temporal spacing) or as given."""
        if isinstance(scheme, PositionScheme):
            if temporal_spacing is not None and temporal_spacing != scheme.temporal_spacing:
                raise PositionSchemeError(f"{scheme} already sets temporal_spacing; got {temporal_spacing!r} too")
            return scheme
        if not isinstance(scheme, str):
            raise PositionSchemeError(f"position scheme must be one of {list(POSITION_SCHEMES)}, got {scheme!r}")
        return cls(scheme, temporal_spacing)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "temporal_spacing": self.temporal_spacing}

    @classmethod
    def from_dict(cls, values: Any) -> PositionScheme:
        if not isinstance(values, dict) or set(values) - {"name", "temporal_spacing"} or "name" not in values:
            raise PositionSchemeError(f"a position scheme is {{'name': ..., 'temporal_spacing': ...}}, got {values!r}")
        return cls(values["name"], values.get("temporal_spacing"))
