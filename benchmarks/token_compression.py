"""What temporal token compression buys when answering a question about a video: time to first token, time to
answer, peak memory and LLM tokens of a Qwen2-VL-2B-shaped model (published widths and depths of the vision tower
and the LLM, random weights, nothing downloaded), side by side in one run.

Configurations (every combination of --pooling and STA; ratios are to "stock", measured in the same run):
    stock          no pooling, no STA: every temporal patch's merged tokens reach the LLM
    mean:2         each run of 2 consecutive temporal patches averaged (stave.set_temporal_pooling)
    mean           all temporal patches of the video averaged into one
    sta, sta+...   the same with stave.add_temporal_attention(model) (default TemporalConfig) in the tower
The STA model shares every weight of the stock model (STA's own layers added); pooling is switched on the
same model between calls, so all configurations run the same weights on the same pixels.

One question = the chat prompt (system, a video of --frames frames at --size x --size, a question) and greedy
generation of exactly 8 tokens (min_new_tokens = max_new_tokens = 8, so every configuration generates the same
count). Measured per call: time to first token (generate called -> first new token on the host: vision tower,
LLM prefill, first token; the prompt is already tokenised and its pixels packed, as when they come from a data
loader) and time to answer (the whole generate call: prefill + 7 more decoding steps). Medians of --repeats
interleaved rounds after a warm-up round per frame count; round r runs the configurations in an order rotated
by r, so drift of the machine's speed hits all alike.

Peak memory: on CUDA, torch.cuda.max_memory_allocated during one generate call minus what was allocated before
it (models and inputs), in this process after the timed rounds; on a CPU, the rise of the process's peak RSS
(VmHWM, its mark reset through /proc/self/clear_refs) during one generate call in a fresh process per
configuration and frame count, over the RSS with model and inputs loaded (what the allocator takes from the
system, first-call allocations included).

--layers N builds the tower and the LLM N blocks/layers deep (same widths) for a CPU run; times are then also
extrapolated to the full depth from the measured time of the N blocks and N layers in each call (printed with
the table), memory is not.

    python benchmarks/token_compression.py --device cuda --dtype bfloat16             # full 2B shape, 16/32/64 frames
    python benchmarks/token_compression.py --layers 2 --size 112 --frames 16,32,64    # CPU: 2 blocks, 2 layers
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from sta_overhead import cpu_name, status_kib, synchronize
from transformers.generation import BaseStreamer

import stave
from stave.presets import SHAPED_PRESETS, shaped_model, tiny_model
from stave.processing import VideoChatProcessor
from stave.tokenizer import build_word_tokenizer
from stave.video import VideoOptions

NEW_TOKENS = 8
QUESTION = "which way does the square move ?"
WORDS = QUESTION.split() + ["left", "right"]


@dataclass(frozen=True)
class Config:
    """One configuration: temporal pooling mode (None: none) and whether the tower has STA."""

    pooling: str | None
    sta: bool

    @property
    def name(self) -> str:
        pooling = self.pooling or ("" if self.sta else "stock")
        return "+".join(part for part in ("sta" if self.sta else "", pooling) if part)

    @classmethod
    def parse(cls, name: str) -> Config:
        sta = name == "sta" or name.startswith("sta+")
        pooling = name[4:] if name.startswith("sta+") else (None if name in ("sta", "stock") else name)
        return cls(pooling, sta)


STOCK = Config(None, False)


def comma_list(kind):
    def parse(text: str) -> list:
        values = [kind(part) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"an empty list: {text!r}")
        return values

    return parse


def pooling_mode(text: str) -> str | None:
    text = text.strip()
    return None if text == "none" else text


def build_model(args, tokenizer) -> torch.nn.Module:
    """The stock model: the preset's shape (args.layers deep) with random weights, on args.device in args.dtype."""
    dtype = getattr(torch, args.dtype)
    if args.preset in SHAPED_PRESETS:  # built where it runs: a 2B model is not initialised on the CPU first
        return shaped_model(
            args.preset, tokenizer=tokenizer, dtype=dtype, device=args.device, layers=args.layers,
            attn_implementation="sdpa",
        )  # fmt: skip
    return tiny_model(args.preset, tokenizer=tokenizer, attn_implementation="sdpa").to(args.device, dtype)


def with_sta(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` sharing every parameter with it, with STA (default TemporalConfig) added to its tower."""
    shared = {id(p): p for p in model.parameters()}
    return stave.add_temporal_attention(copy.deepcopy(model, shared))


def encode(args, tokenizer, model, frames: int) -> dict[str, torch.Tensor]:
    """The prompt of one question about a random video of `frames` frames at args.size, for `model` as it pools
    now (VideoChatProcessor.for_model reads its pooling), on args.device."""
    options = VideoOptions(nframes=frames, min_pixels=args.size**2, max_pixels=args.size**2)
    processor = VideoChatProcessor.for_model(tokenizer, model, options)
    video = np.random.default_rng(0).integers(0, 256, (frames, args.size, args.size, 3), dtype=np.uint8)
    content = [{"type": "video", "video": video}, {"type": "text", "text": QUESTION}]
    sample = {"messages": [{"role": "user", "content": content}]}
    batch = processor.collate([processor.encode(sample, train=False)], padding_side="left")
    dtype = getattr(torch, args.dtype)
    inputs = {k: v.to(args.device, dtype if v.is_floating_point() else None) for k, v in batch.items()}
    inputs["video_tokens"] = int((batch["input_ids"] == processor.video_token_id).sum())
    return inputs


class FirstTokenClock(BaseStreamer):
    """perf_counter() when generate hands the streamer its first new token (the first put is the prompt). generate
    moves each token to the host before put (tokens.cpu()), so on CUDA the token has been computed by then."""

    def __init__(self) -> None:
        self.puts = 0
        self.first: float | None = None

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


class Spans:
    """Seconds from the first module's input to the last module's output of a stack of blocks, one span per
    forward call of the stack (for a shortened model: what each of its blocks costs)."""

    def __init__(self, blocks, device: str) -> None:
        self.device, self.seconds, self._start = device, [], 0.0
        self.handles = [blocks[0].register_forward_pre_hook(self.start), blocks[-1].register_forward_hook(self.stop)]

    def start(self, *_) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def stop(self, *_) -> None:
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - self._start)


def full_depth(preset: str) -> tuple[int, int] | None:
    """(vision blocks, LLM layers) of a shaped preset's published model; None for a tiny preset."""
    if preset not in SHAPED_PRESETS:
        return None
    _, vision, text = SHAPED_PRESETS[preset]
    return vision["depth"], text["num_hidden_layers"]


def answer_once(model, inputs, tokenizer, args, spans: dict[str, Spans] | None) -> dict[str, float]:
    """Time to first token and to answer of one generate call, in seconds; with `spans`, also the time of the
    vision blocks ("vision", in the prefill), of the LLM layers in the prefill ("prefill") and in the decoding
    steps after it ("decode")."""
    for span in (spans or {}).values():
        span.seconds.clear()
    clock = FirstTokenClock()
    model_inputs = {k: v for k, v in inputs.items() if k != "video_tokens"}
    synchronize(args.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **model_inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, streamer=clock,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    synchronize(args.device)
    end = time.perf_counter()
    generated = out.shape[1] - inputs["input_ids"].shape[1]
    if generated != NEW_TOKENS or clock.first is None:
        raise RuntimeError(f"generate produced {generated} new tokens, not {NEW_TOKENS}")
    sample = {"ttft": clock.first - start, "answer": end - start}
    if spans:
        vision, llm = spans["vision"].seconds, spans["llm"].seconds
        if len(vision) != 1 or len(llm) != NEW_TOKENS:
            raise RuntimeError(f"expected 1 tower and {NEW_TOKENS} LLM calls, saw {len(vision)} and {len(llm)}")
        sample.update(vision=vision[0], prefill=llm[0], decode=sum(llm[1:]))
    return sample


def extrapolate(sample: dict[str, float], layers: int, depth: tuple[int, int]) -> dict[str, float]:
    """One call's times at the full depth: the measured time plus (blocks / layers - 1) x the measured time of the
    vision blocks, plus (LLM layers / layers - 1) x that of the LLM layers (prefill only for the first token)."""
    more_vision, more_llm = depth[0] / layers - 1, depth[1] / layers - 1
    ttft = sample["ttft"] + more_vision * sample["vision"] + more_llm * sample["prefill"]
    return {"ttft": ttft, "answer": sample["answer"] + ttft - sample["ttft"] + more_llm * sample["decode"]}


def peak_during_call(model, inputs, tokenizer, args) -> dict[str, float]:
    """Peak memory of one generate call (bytes): its rise over what was in use before it, and the peak itself.
    CUDA: max_memory_allocated; CPU: the process's peak RSS (VmHWM), its mark first reset to the current RSS."""
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        answer_once(model, inputs, tokenizer, args, None)
        peak = torch.cuda.max_memory_allocated()
        return {"rise_bytes": peak - base, "peak_bytes": peak}
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak-RSS mark (VmHWM) to the current RSS
    base = status_kib("VmHWM")
    answer_once(model, inputs, tokenizer, args, None)
    peak = status_kib("VmHWM")
    return {"rise_bytes": (peak - base) * 1024, "peak_bytes": peak * 1024}


def memory_probe(args) -> None:
    """Run in a fresh process (CPU): peak memory of one generate call of one configuration at one frame count."""
    config = Config.parse(args.memory_probe)
    tokenizer = build_word_tokenizer(WORDS)
    model = build_model(args, tokenizer)
    model = with_sta(model) if config.sta else model
    stave.set_temporal_pooling(model, config.pooling)
    inputs = encode(args, tokenizer, model, args.frames[0])
    print(json.dumps(peak_during_call(model, inputs, tokenizer, args)))


def cpu_peak_memory(config: Config, frames: int, args) -> dict[str, float]:
    """Peak memory of one configuration at one frame count, measured in a fresh process (bytes)."""
    command = [sys.executable, __file__, "--memory-probe", config.name, "--frames", str(frames)]
    command += ["--preset", args.preset, "--size", str(args.size), "--device", args.device, "--dtype", args.dtype]
    command += ["--layers", str(args.layers)] if args.layers is not None else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe {config.name} at {frames} frames failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ratio(value: float, stock: float) -> str:
    return f"{value / stock:.2f}" if stock > 0 else "–"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="qwen2-vl-2b", choices=[*sorted(SHAPED_PRESETS), "tiny-qwen2-vl"])
    parser.add_argument("--layers", type=int, help="vision blocks and LLM layers (default: all on a GPU, 2 on a CPU)")
    parser.add_argument("--frames", type=comma_list(int), default=[16, 32, 64], help="frame counts, e.g. 16,32,64")
    parser.add_argument("--size", type=int, default=336, help="frame side in pixels (a multiple of 28)")
    parser.add_argument(
        "--pooling", type=comma_list(pooling_mode), default=[None, "mean:2", "mean"],
        help="temporal pooling modes, 'none' for none (default: none,mean:2,mean)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up round")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    depth = full_depth(args.preset)
    if args.layers is None and depth is not None and not on_gpu and not args.memory_probe:
        args.layers = 2
    if args.layers is not None and depth is None:
        parser.error(f"--layers applies to the shaped presets {sorted(SHAPED_PRESETS)}, not {args.preset}")
    if args.layers is not None and not 1 <= args.layers <= min(depth):
        parser.error(f"--layers must be 1..{min(depth)} for {args.preset}, got {args.layers}")
    if None not in args.pooling:
        parser.error("--pooling must include 'none': the ratios are to the stock configuration")
    if args.memory_probe:
        return memory_probe(args)

    started = time.perf_counter()
    tokenizer = build_word_tokenizer(WORDS)
    models = {False: build_model(args, tokenizer)}
    models[True] = with_sta(models[False])
    for mode in args.pooling:
        try:
            stave.set_temporal_pooling(models[False], mode)
        except ValueError as error:
            parser.error(f"--pooling {mode}: {error}")
    stave.set_temporal_pooling(models[False], None)
    configs = [Config(pooling, sta) for sta in (False, True) for pooling in args.pooling]
    inputs = {}
    for mode in args.pooling:
        stave.set_temporal_pooling(models[False], mode)
        for frames in args.frames:
            inputs[mode, frames] = encode(args, tokenizer, models[False], frames)
    stave.set_temporal_pooling(models[False], None)
    shortened = args.layers is not None and args.layers < max(depth)
    spans = {}
    if shortened:
        for sta, model in models.items():
            spans[sta] = {
                "vision": Spans(stave.vision_tower(model).blocks, args.device),
                "llm": Spans(model.model.language_model.layers, args.device),
            }

    config = models[False].config
    vision, text = config.vision_config, config.text_config
    llm_layers = text.num_hidden_layers
    device_name = torch.cuda.get_device_name() if on_gpu else f"{cpu_name()}, {torch.get_num_threads()} threads"
    print(
        f"# token compression — {args.preset} shape, random weights: vision {vision.depth} x {vision.embed_dim} "
        f"({vision.num_heads} heads), LLM {llm_layers} x {text.hidden_size} ({text.num_attention_heads} heads, "
        f"{text.num_key_value_heads} KV), vocabulary {text.vocab_size}; {args.dtype}, sdpa"
    )
    print(
        f"# {device_name}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(f"# command: python {' '.join(sys.argv)}")
    print(
        f"# one question: video of F frames at {args.size}x{args.size} + text, greedy, {NEW_TOKENS} new tokens; "
        f"median of {args.repeats} interleaved rounds after a warm-up round"
    )
    if shortened:
        print(
            f"# shortened: {args.layers} of {depth[0]} vision blocks and {args.layers} of {depth[1]} LLM layers. "
            f"Full-depth times are extrapolated, not measured: per call, the measured time + ({depth[0]}/{args.layers}"
            f" - 1) x its vision blocks' time + ({depth[1]}/{args.layers} - 1) x its LLM layers' time (prefill only "
            "for the first token), blocks of one stack having one shape; the patch embedding, merger, embeddings, "
            "output head and generation loop run once at any depth and are in the measured part. Memory is not "
            "extrapolated."
        )

    samples = {(c, f): [] for c in configs for f in args.frames}
    for frames in args.frames:
        for round_ in range(args.repeats + 1):
            shift = round_ % len(configs)
            for c in configs[shift:] + configs[:shift]:
                model = models[c.sta]
                stave.set_temporal_pooling(model, c.pooling)
                sample = answer_once(model, inputs[c.pooling, frames], tokenizer, args, spans.get(c.sta))
                if round_:
                    samples[c, frames].append(sample)
            print(f"# {frames} frames: round {round_} done at {time.perf_counter() - started:.0f} s", file=sys.stderr)

    def median(key: str, c: Config, frames: int, full: bool = False) -> float:
        values = samples[c, frames]
        if full:
            values = [extrapolate(s, args.layers, depth) for s in values]
        return statistics.median(v[key] for v in values)

    memory = {}
    if not args.no_memory:
        for frames in args.frames:
            for c in configs:
                if on_gpu:  # exact in this process: the allocator's own count
                    stave.set_temporal_pooling(models[c.sta], c.pooling)
                    memory[c, frames] = peak_during_call(models[c.sta], inputs[c.pooling, frames], tokenizer, args)
                else:
                    memory[c, frames] = cpu_peak_memory(c, frames, args)
                print(f"# memory {c.name} at {frames} frames at {time.perf_counter() - started:.0f} s", file=sys.stderr)
    kind = "CUDA max_memory_allocated" if on_gpu else "peak RSS rise of a fresh process"

    print()
    print(
        f"| frames | config | LLM tokens of the video | prompt tokens | time to first token (s) | x stock "
        f"| time to answer (s) | x stock | peak memory, {kind} (MiB) | x stock |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for frames in args.frames:
        for c in configs:
            row = inputs[c.pooling, frames]
            ttft, answer = median("ttft", c, frames), median("answer", c, frames)
            cells = [
                str(frames), c.name, str(row["video_tokens"]), str(row["input_ids"].shape[1]),
                f"{ttft:.3f}", ratio(ttft, median("ttft", STOCK, frames)),
                f"{answer:.3f}", ratio(answer, median("answer", STOCK, frames)),
            ]  # fmt: skip
            if memory:
                rise = memory[c, frames]["rise_bytes"]
                cells += [f"{rise / 2**20:.0f}", ratio(rise, memory[STOCK, frames]["rise_bytes"])]
            else:
                cells += ["–", "–"]
            print("| " + " | ".join(cells) + " |")

    if shortened:
        print()
        print(
            f"Where the time goes ({args.layers} blocks / layers, measured) and full-depth times ({depth[0]} vision "
            f"blocks, {depth[1]} LLM layers, extrapolated)"
        )
        print()
        print(
            f"| frames | config | vision blocks (s) | LLM layers, prefill (s) | LLM layers, {NEW_TOKENS - 1} decoding "
            "steps (s) | full depth: time to first token (s) | x stock | full depth: time to answer (s) | x stock |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for frames in args.frames:
            for c in configs:
                ttft, answer = median("ttft", c, frames, True), median("answer", c, frames, True)
                cells = [
                    str(frames), c.name, f"{median('vision', c, frames):.3f}", f"{median('prefill', c, frames):.3f}",
                    f"{median('decode', c, frames):.3f}",
                    f"{ttft:.3f}", ratio(ttft, median("ttft", STOCK, frames, True)),
                    f"{answer:.3f}", ratio(answer, median("answer", STOCK, frames, True)),
                ]  # fmt: skip
                print("| " + " | ".join(cells) + " |")
    if memory:
        print()
        whole = "CUDA max_memory_allocated, models included" if on_gpu else "peak RSS of the fresh process"
        print(f"Peak memory during the call, {whole} (MiB): " + "; ".join(
            f"{frames} frames " + ", ".join(f"{c.name} {memory[c, frames]['peak_bytes'] / 2**20:.0f}" for c in configs)
            for frames in args.frames
        ))  # fmt: skip
    print(f"\n# wall time of the run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
