"""What STA does, made visible: the temporal attention weights of one STA layer for one video, as a PNG.

For the chosen block, the layer's input is captured during a normal tower forward; the weights are then
computed explicitly (softmax(q k^T / sqrt(d)) with the layer's own rotary positions) — the same numbers the
fused attention uses, which a test checks by rebuilding the layer's output from them. The layer sees a frame's
patches in the tower's order: the processor's (the family's MediaFormat.frame_positions; Qwen: merge_size x
merge_size blocks, stave.video.packing), further permuted by attention window in Qwen2.5-VL (the family
adapter's `token_order`); the weights are put back in
image order before anything else uses them. The figure shows the t x t matrix (how much temporal patch i
attends to patch j, averaged over heads and patch positions) and, over the first frame of each temporal patch,
the share of attention each position gives to OTHER times (1 - self-attention weight): bright where STA mixes
information across time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .models import find_vision_tower
from .temporal.attention import apply_rotary
from .temporal.block import TemporalBlockMixin


@dataclass
class TemporalAttentionMap:
    """Temporal attention weights of one STA layer for one video, in image order.

    Attributes:
        weights: (h*w, H, t, t) float32 softmax weights per patch position and head; position p = row * w +
            column of the patch (raster order), whatever order the tower's blocks hold the patches in.
        frames: (T, 3, height, width) uint8 frames of the sampled clip.
        grid: (t, h, w) of the video: temporal patches, patch rows and patch columns.
        block: the STA block the weights come from.
        positions: (h*w,) long: the image position of each row of a temporal patch as the layer sees it
            (so weights[positions] are the weights in the tower's row order).
    """

    weights: torch.Tensor
    frames: torch.Tensor
    grid: tuple[int, int, int]
    block: int
    positions: torch.Tensor

    @property
    def matrix(self) -> torch.Tensor:
        """(t, t): mean over heads and positions; row i = how temporal patch i spreads its attention."""
        return self.weights.mean(dim=(0, 1))

    def cross_time(self) -> torch.Tensor:
        """(t, h, w): per patch, the attention share (0..1, mean over heads) it gives to other temporal
        patches; element [i, r, c] is the patch in row r, column c of temporal patch i."""
        t, h, w = self.grid
        off_diagonal = 1 - self.weights.mean(1).diagonal(dim1=-2, dim2=-1)  # (h*w, t), raster order
        return off_diagonal.T.reshape(t, h, w)


def sta_blocks(model: torch.nn.Module) -> list[int]:
    family, tower = find_vision_tower(model)
    return [i for i, block in enumerate(family.blocks(tower)) if isinstance(block, TemporalBlockMixin)]


@torch.no_grad()
def temporal_attention_map(model, processor, video: Any, *, block: int | None = None) -> TemporalAttentionMap:
    """The temporal attention weights of STA block `block` (default: the last one) for `video` (a path or
    anything the processor reads as a video), with the model's processor; see TemporalAttentionMap."""
    family, tower = find_vision_tower(model)
    blocks = sta_blocks(model)
    if not blocks:
        raise ValueError("the model has no temporal attention (add it with stave.add_temporal_attention)")
    block = blocks[-1] if block is None else block
    if block not in blocks:
        raise ValueError(f"block {block} has no temporal attention; STA blocks: {blocks}")
    conversation = [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "."}]}]
    encoded = processor.encode(conversation, train=False)
    captured: dict[str, Any] = {}

    def keep(_module, args):
        captured["x"], captured["layout"] = args[0], args[1]

    layer = family.blocks(tower)[block].temp_attn
    handle = layer.register_forward_pre_hook(keep)
    try:
        t, h, w = family.media.run_first_video(tower, encoded)
    finally:
        handle.remove()
    x = captured["x"].view(1, t, h * w, -1)  # one item: t temporal patches of h*w rows (stave.temporal.layout)
    weights = attention_weights(layer, x, captured["layout"].rotary[t])[0].float().cpu()  # rows in tower order
    positions = family.media.frame_positions(h, w, processor.spec)[family.token_order(tower, h, w)]
    image_order = torch.argsort(positions)  # image_order[p]: the row that holds image position p
    return TemporalAttentionMap(weights[image_order], encoded["clips"][0].frames, (t, h, w), block, positions)


def attention_weights(layer, x: torch.Tensor, rotary) -> torch.Tensor:
    """(B, t, n, D) normalised tokens -> (B, n, H, t, t) softmax weights of a TemporalAttention layer."""
    b, t, n, _ = x.shape
    h, d = layer.num_heads, layer.head_dim
    qkv = layer.qkv(x).view(b, t, n, 3, h, d).permute(3, 0, 2, 4, 1, 5)
    cos, sin = rotary
    q, k = apply_rotary(qkv[0], cos, sin), apply_rotary(qkv[1], cos, sin)
    return torch.softmax((q.float() @ k.float().transpose(-1, -2)) / d**0.5, dim=-1)


def save_map(result: TemporalAttentionMap, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = result.grid[0]
    cross = result.cross_time()
    frames = result.frames[:: max(1, result.frames.shape[0] // t)][:t]
    figure, axes = plt.subplots(2, max(t, 2), figsize=(2.2 * max(t, 2), 4.8), squeeze=False)
    for i in range(axes.shape[1]):
        axis = axes[0, i]
        axis.axis("off")
        if i < t:
            frame = frames[i].permute(1, 2, 0).numpy()
            axis.imshow(frame)
            axis.imshow(cross[i].numpy(), cmap="magma", alpha=0.55, vmin=0, vmax=1,
                        extent=(0, frame.shape[1], frame.shape[0], 0))  # fmt: skip
            axis.set_title(f"t{i}: to other times", fontsize=8)
    for axis in axes[1, 1:]:
        axis.axis("off")
    image = axes[1, 0].imshow(result.matrix.numpy(), cmap="viridis", vmin=0, vmax=1)
    axes[1, 0].set(xlabel="attends to temporal patch", ylabel="temporal patch", title=f"block {result.block}")
    figure.colorbar(image, ax=axes[1, 0], fraction=0.046)
    figure.suptitle(title or f"STA temporal attention, block {result.block}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
