"""The `stave` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .config import GATES, POSITION_SCHEMES, TemporalConfig
from .errors import StaveError, error_message
from .modeling import add_temporal_attention, temporal_parameters
from .models import find_vision_tower
from .presets import CLASSIFIER_PRESETS, TINY_PRESETS, VISION_PRESETS, build_vision_tower, preset_available


def linear_macs_per_token(module: nn.Module) -> int:
    """Multiply-adds per token of the nn.Linear layers under `module` (their weight sizes)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def sta_cost(preset: str, config: TemporalConfig) -> dict[str, float | int | str]:
    """Parameter and multiply-add figures of STA on a published tower, built on the meta device."""
    tower = build_vision_tower(preset)
    family, _ = find_vision_tower(tower)
    blocks = family.blocks(tower)
    tower_params = sum(p.numel() for p in tower.parameters())
    block_macs = linear_macs_per_token(blocks[0])
    add_temporal_attention(tower, config)
    with_sta = [i for i, b in enumerate(blocks) if hasattr(b, "temp_attn")]
    first = blocks[with_sta[0]]
    return {
        "preset": preset,
        "blocks": len(blocks),
        "sta_blocks": len(with_sta),
        "heads": f"{first.temp_attn.num_heads}x{first.temp_attn.head_dim}",
        "tower_params": tower_params,
        "sta_per_block": sum(p.numel() for p in (*first.temp_attn.parameters(), *first.norm3.parameters())),
        "sta_total": sum(p.numel() for _, p in temporal_parameters(tower)),
        "param_ratio": sum(p.numel() for _, p in temporal_parameters(tower)) / tower_params,
        "mac_share": linear_macs_per_token(first.temp_attn) / block_macs,
    }


def cmd_info(args: argparse.Namespace) -> int:
    config = TemporalConfig(head_scale=args.head_scale, layers=args.layers, gate=args.gate)
    presets = [args.preset] if args.preset else [*VISION_PRESETS, *CLASSIFIER_PRESETS]
    if args.preset and preset_available(args.preset):
        raise ValueError(f"{args.preset}: {preset_available(args.preset)}")
    header = (
        f"{'preset':<20}{'blocks':>8}{'STA blocks':>12}{'t-heads':>9}{'tower params':>16}"
        f"{'STA/block':>13}{'STA total':>14}{'STA/tower':>11}{'+MACs/block':>13}"
    )
    print(f"Stacked temporal attention, {config}")
    print(header)
    print("-" * len(header))
    unavailable = {preset: preset_available(preset) for preset in presets if not args.preset}
    for preset in presets:
        if unavailable.get(preset):
            continue
        c = sta_cost(preset, config)
        print(
            f"{c['preset']:<20}{c['blocks']:>8}{c['sta_blocks']:>12}{c['heads']:>9}{c['tower_params']:>16,}"
            f"{c['sta_per_block']:>13,}{c['sta_total']:>14,}{c['param_ratio']:>10.2%}{c['mac_share']:>13.2%}"
        )
    print("(+MACs/block: added linear multiply-adds per token in a block with STA, relative to the block)")
    for preset, reason in unavailable.items():
        if reason:
            print(f"({preset} left out: {reason})")
    return 0


def cmd_convert_internvideo2(args: argparse.Namespace) -> int:
    """The authors' InternVideo2 classifier weights (.pth) -> a stave directory (config.json + model.safetensors)."""
    from .classifiers import InternVideo2Config, convert_checkpoint

    family, values = CLASSIFIER_PRESETS[args.preset]
    overrides = {k: v for k, v in (("num_frames", args.num_frames), ("image_size", args.image_size)) if v is not None}
    config = InternVideo2Config(**{**values, **overrides})
    out = convert_checkpoint(args.checkpoint, args.output, config, num_labels=args.num_labels)
    print(f"wrote {out} ({args.preset}, {args.checkpoint} -> config.json + model.safetensors)")
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    """A tiny random model end to end: identity at zero init, then a temporal effect with random STA."""
    from .presets import tiny_model
    from .testing import model_inputs

    torch.manual_seed(args.seed)
    model = tiny_model(args.preset, seed=args.seed)
    family, _ = find_vision_tower(model)
    videos, images = family.media.example_grids(model.config.vision_config)
    inputs = model_inputs(model, videos=videos, images=images, seed=args.seed)
    print(f"model: {args.preset} ({sum(p.numel() for p in model.parameters()):,} parameters, random weights)")
    print(f"batch: videos with grids {videos}, images with grids {images}, {inputs['input_ids'].shape[1]} tokens")
    with torch.no_grad():
        base = model(**inputs).logits
        add_temporal_attention(model, TemporalConfig(head_scale=args.head_scale))
        start = time.perf_counter()
        zero = model(**inputs).logits
        seconds = time.perf_counter() - start
        added = temporal_parameters(model)
        print(f"added {len(added)} temporal tensors, {sum(p.numel() for _, p in added):,} parameters")
        identity = (zero - base).abs().max().item()
        print(
            f"zero-initialised STA: logits {tuple(zero.shape)} in {seconds * 1000:.1f} ms, "
            f"max |diff| to base = {identity:.3g}"
        )
        for _, param in added:
            nn.init.normal_(param, std=0.2)
        moved = model(**inputs).logits
        print(f"random STA weights:   max |diff| to base = {(moved - base).abs().max().item():.3g}")
    if identity > 1e-6:
        print("FAILED: zero-initialised STA changed the output", file=sys.stderr)
        return 1
    print("ok")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import load_recipe, train

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_recipe:
        import yaml

        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        return 0
    print(f"trained: {train(recipe)}")
    return 0


def _video_options(args: argparse.Namespace):
    """The VideoOptions the flags give (VideoOptions' defaults for those not given); None without any flag: the
    model family's own defaults then apply (VisionFamily.video_options)."""
    from .video import VideoOptions

    values = {k: getattr(args, k) for k in ("fps", "min_pixels", "max_pixels", "max_frames") if getattr(args, k)}
    if args.frames:
        values.update(nframes=args.frames, fps=None)
    return VideoOptions(**values) if values else None


def _model_video_options(model: str):
    """The video options of a model folder's family (VisionFamily.video_options), from its config.json, before
    the model loads."""
    from .base import resolve_model
    from .models import family_for_model_type

    config = resolve_model(model) / "config.json"
    try:
        model_type = json.loads(config.read_text())["model_type"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{config}: cannot read the model's model_type ({error_message(error)})") from None
    return family_for_model_type(model_type).video_options


def _add_video_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "video sampling (qwen-vl-utils rules, VideoOptions' defaults for the rest; with none of these flags, the "
        "model family's defaults: VisionFamily.video_options)"
    )
    how = group.add_mutually_exclusive_group()
    how.add_argument("--frames", type=int, help="sample exactly this many frames (even)")
    how.add_argument("--fps", type=float, help="sample at this rate")
    group.add_argument("--max-frames", type=int)
    group.add_argument("--min-pixels", type=int, help="per frame")
    group.add_argument("--max-pixels", type=int, help="per frame")


def _benchmark_option(text: str) -> tuple[str, object]:
    """KEY=VALUE of --benchmark-option; VALUE read as JSON where it is JSON (0.2, 5, true), else a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_position_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM positions, for a model folder that records none (stave.positions)")
    group.add_argument(
        "--position-scheme", choices=list(POSITION_SCHEMES), help="e.g. videorope for a public VideoRoPE checkpoint"
    )
    group.add_argument("--temporal-spacing", type=float, help="VideoRoPE's delta (default 2.0, the release's)")


def _position_scheme(args: argparse.Namespace):
    from .config import PositionScheme, PositionSchemeError

    if args.position_scheme is None:
        if args.temporal_spacing is not None:
            raise PositionSchemeError("--temporal-spacing needs --position-scheme videorope")
        return None
    return PositionScheme.of(args.position_scheme, args.temporal_spacing)


def cmd_eval(args: argparse.Namespace) -> int:
    from .distributed import owned_process_group, process_state
    from .evaluation import EvalSettings, evaluate, load_answerer, load_benchmark
    from .evaluation.benchmarks import load_examples
    from .evaluation.items import LoadReport
    from .evaluation.run import prepare
    from .video import VideoOptions

    if args.task == "classification" and (args.shots or args.prompt_classes or args.scoring != "generate"):
        raise ValueError("--task classification: a classifier is scored by its logits; --shots, --prompt-classes "
                         "and --scoring apply to Video-LLMs")  # fmt: skip
    report = LoadReport()
    benchmark_options = dict(args.benchmark_option)
    loading = {"on_missing": args.on_missing, "seed": args.seed, **benchmark_options}
    items = load_benchmark(args.benchmark, args.data, report=report, **loading)
    examples, examples_report = None, LoadReport()
    if args.shots:
        examples = load_examples(args.benchmark, args.data, report=examples_report, **loading)
    given = _video_options(args)  # None: the model's own defaults, read after the settings are checked
    scheme = _position_scheme(args)
    settings = EvalSettings(
        benchmark=args.benchmark,
        data=str(args.data),
        model=str(args.model),
        scoring="classify" if args.task == "classification" else args.scoring,
        template=args.template,
        video=given or VideoOptions(),
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        limit=args.limit,
        benchmark_options=benchmark_options,
        prompt_classes=args.prompt_classes,
        shots=args.shots,
        shots_seed=args.shots_seed,
    )
    # a setting that does not apply to these items stops here, before the model (or its config.json) is read
    prepare(items[: args.limit] if args.limit else items, settings, examples)
    if given is None and args.task != "classification":  # a classifier reads clips by its own (recorded) input
        settings.video = _model_video_options(args.model)
    options = settings.video
    output = args.output or f"runs/eval/{args.benchmark}-{Path(args.model).name}"
    with owned_process_group():
        process_state()  # under a launcher: one run of all its processes, or a LaunchError before the model loads
        if args.task == "classification":
            answerer = _classifier_answerer(args, settings)
        else:
            answerer = load_answerer(
                args.model,
                video_options=options,
                template=args.template,
                max_new_tokens=args.max_new_tokens,
                position_scheme=scheme,
            )
            settings.record_model(answerer.model)
        results = evaluate(
            answerer,
            items,
            settings,
            output,
            batch_size=args.batch_size,
            load_report=report,
            examples=examples,
            examples_report=examples_report,
        )
    if results:
        print((Path(output) / "results.md").read_text())
        print(f"predictions and results in {output}")
    return 0


def _classifier_answerer(args: argparse.Namespace, settings):
    """A video classifier's answerer (stave.classification) with the input it records, `--frames` and the views
    asked; fills the settings that record them."""
    from .base import resolve_model
    from .classification import ClassifierAnswerer, Views, load_classifier
    from .classification.model import clip_input, model_labels

    model = load_classifier(resolve_model(args.model))
    clip = clip_input(model, frames=args.frames)
    views = Views(clips=args.clips, crops=args.crops)
    settings.clip_input, settings.views, settings.labels = clip.to_dict(), views.to_dict(), model_labels(model)
    return ClassifierAnswerer(model, clip, views)


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluation.compare import comparison_chart, comparison_table

    print(comparison_table(args.runs))
    chart = args.chart or str(Path(args.runs[-1]) / "comparison.png")
    print(f"bar chart: {comparison_chart(args.runs, chart)}")
    return 0


NO_TEXT = "(the model produced no text)"


def cmd_ask(args: argparse.Namespace) -> int:
    from .evaluation import ask

    options = _video_options(args)
    answer = ask(
        args.model,
        args.video,
        args.question,
        video_options=options,
        max_new_tokens=args.max_new_tokens,
        position_scheme=_position_scheme(args),
    )
    print(answer or NO_TEXT)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from .base import resolve_model
    from .checkpoint import load_model
    from .explain import save_map, temporal_attention_map
    from .processing import VideoChatProcessor
    from .video import check_video

    options = _video_options(args)
    check_video(args.video, options)  # before the model loads
    path = resolve_model(args.model)
    model = load_model(path)
    processor = VideoChatProcessor.for_model(AutoTokenizer.from_pretrained(path), model, options)
    result = temporal_attention_map(model, processor, args.video, block=args.block)
    out = args.out or f"{Path(args.video).stem}-sta-block{result.block}.png"
    print(f"temporal attention map (grid t,h,w = {result.grid}): {save_map(result, out, title=Path(args.video).name)}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic data set (stave.synthetic) and say what is in it."""
    from .synthetic import generate

    options = {k: getattr(args, k) for k in ("n", "seed", "frames", "size", "fps", "hold", "images", "val_fraction")}
    if args.tasks is not None:
        options["tasks"] = args.tasks
    result = generate(args.out, overwrite=args.overwrite, progress=True, **options)
    videos = result.counts["videos"]
    print(f"wrote {videos['total']} videos ({videos['train']} train, {videos['validation']} validation) to {args.out}")
    for split in ("train", "validation"):
        print(f"  {split}: " + ", ".join(f"{task} {k}" for task, k in result.counts[split]["videos"].items()))
    print(f"  files: {', '.join(result.files)}")
    print(f"  {result.seconds:.1f} s")
    return 0


def cmd_check_base(args: argparse.Namespace) -> int:
    """Accuracy of a base model on fresh still clips and images; exit status 1 below the position bar."""
    from .base import base_report, check_base

    result = check_base(args.model, n=args.n, seed=args.seed, output=args.output)
    print(base_report(result))
    return 0 if result["passed"] else 1


def cmd_experiment(args: argparse.Namespace) -> int:
    """The file's arms over seeds and regimes; prints the table of accuracies and paired differences."""
    import yaml

    from .experiments.experiment import load_experiment, run_experiment, summary_table

    raw = yaml.safe_load(Path(args.file).read_text()) if Path(args.file).is_file() else None
    classifier = isinstance(raw, dict) and raw.get("task") == "classification"  # stave.experiments.classifier
    if classifier:
        from .experiments.classifier import classifier_table, load_classifier_experiment, run_classifier_experiment

        experiment = load_classifier_experiment(args.file, raw)
    else:
        experiment = load_experiment(args.file)
    if args.out:
        experiment.out = args.out
    if args.steps:
        experiment.steps = args.steps
    regimes = [r.strip() for r in args.regimes.split(",")] if args.regimes else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    if classifier:
        print(classifier_table(run_classifier_experiment(experiment, regimes=regimes, seeds=seeds)))
    else:
        print(summary_table(run_experiment(experiment, regimes=regimes, seeds=seeds)))
    print(f"results in {experiment.out}/results.md and results.json")
    return 0


def cmd_make_qa(args: argparse.Namespace) -> int:
    """QA conversations from video captions (stave.caption_qa); exit status 1 while videos are still pending."""
    import os

    from .caption_qa import EndpointGenerator, LocalGenerator, QAPrompt, QARules, Sampling, make_qa

    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    prompt = QAPrompt.from_file(args.prompt, pairs=args.pairs) if args.prompt else QAPrompt(pairs=args.pairs)
    rules = QARules(min_pairs=args.min_pairs, max_pairs=args.max_pairs or args.pairs)
    if args.endpoint:
        if not args.model:
            raise ValueError("--model: the served model's name is needed with --endpoint")
        api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
        generator = EndpointGenerator(
            args.endpoint, args.model, sampling=sampling, api_key=api_key, concurrency=args.concurrency,
            timeout=args.timeout, retries=args.retries,
        )  # fmt: skip
    else:
        generator = LocalGenerator.from_pretrained(
            args.local_model, sampling=sampling, batch_size=args.batch_size, dtype=args.dtype, device=args.device
        )
    summary = make_qa(
        args.captions, args.out, generator, prompt=prompt, rules=rules, seed=args.seed,
        video_pattern=args.video_pattern, limit=args.limit,
    )  # fmt: skip
    run = summary["run"]
    print(
        f"{summary['records']} conversations ({summary['pairs']} pairs) for {summary['videos_handled']} videos "
        f"handled of {run['videos_in_input']} in {args.out}/conversations.jsonl"
    )
    rejected = ", ".join(f"{reason} {n}" for reason, n in summary["rejected"].items()) or "none"
    print(f"  rejected (rejects.jsonl): {rejected}; videos without a record: {summary['videos_without_record']}")
    if summary["cut_at_max_new_tokens"]:
        print(f"  generations cut at --max-new-tokens: {summary['cut_at_max_new_tokens']}")
    if run["pending"]:
        print(f"  {run['pending']} videos pending ({summary['videos_failed']} failed at every attempt): rerun to go on")
        return 1
    return 0


def _demo_defaults():
    from .experiments.demo import DemoSettings

    return DemoSettings()


def cmd_demo(args: argparse.Namespace) -> int:
    """The LoRA vs STA + LoRA comparison on synthetic clips, from the shipped tiny base."""
    from .experiments import DemoSettings, print_report, run_demo

    settings = DemoSettings(out=args.out, n=args.n, seed=args.seed, steps=args.steps, hold=args.hold)
    settings.overrides = list(args.overrides)
    print_report(run_demo(settings))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """The web page (stave.app): serves until interrupted."""
    from .app import require_gradio

    require_gradio()  # before anything loads: a one-line error naming the extra
    from .app.page import serve

    serve(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, samples=args.samples)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stave", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="STA parameter and compute cost on published vision towers (no weights needed)")
    info.add_argument(
        "--preset", choices=sorted([*VISION_PRESETS, *CLASSIFIER_PRESETS]), help="one preset (default: all)"
    )
    info.add_argument("--head-scale", type=float, default=TemporalConfig.head_scale)
    info.add_argument("--layers", type=int, nargs="+", default=None, help="block indices (default: all)")
    info.add_argument("--gate", choices=GATES, default="none", help="layerscale: count STA's gate vector too")
    info.set_defaults(func=cmd_info)

    convert = sub.add_parser(
        "convert-internvideo2",
        help="convert the authors' InternVideo2 classifier weights (.pth, read with weights_only) to safetensors",
    )
    convert.add_argument("checkpoint", type=Path, help="the .pth file (e.g. 1B_ft_ssv2_f8.pth)")
    convert.add_argument("output", type=Path, help="directory to write (config.json + model.safetensors)")
    convert.add_argument(
        "--preset", choices=sorted(k for k, v in CLASSIFIER_PRESETS.items() if v[0] == "internvideo2"), required=True
    )
    convert.add_argument("--num-labels", type=int, help="classes of the head (default: from head.weight)")
    convert.add_argument("--num-frames", type=int, help="frames the checkpoint's pos_embed is for (default: preset's)")
    convert.add_argument("--image-size", type=int, help="frame size the pos_embed is for (default: preset's)")
    convert.set_defaults(func=cmd_convert_internvideo2)

    forward = sub.add_parser("forward", help="run a tiny random model with STA end to end and check identity")
    forward.add_argument("--preset", choices=sorted(TINY_PRESETS), default="tiny-qwen2-vl")
    forward.add_argument("--head-scale", type=float, default=TemporalConfig.head_scale)
    forward.add_argument("--seed", type=int, default=0)
    forward.set_defaults(func=cmd_forward)

    train = sub.add_parser(
        "train",
        help="run a training recipe (configs/*.yaml); works under torchrun and accelerate launch",
        description="Run the stages of a training recipe. Any recipe value can be overridden: "
        "stave train configs/staveq2-2b.yaml training.learning_rate=2e-5 data.video.fps=1 resume=latest",
    )
    train.add_argument("recipe", help="recipe YAML file")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="recipe values to override")
    train.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    train.set_defaults(func=cmd_train)

    from .evaluation.prompts import DEFAULT_TEMPLATE, TEMPLATES

    evaluate = sub.add_parser("eval", help="evaluate a model on a benchmark in its published layout (resumable)")
    evaluate.add_argument("--model", required=True, help="model folder (save_pretrained + tokenizer)")
    evaluate.add_argument("--benchmark", required=True, help="benchmark name (see stave.evaluation.BENCHMARKS)")
    evaluate.add_argument("--data", required=True, type=Path, help="the benchmark's root folder")
    evaluate.add_argument("--output", help="run folder (default: runs/eval/BENCHMARK-MODEL); rerun to resume")
    evaluate.add_argument(
        "--task",
        choices=["chat", "classification"],
        default="chat",
        help="chat: a Video-LLM answers; classification: a video classifier's logits give top-1/top-5 accuracy, "
        "per-class accuracy and the confusion of opposing class pairs (stave.classification)",
    )
    evaluate.add_argument("--clips", type=int, default=1, help="classification: temporal views per video")
    evaluate.add_argument("--crops", type=int, default=1, help="classification: spatial views (1: centre, 3: ends)")
    evaluate.add_argument("--scoring", choices=["generate", "loglik"], default="generate")
    evaluate.add_argument("--template", choices=sorted(TEMPLATES), default=DEFAULT_TEMPLATE)
    evaluate.add_argument("--batch-size", type=int, default=4)
    evaluate.add_argument("--max-new-tokens", type=int, default=16)
    evaluate.add_argument("--limit", type=int, help="first N items only")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the benchmark's constructed questions")
    evaluate.add_argument(
        "--on-missing", choices=["skip", "raise"], default="skip", help="items whose video is missing"
    )
    evaluate.add_argument(
        "--benchmark-option",
        type=_benchmark_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument of the benchmark's loader, e.g. format=open or split=all for ssv2-t10 (repeatable)",
    )
    evaluate.add_argument(
        "--prompt-classes",
        action="store_true",
        help="list the class names in the question and score the answer by the class it names (ssv2; ssv2-t10 "
        "with --benchmark-option format=open)",
    )
    evaluate.add_argument(
        "--shots",
        type=int,
        default=0,
        metavar="K",
        help="K solved examples from the benchmark's training split, each with its video, before each question "
        "(ssv2, ssv2-mc, ssv2-t10, ssv2-vsm, synthetic)",
    )
    evaluate.add_argument("--shots-seed", type=int, default=0, help="seed of the draw of in-context examples")
    _add_video_flags(evaluate)
    _add_position_flags(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    compare = sub.add_parser("compare", help="side-by-side table of evaluation runs with deltas, and a bar chart")
    compare.add_argument("runs", nargs="+", help="run folders of `stave eval` (the first is the reference)")
    compare.add_argument("--chart", help="PNG path (default: LAST_RUN/comparison.png)")
    compare.set_defaults(func=cmd_compare)

    ask_ = sub.add_parser("ask", help="ask a model a question about a video")
    ask_.add_argument("--model", required=True)
    ask_.add_argument("--video", required=True)
    ask_.add_argument("question")
    ask_.add_argument("--max-new-tokens", type=int, default=64)
    _add_video_flags(ask_)
    _add_position_flags(ask_)
    ask_.set_defaults(func=cmd_ask)

    explain = sub.add_parser("explain", help="save a PNG of one STA layer's temporal attention on a video")
    explain.add_argument("--model", required=True)
    explain.add_argument("--video", required=True)
    explain.add_argument("--block", type=int, help="vision block (default: the last one with STA)")
    explain.add_argument("--out", help="PNG path (default: VIDEO-sta-blockN.png)")
    _add_video_flags(explain)
    explain.set_defaults(func=cmd_explain)

    demo = sub.add_parser(
        "demo",
        help="fine-tune the shipped tiny base with LoRA and with STA + LoRA on synthetic clips, and compare",
        description="Generate synthetic clips whose classes only temporal order tells apart, fine-tune the "
        "shipped tiny base with the baseline recipe (LoRA) and the STAVEQ2 recipe (STA + LoRA) on the same data "
        "stream and budget (stave train), evaluate both on held-out clips (stave eval), and print the comparison "
        "with 95%% confidence intervals (stave compare). Recipe values can be overridden for both arms, e.g. "
        "`stave demo lora.r=16`.",
    )
    demo.add_argument("overrides", nargs="*", help="key=value overrides of the fine-tune recipe, for both arms")
    defaults = _demo_defaults()
    demo.add_argument("--out", default=defaults.out)
    demo.add_argument("--n", type=int, default=defaults.n, help="synthetic videos")
    demo.add_argument("--steps", type=int, default=defaults.steps, help="training steps per arm")
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--hold", action="store_true", help="motion only between temporal patches")
    demo.set_defaults(func=cmd_demo)

    experiment = sub.add_parser(
        "experiment",
        help="the file's arms over several seeds and regimes, with paired differences and 95%% intervals",
        description="Run an experiment file (configs/experiments/synthetic-temporal.yaml): for each regime and "
        "seed, generate the data, train and evaluate each of the file's arms (default: baseline, staveq2); finished "
        "runs are reused. Prints the table.",
    )
    experiment.add_argument("file")
    experiment.add_argument("--regimes", help="comma-separated regimes to run (default: all)")
    experiment.add_argument("--seeds", help="comma-separated seeds to run (default: the file's)")
    experiment.add_argument("--steps", type=int, help="training steps per arm (default: the file's)")
    experiment.add_argument("--out", help="output folder (default: the file's)")
    experiment.set_defaults(func=cmd_experiment)

    check = sub.add_parser(
        "check-base",
        help="accuracy of a base model (default: the shipped tiny base) on fresh static questions",
        description="Generate fresh still clips and images (stave synth --tasks still --images), ask every "
        "shape/position/colour question, score by option likelihood; exit 1 if position on images is below 90%%.",
    )
    check.add_argument("--model", default="stave/tiny-base", help="model folder or shipped name")
    check.add_argument("--n", type=int, default=150, help="still clips (each also asked as an image)")
    check.add_argument("--seed", type=int, default=20261123)
    check.add_argument("--output", help="keep predictions and results here")
    check.set_defaults(func=cmd_check_base)

    synth = sub.add_parser(
        "synth",
        help="generate synthetic clips whose classes are time reverses, with SSv2/MVBench/conversation files",
        description="Write procedural videos (direction pairs that are exact time reverses, order and still "
        "questions) and their annotations to --out; deterministic by --seed (see stave.synthetic).",
    )
    synth.add_argument("--out", required=True, help="output folder (absent or empty; or see --overwrite)")
    synth.add_argument("--n", type=int, required=True, help="number of videos")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--hold", action="store_true", help="hold every pose for 2 frames (one temporal patch)")
    synth.add_argument(
        "--images", action="store_true", help="also write the still clips as PNG images, with their questions"
    )
    synth.add_argument("--frames", type=int, default=8, help="frames per video (even)")
    synth.add_argument("--size", type=int, default=84, help="frame side in pixels (a multiple of 28, >= 84)")
    synth.add_argument("--fps", type=float, default=4.0)
    synth.add_argument("--tasks", help="comma-separated subset of left_right,up_down,rotation,approach,order,still")
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of each task held out")
    synth.add_argument("--overwrite", action="store_true", help="replace a synthetic data set already in --out")
    synth.set_defaults(func=cmd_synth)

    make_qa = sub.add_parser(
        "make-qa",
        help="write multi-turn QA conversations from video captions with an LLM (WebVid-QA), resumably",
        description="Ask an LLM (a local transformers model, or an OpenAI-compatible endpoint: vLLM, TGI, "
        "llama.cpp) for question-answer pairs about each captioned video of CAPTIONS (WebVid's CSV, or a CSV / JSONL "
        "with video and caption), check them, and write training conversations to OUT/conversations.jsonl; "
        "rejects, counts and settings beside it. Rerun the same command to go on after a stop.",
    )
    make_qa.add_argument("captions", help="WebVid CSV (videoid, contentUrl, duration, page_dir, name) or CSV/JSONL")
    make_qa.add_argument("--out", required=True, help="output folder (rerun with the same settings to resume)")
    source = make_qa.add_mutually_exclusive_group(required=True)
    source.add_argument("--endpoint", help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    source.add_argument("--local-model", help="folder of a transformers causal LM with a chat template")
    make_qa.add_argument("--model", help="the served model's name (with --endpoint)")
    make_qa.add_argument("--pairs", type=int, default=4, help="question-answer pairs asked per video")
    make_qa.add_argument("--min-pairs", type=int, default=2, help="fewer valid pairs: the video gets no record")
    make_qa.add_argument("--max-pairs", type=int, help="most pairs kept per video (default: --pairs)")
    make_qa.add_argument("--prompt", help="prompt file (YAML: user with {caption} and {pairs}, system)")
    make_qa.add_argument("--video-pattern", help="video path from a row's fields (WebVid: {page_dir}/{videoid}.mp4)")
    make_qa.add_argument("--limit", type=int, help="first N rows only")
    make_qa.add_argument("--seed", type=int, default=0)
    make_qa.add_argument("--temperature", type=float, default=0.7, help="0: greedy")
    make_qa.add_argument("--top-p", type=float, default=0.9)
    make_qa.add_argument("--max-new-tokens", type=int, default=1024)
    make_qa.add_argument("--concurrency", type=int, default=8, help="requests in flight (endpoint)")
    make_qa.add_argument("--timeout", type=float, default=120.0, help="seconds without an answer (endpoint)")
    make_qa.add_argument("--retries", type=int, default=3, help="further attempts after a failed one (endpoint)")
    make_qa.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    make_qa.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (local model)")
    make_qa.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    make_qa.add_argument("--device", help="local model's device (default: cuda when available, else cpu)")
    make_qa.set_defaults(func=cmd_make_qa)

    app = sub.add_parser(
        "app",
        help="a web page to ask a model about a video, see its frames and STA attention, compare two models",
        description="Serve a Gradio page (pip install 'stave[app]'): upload a video or pick a generated sample "
        "clip, ask, and read the streamed answer next to the frames the model was given. Without --model: the "
        "shipped tiny base and, when they exist, the two models of the last `stave demo` run (runs/demo).",
    )
    app.add_argument("--model", action="extend", nargs="+", default=[], help="model folders (the first two selected)")
    app.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--max-upload-mb", type=float, default=200, help="largest video upload")
    app.add_argument("--samples", type=int, default=10, help="generated sample clips offered (0: none)")
    app.set_defaults(func=cmd_app)

    debug = "show the traceback of an error (without it, an error is reported in one line, exit status 2)"
    parser.add_argument("--debug", action="store_true", help=debug)
    for command in sub.choices.values():  # also after the command; SUPPRESS keeps a flag given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    return parser


# Reported in one line (exit status 2) instead of a traceback: stave's own errors, which name the file, record or
# field and the reason, and the built-in kinds of bad input (values checked by TemporalConfig, VideoOptions and
# argparse types; files that cannot be read or written). Anything else is a bug and keeps its traceback.
REPORTED_ERRORS = (StaveError, ValueError, TypeError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except REPORTED_ERRORS as error:
        if args.debug:
            raise
        print(f"stave {args.command}: error: {error_message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # python -m stave.cli (torchrun -m stave.cli train ...)
    sys.exit(main())
