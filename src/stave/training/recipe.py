"""Training recipes: YAML files whose every field can be overridden with `key=value` on the command line.

A recipe is typed (the dataclasses below, checked by OmegaConf): an unknown key, a value of the wrong type,
an unknown stage, a missing data file or a TrainingArguments option this transformers does not know all
fail in `load_recipe`, before any model is built, naming the key or file.

Stages are configuration. A stage names what trains: `temporal` (the STA layers: temp_attn and norm3), `lora`
(peft adapters on the vision and LLM linears), `head` (the output layer, lm_head, in full: needed when the answer
words are new to the model, as on stave's tiny base), or `full` (every parameter: pretraining from scratch;
`[temporal, full]` adds STA first and trains everything with it, as a classifier's full fine-tune with STA).
Four stages are built in and can be listed by name:
    stage1:   trains [temporal]        the paper's first stage (zero-initialised STA, everything else frozen)
    stage2:   trains [temporal, lora]  the paper's second stage
    baseline: trains [lora]            the same LoRA fine-tune with no STA (the paper's comparison row)
    pretrain: trains [full]            everything (how stave's tiny base was made: configs/tiny-pretrain.yaml)
Each stage may override any `training` value (e.g. its own learning rate) and starts from the previous
stage's output model.

`task: classification` trains a video classifier (stave.classification) instead of a Video-LLM: SSv2 records
(format: ssv2) with their class index as the label, cross-entropy with optional label smoothing, the same stages
(`head` is then the classifier's head: its linear layers with num_labels outputs; `lora` adapts every other
linear outside STA), checkpoints, resume and skip policy.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import PoolingModeError, PositionScheme, PositionSchemeError, TemporalConfig, pooling_window
from ..errors import StaveError
from ..ssv2 import SUBSETS
from ..video import VideoOptions

TRAINABLE = ("temporal", "lora", "head", "full")
TASKS = ("chat", "classification")
BUILTIN_STAGES: dict[str, list[str]] = {
    "stage1": ["temporal"],
    "stage2": ["temporal", "lora"],
    "baseline": ["lora"],
    "pretrain": ["full"],
}
DATA_FORMATS = ("auto", "conversations", "ssv2")
# A stage's folder under output_dir: one plain name, never a path (no '/', '..'), never hidden (save_atomic's
# temporary folders start with '.')
STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class RecipeError(StaveError, ValueError):
    """A recipe that cannot run; the message names the file and the key (or data file) at fault."""


@dataclass
class ModelSection:
    """path: a Hugging Face model directory, or a tiny preset name (stave.presets.TINY_PRESETS) for a random
    tiny model with a word-level tokenizer over the training texts. dtype: float32 | bfloat16 | float16 |
    auto (the checkpoint's). attn_implementation: sdpa | eager | flash_attention_2 | auto (flash-attn when
    installed, else sdpa). temporal_pooling: mean (each video reaches the LLM as the mean of its visual
    tokens over time: T times fewer tokens, frame order invisible to the LLM), mean:K (K >= 2: the mean over each
    run of K consecutive temporal patches, ceil(T/K) steps, the order of the runs visible; see
    stave.modeling.set_temporal_pooling) or null (the model's own setting: a checkpoint that pools keeps
    pooling). position_scheme: videorope (VideoRoPE positions in the LLM, stave.positions.set_position_scheme;
    e.g. for a public VideoRoPE checkpoint, which does not record it), mrope (the stock M-RoPE) or null (the
    model's own setting); temporal_spacing: VideoRoPE's delta (default 2.0, the release's). seed: the model-side
    random choices — a tiny preset's weights, and the weights each stage adds
    (STA, LoRA: drawn from seeds derived from this seed and the stage's index, stave.training.run.stage_seed);
    also the default of training.seed (data order, dropout)."""

    path: str = MISSING
    dtype: str = "auto"
    attn_implementation: str = "auto"
    seed: int = 0
    temporal_pooling: str | None = None
    position_scheme: str | None = None
    temporal_spacing: float | None = None

    def scheme(self) -> PositionScheme | None:
        """The PositionScheme the recipe sets (None: the model's own); PositionSchemeError for bad values."""
        if self.position_scheme is None:
            if self.temporal_spacing is not None:
                raise PositionSchemeError("temporal_spacing is set but position_scheme is not (set it to videorope)")
            return None
        return PositionScheme.of(self.position_scheme, self.temporal_spacing)


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
    file's folder). format: conversations (any format stave.conversations reads: Qwen messages,
    LLaMA-Factory / ms-swift ShareGPT/OpenAI style and alpaca, qwen-vl-finetune / LLaVA), ssv2 (SSv2-style
    {"id", "label", "template"} records turned into QA), auto (detected per record). ratio: how many samples
    to draw per epoch relative to the file's size (0.5 = a seeded half, 2.0 = every sample twice).
    LLaMA-Factory: dataset_info (its dataset_info.json) and dataset (an entry's name) instead of path: the
    entry's file_name, formatting, columns and tags are read; root defaults to dataset_info's folder (its
    media_dir default).
    SSv2 only: video_pattern (file name from the record id), question, and the classes kept — a named subset
    (`subset: T10`, stave.ssv2.SUBSETS) or an explicit `classes` list (default: all); `split: train` keeps
    the training part of the seeded 80/20 split that the `ssv2-t10` benchmark tests on (same split_seed)."""

    path: str | None = None
    root: str | None = None
    format: str = "auto"
    dataset_info: str | None = None
    dataset: str | None = None
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
    # ssv2 under task: classification: labels.json (default: found beside path, or in its labels/ folder)
    labels: str | None = None


@dataclass
class DataSection:
    """on_error: skip (count, report at the end and in <stage>/skipped.jsonl) or raise (stop with the file
    and reason). max_skipped_fraction: under skip, the run stops with a DataError (counts and first reasons)
    once more than this share of the samples seen were skipped — checked after every step from
    stave.training.data.SKIP_CHECK_AFTER samples on (counted over all ranks), and at the end of each stage,
    where a stage whose every sample failed always fails. shuffle: shuffle samples each epoch (seeded by
    training.seed). cache_bytes / cache_dir: decode each video once for all epochs (stave.video.VideoCache)."""

    datasets: list[DatasetSpec] = field(default_factory=list)
    video: VideoOptions = field(default_factory=VideoOptions)
    image_min_pixels: int = 4 * 28 * 28
    image_max_pixels: int = 16384 * 28 * 28
    on_error: str = "skip"
    max_skipped_fraction: float = 0.5
    shuffle: bool = True
    cache_bytes: int = 0  # > 0: keep up to this many bytes of decoded videos in memory (per process)
    cache_dir: str | None = None  # keep decoded videos as safetensors files here (shared by workers)
    seed: int = 0


@dataclass
class ClassificationSection:
    """task: classification only. label_smoothing: of the cross-entropy (torch's `label_smoothing`). layer_decay:
    layer-wise learning-rate decay in (0, 1] (stave.classification.model.layer_decay_scales: block i of D at
    decay ** (D - i), the embeddings at decay ** (D + 1), the head and STA at 1); None: one learning rate. new_head:
    the starting model's head (its linear layers with num_labels outputs) is drawn afresh before the first stage
    (truncated normal, std 0.02, zero bias, seeded by model.seed) instead of kept. The input
    (stave.classification.clips.ClipInput): frames (T, one per segment; None: the model config's num_frames),
    size (the square crop; None: the model config's image_size), short_side (the shorter side before the centre
    crop; None: size), mean and std (of pixels in [0, 1]; ImageNet's, VideoMAE's and InternVideo2's). Decoding
    uses data.video's backend and timeout. The trained model's config.json records the input for evaluation."""

    label_smoothing: float = 0.0
    layer_decay: float | None = None
    new_head: bool = False
    frames: int | None = None
    size: int | None = None
    short_side: int | None = None
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class StageSpec:
    name: str = MISSING
    trains: list[str] = MISSING
    training: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """A whole training run. `training` holds transformers.TrainingArguments values shared by all stages."""

    output_dir: str = MISSING
    task: str = "chat"  # chat (a Video-LLM answers) | classification (a video classifier: stave.classification)
    model: ModelSection = field(default_factory=ModelSection)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataSection = field(default_factory=DataSection)
    classification: ClassificationSection = field(default_factory=ClassificationSection)
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
    if recipe.task not in TASKS:
        raise RecipeError(f"{name}: task: must be one of {list(TASKS)}, got {recipe.task!r}")
    if recipe.task == "classification":
        _check_classification(recipe, name)
    if not recipe.stages:
        raise RecipeError(f"{name}: stages: at least one stage is needed, e.g. [stage1, stage2]")
    seen = set()
    for i, stage in enumerate(recipe.stages):
        if not STAGE_NAME.fullmatch(stage.name):
            raise RecipeError(
                f"{name}: stages[{i}].name: {stage.name!r} is not a plain folder name (letters, digits, '_', '-' "
                "and '.', not starting with '.'): each stage writes to <output_dir>/<name>"
            )
        if stage.name in seen:
            raise RecipeError(f"{name}: stages[{i}].name: {stage.name!r} appears twice")
        seen.add(stage.name)
        bad = [t for t in stage.trains if t not in TRAINABLE]
        if bad or not stage.trains:
            raise RecipeError(f"{name}: stages[{i}].trains: must be a non-empty subset of {list(TRAINABLE)}, got {bad}")
        if "full" in stage.trains and set(stage.trains) - {"full", "temporal"}:
            raise RecipeError(
                f"{name}: stages[{i}].trains: 'full' trains every parameter; list it alone, or with 'temporal' to "
                "add STA first"
            )
        check_training_arguments(stage.training, f"{name}: stages[{i}] ({stage.name})")
    if not recipe.data.datasets:
        raise RecipeError(f"{name}: data.datasets: at least one dataset is needed")
    for i, spec in enumerate(recipe.data.datasets):
        where = f"{name}: data.datasets[{i}]"
        if spec.dataset_info is not None:
            if spec.path is not None:
                raise RecipeError(f"{where}: give path or dataset_info (with dataset), not both")
            if not Path(spec.dataset_info).is_file():
                raise RecipeError(f"{where}.dataset_info: file not found: {spec.dataset_info}")
            if not spec.dataset:
                raise RecipeError(f"{where}.dataset: the name of the dataset_info.json entry to read is needed")
            if spec.format == "ssv2":
                raise RecipeError(f"{where}.format: a dataset_info.json entry is read as conversations")
        elif spec.dataset is not None:
            raise RecipeError(f"{where}.dataset: names an entry of a dataset_info file; dataset_info is missing")
        elif spec.path is None:
            raise RecipeError(f"{where}.path: missing (or dataset_info and dataset)")
        elif not Path(spec.path).is_file():
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
    if not 0 <= recipe.data.max_skipped_fraction <= 1:
        raise RecipeError(
            f"{name}: data.max_skipped_fraction: must be in [0, 1], got {recipe.data.max_skipped_fraction}"
        )
    if recipe.model.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise RecipeError(f"{name}: model.dtype: must be auto, float32, bfloat16 or float16")
    if recipe.model.attn_implementation not in ("auto", "sdpa", "eager", "flash_attention_2"):
        raise RecipeError(f"{name}: model.attn_implementation: must be auto, sdpa, eager or flash_attention_2")
    try:
        pooling_window(recipe.model.temporal_pooling)
    except PoolingModeError as error:
        raise RecipeError(f"{name}: model.temporal_pooling: {error}; or null (the model's own setting)") from None
    try:
        recipe.model.scheme()
    except PositionSchemeError as error:
        raise RecipeError(f"{name}: model.position_scheme / model.temporal_spacing: {error}") from None


def _check_classification(recipe: Recipe, name: str) -> None:
    section = recipe.classification
    if not 0 <= section.label_smoothing < 1:
        raise RecipeError(f"{name}: classification.label_smoothing: must be in [0, 1), got {section.label_smoothing}")
    if section.layer_decay is not None and not 0 < section.layer_decay <= 1:
        raise RecipeError(f"{name}: classification.layer_decay: must be in (0, 1], got {section.layer_decay}")
    for i, spec in enumerate(recipe.data.datasets):
        if spec.format != "ssv2" or spec.dataset_info is not None:
            raise RecipeError(
                f"{name}: data.datasets[{i}].format: task classification reads SSv2 annotation files (format: ssv2), "
                f"got {spec.format!r}"
            )
        if spec.labels is not None and not Path(spec.labels).is_file():
            raise RecipeError(f"{name}: data.datasets[{i}].labels: file not found: {spec.labels}")
    if recipe.model.temporal_pooling is not None or recipe.model.position_scheme is not None:
        raise RecipeError(f"{name}: model.temporal_pooling / position_scheme: a video classifier has no LLM")


# TrainingArguments values stave sets itself (from the recipe's other sections) or that would break it.
_RESERVED = {
    "output_dir": "set by the recipe's output_dir (each stage writes to <output_dir>/<stage>)",
    "remove_unused_columns": "stave's collator builds the batch; it must stay False",
    "resume_from_checkpoint": "use the recipe's `resume` key",
}


def check_training_arguments(values: dict[str, Any], where: str) -> None:
    """Unknown or mistyped TrainingArguments values, named with the value and the type the option takes (read from
    TrainingArguments' own field types: unions, Optional, Literal, enums, list[...] and dict[...]); nothing is
    constructed here (building TrainingArguments sets up accelerate's process state and checks the hardware).
    Numbers written as strings (YAML reads `1e-4` as a string) are converted in place when the option takes a
    number and no string."""
    from transformers import TrainingArguments

    fields = {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}
    hints = _type_hints(TrainingArguments)
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
        expected = hints.get(key, fields[key].type)
        if isinstance(value, str) and not accepts(expected, value):
            for number in (int, float):
                try:
                    converted = number(value)
                except ValueError:
                    continue
                if accepts(expected, converted):
                    value = values[key] = converted
                    break
        if not accepts(expected, value):
            hint = ""
            if isinstance(value, bool):  # YAML 1.1 reads these words, unquoted, as booleans
                words = ("yes", "on", "true") if value else ("no", "off", "false")
                meant = [word for word in words if accepts(expected, word)]
                if meant:
                    spelled = f"{words[0]}, {words[1]} or {words[2]}"
                    hint = f' (YAML reads an unquoted {spelled} as a boolean: quote it, {key}: "{meant[0]}")'
            raise RecipeError(f"{where}: training.{key}: expected {type_name(expected)}, got {value!r}{hint}")


def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (string annotations evaluated where they can be)."""
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved here: the raw field types are used
        return {}


def accepts(expected: Any, value: Any) -> bool:
    """Whether `value` (as read from YAML: None, bool, int, float, str, list, dict) is of type `expected`.

    An enum, or an enum alongside `str` in a union (TrainingArguments' `SaveStrategy | str`), takes its members'
    values only; a float takes an int; bool is not taken as a number. A type form this does not know raises
    TypeError (a new form in a new transformers release is reported, never silently passed)."""
    import enum
    import types
    import typing

    if expected is Any:
        return True
    if expected is None or expected is type(None):
        return value is None
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and isinstance(value, str):  # `Strategy | str`: the string names a member
            return any(value in [m.value for m in e] for e in enums)
        return any(accepts(arg, value) for arg in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        return isinstance(value, list) and all(accepts(args[0] if args else Any, v) for v in value)
    if origin in (dict, collections.abc.Mapping):
        key_type, item_type = args if args else (Any, Any)
        return isinstance(value, dict) and all(accepts(key_type, k) and accepts(item_type, v) for k, v in value.items())
    if origin is None and isinstance(expected, type):
        if issubclass(expected, enum.Enum):
            return isinstance(value, expected) or any(value == m.value for m in expected)
        if expected is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if expected is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, expected)
    raise TypeError(f"cannot check a value against the type {expected!r}")


def type_name(expected: Any) -> str:
    """A type as a recipe writer reads it: `int`, `float | None`, "one of 'no', 'steps', 'epoch', 'best'"."""
    import enum
    import types
    import typing

    if expected is None or expected is type(None):
        return "None"
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        shown = [a for a in args if not (enums and a is str)]
        return " | ".join(type_name(a) for a in shown)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in expected)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return getattr(expected, "__name__", str(expected))
