"""Loading checkpoints with stacked temporal attention, without ever dropping a temporal weight.

A directory written by `model.save_pretrained` after `add_temporal_attention` holds the stock weights, the
temporal weights (`...blocks.N.temp_attn.{qkv,proj}.*`, `...blocks.N.norm3.*`, with a LayerScale gate
`...blocks.N.temp_attn.gate`) and, in config.json, the TemporalConfig under vision_config.temporal_attention.
Stock `from_pretrained` builds the model without the temporal modules and reports their weights as unexpected;
`load_model` adds the modules and loads exactly those weights, refusing any missing or extra one. A model that
pools video tokens over time records it in config.json (temporal_pooling, see stave.modeling.set_temporal_pooling);
`load_model` pools again on load, which stock `from_pretrained` does not; likewise for a position scheme
(position_scheme, see stave.positions.set_position_scheme), which a checkpoint that does not record it (the public
VideoRoPE checkpoints) can be given on load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import safe_open
from torch import nn
from transformers.utils import logging as hf_logging

from .config import PositionScheme, PositionSchemeError, TemporalConfig
from .modeling import CONFIG_KEY, POOLING_KEY, add_temporal_attention, set_temporal_pooling
from .models import families, find_vision_tower, missing_family, supported_classes
from .positions import SCHEME_KEY, set_position_scheme

logger = logging.getLogger(__name__)
_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

#: A temporal weight as stored by stave and by the authors' release, whatever the prefix of the tower and the name
#: of its block list (`blocks.N.`, `layers.N.`): the block index and the name within the block.
TEMPORAL_KEY = re.compile(
    r"(?:^|\.)(\d+)\.((?:temp_attn\.(?:qkv|proj)|norm3)\.(?:weight|bias)|temp_attn\.gate)$"
)
#: Anything that looks like part of a temporal layer (used to catch malformed names too).
TEMPORAL_LIKE = re.compile(r"(?:^|\.)(?:temp_attn|norm3)(?:\.|$)")

def load_model(
    path: str | Path,
    temporal: TemporalConfig | None = None,
    *,
    position_scheme: str | PositionScheme | None = None,
    **from_pretrained_kwargs: Any,
) -> nn.Module:
    """Load a checkpoint of a supported family (stave.models), with its temporal attention, temporal pooling and
    position scheme if it has any.

    Args:
        path: a directory written by `save_pretrained` (config.json + safetensors).
        temporal: for a checkpoint whose config.json records no temporal attention: add STA with this
            config (zero-initialised, or loaded from the checkpoint when it holds temporal tensors, as
            the authors' release does). Must agree with config.json when that records one.
        position_scheme: for a checkpoint whose config.json records no position scheme (e.g. the public VideoRoPE
            checkpoints, ordinary Qwen2-VL checkpoints): place the LLM's tokens by this scheme ("videorope" with
            the release's temporal spacing 2.0, or a PositionScheme). Must agree with config.json when that
            records one.
        **from_pretrained_kwargs: passed to `from_pretrained` (dtype, device_map, attn_implementation...).

    Raises:
        FileNotFoundError: no config.json in `path`.
        TypeError: the checkpoint is not of a supported family.
        ValueError: a temporal tensor is missing, unexpected or of the wrong shape (named), or
            `temporal` disagrees with config.json, or config.json records an unknown temporal_pooling;
            PositionSchemeError (a ValueError) for an unknown or disagreeing position scheme.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected a directory written by save_pretrained)")
    model_class = _model_class(json.loads(config_file.read_text()), config_file)
    if "dtype" in from_pretrained_kwargs and _TRANSFORMERS_MAJOR < 5:  # 4.57 calls it torch_dtype
        from_pretrained_kwargs["torch_dtype"] = from_pretrained_kwargs.pop("dtype")

    with _transformers_quiet():
        model, info = model_class.from_pretrained(path, output_loading_info=True, **from_pretrained_kwargs)
    family, _ = find_vision_tower(model)
    if family.prepare_model is not None:  # e.g. InternVL: its forward takes the processor's pixel_items
        family.prepare_model(model)
    temporal_like = sorted(k for k in info.get("unexpected_keys", ()) if TEMPORAL_LIKE.search(k))
    _report_other_issues(path, info)
    pooling = getattr(model.config, POOLING_KEY, None)
    if pooling is not None:
        set_temporal_pooling(model, pooling)
    scheme = _position_scheme(getattr(model.config, SCHEME_KEY, None), position_scheme, config_file)
    if scheme is not None:
        set_position_scheme(model, scheme)

    _, tower = find_vision_tower(model)
    stored = getattr(tower.config, CONFIG_KEY, None)
    if stored is not None:
        recorded = TemporalConfig.from_dict(stored)
        if temporal is not None and temporal != recorded:
            raise ValueError(f"{config_file}: records temporal attention {recorded}, which differs from {temporal}")
        temporal = recorded
    if temporal is None:
        if temporal_like:
            raise ValueError(
                f"{path}: holds temporal-attention tensors ({temporal_like[0]}, ... {len(temporal_like)} in all) but "
                f"{config_file.name} records no '{CONFIG_KEY}'; pass temporal=TemporalConfig(...) to load them"
            )
        return model

    add_temporal_attention(model, temporal)
    stored_tensors = _temporal_tensor_names(path)
    if stored is None and not stored_tensors:
        return model  # a plain checkpoint: fresh STA, zero-initialised by default
    _load_temporal_tensors(model, path, stored_tensors)
    return model


def _position_scheme(stored: Any, given: str | PositionScheme | None, config_file: Path) -> PositionScheme | None:
    """The scheme to install: the one config.json records (given must agree with it), else the one given."""
    given = PositionScheme.of(given) if given is not None else None
    if stored is None:
        return given
    try:
        recorded = PositionScheme.from_dict(stored)
    except PositionSchemeError as error:
        raise PositionSchemeError(f"{config_file}: {SCHEME_KEY}: {error}") from None
    if given is not None and given != recorded:
        raise PositionSchemeError(f"{config_file}: records position scheme {recorded}, which differs from {given}")
    return recorded


def _model_class(config: dict[str, Any], config_file: Path) -> type[nn.Module]:
    """The class named by config.json's "architectures", or (without one) the full model of its model_type's
    family; a family the installed transformers lacks is named with the version it needs."""
    classes = supported_classes()
    model_type = config.get("model_type")
    default = next((f.model_classes[0].__name__ for f in families() if f.model_type == model_type), "")
    names = list(config.get("architectures") or []) or [default]
    for name in names:
        if name in classes:
            return classes[name][1]
    if missing_family(str(model_type)):
        raise TypeError(f"{config_file}: {missing_family(str(model_type))}")
    raise TypeError(
        f"{config_file}: architectures {names or None} (model_type {config.get('model_type')!r}) is not supported; "
        f"supported: {sorted(classes)}"
    )


@contextlib.contextmanager
def _transformers_quiet() -> Iterator[None]:
    """Silence transformers' own load report: the temporal keys it calls unexpected are loaded right after,
    and everything else it would report is reported again by _report_other_issues."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _report_other_issues(path: Path, info: dict[str, Any]) -> None:
    unexpected = [k for k in info.get("unexpected_keys", ()) if not TEMPORAL_LIKE.search(k)]
    for kind, keys in (
        ("missing (newly initialised)", info.get("missing_keys", ())),
        ("unexpected (not used)", unexpected),
        ("of mismatched shape", info.get("mismatched_keys", ())),
    ):
        keys = sorted(map(str, keys))
        if keys:
            logger.warning("%s: %d weight(s) %s: %s", path, len(keys), kind, ", ".join(keys[:10]))


def _weight_files(path: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file, for a single-file or sharded checkpoint."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: has no 'weight_map' object")
        return {name: path / file for name, file in weight_map.items()}
    single = path / "model.safetensors"
    if single.is_file():
        with safe_open(single, "pt") as f:
            return {name: single for name in f.keys()}
    raise FileNotFoundError(
        f"{path}: no model.safetensors or model.safetensors.index.json (stave reads safetensors only)"
    )


def _temporal_tensor_names(path: Path) -> dict[str, Path]:
    """Every tensor of the checkpoint that looks like part of a temporal layer -> its file."""
    return {name: file for name, file in _weight_files(path).items() if TEMPORAL_LIKE.search(name)}


def _load_temporal_tensors(model: nn.Module, path: Path, stored: dict[str, Path]) -> None:
    family, tower = find_vision_tower(model)
    expected: dict[tuple[int, str], torch.Tensor] = {}
    for index, block in enumerate(family.blocks(tower)):
        for child in ("temp_attn", "norm3"):
            if hasattr(block, child):
                for name, param in getattr(block, child).named_parameters(prefix=child):
                    expected[(index, name)] = param

    found: dict[tuple[int, str], str] = {}
    unexpected: list[str] = []
    for name in sorted(stored):
        match = TEMPORAL_KEY.search(name)
        key = (int(match.group(1)), match.group(2)) if match else None
        if key is None or key not in expected or key in found:
            unexpected.append(name)
        else:
            found[key] = name
    missing = [f"blocks.{i}.{n}" for (i, n) in expected if (i, n) not in found]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} temporal tensor(s) missing from the checkpoint: {', '.join(missing[:8])}"
        )
    if unexpected:
        raise ValueError(
            f"{path}: {len(unexpected)} unexpected temporal tensor(s) for this TemporalConfig: "
            f"{', '.join(unexpected[:8])}"
        )

    by_file: dict[Path, list[tuple[str, torch.Tensor]]] = {}
    for key, name in found.items():
        by_file.setdefault(stored[name], []).append((name, expected[key]))
    with torch.no_grad():
        for file, pairs in by_file.items():
            with safe_open(file, "pt") as f:
                for name, param in pairs:
                    tensor = f.get_tensor(name)
                    if tensor.shape != param.shape:
                        raise ValueError(
                            f"{file}: tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(param.shape)}"
                        )
                    param.copy_(tensor)
