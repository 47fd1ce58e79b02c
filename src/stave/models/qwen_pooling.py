"""Temporal pooling in the Qwen families: the base model (Qwen2VLModel, Qwen2_5_VLModel, Qwen3VLModel, ...) turns
videos into LLM inputs in two methods, on transformers 5.x and 4.57 alike: get_video_features (runs the tower on
the real grid; its per-video tokens are scattered onto the video pads, after a count check) and get_rope_index
(M-RoPE positions from video_grid_thw; called by forward and by generation). stave.modeling.set_temporal_pooling
installs the two functions below on the instance (VisionFamily.pooled_methods), so the tower still sees every
frame while the LLM sees each video as one temporal patch per pooling run (stave.config.pooling_window: one for
"mean", ceil(t/K) for "mean:K"); they follow the config entry on every call."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import transformers
from torch import nn

from ..config import POOLING_KEY, pooling_runs, pooling_window
from . import window_means

_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def mean_over_time(
    tokens: Sequence[torch.Tensor], grid_thw: torch.Tensor, merge_size: int, window: int | None
) -> tuple[torch.Tensor, ...]:
    """Per video, the means of its merged tokens over runs of `window` consecutive temporal patches.

    Args:
        tokens: per video, (t*h*w/merge_size², D) merged tokens, t-major (as the tower outputs them).
        grid_thw: (num_videos, 3) the videos' real grids.
        window: temporal patches per run (the last run may be shorter); None: one run of all.

    Returns:
        per video, (ceil(t/window)*h*w/merge_size², D), run-major (the order of pooled_grid's grid).
    """
    pooled = []
    for item, (t, h, w) in zip(tokens, grid_thw.tolist(), strict=True):
        per_patch = item.reshape(t, h * w // merge_size**2, item.shape[-1])
        pooled.append(window_means(per_patch, window).flatten(0, 1))
    return tuple(pooled)


def pooled_grid(grid_thw: torch.Tensor, window: int | None) -> torch.Tensor:
    """The grid the LLM sees for pooled videos: (ceil(t/window), h, w) per video ((1, h, w) for window None)."""
    pooled = grid_thw.clone()
    for row, t in enumerate(grid_thw[:, 0].tolist()):
        pooled[row, 0] = len(pooling_runs(t, window))
    return pooled


def pooled_video_features(base: nn.Module, pixel_values_videos: torch.Tensor, video_grid_thw=None, **kwargs):
    """get_video_features with each video's tokens (and Qwen3-VL's deepstack features, which the LLM adds onto
    the same video positions) averaged over runs of its temporal patches (mean_over_time)."""
    features = type(base).get_video_features
    mode = getattr(base.config, POOLING_KEY, None)
    if mode is None:
        return features(base, pixel_values_videos, video_grid_thw, **kwargs)
    window = pooling_window(mode)
    merge = base.config.vision_config.spatial_merge_size
    sizes = (video_grid_thw.prod(-1) // merge**2).tolist()

    def pool(per_video: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        if isinstance(per_video, torch.Tensor):  # one level of 4.57's deepstack: all videos concatenated
            per_video = per_video.split(sizes)
        return mean_over_time(per_video, video_grid_thw, merge, window)

    if _TRANSFORMERS_MAJOR < 5:
        out = features(base, pixel_values_videos, video_grid_thw, **kwargs)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):  # Qwen3-VL: (tokens, deepstack)
            return pool(out[0]), [torch.cat(pool(level)) for level in out[1]]
        return pool(out)  # a tuple of per-video tensors
    # 5.x: an output object whose pooler_output holds the per-video tokens (as a tuple if return_dict=False)
    return_dict = kwargs.pop("return_dict", None)
    out = features(base, pixel_values_videos, video_grid_thw, return_dict=True, **kwargs)
    out.pooler_output = pool(out.pooler_output)
    if getattr(out, "deepstack_features", None) is not None:
        out.deepstack_features = [pool(level) for level in out.deepstack_features]
    return_dict = base.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


def pooled_rope_index(base: nn.Module, *args: Any, **kwargs: Any):
    """get_rope_index on the grids the LLM sees (pooled_grid); Qwen2.5-VL's `second_per_grid_ts` (seconds per
    temporal patch) times the window, so each run of K temporal patches sits at the temporal position of its first
    patch, as stock M-RoPE places that patch (a shorter last run too: it starts where its first patch does)."""
    from ..positions import scheme_rope_index

    bound = inspect.signature(type(base).get_rope_index).bind(base, *args, **kwargs)
    grid = bound.arguments.get("video_grid_thw")
    mode = getattr(base.config, POOLING_KEY, None)
    if grid is not None and mode is not None:
        window = pooling_window(mode)
        bound.arguments["video_grid_thw"] = pooled_grid(grid, window)
        seconds = bound.arguments.get("second_per_grid_ts")
        if seconds is not None and window is not None:  # with "mean" each video is one step: position 0 alone
            bound.arguments["second_per_grid_ts"] = torch.as_tensor(seconds) * window
    return scheme_rope_index(base)(*bound.args, **bound.kwargs)  # the stock M-RoPE, or the model's position scheme


def check_pooling(base: nn.Module) -> None:
    """A RuntimeError where the installed transformers' get_rope_index cannot be pooled."""
    if "video_grid_thw" not in inspect.signature(type(base).get_rope_index).parameters:
        raise RuntimeError(
            f"transformers {transformers.__version__}: {type(base).__name__}.get_rope_index takes no video_grid_thw; "
            "stave's temporal pooling supports transformers 4.57 and 5.x"
        )


POOLED_METHODS = (("get_video_features", pooled_video_features), ("get_rope_index", pooled_rope_index))
