"""Temporal pooling in the Qwen families: the base model (Qwen2VLModel, Qwen2_5_VLModel, Qwen3VLModel, ...) turns
videos into LLM inputs in two methods, on transformers 5.x and 4.57 alike: get_video_features (runs the tower on
the real grid; its per-video tokens are scattered onto the video pads, after a count check) and get_rope_index
(M-RoPE positions from video_grid_thw; called by forward and by generation). stave.modeling.set_temporal_pooling
installs the two functions below on the instance (VisionFamily.pooled_methods), so the tower still sees every
frame while the LLM sees each video as one temporal patch; they follow the config entry on every call."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import transformers
from torch import nn

from ..config import POOLING_KEY

_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def mean_over_time(tokens: Sequence[torch.Tensor], grid_thw: torch.Tensor, merge_size: int) -> tuple[torch.Tensor, ...]:
    """Per video, the mean of its merged tokens over its temporal patches.

    Args:
        tokens: per video, (t*h*w/merge_size², D) merged tokens, t-major (as the tower outputs them).
        grid_thw: (num_videos, 3) the videos' real grids.

    Returns:
        per video, (h*w/merge_size², D).
    """
    pooled = []
    for item, (t, h, w) in zip(tokens, grid_thw.tolist(), strict=True):
        pooled.append(item.reshape(t, h * w // merge_size**2, item.shape[-1]).mean(0))
    return tuple(pooled)


def pooled_grid(grid_thw: torch.Tensor) -> torch.Tensor:
    """The grid the LLM sees for pooled videos: (1, h, w) per video."""
    pooled = grid_thw.clone()
    pooled[:, 0] = 1
    return pooled


def pooled_video_features(base: nn.Module, pixel_values_videos: torch.Tensor, video_grid_thw=None, **kwargs):
    """get_video_features with each video's tokens (and Qwen3-VL's deepstack features, which the LLM adds onto
    the same video positions) averaged over its temporal patches."""
    features = type(base).get_video_features
    if getattr(base.config, POOLING_KEY, None) is None:
        return features(base, pixel_values_videos, video_grid_thw, **kwargs)
    merge = base.config.vision_config.spatial_merge_size
    sizes = (video_grid_thw.prod(-1) // merge**2).tolist()

    def pool(per_video: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        if isinstance(per_video, torch.Tensor):  # one level of 4.57's deepstack: all videos concatenated
            per_video = per_video.split(sizes)
        return mean_over_time(per_video, video_grid_thw, merge)

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
    from ..positions import scheme_rope_index

    bound = inspect.signature(type(base).get_rope_index).bind(base, *args, **kwargs)
    grid = bound.arguments.get("video_grid_thw")
    if grid is not None and getattr(base.config, POOLING_KEY, None) is not None:
        bound.arguments["video_grid_thw"] = pooled_grid(grid)
    return scheme_rope_index(base)(*bound.args, **bound.kwargs)  # the stock M-RoPE, or the model's position scheme



def check_pooling(base: nn.Module) -> None:
    """A RuntimeError where the installed transformers' get_rope_index cannot be pooled."""
    if "video_grid_thw" not in inspect.signature(type(base).get_rope_index).parameters:
        raise RuntimeError(
            f"transformers {transformers.__version__}: {type(base).__name__}.get_rope_index takes no video_grid_thw; "
            "stave's temporal pooling supports transformers 4.57 and 5.x"
        )


POOLED_METHODS = (("get_video_features", pooled_video_features), ("get_rope_index", pooled_rope_index))
