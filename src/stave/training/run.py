"""Running a recipe: each stage is one Hugging Face Trainer run on the previous stage's output.

Layout of a run (recipe.output_dir):
    recipe.yaml                 the resolved recipe (every value, after overrides)
    <stage>/checkpoint-N/       Trainer checkpoints, sealed when complete (stave.training.checkpoints)
    <stage>/model/              the stage's result: save_pretrained (safetensors), LoRA merged, tokenizer,
                                stave-run.json (recipe, stage, counts, versions); written atomically
    <stage>/adapter/            the LoRA adapter alone (peft format), for LoRA stages
    <stage>/skipped.jsonl       samples that failed and were skipped (on_error=skip)
    <stage>/training_curves.png loss and learning rate per step (log_history.json: the Trainer's log, as data)
Runs the same under `python`, `torchrun` and `accelerate launch` (DDP, FSDP, DeepSpeed): the Trainer picks
the distributed set-up from the launcher; stave.distributed makes sure the launched processes form one run
(choosing gloo on the CPUs where there is no accelerator) before any model is built, and takes the process
group down at the end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from .. import __version__
from ..checkpoint import load_model
from ..distributed import check_joined, owned_process_group, shard_on_cpus, training_settings
from ..modeling import set_temporal_pooling
from ..models import find_vision_tower, shard_units
from ..positions import set_position_scheme
from ..processing import VideoChatProcessor
from ..tokenizer import save_tokenizer
from ..video import VideoCache
from . import checkpoints
from .data import (
    EMPTY_BATCH,
    SAMPLE_COUNTS,
    Collator,
    DataError,
    SkipBudget,
    TrainingSet,
    load_datasets,
    skipped_report,
    words_of,
)
from .recipe import Recipe, RecipeError, StageSpec, load_recipe
from .stages import HEAD_MODULES, head_names, merge_lora, part_seed, prepare_stage, trainable_counts

logger = logging.getLogger("stave.train")
RUN_FILE = "stave-run.json"


class StaveTrainer(Trainer):
    """The Trainer, plus: every trainable parameter takes part in every step and every rank runs the vision
    tower equally often — a batch without pixels, or with fewer kinds of them (images, videos) than another
    rank's, runs the tower on 2x2-patch blank images, weighted 0, and a batch whose samples all failed
    (on_error=skip) runs with zero loss — so DDP/FSDP/ZeRO ranks never wait for gradients or shards another
    rank does not produce (the blank input is the family's, stave.models.MediaFormat.minimal_tower_input);
    every batch's counts of drawn and skipped samples go to `skip_budget` (summed over ranks), which stops
    the run on every rank at the same step when too many were skipped; an optional sequential sampler
    (data.shuffle=false); and FSDP: sharded by the model family's blocks (stave.models.shard_units), on the
    CPUs too (stave.distributed.shard_on_cpus)."""

    def __init__(
        self, *args: Any, shuffle: bool = True, skip_budget: SkipBudget | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.shuffle = shuffle
        self.skip_budget = skip_budget
        if self.is_fsdp_enabled:
            self._shard_by_family_units()

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        # transformers 5.x hands the plugin its arguments; 4.57 sets the FSDP_* environment it reads itself
        if shard_on_cpus(self.accelerator.state, getattr(self.args, "fsdp_plugin_args", None)):
            self.is_fsdp_enabled = True

    def _shard_by_family_units(self) -> None:
        """FSDP shards the model by its family's vision blocks and LLM decoder layers (stave.models.shard_units),
        whatever class names a configuration lists."""
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        plugin = self.accelerator.state.fsdp_plugin
        units = shard_units(self.model)
        given = plugin.transformer_cls_names_to_wrap
        if given is not None and sorted(given) != units:
            logger.warning("FSDP: sharding by %s (the model's family), not by the configured %s", units, given)
        plugin.auto_wrap_policy = transformer_auto_wrap_policy
        plugin.transformer_cls_names_to_wrap = units
        logger.info("FSDP%s shards by %s", plugin.fsdp_version, ", ".join(units))

    def _get_train_sampler(self, *args: Any, **kwargs: Any):
        if self.shuffle:
            return super()._get_train_sampler(*args, **kwargs)
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def count_samples(self, model: nn.Module, inputs: dict[str, Any]) -> None:
        """Hand the batch's counts of drawn and skipped samples (SAMPLE_COUNTS, removed from `inputs`) to the skip
        budget, summed over the ranks."""
        counts = inputs.pop(SAMPLE_COUNTS, None)
        if counts is not None and self.skip_budget is not None and model.training:
            self.skip_budget.add(counts["seen"], counts["skipped"], counts["reasons"], reduce=self._sum_over_ranks)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any):
        self.count_samples(model, inputs)
        empty = inputs.pop(EMPTY_BATCH, None)
        if not model.training:
            return super().compute_loss(model, inputs, *args, **kwargs)
        # every rank runs the tower as often as the rank that runs it most (at least once), blank images making up
        # the difference: sharded ranks (FSDP, ZeRO-3) gather each vision block's shards the same number of times
        own = tower_passes(inputs)
        with vision_participation(model, passes=self._max_over_ranks(max(own, 1)) - own):
            if not empty:
                return super().compute_loss(model, inputs, *args, **kwargs)
            # every sample of this batch failed and was skipped: all labels ignored, the model's loss would be 0/0
            inputs.pop("labels", None)
            outputs = model(**inputs)
        loss = outputs.logits.float().sum() * 0.0
        return (loss, outputs) if kwargs.get("return_outputs") else loss

    def _sum_over_ranks(self, values: list[int]) -> list[int]:
        """Integers summed over every process of a distributed run (as they are in one process)."""
        return self._reduce_over_ranks(values, "SUM")

    def _max_over_ranks(self, value: int) -> int:
        """An integer's largest value over every process of a distributed run (itself in one process)."""
        return self._reduce_over_ranks([value], "MAX")[0]

    def _reduce_over_ranks(self, values: list[int], op: str) -> list[int]:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return values
        total = torch.tensor(values, dtype=torch.long, device=self.accelerator.device)
        torch.distributed.all_reduce(total, op=getattr(torch.distributed.ReduceOp, op))
        return total.tolist()


class ClassifierTrainer(StaveTrainer):
    """StaveTrainer for a video classifier (task: classification): the loss is the cross-entropy of the logits
    with the labels, with `label_smoothing` as torch's F.cross_entropy takes it; a batch whose samples all
    failed runs with zero loss. With `layer_decay`, the Trainer's optimizer gets one parameter group per
    (learning-rate scale, weight decay): learning_rate x stave.classification.model.layer_decay_scales, weight
    decay where the Trainer applies it (get_decay_parameter_names); the schedule scales every group alike."""

    def __init__(self, *args: Any, label_smoothing: float = 0.0, layer_decay: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.label_smoothing = label_smoothing
        self.layer_decay = layer_decay

    def get_optimizer_cls_and_kwargs(self, args: TrainingArguments, model: nn.Module | None = None) -> tuple[Any, Any]:
        """The Trainer's optimizer class and arguments; with layer_decay, its parameter groups as `params` (which
        the Trainer's create_optimizer uses in place of its own two groups)."""
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if self.layer_decay is None or model is None:
            return optimizer_cls, kwargs
        if "params" in kwargs or "model" in kwargs:
            raise RecipeError(f"classification.layer_decay: optim {args.optim!r} makes its own parameter groups")
        from ..classification.model import layer_decay_scales

        scales = layer_decay_scales(model, self.layer_decay)
        decayed = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                key = (scales[name], args.weight_decay if name in decayed else 0.0)
                groups.setdefault(key, []).append(parameter)
        kwargs["params"] = [
            {"params": params, "lr": args.learning_rate * scale, "weight_decay": weight_decay}
            for (scale, weight_decay), params in groups.items()
        ]
        return optimizer_cls, kwargs

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any):
        self.count_samples(model, inputs)
        empty = inputs.pop(EMPTY_BATCH, None)
        labels = inputs.pop("labels")
        outputs = model(pixel_values=inputs["pixel_values"])
        logits = outputs.logits.float()
        if empty:
            loss = logits.sum() * 0.0
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return (loss, outputs) if kwargs.get("return_outputs") else loss

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """The Trainer's own load, then — where the checkpoint's tensor names differ from the model's — every weight
        again through stave.classification.model.load_classifier: transformers 5.x's Trainer loads a checkpoint's
        safetensors into the model without the renaming from_pretrained does (VideoMAE saves its query/value biases
        as q_bias/v_bias), which would leave those weights as they were before the resume."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = model if model is not None else self.model
        weights = Path(resume_from_checkpoint) / "model.safetensors"
        if not weights.is_file():  # sharded or adapter checkpoints: the Trainer's load stands
            return
        from safetensors import safe_open

        from ..classification.model import load_classifier

        with safe_open(str(weights), framework="pt") as handle:
            if set(handle.keys()) == set(model.state_dict()):
                return
        stored = load_classifier(resume_from_checkpoint).state_dict()
        model.load_state_dict(stored, strict=True)


def tower_passes(inputs: dict[str, Any]) -> int:
    """How often a forward of the model on batch `inputs` runs the vision tower: once for the batch's images
    (pixel_values), once for its videos (pixel_values_videos)."""
    return sum(inputs.get(key) is not None for key in ("pixel_values", "pixel_values_videos"))


@contextmanager
def vision_participation(model: nn.Module, passes: int = 1) -> Iterator[None]:
    """Within, a forward of `model` runs the vision tower `passes` more times, each on one blank 2x2-patch
    image, right after the token embedding — before the forward's own passes for its images and videos — and
    adds their outputs times 0 to the token embeddings: every vision-tower parameter (STA and LoRA included)
    gets its (zero) gradient, the values stay the same, and a rank whose batch has fewer images or videos than
    another's runs the same collectives in the same order (FSDP gathers and reduces each shard unit in the
    order of the graph)."""
    if passes <= 0:
        yield
        return

    def run_tower(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        for _ in range(passes):
            output = output + _blank_image_zero(model).to(output.dtype)
        return output

    inner = model  # DDP and DeepSpeed wrap the model as .module; FSDP2 and peft models embed themselves
    while not hasattr(inner, "get_input_embeddings") and isinstance(getattr(inner, "module", None), nn.Module):
        inner = inner.module
    handle = inner.get_input_embeddings().register_forward_hook(run_tower)
    try:
        yield
    finally:
        handle.remove()


def _blank_image_zero(model: nn.Module) -> torch.Tensor:
    """The vision tower of `model` run on its family's smallest blank input (MediaFormat.minimal_tower_input;
    Qwen: one 2x2-patch image), all its outputs summed, times 0 (float32 scalar)."""
    family, tower = find_vision_tower(model)
    # every output the LLM would get (Qwen3-VL: the deepstack features too, so their mergers join the graph;
    # InternVL: through its projector, MediaFormat.blank_outputs)
    return sum(out.float().sum() for out in family.media.blank_outputs(model, tower)) * 0.0


class SealCheckpoints(TrainerCallback):
    """Seal each checkpoint after every rank has written its part."""

    def on_save(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                checkpoints.seal(folder, state.global_step)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        return control


def train(
    recipe: Recipe | str | Path,
    overrides: Sequence[str] = (),
    *,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Run every stage of a recipe; returns the folder of the last stage's model. Under a launcher, the
    processes form one run or a LaunchError stops them before any model is built."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    _set_verbosity()
    with owned_process_group():
        return _train(recipe, callbacks)


def _train(recipe: Recipe, callbacks: Sequence[TrainerCallback]) -> Path:
    output = Path(recipe.output_dir)
    first = recipe.stages[0]
    training_arguments(recipe, first, output / first.name)  # joins the launcher's processes, or stops
    if recipe.task == "classification":
        from ..classification.train import initial_classifier, load_class_data

        records, labels = load_class_data(recipe.data.datasets, recipe.data.seed)
        model, tokenizer = initial_classifier(recipe, labels), None
    else:
        records = load_datasets(recipe.data.datasets, recipe.data.seed, recipe.data.video)
        model, tokenizer = _initial_model(recipe, records)
    if recipe.model.temporal_pooling is not None:  # saved with each stage's model, so later stages keep it
        set_temporal_pooling(model, recipe.model.temporal_pooling)
    if recipe.model.scheme() is not None:  # likewise
        set_position_scheme(model, recipe.model.scheme())
    if _is_main():
        output.mkdir(parents=True, exist_ok=True)
        checkpoints.write_json_atomic(output / "recipe.json", recipe.to_dict())
    logger.info("stave %s, transformers %s: %d training samples", __version__, transformers.__version__, len(records))
    if recipe.task == "classification":
        from ..classification.model import INPUT_KEY

        logger.info("classifier input: %s", getattr(model.config, INPUT_KEY))
    else:
        logger.info("video options: %s", recipe.data.video)

    result = None
    for stage in recipe.stages:
        stage_dir = output / stage.name
        done = stage_dir / "model" / RUN_FILE
        if done.is_file():
            if recipe.resume is None:
                raise RecipeError(
                    f"{stage_dir / 'model'} exists: stage {stage.name!r} already finished; "
                    "resume=latest to continue the run, or choose a new output_dir"
                )
            logger.info("stage %s: finished earlier, using %s", stage.name, stage_dir / "model")
            model = None
            result = stage_dir / "model"
            continue
        if model is None:  # the previous stage finished in an earlier run
            model, tokenizer = _load(result, recipe)
        result = run_stage(recipe, stage, model, tokenizer, records, callbacks=callbacks)
        model = None
    return result


def run_stage(recipe, stage: StageSpec, model, tokenizer, records, *, callbacks=()) -> Path:
    """Train one stage of `recipe` from `model`; returns the folder of the stage's saved model.

    Seeds: the stage's new weights (STA, LoRA) follow from model.seed and the stage's index in the recipe
    (stage_seed); data order and dropout from the stage's training.seed (default model.seed), which the Trainer
    sets when it is built. Each stage after the first starts from the previous stage's saved model, so a stage
    run in a later process (resume) equals one run straight after the previous stage.
    """
    stage_dir = Path(recipe.output_dir) / stage.name
    head = head_names(model, recipe.task) if "head" in stage.trains else []
    model = prepare_stage(model, stage, recipe.temporal, recipe.lora, seed=stage_seed(recipe, stage), task=recipe.task)
    counts = trainable_counts(model, head or HEAD_MODULES)
    if counts["other"] and "full" not in stage.trains:
        raise RuntimeError(f"stage {stage.name}: {counts['other']} parameters outside STA/LoRA would train")
    logger.info("stage %s trains %s: %s", stage.name, "+".join(stage.trains), counts)

    if recipe.task == "classification":
        from ..classification.train import classification_trainer_parts

        trainer_class, dataset, collator, task_options = classification_trainer_parts(recipe, model, records, stage_dir)
    else:
        trainer_class, task_options = StaveTrainer, {}
        dataset, collator = _chat_data(recipe, model, tokenizer, records, stage_dir)
    args = training_arguments(recipe, stage, stage_dir)
    budget = SkipBudget(recipe.data.max_skipped_fraction, stage_dir)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[SealCheckpoints(), *callbacks],
        shuffle=recipe.data.shuffle,
        skip_budget=budget,
        **task_options,
    )
    state = trainer.accelerator.state
    logger.info(
        "stage %s: %s, %d process(es), model wrapped as %s",
        stage.name, state.distributed_type, state.num_processes, type(trainer.model_wrapped).__name__,
    )  # fmt: skip
    # under FSDP and DeepSpeed ZeRO-3 the trained model exists only as shards: rank 0 keeps its structure (meta
    # tensors) to take the gathered weights and save them whole
    sharded = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    whole = meta_copy(model) if sharded and trainer.is_world_process_zero() else model
    try:
        trainer.train(resume_from_checkpoint=_resume_point(recipe, stage_dir))
        budget.check(final=True)  # the same totals on every rank: all raise or none
    except DataError as error:
        raise DataError(f"stage {stage.name}: {error}") from error
    logger.info("stage %s: trained as %s", stage.name, wrapper_name(trainer))

    skipped, reasons = skipped_report(stage_dir)
    if skipped:
        logger.warning(
            "stage %s: %d sample(s) skipped (%s); listed in %s",
            stage.name,
            skipped,
            dict(reasons),
            stage_dir / "skipped.jsonl",
        )
    target = stage_dir / "model"
    if sharded:
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # every rank gathers; rank 0 holds it
        if trainer.is_world_process_zero():
            whole.load_state_dict(state_dict, assign=True)
    if trainer.is_world_process_zero():
        _save_stage(whole, trainer, recipe, stage, counts, skipped, tokenizer, stage_dir)
        checkpoints.write_json_atomic(stage_dir / "log_history.json", trainer.state.log_history)
        plot_history({stage.name: trainer.state.log_history}, stage_dir / "training_curves.png")
    trainer.accelerator.wait_for_everyone()
    logger.info("stage %s: model saved to %s", stage.name, target)
    return target


def _chat_data(recipe: Recipe, model, tokenizer, records, stage_dir: Path) -> tuple[TrainingSet, Collator]:
    """The training set and collator of a Video-LLM stage: conversations encoded by a VideoChatProcessor."""
    data = recipe.data
    cache = None
    if data.cache_bytes or data.cache_dir:  # epochs after the first read decoded videos back
        cache = VideoCache(data.cache_dir, max_bytes=data.cache_bytes)
    processor = VideoChatProcessor.for_model(
        tokenizer,
        model,
        data.video,
        image_min_pixels=data.image_min_pixels,
        image_max_pixels=data.image_max_pixels,
        cache=cache,
    )
    return TrainingSet(records, processor, on_error=data.on_error, log_dir=stage_dir), Collator(processor)


def wrapper_name(trainer: Trainer) -> str:
    """The class the model was trained in (DistributedDataParallel, FSDP..., DeepSpeedEngine), with DeepSpeed's
    ZeRO stage as it ran ("DeepSpeedEngine (ZeRO-3)")."""
    wrapped = trainer.model_wrapped
    name = type(wrapped).__name__
    stage = getattr(wrapped, "zero_optimization_stage", None)
    return f"{name} (ZeRO-{stage()})" if callable(stage) else name


def stage_seed(recipe: Recipe, stage: StageSpec) -> int:
    """The seed of the weights `stage` creates: model.seed with the stage's index in the recipe."""
    index = [s.name for s in recipe.stages].index(stage.name)
    return part_seed(recipe.model.seed, "stage", index)


def training_arguments(recipe: Recipe, stage: StageSpec, stage_dir: Path) -> TrainingArguments:
    """The stage's TrainingArguments, with the launcher's processes set up as one run (process group formed,
    checked against WORLD_SIZE: LaunchError otherwise)."""
    values = {
        "per_device_train_batch_size": 1,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 500,
        "report_to": "tensorboard" if _has("tensorboard") else "none",
        checkpointing_kwargs(): {"use_reentrant": False},
        "ddp_find_unused_parameters": False,
        "dataloader_num_workers": 0,
        **recipe.training_arguments(stage),
    }
    values["seed"] = values.get("seed", recipe.model.seed)
    args = TrainingArguments(output_dir=str(stage_dir), remove_unused_columns=False, **training_settings(values))
    _ = args.device  # sets up accelerate's state and the process group, if TrainingArguments has not yet
    check_joined(args.distributed_state, fix="training.use_cpu=true training.ddp_backend=gloo trains on the CPUs.")
    return args


def checkpointing_kwargs() -> str:
    """The TrainingArguments name of the activation-checkpointing options (renamed in transformers 5.x)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return (
        "activation_checkpointing_kwargs"
        if "activation_checkpointing_kwargs" in names
        else "gradient_checkpointing_kwargs"
    )


def _resume_point(recipe: Recipe, stage_dir: Path) -> str | None:
    if recipe.resume is None:
        return None
    if recipe.resume != "latest":
        path = Path(recipe.resume)
        if path.parent.resolve() == stage_dir.resolve():
            checkpoints.verify(path)
            return str(path)
        return None  # the checkpoint belongs to another stage
    found, passed = checkpoints.latest(stage_dir)
    for reason in passed:
        logger.warning("not resuming from %s", reason)
    if found is not None:
        logger.info("resuming %s from %s", stage_dir.name, found)
    return str(found) if found is not None else None


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` (modules, configuration, buffers) whose parameters are meta tensors (no memory), to
    take a state dict with load_state_dict(..., assign=True); tied parameters stay tied."""
    import copy

    memo = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def _save_stage(model, trainer, recipe, stage, counts, skipped, tokenizer, stage_dir: Path) -> None:
    if "lora" in stage.trains:
        checkpoints.save_atomic(stage_dir / "adapter", lambda tmp: model.save_pretrained(tmp))
        model = merge_lora(model)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        if tokenizer is not None:  # a video classifier has none
            save_tokenizer(tokenizer, tmp)
        checkpoints.write_json_atomic(
            tmp / RUN_FILE,
            {
                "stage": stage.name,
                "trains": list(stage.trains),
                "trainable": counts,
                "steps": trainer.state.global_step,
                "skipped_samples": skipped,
                "recipe": recipe.to_dict(),
                "versions": {
                    "stave": __version__,
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                },
            },
        )

    checkpoints.save_atomic(stage_dir / "model", write)


def _initial_model(recipe: Recipe, records) -> tuple[nn.Module, Any]:
    from ..presets import TINY_PRESETS, tiny_model, tiny_tokenizer

    path = recipe.model.path
    if path in TINY_PRESETS:
        tokenizer = tiny_tokenizer(path, words_of(records))
        model = tiny_model(path, seed=recipe.model.seed, tokenizer=tokenizer, attn_implementation="sdpa")
        return model.train(), tokenizer
    from ..base import SHIPPED, resolve_model

    if not resolve_model(path).is_dir():
        raise RecipeError(
            f"model.path: {path} is neither a model folder, a shipped model {sorted(SHIPPED)} "
            f"nor a tiny preset {sorted(TINY_PRESETS)}"
        )
    return _load(resolve_model(path), recipe)


def _load(path: Path, recipe: Recipe) -> tuple[nn.Module, Any]:
    """A model folder (with its tokenizer; a classifier has none) as a training starting point."""
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {}
    if recipe.model.dtype != "auto":
        kwargs["dtype"] = getattr(torch, recipe.model.dtype)
    if recipe.task == "classification":
        from ..classification.model import load_classifier

        return load_classifier(path, **kwargs).train(), None
    attn = recipe.model.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if _has("flash_attn") else "sdpa"
    return load_model(path, attn_implementation=attn, **kwargs).train(), AutoTokenizer.from_pretrained(path)


def plot_history(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Loss and learning rate against step, one line per run, from Trainer.state.log_history lists, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, lr_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    for label, history in histories.items():
        rows = [row for row in history if "loss" in row]
        loss_axis.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=label)
        rates = [r for r in rows if "learning_rate" in r]
        lr_axis.plot([r["step"] for r in rates], [r["learning_rate"] for r in rates], label=label)
    loss_axis.set(xlabel="step", ylabel="loss", title="training loss")
    lr_axis.set(xlabel="step", ylabel="learning rate", title="learning rate")
    loss_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _set_verbosity() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO)
