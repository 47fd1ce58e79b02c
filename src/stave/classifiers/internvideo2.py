"""InternVideo2 (Wang et al. 2024, "InternVideo2: Scaling Foundation Models for Multimodal Video Understanding"),
the single-modality video classifier, in plain PyTorch (SDPA attention; no flash-attn, timm or deepspeed).

The module layout and parameter names are those of the authors' single-modality model
(github.com/OpenGVLab/InternVideo, InternVideo2/single_modality/models/internvideo2.py), so their published
fine-tuned state dicts load key for key (stave.classifiers.checkpoint):

    pixels (B, T, C, H, W) -> Conv3d patches (tubelet x patch x patch) -> (B, T/tubelet * H/p * W/p, D), time-major
    -> [CLS] + tokens, + joint 3-D position table (pos_embed, (1, 1 + T'*H'*W', D), CLS row first)
    -> blocks: x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x)))     (RMSNorm; qkv without bias; RMSNorm qk-norm over
       the full width; LayerScale)
    -> attention pooling (clip_projector: the mean token queries all tokens, CLS included) -> fc_norm -> head

The authors' fine-tuning runs used flash-attn's fused kernels (fused RMSNorm with the residual add, FusedMLP);
they compute the same function as the plain modules here, FusedMLP with the tanh approximation of GELU
(flash-attn's "gelu_approx", hence `hidden_act="gelu_tanh"` in the presets).

A clip of any frame count and size (multiples of the tubelet and the patch) is accepted: the position table,
stored for the configured `num_frames` x `image_size`, is interpolated linearly over time and bicubically over
space, as the authors' fine-tuning code does when it loads a table of another shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import ImageClassifierOutput

#: Activation of the MLP: "gelu_tanh" is flash-attn's FusedMLP ("gelu_approx"), which the published runs used.
ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh")}


@dataclass
class InternVideo2Config:
    """Everything that shapes an InternVideo2 classifier (saved as config.json next to its weights).

    Attributes:
        hidden_size: token width D (1B: 1408, 6B: 3200).
        depth: number of blocks.
        num_heads: attention heads of each block (head_dim = hidden_size / num_heads).
        intermediate_size: hidden width of each block's MLP.
        patch_size: spatial patch size in pixels.
        tubelet_size: frames per patch (1: one token grid per frame).
        image_size: frame height and width the position table is stored for.
        num_frames: frame count the position table is stored for.
        num_channels: input channels.
        qkv_bias: the attention's qkv linear has a bias (False in the published models).
        qk_norm: RMSNorm over the full width on queries and keys.
        layer_scale_init: initial value of the LayerScale vectors (ls1, ls2); None: no LayerScale.
        hidden_act: "gelu_tanh" or "gelu".
        norm_eps: epsilon of the blocks' RMSNorms.
        pool_heads: heads of the attention pooling (clip_projector).
        pool_size: output width of the attention pooling (the published models' clip_embed_dim, 768).
        num_labels: classes of the head.
        drop_path_rate: stochastic depth, rising linearly from 0 at the first block to this at the last (training).
        temporal_attention: the TemporalConfig as a dict, recorded by stave.add_temporal_attention; None: no STA.
        id2label, label2id: the class names (as transformers' configs name them); default LABEL_0, LABEL_1, ...

    Other entries that parts of stave record on a model's config (e.g. the classification input, stave_clip_input)
    are kept as attributes, as transformers' configs keep them, and saved with the rest.
    """

    hidden_size: int = 1408
    depth: int = 40
    num_heads: int = 16
    intermediate_size: int = 6144
    patch_size: int = 14
    tubelet_size: int = 1
    image_size: int = 224
    num_frames: int = 8
    num_channels: int = 3
    qkv_bias: bool = False
    qk_norm: bool = True
    layer_scale_init: float | None = 1e-5
    hidden_act: str = "gelu_tanh"
    norm_eps: float = 1e-6
    pool_heads: int = 16
    pool_size: int = 768
    num_labels: int = 174
    drop_path_rate: float = 0.0
    temporal_attention: dict[str, Any] | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None

    model_type = "internvideo2"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "depth", "num_heads", "intermediate_size", "patch_size", "tubelet_size",
                     "image_size", "num_frames", "num_channels", "pool_heads", "pool_size", "num_labels"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"InternVideo2Config.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"InternVideo2Config: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.hidden_size % self.pool_heads:
            raise ValueError(
                f"InternVideo2Config: hidden_size {self.hidden_size} is not divisible by pool_heads {self.pool_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"InternVideo2Config.hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}"
            )
        if self.num_frames % self.tubelet_size or self.image_size % self.patch_size:
            raise ValueError(
                f"InternVideo2Config: num_frames {self.num_frames} must be a multiple of tubelet_size "
                f"{self.tubelet_size} and image_size {self.image_size} a multiple of patch_size {self.patch_size}"
            )
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self.id2label = {int(i): str(name) for i, name in self.id2label.items()}  # JSON keys are strings
        if sorted(self.id2label) != list(range(self.num_labels)):
            raise ValueError(
                f"InternVideo2Config.id2label must name labels 0..{self.num_labels - 1} (num_labels), "
                f"got {len(self.id2label)} entries"
            )
        if self.label2id is None:
            self.label2id = {name: i for i, name in self.id2label.items()}
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"InternVideo2Config.drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w) token grid of the stored position table."""
        side = self.image_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    def to_dict(self) -> dict[str, Any]:
        """The fields and any other entries recorded on the config (JSON values), model_type first."""
        extra = {k: v for k, v in vars(self).items() if k not in {f.name for f in dataclasses.fields(self)}}
        return {"model_type": self.model_type, **dataclasses.asdict(self), **extra}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InternVideo2Config:
        values = dict(values)
        model_type = values.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(f"model_type must be {cls.model_type!r}, got {model_type!r}")
        values.pop("architectures", None)
        known = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known})
        for key, value in values.items():
            if key not in known:  # entries other parts of stave record (see the class docstring)
                setattr(config, key, value)
        return config


class LayerScale(nn.Module):
    """Per-channel scale `gamma` (D,), applied in float32 (as the published runs did)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.gamma.float()).to(x.dtype)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability p (scaling the rest)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention with RMSNorm on queries and keys over the full width (SDPA)."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.q_norm = nn.RMSNorm(dim, eps=config.norm_eps) if config.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim, eps=config.norm_eps) if config.qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        b, length, dim = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (y.view(b, length, self.num_heads, -1).transpose(1, 2) for y in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, length, dim))


class Mlp(nn.Module):
    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """norm1 -> attention -> LayerScale, residual; norm2 -> MLP -> LayerScale, residual."""

    def __init__(self, config: InternVideo2Config, drop_path: float = 0.0) -> None:
        super().__init__()
        dim = config.hidden_size
        scale = (lambda: LayerScale(dim, config.layer_scale_init)) if config.layer_scale_init else nn.Identity
        self.norm1 = nn.RMSNorm(dim, eps=config.norm_eps)
        self.attn = Attention(config)
        self.ls1 = scale()
        self.norm2 = nn.RMSNorm(dim, eps=config.norm_eps)
        self.mlp = Mlp(config)
        self.ls2 = scale()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, temporal_layout: Any = None) -> torch.Tensor:
        """(B, 1 + L, D) -> (B, 1 + L, D). `temporal_layout` is for blocks with temporal attention (stave.temporal);
        a plain block has nothing to use it for."""
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class PoolingAttention(nn.Module):
    """Cross-attention of one query over all tokens; q, k, v without bias in their linears but with separate
    bias vectors (q_bias, k_bias, v_bias), output projected to `out_dim`."""

    def __init__(self, dim: int, num_heads: int, out_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query (B, 1, D), key and value (B, L, D) -> (B, 1, out_dim)."""
        b, length, dim = key.shape
        q = F.linear(query, self.q.weight, self.q_bias).view(b, 1, self.num_heads, -1).transpose(1, 2)
        k = F.linear(key, self.k.weight, self.k_bias).view(b, length, self.num_heads, -1).transpose(1, 2)
        v = F.linear(value, self.v.weight, self.v_bias).view(b, length, self.num_heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, 1, dim))


class AttentionPooling(nn.Module):
    """The published `clip_projector`: the mean token attends to every token (LayerNorms on query, key, value)."""

    def __init__(self, dim: int, num_heads: int, out_dim: int) -> None:
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = PoolingAttention(dim, num_heads, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, out_dim)."""
        query = self.norm1_q(x.mean(1, keepdim=True))
        return self.cross_attn(query, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class InternVideo2ForVideoClassification(nn.Module):
    """InternVideo2 video classifier; called as `model(pixel_values=...)` like transformers' video classifiers.

    Attribute names follow the published checkpoints: patch_embed.proj, cls_token, pos_embed, blocks.N.*,
    clip_projector.*, fc_norm, head.
    """

    config_class = InternVideo2Config
    main_input_name = "pixel_values"

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        t, h, w = config.grid
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(
            config.num_channels,
            dim,
            kernel_size=(config.tubelet_size, config.patch_size, config.patch_size),
            stride=(config.tubelet_size, config.patch_size, config.patch_size),
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + t * h * w, dim))
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList([Block(config, rate) for rate in rates])
        self.clip_projector = AttentionPooling(dim, config.pool_heads, config.pool_size)
        self.fc_norm = nn.LayerNorm(config.pool_size)
        self.head = nn.Linear(config.pool_size, config.num_labels)
        self.gradient_checkpointing = False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random weights as the authors initialise a new model: truncated normal (std 0.02) linears with zero
        biases, the fixed 3-D sin-cos table in pos_embed, LayerScale at layer_scale_init."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos_embed.copy_(sincos_table(self.config.hidden_size, *self.config.grid))

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write config.json + model.safetensors (STA's tensors and TemporalConfig included); read back with
        stave.load_model."""
        from .checkpoint import save_classifier

        save_classifier(self, save_directory)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        output_loading_info: bool = False,
        dtype: torch.dtype | None = None,
        torch_dtype: torch.dtype | None = None,
        device_map: str | torch.device | None = None,
        attn_implementation: str | None = None,
        ignore_mismatched_sizes: bool = False,
        **config_values: Any,
    ) -> InternVideo2ForVideoClassification | tuple[InternVideo2ForVideoClassification, dict[str, list[str]]]:
        """The classifier of a directory written by save_pretrained or stave.classifiers.convert_checkpoint, in eval
        mode, as transformers' from_pretrained: what stave.load_model calls. Every stored tensor is used, none is
        missing (WeightsError naming them), except the temporal ones: with output_loading_info they are returned
        as "unexpected_keys" for stave.load_model, which adds STA and loads them; without it a checkpoint with STA is
        refused (use stave.load_model).

        Args:
            dtype: cast the weights (default: as stored); torch_dtype: its transformers 4.x name (stave.load_model
                passes that on 4.57). device_map: a device for every weight (default: CPU).
            attn_implementation: only "sdpa" (the one this model has) or None.
            ignore_mismatched_sizes: a head of another class count than stored (config_values num_labels) is drawn
                afresh and reported under "mismatched_keys"; any other shape mismatch is still refused.
            **config_values: InternVideo2Config values that replace the stored ones (num_labels, id2label, ...).
        """
        from .checkpoint import WeightsError, load_plain_classifier

        if attn_implementation not in (None, "sdpa"):
            raise ValueError(f"{cls.__name__} has SDPA attention only, got attn_implementation={attn_implementation!r}")
        if device_map is not None and not isinstance(device_map, (str, torch.device)):
            raise ValueError(f"{cls.__name__}: device_map must be one device, got {device_map!r}")
        model, temporal, redrawn = load_plain_classifier(
            path,
            dtype=dtype or torch_dtype,
            device=device_map,
            config_values=config_values,
            redraw_head=ignore_mismatched_sizes,
        )
        if output_loading_info:
            return model, {"missing_keys": [], "unexpected_keys": temporal, "mismatched_keys": redrawn}
        if temporal or model.config.temporal_attention is not None:
            raise WeightsError(
                f"{path}: holds temporal attention ({len(temporal)} tensors); load it with stave.load_model, which "
                "adds STA and loads them"
            )
        return model

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embed.proj.weight.dtype

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute each block in the backward pass instead of storing its activations (what transformers'
        Trainer calls for `gradient_checkpointing=True`); always non-reentrant."""
        self.gradient_checkpointing = True
        for block in self.blocks:
            block.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing = False
        for block in self.blocks:
            block.gradient_checkpointing = False

    def token_grid(self, pixel_values: torch.Tensor) -> tuple[int, int, int]:
        """(t, h, w) tokens of clips of shape (B, T, C, H, W); a ValueError naming the dimension that does not fit."""
        if pixel_values.dim() != 5:
            raise ValueError(
                f"pixel_values must be (batch, frames, channels, height, width), got shape {tuple(pixel_values.shape)}"
            )
        _, frames, channels, height, width = pixel_values.shape
        c = self.config
        if channels != c.num_channels:
            raise ValueError(f"pixel_values has {channels} channels, the model takes {c.num_channels}")
        if frames == 0 or frames % c.tubelet_size:
            raise ValueError(
                f"pixel_values has {frames} frames, which is not a positive multiple of tubelet_size {c.tubelet_size}"
            )
        for name, size in (("height", height), ("width", width)):
            if size == 0 or size % c.patch_size:
                raise ValueError(f"pixel_values {name} {size} is not a positive multiple of patch_size {c.patch_size}")
        return frames // c.tubelet_size, height // c.patch_size, width // c.patch_size

    def position_table(self, t: int, h: int, w: int) -> torch.Tensor:
        """(1, 1 + t*h*w, D): pos_embed for a (t, h, w) token grid, interpolated from the stored grid where it differs
        (linear over time, bicubic over space; the CLS row as stored)."""
        t0, h0, w0 = self.config.grid
        if (t, h, w) == (t0, h0, w0):
            return self.pos_embed
        cls_row, table = self.pos_embed[:, :1], self.pos_embed[0, 1:]
        dim = table.shape[-1]
        grid = table.float().view(t0, h0, w0, dim)
        if t != t0:  # (h0*w0*D, 1, t0) rows of one channel at one place, interpolated over time
            series = grid.permute(1, 2, 3, 0).reshape(-1, 1, t0)
            series = F.interpolate(series, size=t, mode="linear", align_corners=False)
            grid = series.view(h0, w0, dim, t).permute(3, 0, 1, 2)
        if (h, w) != (h0, w0):
            planes = F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bicubic", align_corners=False)
            grid = planes.permute(0, 2, 3, 1)
        return torch.cat([cls_row, grid.reshape(1, t * h * w, dim).to(cls_row.dtype)], dim=1)

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, *, temporal_layout: Any = None
    ) -> ImageClassifierOutput:
        """Classify clips.

        Args:
            pixel_values: (B, T, C, H, W) normalised frames; T a multiple of tubelet_size, H and W of patch_size.
            labels: (B,) class indices; when given, `loss` is their cross-entropy.
            temporal_layout: set by the forward pre-hook that stave.add_temporal_attention installs.

        Returns:
            ImageClassifierOutput with `logits` (B, num_labels) and `loss` (scalar, or None without labels).
        """
        t, h, w = self.token_grid(pixel_values)
        x = self.patch_embed.proj(pixel_values.transpose(1, 2).to(self.dtype))  # (B, D, t, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, t*h*w, D), time-major
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.position_table(t, h, w)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, temporal_layout=temporal_layout, use_reentrant=False)
            else:
                x = block(x, temporal_layout=temporal_layout)
        logits = self.head(self.fc_norm(self.clip_projector(x)))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


def sincos_table(dim: int, t: int, h: int, w: int) -> torch.Tensor:
    """(1, 1 + t*h*w, dim) float32: the joint 3-D sin-cos table InternVideo2 initialises pos_embed with — per token
    (time-major, then rows, then columns), D/4 channels of its time index and 3D/4 of its (row, column), each a
    sin half then a cos half (frequencies 1 / 10000^(i / (n/2))); an all-zero CLS row first."""
    if dim % 16:  # D/4 time channels and 3D/8 per spatial axis, each an even sin/cos split
        raise ValueError(f"a 3-D sin-cos position table needs a width divisible by 16, got {dim}")

    def encode(positions: torch.Tensor, n: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(n // 2, dtype=torch.float64) / (n / 2))
        angles = positions.double()[:, None] * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    spatial = dim // 4 * 3
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # the authors' 2-D grid puts the column index first (np.meshgrid(w, h))
    plane = torch.cat([encode(cols.flatten(), spatial // 2), encode(rows.flatten(), spatial // 2)], dim=1)
    time = encode(torch.arange(t), dim // 4)
    table = torch.cat([time[:, None].expand(t, h * w, -1), plane[None].expand(t, -1, -1)], dim=-1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table.reshape(t * h * w, dim)]).float()[None]
