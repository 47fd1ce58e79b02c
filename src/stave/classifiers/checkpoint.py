"""Reading, converting, saving and loading InternVideo2 classifier weights, never through pickle.

The authors publish fine-tuned single-modality weights as PyTorch `.pth` files holding a state dict in their
module layout (`blocks.N.attn.qkv.weight`, `cls_token`, `pos_embed`, `patch_embed.proj.*`, `clip_projector.*`,
`fc_norm.*`, `head.*`), sometimes wrapped as {"model": ...} or {"module": ...} (their training scripts look for
both). `convert_checkpoint` reads such a file with `torch.load(weights_only=True)` only, checks every key against
the configured model and writes a stave directory: config.json (InternVideo2Config) + model.safetensors.
`save_classifier` (the model's save_pretrained) writes the same directory format, with STA when the model has it;
stave.load_model reads it (through the model's from_pretrained, which loads all but the temporal tensors).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import StaveError
from .internvideo2 import InternVideo2Config, InternVideo2ForVideoClassification

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Keys under which the authors' training scripts may have wrapped the state dict.
WRAPPER_KEYS = ("model", "module")


class WeightsError(StaveError, ValueError):
    """Weights that cannot be read without unpickling, or that do not fit the model: the message names the file
    and the keys or shapes at fault."""


def read_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a `.pth` file, read with torch.load(weights_only=True) (no arbitrary unpickling).

    A dict wrapped under one of WRAPPER_KEYS is unwrapped. Raises WeightsError naming the file when torch
    refuses to read it without unpickling arbitrary objects, or when it does not hold a name -> tensor mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{path}: torch.load(weights_only=True) refused the file ({_unpickler_reason(error)}); stave reads only "
            "plain tensor state dicts and never unpickles arbitrary objects. Re-save its state dict from a trusted "
            "environment (torch.save(checkpoint['model'], ...)) or as safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({_first_sentence(str(error))})") from None
    if isinstance(loaded, Mapping):
        wrapped = [key for key in WRAPPER_KEYS if isinstance(loaded.get(key), Mapping)]
        if wrapped:
            loaded = loaded[wrapped[0]]
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path}: holds a {type(loaded).__name__}, not a state dict (name -> tensor)")
    not_tensors = sorted(str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise WeightsError(
            f"{path}: {len(not_tensors)} entr(y/ies) that are not tensors: {', '.join(not_tensors[:8])}; "
            f"expected a state dict (optionally under {' or '.join(map(repr, WRAPPER_KEYS))})"
        )
    return dict(loaded)


def check_state_dict(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], *, source: str | Path
) -> None:
    """Raise WeightsError unless `given` has exactly the keys of `expected`, each of the same shape; the message
    names the missing, unexpected and mismatched keys (first eight of each, with counts)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [
        f"{key} {tuple(given[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in sorted(set(given) & set(expected))
        if tuple(given[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{len(keys)} {kind}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched))
        if keys
    ]
    if problems:
        hint = ""
        if any(k.startswith("pos_embed ") for k in mismatched):
            hint = (
                " (pos_embed is stored for the config's num_frames x image_size: give the checkpoint's values there; "
                "other frame counts and sizes are interpolated at run time)"
            )
        raise WeightsError(f"{source}: the weights do not fit the model — {'; '.join(problems)}{hint}")


def load_public_state_dict(
    model: InternVideo2ForVideoClassification,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str | Path = "state dict",
) -> None:
    """Load a state dict in the published key layout (plus temporal tensors if the model has STA) into `model`,
    every key used and none left over (WeightsError naming the keys otherwise)."""
    check_state_dict(model.state_dict(), state_dict, source=source)
    model.load_state_dict(state_dict, strict=True)


def convert_checkpoint(
    source: str | Path, destination: str | Path, config: InternVideo2Config, *, num_labels: int | None = None
) -> Path:
    """Convert the authors' `.pth` classifier weights to a stave directory (config.json + model.safetensors).

    Args:
        source: the `.pth` file (read with torch.load(weights_only=True)).
        destination: directory to write (created; existing files of the same names are replaced).
        config: the architecture (e.g. stave.presets.INTERNVIDEO2_PRESETS["internvideo2-1b"]); its num_frames and
            image_size must be those the checkpoint's pos_embed was stored for.
        num_labels: the head's class count; default: read from the checkpoint's head.weight.

    Returns:
        The destination directory. Tensors keep their dtype. Every key of the file must be a parameter of the
        configured model and every parameter must be in the file (WeightsError naming them otherwise).
    """
    state_dict = read_torch_checkpoint(source)
    head = state_dict.get("head.weight")
    if num_labels is None and head is not None and head.dim() == 2:
        num_labels = head.shape[0]
    config = InternVideo2Config.from_dict(_replaced(config.to_dict(), {"num_labels": num_labels} if num_labels else {}))
    if config.temporal_attention is not None:
        raise WeightsError(f"{source}: convert plain weights with a config without temporal_attention")
    with torch.device("meta"):
        expected = InternVideo2ForVideoClassification(config).state_dict()
    check_state_dict(expected, state_dict, source=source)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, destination / WEIGHTS_FILE, metadata={"format": "pt"})
    _write_config(config, destination)
    return destination


def save_classifier(model: InternVideo2ForVideoClassification, directory: str | Path) -> Path:
    """Write `model` as config.json (its InternVideo2Config, the TemporalConfig included) + model.safetensors (every
    tensor, STA's included). Read back with stave.load_model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    _write_config(model.config, directory)
    return directory


def load_plain_classifier(
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    config_values: dict[str, Any] | None = None,
    redraw_head: bool = False,
) -> tuple[InternVideo2ForVideoClassification, list[str], list[str]]:
    """The classifier of a directory written by save_classifier or convert_checkpoint, in eval mode, with every
    tensor but the temporal ones loaded (none missing, none left over: WeightsError naming them); the names of the
    temporal tensors it holds, for stave.load_model to load once it has added STA; and the head tensors drawn afresh.

    Args:
        dtype: cast floating-point weights to this dtype (default: as stored).
        device: where the weights go (default: CPU).
        config_values: InternVideo2Config values that replace the stored ones (e.g. num_labels, id2label).
        redraw_head: a stored head (head.weight, head.bias) of another shape than the configured one is replaced by
            a freshly initialised one instead of refused.
    """
    from ..checkpoint import TEMPORAL_LIKE

    directory = Path(directory)
    config_file, weights_file = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for file in (config_file, weights_file):
        if not file.is_file():
            raise FileNotFoundError(f"{directory}: no {file.name} (expected a directory written by save_pretrained)")
    try:
        config = InternVideo2Config.from_dict(_replaced(json.loads(config_file.read_text()), config_values or {}))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise WeightsError(f"{config_file}: {error}") from None
    with torch.device("meta"):
        shell = InternVideo2ForVideoClassification(config)
    with safe_open(weights_file, "pt", device=str(device or "cpu")) as f:
        names = list(f.keys())
        temporal = sorted(name for name in names if TEMPORAL_LIKE.search(name))
        state_dict = {name: f.get_tensor(name) for name in names if name not in temporal}
    expected = shell.state_dict()
    redrawn = []
    if redraw_head and any(
        name in state_dict and state_dict[name].shape != expected[name].shape for name in ("head.weight", "head.bias")
    ):
        fresh = nn.Linear(config.pool_size, config.num_labels, device=device or "cpu")
        nn.init.trunc_normal_(fresh.weight, std=0.02)  # as a new model's head (reset_parameters)
        nn.init.zeros_(fresh.bias)
        for part in ("weight", "bias"):
            stored = state_dict.get(f"head.{part}")
            state_dict[f"head.{part}"] = getattr(fresh, part).detach().to(stored.dtype if stored is not None else None)
            redrawn.append(f"head.{part}")
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    check_state_dict(expected, state_dict, source=weights_file)
    shell.load_state_dict(state_dict, strict=True, assign=True)
    return shell.eval(), temporal, redrawn


def _replaced(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Config values with `changes` applied; a new num_labels without label names drops the old names."""
    values = dict(values)
    if "num_labels" in changes and "id2label" not in changes:
        values.pop("id2label", None)
        values.pop("label2id", None)
    return {**values, **changes}


def _write_config(config: InternVideo2Config, directory: Path) -> None:
    values: dict[str, Any] = {"architectures": [InternVideo2ForVideoClassification.__name__], **config.to_dict()}
    (directory / CONFIG_FILE).write_text(json.dumps(values, indent=2) + "\n")


def _unpickler_reason(error: BaseException) -> str:
    """What torch's weights-only unpickler objected to (e.g. "Unsupported global: GLOBAL argparse.Namespace ...")."""
    text = str(error)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text, flags=re.DOTALL)
    return _first_sentence(found.group(1) if found else text)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text.split(". ")[0].rstrip(".") or "no reason given"
