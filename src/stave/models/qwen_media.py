"""How the Qwen families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5) turn media into model inputs: packed patch rows
with a (t, h, w) grid per item, and vision blocks of <|video_pad|> / <|image_pad|> tokens between
<|vision_start|> and <|vision_end|> in the prompt (one block per video, or with a VideoPrompt one per temporal
patch after its timestamp text); on transformers 5.x the forward also takes `mm_token_type_ids`. Qwen2.5-VL's
batches with videos carry `second_per_grid_ts`. The tower takes `(pixels, grid_thw)`."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import transformers
from torch import nn

from ..config import pooling_runs
from ..video import PatchSpec, pack_frames, seconds_per_grid
from ..video.packing import patch_positions
from . import MediaFormat, VideoPrompt

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
VISION_START, VISION_END, VIDEO_PAD, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>"


@dataclasses.dataclass(frozen=True)
class QwenMedia(MediaFormat):
    """Qwen's media format (see the module docstring).

    Attributes:
        video_prompt: None: a video is one vision block of t*h*w/merge^2 pads (Qwen2-VL, Qwen2.5-VL); else how
            its prompt is laid out (Qwen3-VL, Qwen3.5).
        seconds_per_grid: batches with videos carry `second_per_grid_ts` (Qwen2.5-VL).
        pixel_mean, pixel_std: per-channel normalisation of the family's processors.
    """

    video_prompt: VideoPrompt | None = None
    seconds_per_grid: bool = False
    pixel_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    pixel_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    video_token: str = VIDEO_PAD
    image_token: str = IMAGE_PAD
    wrap: tuple[str, str] = (VISION_START, VISION_END)
    token_types: bool = TRANSFORMERS_MAJOR >= 5  # 5.x's forward needs mm_token_type_ids; 4.57's rejects it
    batch_keys: tuple[str, ...] = (
        "pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "pixel_values", "image_grid_thw"
    )  # fmt: skip
    config_tokens: tuple[tuple[str, str], ...] = (
        ("image_token_id", IMAGE_PAD), ("video_token_id", VIDEO_PAD),
        ("vision_start_token_id", VISION_START), ("vision_end_token_id", VISION_END),
    )  # fmt: skip

    @property
    def words(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.video_prompt.words if self.video_prompt is not None else ()

    def patch_spec(self, vision_config: Any) -> PatchSpec:
        return dataclasses.replace(
            PatchSpec.from_vision_config(vision_config), mean=self.pixel_mean, std=self.pixel_std
        )

    def video(self, clip: Any, spec: PatchSpec, window: int | None) -> tuple[dict[str, torch.Tensor], str]:
        pixels, grid = pack_frames(clip.frames, spec)
        tensors = {"pixel_values_videos": pixels, "video_grid_thw": torch.tensor([grid], dtype=torch.long)}
        return tensors, self._video_text(clip, grid, spec, window)

    def image(
        self, frames: torch.Tensor, spec: PatchSpec, sample_images: int = 1
    ) -> tuple[dict[str, torch.Tensor], str]:
        pixels, (t, h, w) = pack_frames(frames, spec)
        tensors = {"pixel_values": pixels, "image_grid_thw": torch.tensor([[t, h, w]], dtype=torch.long)}
        return tensors, IMAGE_PAD * (t * h * w // spec.merge_size**2)

    def sample_tensors(
        self, clips: Sequence[Any], spec: PatchSpec, images: int = 0, window: int | None = 1
    ) -> dict[str, torch.Tensor]:
        if not (clips and self.seconds_per_grid):
            return {}
        values = seconds_per_grid([clip.sampled_fps for clip in clips], spec)
        # what get_rope_index uses: pooled, the seconds of a run of `window` temporal patches (models.qwen_pooling);
        # with "mean" (window None) each video is one step at its start, whatever the value
        used = values if window is None else values * window
        if TRANSFORMERS_MAJOR < 5 and window is not None and not torch.equal(used, used.trunc()):
            # transformers 4.57 casts each value to an integer before use (measured: 0.5 puts every frame of
            # a video at one temporal position, 1.5 acts as 1.0); 5.x uses the fractional value.
            runs = "" if window == 1 else f" (x {window}, the seconds of each pooled run of {window} temporal patches)"
            warnings.warn(
                f"transformers {transformers.__version__} truncates Qwen2.5-VL's second_per_grid_ts to whole "
                f"seconds: {used.tolist()}{runs} act as {used.trunc().tolist()}; transformers 5 uses them as they are",
                stacklevel=3,
            )
        return {"second_per_grid_ts": values}

    def _video_text(self, clip: Any, grid: Sequence[int], spec: PatchSpec, window: int | None) -> str:
        """The text that stands for one video in the prompt, from <|vision_start|> to <|vision_end|>: one vision
        block of pads (Qwen2-VL, Qwen2.5-VL), or the family's VideoPrompt blocks (Qwen3-VL, Qwen3.5: each
        temporal step the LLM sees after its timestamp). Pooled (window != 1), each run of temporal patches is one
        temporal step, whose timestamp is the mean of its patches' timestamps: a clip and its reverse within each
        run (the same frame times) get the same text; "mean" (window None) is one block for the whole video."""
        t, h, w = grid
        pads = h * w // spec.merge_size**2
        runs = pooling_runs(t, window)
        prompt = self.video_prompt
        if prompt is None:
            return VISION_START + VIDEO_PAD * (len(runs) * pads) + VISION_END
        times = prompt.patch_times(list(clip.timestamps), spec.temporal_patch_size)  # seconds of each patch
        stamps, start = [], 0
        for length in runs:
            stamps.append(sum(times[start : start + length]) / length)
            start += length
        blocks = prompt.blocks(stamps, pads)
        text = "".join(f"{before}{VISION_START}{VIDEO_PAD * count}{VISION_END}" for before, count in blocks)
        return f"{VISION_START}{text}{VISION_END}" if prompt.outer_vision_tokens else text

    def minimal_tower_input(self, tower: nn.Module) -> tuple[tuple, dict[str, Any]]:
        """One blank image of merge x merge patches: (pixels (merge^2, 3*tp*p^2),), grid_thw=[[1, merge, merge]]."""
        spec = PatchSpec.from_vision_config(tower.config)
        parameter = next(tower.parameters())
        merge = spec.merge_size
        width = 3 * spec.temporal_patch_size * spec.patch_size**2
        pixels = torch.zeros(merge * merge, width, dtype=parameter.dtype, device=parameter.device)
        grid = torch.tensor([[1, merge, merge]], device=parameter.device)
        return (pixels,), {"grid_thw": grid}

    def video_grids(self, encoded: dict[str, Any], spec: PatchSpec) -> list[tuple[int, int, int]]:
        return [tuple(row) for row in encoded["video_grid_thw"].tolist()]

    def run_first_video(self, tower: nn.Module, encoded: dict[str, Any]) -> tuple[int, int, int]:
        grid = encoded["video_grid_thw"][:1]
        t, h, w = grid[0].tolist()
        pixels = encoded["pixel_values_videos"][: t * h * w].to(next(tower.parameters()))
        tower(pixels, grid_thw=grid.to(pixels.device))
        return t, h, w

    def tower_items(self, tower: nn.Module, inputs: dict[str, Any]) -> list[tuple[bool, torch.Tensor]]:
        """Images (pixel_values, image_grid_thw), then videos (pixel_values_videos, video_grid_thw), one tower call
        each; an item's outputs are its merged tokens (t, h*w/merge^2, D), Qwen3-VL's deepstack features
        concatenated along D."""
        from . import vision_outputs

        parameter = next(tower.parameters())
        merge = tower.config.spatial_merge_size**2
        items: list[tuple[bool, torch.Tensor]] = []
        for pixels, grids, video in (("pixel_values", "image_grid_thw", False),
                                     ("pixel_values_videos", "video_grid_thw", True)):  # fmt: skip
            if pixels not in inputs:
                continue
            grid_thw = inputs[grids].to(parameter.device)
            outputs = vision_outputs(tower(inputs[pixels].to(parameter), grid_thw=grid_thw))
            tokens = torch.cat(outputs, dim=-1)
            shapes = [(t, h * w // merge) for t, h, w in grid_thw.tolist()]
            parts = tokens.split([t * n for t, n in shapes])
            items += [(video, part.view(t, n, -1)) for part, (t, n) in zip(parts, shapes, strict=True)]
        return items

    def frame_positions(self, h: int, w: int, spec: PatchSpec) -> torch.Tensor:
        """The processor's order: merge x merge blocks in raster order (stave.video.packing.patch_positions)."""
        return patch_positions(h, w, spec.merge_size)

    def random_inputs(
        self, model: nn.Module, videos: Sequence[tuple[int, int, int]], images: Sequence[tuple[int, int, int]],
        *, seed: int, text_tokens: int, window: int | None,
    ) -> dict[str, torch.Tensor]:
        """Each image and video as <vision_start> pad*(t*h*w/merge^2) <vision_end> (a pooled video: ceil(t/window)
        *h*w/merge^2 pads); with a VideoPrompt one such block per temporal step the LLM sees, each after one text
        token standing for its timestamp text. mm_token_type_ids when the forward takes it."""
        from ..testing import random_pixels

        config = model.config
        prompt = self.video_prompt
        merge = config.vision_config.spatial_merge_size**2
        ids: list[int] = []
        types: list[int] = []
        for grids, pad_id, kind in ((images, config.image_token_id, 1), (videos, config.video_token_id, 2)):
            for t, h, w in grids:
                patches = len(pooling_runs(t, window)) if kind == 2 else t
                if kind == 2 and prompt is not None:
                    stamps = [float(k) for k in range(patches)]
                    blocks = [(3, count) for _, count in prompt.blocks(stamps, h * w // merge)]
                else:
                    blocks = [(None, patches * h * w // merge)]
                for text_id, count in blocks:
                    if text_id is not None:
                        ids.append(text_id)
                        types.append(0)
                    ids += [config.vision_start_token_id, *[pad_id] * count, config.vision_end_token_id]
                    types += [0, *[kind] * count, 0]
        generator = torch.Generator().manual_seed(seed + 1)
        text = torch.randint(3, 100, (text_tokens,), generator=generator).tolist()
        ids += text
        types += [0] * len(text)
        inputs: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        }
        if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
            inputs["mm_token_type_ids"] = torch.tensor([types])
        if images:
            inputs["pixel_values"], inputs["image_grid_thw"] = random_pixels(images, config.vision_config, seed=seed)
        if videos:
            inputs["pixel_values_videos"], inputs["video_grid_thw"] = random_pixels(
                videos, config.vision_config, seed=seed + 2
            )
        return inputs
