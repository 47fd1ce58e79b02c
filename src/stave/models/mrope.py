"""How stave replaces the LLM positions of the Qwen2-VL and Qwen2.5-VL families (stave.positions): both place
tokens with M-RoPE, computed in two places of the base model, on transformers 5.x and 4.57 alike:

- `get_rope_index` (a method of Qwen2VLModel / Qwen2_5_VLModel, called by forward and by generation) turns
  input_ids and the visual grids into (3, batch, seq) positions (rows t, h, w) and `rope_deltas`, the offset
  from a token's column to its position used when decoding with a KV cache;
- the LLM's rotary embedding (`language_model.rotary_emb`) turns positions into cos/sin, giving frequency pair
  j the position row `rows[j]` (M-RoPE: the first mrope_section[0] pairs t, the next h, the last w).

A scheme replaces get_rope_index on the instance (positions) and the rotary embedding's row per frequency pair
(frequencies); the classes stay untouched. On 5.x the rotary embedding composes rows itself
(`recomposition_frequencies`, replaced on the instance); on 4.57 it returns all three rows and every attention
layer composes them by mrope_section, so a forward hook hands it rows that are already composed (all three
equal, so any section choice gives the scheme's composition).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
import transformers
from torch import nn

from ..config import PositionScheme
from . import PositionAdapter

_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def rotary_embedding(base: nn.Module) -> nn.Module:
    """The LLM's rotary embedding of a base model (Qwen2VLModel / Qwen2_5_VLModel)."""
    return base.language_model.rotary_emb


def mrope_section(base: nn.Module) -> list[int]:
    """(t, h, w) frequency pairs per row of the stock M-RoPE, summing to head_dim / 2."""
    text = base.config.get_text_config()
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
    section = rope.get("mrope_section")
    if section is None:
        raise TypeError(f"{type(base).__name__}: its text config has no mrope_section")
    return [int(n) for n in section]


# --- frequencies --------------------------------------------------------------------------------------------


def set_frequency_rows(rotary: nn.Module, rows: torch.Tensor | None) -> None:
    """Give frequency pair j of `rotary` the position row rows[j] (0 t, 1 h, 2 w), or the stock M-RoPE (None).

    Args:
        rows: (head_dim / 2,) long, or None.
    """
    clear_frequency_rows(rotary)
    if rows is None:
        return
    rows = rows.detach().to("cpu", torch.long)
    if _TRANSFORMERS_MAJOR >= 5:
        rotary.recomposition_frequencies = functools.partial(_compose_rows, rows)
    else:
        rotary.register_forward_hook(functools.partial(_composed_output, rows))


def frequency_rows(rotary: nn.Module) -> torch.Tensor | None:
    """The rows set by set_frequency_rows, or None (stock M-RoPE)."""
    replaced = vars(rotary).get("recomposition_frequencies")
    if isinstance(replaced, functools.partial) and replaced.func is _compose_rows:
        return replaced.args[0]
    for hook in rotary._forward_hooks.values():
        if isinstance(hook, functools.partial) and hook.func is _composed_output:
            return hook.args[0]
    return None


def clear_frequency_rows(rotary: nn.Module) -> None:
    replaced = vars(rotary).get("recomposition_frequencies")
    if isinstance(replaced, functools.partial) and replaced.func is _compose_rows:
        del rotary.recomposition_frequencies
    for key, hook in list(rotary._forward_hooks.items()):
        if isinstance(hook, functools.partial) and hook.func is _composed_output:
            del rotary._forward_hooks[key]


def _pick_rows(rows: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """(3, ..., n) per-row values -> (..., n): entry j taken from row rows[j % len(rows)]."""
    n = per_row.shape[-1]
    index = rows.to(per_row.device).repeat(n // len(rows))
    return per_row.gather(0, index.expand(1, *per_row.shape[1:]))[0]


def _compose_rows(rows: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    # transformers 5.x: freq (3, batch, seq, head_dim / 2) -> (batch, seq, head_dim), both halves alike
    picked = _pick_rows(rows, freq)
    return torch.cat((picked, picked), dim=-1)


def _composed_output(rows: torch.Tensor, module: nn.Module, args: Any, output: tuple[torch.Tensor, torch.Tensor]):
    # transformers 4.57: cos, sin (3, batch, seq, head_dim) with both halves alike -> the composed rows, three times
    return tuple(_pick_rows(rows, part).expand(3, *part.shape[1:]) for part in output)


# --- positions ----------------------------------------------------------------------------------------------


def rope_index_arguments(base: nn.Module, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    """The arguments of a get_rope_index call, bound by the class's own signature (base included)."""
    return inspect.signature(type(base).get_rope_index).bind(base, *args, **kwargs)


def scheme_rope_index(scheme: PositionScheme) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A function with get_rope_index's signature (base first) that places tokens by `scheme`."""
    if scheme.name == "mrope":
        return _stock_rope_index
    return functools.partial(_videorope_rope_index, scheme.temporal_spacing)


def _stock_rope_index(base: nn.Module, *args: Any, **kwargs: Any):
    return type(base).get_rope_index(base, *args, **kwargs)


def _videorope_rope_index(spacing: float, base: nn.Module, *args: Any, **kwargs: Any):
    """VideoRoPE's get_rope_index. `second_per_grid_ts` (Qwen2.5-VL) is accepted and not used: VideoRoPE spaces
    temporal patches by `spacing`, whatever their duration (the authors' release takes no absolute time)."""
    arguments = rope_index_arguments(base, args, kwargs).arguments
    input_ids = arguments.get("input_ids")
    image_grid_thw, video_grid_thw = arguments.get("image_grid_thw"), arguments.get("video_grid_thw")
    if input_ids is None or (image_grid_thw is None and video_grid_thw is None):
        # text only: (p, p, p) with consecutive p, as the stock M-RoPE
        return _stock_rope_index(base, *args, **kwargs)
    attention_mask = arguments.get("attention_mask")
    config = base.config
    merge = config.vision_config.spatial_merge_size
    grids = {
        config.image_token_id: ("image", iter(image_grid_thw.tolist() if image_grid_thw is not None else [])),
        config.video_token_id: ("video", iter(video_grid_thw.tolist() if video_grid_thw is not None else [])),
    }
    integral = float(spacing).is_integer()
    dtype = input_ids.dtype if integral else torch.float32
    spacing = int(spacing) if integral else spacing
    batch, length = input_ids.shape
    positions = torch.ones(3, batch, length, dtype=dtype, device=input_ids.device)
    deltas = []
    for row in range(batch):
        keep = attention_mask[row].bool() if attention_mask is not None else torch.ones(length, dtype=torch.bool)
        keep = keep.to(input_ids.device)
        ids = input_ids[row][keep].tolist()
        placed, next_position = _place(ids, grids, merge, spacing, row)
        positions[:, row, keep] = torch.tensor(placed, dtype=dtype).to(input_ids.device)
        # rope_deltas: the next token's position minus its column, as each version counts columns when decoding
        # (5.x: from the attention mask, so the unpadded length; 4.57: cache_position, so the padded length)
        columns = len(ids) if _TRANSFORMERS_MAJOR >= 5 else length
        deltas.append(next_position - columns)
    return positions, torch.tensor(deltas, dtype=dtype, device=input_ids.device).unsqueeze(1)


def _place(
    ids: list[int], grids: dict[int, tuple[str, Any]], merge: int, spacing: float, row: int
) -> tuple[list[list], float]:
    """VideoRoPE positions (3 lists: t, h, w) of one unpadded sequence and the position of the token after it.

    Text tokens take (p, p, p), consecutive. A visual block of merged grid (T, H, W) starting at s places token
    (t, h, w) at t_pos = s + spacing*t, h_pos = t_pos + h - (H-1)//2, w_pos = t_pos + w - (W-1)//2 (t-major, the
    tower's token order); the next token follows at max(t_pos) + 1.
    """
    out: list[list] = [[], [], []]
    position: float = 0
    i = 0
    while i < len(ids):
        token = ids[i]
        if token not in grids:
            out[0].append(position)
            out[1].append(position)
            out[2].append(position)
            position += 1
            i += 1
            continue
        kind, remaining = grids[token]
        grid = next(remaining, None)
        if grid is None:
            raise ValueError(f"sequence {row}: more {kind} blocks in input_ids than {kind}_grid_thw rows")
        t, h, w = grid[0], grid[1] // merge, grid[2] // merge
        count = t * h * w
        if ids[i : i + count] != [token] * count:
            raise ValueError(
                f"sequence {row}: the {kind} of grid {grid} needs {count} consecutive {kind} pad tokens at column {i}"
            )
        t_pos = torch.arange(t).repeat_interleave(h * w) * spacing + position
        h_pos = t_pos + torch.arange(h).repeat_interleave(w).repeat(t) - (h - 1) // 2
        w_pos = t_pos + torch.arange(w).repeat(t * h) - (w - 1) // 2
        for target, values in zip(out, (t_pos, h_pos, w_pos), strict=True):
            target.extend(values.tolist())
        position = position + spacing * (t - 1) + 1
        i += count
    return out, position


MROPE = PositionAdapter(
    rotary_embedding=rotary_embedding,
    sections=mrope_section,
    set_frequency_rows=set_frequency_rows,
    frequency_rows=frequency_rows,
    rope_index=scheme_rope_index,
)
