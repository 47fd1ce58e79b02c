"""Training recipes: YAML files whose every field can be overridden with `key=value` on the command line.

A recipe is typed (the dataclasses below, checked by OmegaConf): an unknown key, a value of the wrong type,
an unknown stage, a missing data file or a TrainingArguments option this transformers does not know all
fail in `load_recipe`, before any model is built, naming the key or file.

Stages are configuration. A stage names what trains: `temporal` (the STA layers: temp_attn and norm3), `lora`
(peft adapters on the vision and LLM linears), `head` (the output layer, lm_head, in full: needed when the answer
words are new to the model, as on stave's tiny base), or `full` (every parameter: pretraining from scratch).
Four stages are built in and can be listed by name:
    stage1:   trains [temporal]        the paper's first stage (zero-initialised STA, everything else frozen)
    stage2:   trains [temporal, lora]  the paper's second stage
    baseline: trains [lora]            the same LoRA fine-tune with no STA (the paper's comparison row)
    pretrain: trains [full]            everything (how stave's tiny base was made: configs/tiny-pretrain.yaml)
Each stage may override any `training` value (e.g. its own learning rate) and starts from the previous
stage's output model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import TEMPORAL_POOLING_MODES, TemporalConfig
from ..errors import StaveError
from ..ssv2 import SUBSETS
from ..video import VideoOptions

TRAINABLE = ("temporal", "lora", "head", "full")
BUILTIN_STAGES: dict[str, list[str]] = {
    "stage1": ["temporal"],
    "stage2": ["temporal", "lora"],
    "baseline": ["lora"],
    "pretrain": ["full"],
}
DATA_FORMATS = ("auto", "conversations", "ssv2")


class RecipeError(StaveError, ValueError):
    """A recipe that cannot run; the message names the file and the key (or data file) at fault."""


@dataclass
class ModelSection:
    """path: a Hugging Face model directory, or a tiny preset name (stave.presets.TINY_PRESETS) for a random
    tiny model with a word-level tokenizer over the training texts. dtype: float32 | bfloat16 | float16 |
    auto (the checkpoint's). attn_implementation: sdpa | eager | flash_attention_2 | auto (flash-attn when
    installed, else sdpa). temporal_pooling: mean (each video reaches the LLM as the mean of its visual
    tokens over time: T times fewer tokens, frame order invisible to the LLM; see
    stave.modeling.set_temporal_pooling) or null (the model's own setting: a checkpoint that pools keeps
    pooling)."""

    path: str = MISSING
    dtype: str = "auto"
    attn_implementation: str = "auto"
    seed: int = 0
    temporal_pooling: str | None = None


@dataclass
class LoraSection:
    """LoRA (peft) for stages that train `lora`. Defaults are the authors' release: r=16, alpha=16 on the
    vision attention/MLP linears and the LLM linears; vision attn.qkv r=32, alpha=32. Never on STA."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    vision_qkv_r: int = 32
    vision_qkv_alpha: int = 32
    vision: bool = True
    llm: bool = True


@dataclass
class DatasetSpec:
    """One training set. path: JSON or JSONL file. root: media paths are relative to it (default: the
    file's folder). format: conversations (LLaVA/Qwen-finetune or Qwen messages), ssv2 (SSv2-style
    {"id", "label", "template"} records turned into QA), auto (detected per file). ratio: how many samples
    to draw per epoch relative to the file's size (0.5 = a seeded half, 2.0 = every sample twice).
    SSv2 only: video_pattern (file name from the record id), question, and the classes kept — a named subset
    (`subset: T10`, stave.ssv2.SUBSETS) or an explicit `classes` list (default: all); `split: train` keeps
    the training part of the seeded 80/20 split that the `ssv2-t10` benchmark tests on (same split_seed)."""

    path: str = MISSING
    root: str | None = None
    format: str = "auto"
    ratio: float = 1.0
    # ssv2 only
    video_pattern: str = "{id}.webm"
    question: str = "What is the action happening in this video?"
    subset: str | None = None
    classes: list[str] | None = None
    split: str = "all"  # all | train | test: the seeded SSv2-T10 split (stave.ssv2.t10_split), as ssv2-t10 evaluates
    split_seed: int = 0
    # conversations only: keep the records whose "task" field is one of these (e.g. stave synth's question kinds)
    tasks: list[str] | None = None


@dataclass
class DataSection:
    """on_error: skip (count, report at the end and in <stage>/skipped.jsonl) or raise (stop with the file
    and reason). shuffle: shuffle samples each epoch (seeded by training.seed). cache_bytes / cache_dir:
    decode each video once for all epochs (stave.video.VideoCache)."""

    datasets: list[DatasetSpec] = field(default_factory=list)
    video: VideoOptions = field(default_factory=VideoOptions)
    image_min_pixels: int = 4 * 28 * 28
    image_max_pixels: int = 16384 * 28 * 28
    on_error: str = "skip"
    shuffle: bool = True
    cache_bytes: int = 0  # > 0: keep up to this many bytes of decoded videos in memory (per process)
    cache_dir: str | None = None  # keep decoded videos as safetensors files here (shared by workers)
    seed: int = 0


@dataclass
class StageSpec:
    name: str = MISSING
    trains: list[str] = MISSING
    training: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """A whole training run. `training` holds transformers.TrainingArguments values shared by all stages."""

    output_dir: str = MISSING
    model: ModelSection = field(default_factory=ModelSection)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataSection = field(default_factory=DataSection)
    stages: list[StageSpec] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    resume: str | None = None  # "latest" (newest sealed checkpoint of the running stage) or a checkpoint folder

    def training_arguments(self, stage: StageSpec) -> dict[str, Any]:
        """The TrainingArguments values of a stage: recipe-wide values, then the stage's own."""
        return {**self.training, **stage.training}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_recipe(source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe (YAML file or dict), apply `key=value` overrides, check it completely."""
    name = str(source) if not isinstance(source, dict) else "<recipe>"
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise RecipeError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    try:
        config = OmegaConf.create(_expand_stages(raw, name))
        for key, value in _parse_overrides(overrides, name):
            OmegaConf.update(config, key, value, merge=False)
        config = OmegaConf.create(_expand_stages(OmegaConf.to_container(config), name))
        recipe = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), config))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        reason = str(error).splitlines()[0]
        raise RecipeError(f"{name}: {key + ': ' if key else ''}{reason}") from None
    except (TypeError, ValueError) as error:  # dataclass checks (TemporalConfig, VideoOptions)
        raise RecipeError(f"{name}: {error}") from None
    check_recipe(recipe, name)
    return recipe


def _parse_overrides(overrides, name: str) -> list[tuple[str, Any]]:
    """`key.path=value` pairs; values are read as YAML (numbers, true/false, null, [lists])."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"{name}: override {item!r} is not of the form key=value")
        try:
            parsed.append((key.strip(), yaml.safe_load(value) if value.strip() else ""))
        except yaml.YAMLError:
            raise RecipeError(f"{name}: override {item!r}: the value is not valid YAML") from None
    return parsed


def _expand_stages(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """Stage names in `stages` become full stage entries; entries naming a built-in stage get its `trains`."""
    stages = raw.get("stages")
    if stages is None:
        return raw
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    if not isinstance(stages, list):
        raise RecipeError(f"{name}: stages: expected a list, got {type(stages).__name__}")
    expanded = []
    for i, stage in enumerate(stages):
        if isinstance(stage, str):
            stage = {"name": stage}
        if not isinstance(stage, dict) or "name" not in stage:
            raise RecipeError(f"{name}: stages[{i}]: expected a stage name or a mapping with 'name'")
        if "trains" not in stage:
            if stage["name"] not in BUILTIN_STAGES:
                raise RecipeError(
                    f"{name}: stages[{i}]: unknown stage {stage['name']!r}; built in: {sorted(BUILTIN_STAGES)} "
                    "(a new stage needs 'trains')"
                )
            stage = {**stage, "trains": list(BUILTIN_STAGES[stage["name"]])}
        expanded.append(stage)
    return {**raw, "stages": expanded}


def check_recipe(recipe: Recipe, name: str = "<recipe>") -> None:
    """Everything that can be checked without building a model: stages, data files, TrainingArguments keys."""
    check_training_arguments(recipe.training, name)
    if not recipe.stages:
        raise RecipeError(f"{name}: stages: at least one stage is needed, e.g. [stage1, stage2]")
    seen = set()
    for i, stage in enumerate(recipe.stages):
        if stage.name in seen:
            raise RecipeError(f"{name}: stages[{i}].name: {stage.name!r} appears twice")
        seen.add(stage.name)
        bad = [t for t in stage.trains if t not in TRAINABLE]
        if bad or not stage.trains:
            raise RecipeError(f"{name}: stages[{i}].trains: must be a non-empty subset of {list(TRAINABLE)}, got {bad}")
        if "full" in stage.trains and len(stage.trains) > 1:
            raise RecipeError(f"{name}: stages[{i}].trains: 'full' trains every parameter; list it alone")
        check_training_arguments(stage.training, f"{name}: stages[{i}] ({stage.name})")
    if not recipe.data.datasets:
        raise RecipeError(f"{name}: data.datasets: at least one dataset is needed")
    for i, spec in enumerate(recipe.data.datasets):
        where = f"{name}: data.datasets[{i}]"
        if not Path(spec.path).is_file():
            raise RecipeError(f"{where}.path: data file not found: {spec.path}")
        if spec.root is not None and not Path(spec.root).is_dir():
            raise RecipeError(f"{where}.root: media folder not found: {spec.root}")
        if spec.format not in DATA_FORMATS:
            raise RecipeError(f"{where}.format: must be one of {list(DATA_FORMATS)}, got {spec.format!r}")
        if spec.subset is not None and spec.subset not in SUBSETS:
            raise RecipeError(f"{where}.subset: unknown SSv2 subset {spec.subset!r}; known: {sorted(SUBSETS)}")
        if spec.split not in ("all", "train", "test"):
            raise RecipeError(f"{where}.split: must be all, train or test, got {spec.split!r}")
        if spec.split != "all" and spec.format != "ssv2":
            raise RecipeError(f"{where}.split: only SSv2 files (format: ssv2) are split")
        if spec.tasks is not None and spec.format == "ssv2":
            raise RecipeError(f"{where}.tasks: only conversation files are filtered by task")
        if spec.ratio <= 0:
            raise RecipeError(f"{where}.ratio: must be > 0, got {spec.ratio}")
    if recipe.data.on_error not in ("skip", "raise"):
        raise RecipeError(f"{name}: data.on_error: must be 'skip' or 'raise', got {recipe.data.on_error!r}")
    if recipe.model.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise RecipeError(f"{name}: model.dtype: must be auto, float32, bfloat16 or float16")
    if recipe.model.attn_implementation not in ("auto", "sdpa", "eager", "flash_attention_2"):
        raise RecipeError(f"{name}: model.attn_implementation: must be auto, sdpa, eager or flash_attention_2")
    if recipe.model.temporal_pooling not in (None, *TEMPORAL_POOLING_MODES):
        raise RecipeError(
            f"{name}: model.temporal_pooling: must be null or one of {list(TEMPORAL_POOLING_MODES)}, "
            f"got {recipe.model.temporal_pooling!r}"
        )


# TrainingArguments values stave sets itself (from the recipe's other sections) or that would break it.
_RESERVED = {
    "output_dir": "set by the recipe's output_dir (each stage writes to <output_dir>/<stage>)",
    "remove_unused_columns": "stave's collator builds the batch; it must stay False",
    "resume_from_checkpoint": "use the recipe's `resume` key",
}


def check_training_arguments(values: dict[str, Any], where: str) -> None:
    """Unknown or mistyped TrainingArguments values, named; nothing is constructed here. Numbers written as
    strings (YAML reads `1e-4` as a string) are converted in place when the option expects a number."""
    from transformers import TrainingArguments

    fields = {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}
    if "warmup_ratio" in values and "warmup_ratio" not in fields:
        # transformers 5.x folded warmup_ratio into warmup_steps (a float below 1 is a ratio): recipes keep
        # the name both versions understand
        if "warmup_steps" in values:
            raise RecipeError(f"{where}: training: give warmup_ratio or warmup_steps, not both")
        ratio = float(values.pop("warmup_ratio"))
        if not 0 <= ratio < 1:
            raise RecipeError(f"{where}: training.warmup_ratio: must be in [0, 1), got {ratio}")
        values["warmup_steps"] = ratio
    if "activation_checkpointing" in fields:  # 5.x renamed gradient_checkpointing*; recipes keep the old names
        for old in ("gradient_checkpointing", "gradient_checkpointing_kwargs"):
            if old in values:
                values[old.replace("gradient", "activation")] = values.pop(old)
    for key, value in list(values.items()):
        if key in _RESERVED:
            raise RecipeError(f"{where}: training.{key}: {_RESERVED[key]}")
        if key not in fields:
            raise RecipeError(f"{where}: training.{key}: not an option of transformers.TrainingArguments")
        expected = fields[key].type
        expected = expected if isinstance(expected, str) else getattr(expected, "__name__", str(expected))
        if expected in ("float", "int") and isinstance(value, str):
            try:
                value = values[key] = float(value) if expected == "float" else int(value)
            except ValueError:
                pass
        plain = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(expected)
        if plain is not None and value is not None:
            if not isinstance(value, plain) or (expected != "bool" and isinstance(value, bool)):
                raise RecipeError(f"{where}: training.{key}: expected {expected}, got {value!r}")
