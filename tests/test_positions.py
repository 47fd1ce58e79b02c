"""Position schemes of the LLM (stave.positions): VideoRoPE's positions and frequency allocation against a direct
transcription of the published formulas, generation with a KV cache, save/load, composition with STA and temporal
pooling in any order, evaluation, recipes and bad input."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest
import torch
from conftest import FAMILIES, ROOT, generated_text, randomize_temporal
from training_data import tiny_recipe, write_dataset

import stave
from stave.config import PositionScheme, PositionSchemeError, pooling_window
from stave.errors import StaveError
from stave.evaluation import load_answerer
from stave.models import families
from stave.positions import UnsupportedPositionScheme
from stave.presets import TINY_PRESETS, tiny_model
from stave.testing import random_pixels
from stave.tokenizer import build_word_tokenizer
from stave.training import RecipeError, load_recipe, train
from stave.video import VideoOptions

MERGE = 2  # the tiny presets' spatial_merge_size
# the families whose adapter can replace the LLM's positions (VisionFamily.positions: Qwen2-VL, Qwen2.5-VL); the
# others refuse a scheme (test_bad_input_is_named)
WITH_SCHEMES = [p for p in FAMILIES if any(f.model_type == TINY_PRESETS[p][0] and f.positions for f in families())]


@pytest.fixture(params=WITH_SCHEMES)
def preset(request) -> str:
    return request.param


SPACINGS = [1.0, 2.0, 0.5]


# --- hand-made sequences and the formulas, transcribed -------------------------------------------------------
# A sequence is a list of parts: ("text", n) for n text tokens, ("image", (t, h, w)) or ("video", (t, h, w)) for a
# visual block of that (unmerged) grid, framed by <vision_start> and <vision_end> (two text tokens).


def reference_positions(parts, spacing: float, pooling: str | None = None) -> list[list[float]]:
    """The issue's formulas, token by token: text (p, p, p) consecutive; a block of merged grid (T, H, W) starting at
    s: t_pos = s + delta*t, h_pos = t_pos + h - floor((H-1)/2), w_pos = t_pos + w - floor((W-1)/2); after it, text
    continues at max(t_pos) + 1. A pooled video is placed as one temporal patch per run of temporal patches
    (`mean:K`: ceil(T/K) of them; `mean`: one)."""
    rows: list[list[float]] = [[], [], []]
    p = 0.0

    def text(n):
        nonlocal p
        for _ in range(n):
            for row in rows:
                row.append(p)
            p += 1

    for kind, value in parts:
        if kind == "text":
            text(value)
            continue
        text(1)  # <vision_start>
        T, H, W = value[0], value[1] // MERGE, value[2] // MERGE
        if pooling and kind == "video":
            T = 1 if pooling_window(pooling) is None else math.ceil(T / pooling_window(pooling))
        s = p
        t_positions = []
        for t in range(T):
            for h in range(H):
                for w in range(W):
                    t_pos = s + spacing * t
                    rows[0].append(t_pos)
                    rows[1].append(t_pos + h - math.floor((H - 1) / 2))
                    rows[2].append(t_pos + w - math.floor((W - 1) / 2))
                    t_positions.append(t_pos)
        p = max(t_positions) + 1
        text(1)  # <vision_end>
    return rows


def make_batch(model, sequences, *, seed: int = 0, second_per_grid_ts: list[float] | None = None) -> dict:
    """Left-padded inputs for several hand-made sequences; visual tokens as the model expects them (a pooled
    model's videos get ceil(t/K)*h*w/4 pads, h*w/4 with `mean`)."""
    config = model.config
    window = pooling_window(stave.temporal_pooling(model))
    generator = torch.Generator().manual_seed(seed)
    rows, types, images, videos = [], [], [], []
    for parts in sequences:
        ids, kinds = [], []
        for kind, value in parts:
            if kind == "text":
                ids += torch.randint(3, 100, (value,), generator=generator).tolist()
                kinds += [0] * value
                continue
            t, h, w = value
            pad, code = (config.image_token_id, 1) if kind == "image" else (config.video_token_id, 2)
            steps = t if kind == "image" or window == 1 else 1 if window is None else math.ceil(t / window)
            count = steps * h * w // MERGE**2
            ids += [config.vision_start_token_id, *[pad] * count, config.vision_end_token_id]
            kinds += [0, *[code] * count, 0]
            (images if kind == "image" else videos).append(value)
        rows.append(ids)
        types.append(kinds)
    length = max(map(len, rows))
    batch = {
        "input_ids": torch.tensor([[2] * (length - len(r)) + r for r in rows]),
        "attention_mask": torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows]),
    }
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        batch["mm_token_type_ids"] = torch.tensor([[0] * (length - len(k)) + k for k in types])
    if images:
        batch["pixel_values"], batch["image_grid_thw"] = random_pixels(images, config.vision_config, seed=seed)
    if videos:
        batch["pixel_values_videos"], batch["video_grid_thw"] = random_pixels(videos, config.vision_config, seed=seed)
        if second_per_grid_ts is not None:
            batch["second_per_grid_ts"] = torch.tensor(second_per_grid_ts)
    return batch


SEQUENCES = [
    [("text", 3), ("video", (4, 4, 6)), ("text", 2), ("image", (1, 6, 4)), ("text", 3), ("video", (2, 6, 4))],
    [("text", 2), ("image", (1, 4, 4)), ("text", 1)],  # shorter: left-padded
    [("text", 5)],  # text only, in a batch with visual blocks
    [("video", (6, 2, 8)), ("video", (2, 4, 4)), ("text", 2)],  # two blocks with only their frames between them
]


def llm_inputs(model, batch) -> dict[str, torch.Tensor]:
    """What the LLM receives in a forward pass: inputs_embeds and (3, batch, seq) position_ids."""
    seen = {}

    def capture(module, args, kwargs):
        embeds, positions = kwargs["inputs_embeds"], kwargs["position_ids"]
        if positions is None:  # text only: the LLM counts columns itself
            positions = torch.arange(embeds.shape[1]).expand(3, embeds.shape[0], -1)
        seen.update(inputs_embeds=embeds, position_ids=positions[-3:])

    base = model.model if hasattr(model, "model") else model
    handle = base.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            model.eval()(**batch)
    finally:
        handle.remove()
    return seen


def assert_positions(model, batch, sequences, spacing, pooling=None):
    positions = llm_inputs(model, batch)["position_ids"]
    mask = batch["attention_mask"].bool()
    for row, parts in enumerate(sequences):
        expected = torch.tensor(reference_positions(parts, spacing, pooling), dtype=torch.float64)
        torch.testing.assert_close(positions[:, row, mask[row]].double(), expected, rtol=0, atol=0)
    return positions


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(**batch).logits
    return out[batch["attention_mask"].bool()]  # real tokens only


# --- positions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", SPACINGS)
def test_positions_follow_the_published_formulas(preset, spacing):
    model = stave.set_position_scheme(tiny_model(preset), "videorope", temporal_spacing=spacing)
    assert stave.position_scheme(model) == PositionScheme("videorope", spacing)
    batch = make_batch(model, SEQUENCES)
    positions = assert_positions(model, batch, SEQUENCES, spacing)
    # integer spacings keep the stock integer positions; fractional ones need fractions
    assert positions.dtype == (torch.float32 if spacing == 0.5 else torch.long)
    if spacing == 0.5:
        assert (positions.frac() != 0).any()
    # the base model alone, and each sequence alone, unpadded: the same positions
    assert_positions(model.model, batch, SEQUENCES, spacing)
    for parts in SEQUENCES:
        assert_positions(model, make_batch(model, [parts]), [parts], spacing)


def test_qwen2_5_vl_videorope_ignores_seconds_per_grid():
    """VideoRoPE spaces temporal patches by delta whatever their duration (the release has no absolute time);
    the stock M-RoPE of Qwen2.5-VL spaces them by second_per_grid_ts * tokens_per_second."""
    sequences = [[("text", 2), ("video", (4, 4, 4)), ("text", 1), ("video", (2, 4, 6)), ("text", 2)]]
    stock = tiny_model("tiny-qwen2.5-vl")
    model = stave.set_position_scheme(tiny_model("tiny-qwen2.5-vl"), "videorope")
    seen = {}
    for seconds in (None, [1.0, 1.0], [2.0, 0.5]):
        batch = make_batch(model, sequences, second_per_grid_ts=seconds)
        seen[str(seconds)] = assert_positions(model, batch, sequences, 2.0)
        assert seconds is None or "second_per_grid_ts" in batch
    stock_1 = llm_inputs(stock, make_batch(stock, sequences, second_per_grid_ts=[1.0, 1.0]))["position_ids"]
    stock_2 = llm_inputs(stock, make_batch(stock, sequences, second_per_grid_ts=[2.0, 0.5]))["position_ids"]
    assert not torch.equal(stock_1, stock_2)  # the argument does reach get_rope_index


# --- frequencies ---------------------------------------------------------------------------------------------


def direct_attention(model, hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, rows: list[int]):
    """Layer 0's attention probabilities computed directly: q/k projections, rotary pair j (channels j and
    j + head_dim/2) turned by positions[rows[j]] * theta^(-2j/head_dim), scaled dot products, causal and padding
    mask, softmax. (batch, heads, seq, seq), real query rows only meaningful."""
    text = model.config.get_text_config()
    attention = model.model.language_model.layers[0].self_attn
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = text.hidden_size // heads
    theta = getattr(text, "rope_theta", None) or text.rope_parameters["rope_theta"]
    batch, length, _ = hidden.shape
    q = attention.q_proj(hidden).view(batch, length, heads, head_dim).transpose(1, 2).double()
    k = attention.k_proj(hidden).view(batch, length, kv_heads, head_dim).transpose(1, 2).double()
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    half = head_dim // 2
    inv_freq = torch.tensor([theta ** (-2 * j / head_dim) for j in range(half)], dtype=torch.float64)
    angle = torch.stack([positions[rows[j]].double() * inv_freq[j] for j in range(half)], dim=-1)  # (b, seq, half)
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]

    def rotate(x):
        first, second = x[..., :half], x[..., half:]
        return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)

    scores = rotate(q) @ rotate(k).transpose(-1, -2) / math.sqrt(head_dim)
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None] & mask[:, None, :].bool()
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return scores.softmax(-1)


def allocation(kind: str, sections: list[int]) -> list[int]:
    """Position row (0 t, 1 h, 2 w) of each frequency pair, highest frequency first, transcribed from the issue."""
    t, h, w = sections
    if kind == "videorope":  # the lowest t frequencies to t, the higher ones alternate h, w
        return [1 if j % 2 == 0 else 2 for j in range(h + w)] + [0] * t
    if kind == "mrope":
        return [0] * t + [1] * h + [2] * w
    if kind == "videorope, h and w swapped":
        return [2 if j % 2 == 0 else 1 for j in range(h + w)] + [0] * t
    if kind == "videorope, t highest":
        return [0] * t + [1 if j % 2 == 0 else 2 for j in range(h + w)]
    raise AssertionError(kind)


def test_rotated_queries_and_keys_follow_the_low_frequency_temporal_allocation(preset):
    """A layer's attention probabilities equal a direct computation with VideoRoPE's allocation, and not with
    M-RoPE's or a swapped one (the same positions in all)."""
    model = tiny_model(preset, attn_implementation="eager")
    text = model.config.get_text_config()
    rope = getattr(text, "rope_parameters", None) or text.rope_scaling
    sections = list(rope["mrope_section"])  # tiny presets: [2, 1, 1] of head_dim/2 = 4 pairs
    stave.set_position_scheme(model, "videorope", temporal_spacing=2.0)
    sequences = SEQUENCES[:2]
    batch = make_batch(model, sequences)
    seen = {}
    layer = model.model.language_model.layers[0].self_attn
    handle = layer.register_forward_pre_hook(lambda m, a, k: seen.update(hidden=k["hidden_states"]), with_kwargs=True)
    try:
        with torch.no_grad():
            out = model(**batch, output_attentions=True)
    finally:
        handle.remove()
    probabilities = out.attentions[0].double()
    positions = llm_inputs(model, batch)["position_ids"]
    mask = batch["attention_mask"]
    real = mask.bool()[:, None, :, None]  # query rows of real tokens

    def gap(kind: str) -> float:
        with torch.no_grad():
            direct = direct_attention(model, seen["hidden"], positions, mask, allocation(kind, sections))
        return (probabilities - direct).masked_fill(~real, 0).nan_to_num().abs().max().item()

    assert gap("videorope") < 1e-5
    for wrong in ("mrope", "videorope, h and w swapped", "videorope, t highest"):
        assert gap(wrong) > 1e-3, wrong  # the direct computation tells allocations apart at these positions

    stave.set_position_scheme(model, "mrope")  # the stock model: M-RoPE's allocation at M-RoPE's positions
    with torch.no_grad():
        stock = model(**batch, output_attentions=True).attentions[0].double()
        direct = direct_attention(
            model, seen["hidden"], llm_inputs(model, batch)["position_ids"], mask, allocation("mrope", sections)
        )
    assert (stock - direct).masked_fill(~real, 0).nan_to_num().abs().max() < 1e-5


# --- on, off, and with STA and pooling ------------------------------------------------------------------------


def test_videorope_changes_logits_and_mrope_restores_the_stock_model_exactly(preset):
    stock = tiny_model(preset)
    model = tiny_model(preset)
    batch = make_batch(model, SEQUENCES)
    reference = logits(stock, batch)
    stave.set_position_scheme(model, "videorope")
    assert (logits(model, batch) - reference).abs().max() > 1e-4
    assert model.config.to_dict()["position_scheme"] == {"name": "videorope", "temporal_spacing": 2.0}
    stave.set_position_scheme(model, "videorope", temporal_spacing=0.5)  # changing delta in place
    assert stave.position_scheme(model).temporal_spacing == 0.5
    stave.set_position_scheme(model, "mrope")
    assert torch.equal(logits(model, batch), reference)
    assert stave.position_scheme(model) == PositionScheme("mrope") and "position_scheme" not in model.config.to_dict()
    assert "get_rope_index" not in vars(model.model)
    rotary = model.model.language_model.rotary_emb
    assert "recomposition_frequencies" not in vars(rotary) and not rotary._forward_hooks


def test_zero_initialised_sta_is_the_identity_of_the_videorope_model(preset):
    batch = make_batch(tiny_model(preset), SEQUENCES)
    videorope = stave.set_position_scheme(tiny_model(preset), "videorope")
    sta_after = stave.add_temporal_attention(stave.set_position_scheme(tiny_model(preset), "videorope"))
    sta_before = stave.set_position_scheme(stave.add_temporal_attention(tiny_model(preset)), "videorope")
    reference = logits(videorope, batch)
    assert torch.equal(logits(sta_after, batch), reference) and torch.equal(logits(sta_before, batch), reference)
    randomize_temporal(sta_after)
    assert (logits(sta_after, batch) - reference).abs().max() > 1e-4  # STA does act once trained


@pytest.mark.parametrize("spacing, pooling", [(2.0, "mean"), (0.5, "mean"), (2.0, "mean:2"), (0.5, "mean:2")])
def test_pooling_and_videorope_compose_in_any_order(preset, spacing, pooling):
    pooled_first = stave.set_position_scheme(
        stave.set_temporal_pooling(tiny_model(preset), pooling), "videorope", temporal_spacing=spacing
    )
    scheme_first = stave.set_temporal_pooling(
        stave.set_position_scheme(tiny_model(preset), "videorope", temporal_spacing=spacing), pooling
    )
    batch = make_batch(pooled_first, SEQUENCES)
    # each video as one temporal patch per run, the runs spaced by delta as VideoRoPE spaces patches (mean:2: videos
    # of 4, 2, 6 and 2 temporal patches are 2, 1, 3 and 1 runs)
    assert_positions(pooled_first, batch, SEQUENCES, spacing, pooling)
    assert torch.equal(logits(scheme_first, batch), logits(pooled_first, batch))
    for model in (pooled_first, scheme_first):
        assert stave.temporal_pooling(model) == pooling and stave.position_scheme(model).name == "videorope"

    stave.set_temporal_pooling(scheme_first, None)  # VideoRoPE stays, on every frame again
    assert_positions(scheme_first, make_batch(scheme_first, SEQUENCES), SEQUENCES, spacing)
    assert stave.position_scheme(scheme_first).temporal_spacing == spacing
    stave.set_position_scheme(pooled_first, "mrope")  # pooling stays, with stock positions
    stock_pooled = stave.set_temporal_pooling(tiny_model(preset), pooling)
    assert torch.equal(logits(pooled_first, batch), logits(stock_pooled, batch))


# --- generation ----------------------------------------------------------------------------------------------


def _extend(batch: dict, tokens: torch.Tensor) -> dict:
    """The batch with `tokens` (batch, k) appended as text."""
    grown = dict(batch)
    grown["input_ids"] = torch.cat([batch["input_ids"], tokens], 1)
    grown["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(tokens)], 1)
    if "mm_token_type_ids" in batch:
        grown["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(tokens)], 1)
    return grown


@pytest.mark.parametrize("spacing", [2.0, 0.5])
def test_generate_with_cache_equals_full_forwards_on_a_left_padded_batch(preset, spacing):
    model = stave.set_position_scheme(tiny_model(preset), "videorope", temporal_spacing=spacing)
    sequences = [SEQUENCES[0], SEQUENCES[1], [("text", 1), ("video", (2, 4, 4)), ("text", 4)]]
    batch = make_batch(model, sequences, seed=3)
    steps = 4
    config = model.config
    vision = [config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id]
    with torch.no_grad():  # a random model may pick a visual pad: kept out, as the answer is text
        out = model.generate(
            **batch, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, pad_token_id=2,
            suppress_tokens=vision, output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip
    prompt = batch["input_ids"].shape[1]
    tokens = out.sequences[:, prompt:]
    assert tokens.shape == (3, steps)
    for k in range(steps):  # every cached step's logits are those of a full forward pass (no cache) of the batch
        with torch.no_grad():
            full = model(**_extend(batch, tokens[:, :k])).logits[:, -1]
        torch.testing.assert_close(out.logits[k], full, atol=1e-5, rtol=1e-4)
        full[:, [config.get_text_config().eos_token_id, *vision]] = -math.inf  # what generate was kept from
        assert torch.equal(tokens[:, k], full.argmax(-1)), k


def test_rope_deltas_follow_each_versions_stock_convention(preset):
    """rope_deltas (used when decoding with a cache without generate's positions) place the next token after the
    last: the next position minus the column that the installed transformers counts, read from the stock M-RoPE's
    own deltas on the same batch (which are its highest position + 1 minus that column)."""
    stock = tiny_model(preset)
    batch = make_batch(stock, SEQUENCES)
    arguments = {k: v for k, v in batch.items() if k in inspect.signature(type(stock.model).get_rope_index).parameters}
    stock_positions, stock_deltas = stock.model.get_rope_index(**arguments)
    real = batch["attention_mask"].bool()
    highest = torch.stack([stock_positions[:, row, real[row]].max() for row in range(len(SEQUENCES))])
    columns = highest + 1 - stock_deltas[:, 0]  # the stock deltas are its highest position + 1 - the column
    for spacing in SPACINGS:
        model = stave.set_position_scheme(tiny_model(preset), "videorope", temporal_spacing=spacing)
        _, deltas = model.model.get_rope_index(**arguments)
        following = torch.tensor([reference_positions(parts, spacing)[0][-1] + 1 for parts in SEQUENCES])
        torch.testing.assert_close(deltas[:, 0].double(), (following - columns).double(), rtol=0, atol=0)


# --- save, load, evaluate, train ------------------------------------------------------------------------------


def test_save_pretrained_and_load_model_keep_the_scheme_with_sta_and_pooling(preset, tmp_path):
    model = stave.add_temporal_attention(tiny_model(preset))
    stave.set_temporal_pooling(stave.set_position_scheme(model, "videorope", temporal_spacing=0.5), "mean")
    randomize_temporal(model)
    model.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())["position_scheme"]
    assert stored == {"name": "videorope", "temporal_spacing": 0.5}
    batch = make_batch(model, SEQUENCES)

    loaded = stave.load_model(tmp_path)
    assert stave.position_scheme(loaded) == PositionScheme("videorope", 0.5)
    assert stave.temporal_pooling(loaded) == "mean" and stave.temporal_config(loaded) is not None
    assert torch.equal(logits(loaded, batch), logits(model, batch))
    assert torch.equal(logits(stave.load_model(tmp_path, position_scheme=PositionScheme("videorope", 0.5)), batch),
                       logits(model, batch))  # fmt: skip
    with pytest.raises(PositionSchemeError, match=r"config\.json: records position scheme .*0\.5.*differs"):
        stave.load_model(tmp_path, position_scheme="videorope")  # 2.0 is not what the checkpoint records

    # stock from_pretrained keeps the config entry but not the scheme: said by name, never silently wrong
    with pytest.raises(RuntimeError, match=r"does not use it.*stave\.load_model"):
        stave.position_scheme(type(model).from_pretrained(tmp_path))


def test_load_model_gives_a_plain_checkpoint_the_scheme(preset, tmp_path):
    """The public VideoRoPE checkpoints are ordinary Qwen2-VL checkpoints: the scheme is given on load."""
    model = tiny_model(preset)
    model.save_pretrained(tmp_path)
    loaded = stave.load_model(tmp_path, position_scheme="videorope")
    assert stave.position_scheme(loaded) == PositionScheme("videorope", 2.0)
    batch = make_batch(model, SEQUENCES)
    assert torch.equal(logits(loaded, batch), logits(stave.set_position_scheme(model, "videorope"), batch))
    assert stave.position_scheme(stave.load_model(tmp_path)).name == "mrope"


WORDS = ["what", "happens", "?", "left", "right"]
SMALL_VIDEO = VideoOptions(nframes=8, min_pixels=56 * 56, max_pixels=56 * 56)


def _video_question():
    frames = torch.randint(0, 256, (8, 56, 56, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return [
        {"role": "user", "content": [{"type": "video", "video": frames.numpy()}, {"type": "text", "text": "what ?"}]}
    ]


def test_evaluation_answers_with_the_scheme_of_the_folder_or_the_one_given(tmp_path):
    tokenizer = build_word_tokenizer(WORDS)
    model = tiny_model(tokenizer=tokenizer, seed=4)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    videorope = stave.set_position_scheme(tiny_model(tokenizer=tokenizer, seed=4), "videorope")
    expected = generated_text(videorope, tokenizer, _video_question(), SMALL_VIDEO, max_new_tokens=2)

    answerer = load_answerer(tmp_path, video_options=SMALL_VIDEO, max_new_tokens=2, position_scheme="videorope")
    assert stave.position_scheme(answerer.model).name == "videorope"
    encoded = answerer.processor.encode(_video_question(), train=False)
    assert answerer.generate_encoded([encoded, encoded]) == [expected, expected]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 2)


def test_recipe_trains_and_saves_a_videorope_model(data, tmp_path):
    recipe = tiny_recipe(data, tmp_path / "out", max_steps=2)
    recipe["model"].update(position_scheme="videorope", temporal_spacing=0.5)
    model_dir = train(load_recipe(recipe))
    stored = json.loads((model_dir / "config.json").read_text())["position_scheme"]
    assert stored == {"name": "videorope", "temporal_spacing": 0.5}
    assert stave.position_scheme(stave.load_model(model_dir)) == PositionScheme("videorope", 0.5)


def test_the_videorope_recipe_and_its_baseline_load(tmp_path):
    """configs/staveq2-videorope-7b.yaml: VideoRoPE + STA in two stages from a VideoRoPE checkpoint, and the same
    LoRA fine-tune without STA (its baseline, by override, as the other recipes)."""
    path = ROOT / "configs" / "staveq2-videorope-7b.yaml"
    (tmp_path / "train.json").write_text("[]")
    placeholders = [f"data.datasets.0.path={tmp_path / 'train.json'}", "data.datasets.0.root=null"]
    recipe = load_recipe(path, placeholders)
    assert recipe.model.scheme() == PositionScheme("videorope", 2.0)
    assert [(s.name, s.trains) for s in recipe.stages] == [("stage1", ["temporal"]), ("stage2", ["temporal", "lora"])]
    baseline = load_recipe(path, [*placeholders, "stages=[baseline]", "output_dir=runs/baseline-videorope-7b"])
    assert baseline.model.scheme() == PositionScheme("videorope", 2.0)
    assert [(s.name, s.trains) for s in baseline.stages] == [("baseline", ["lora"])]


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "spacing", "message"),
    [
        ("xrope", None, r"one of \['mrope', 'videorope'\], got 'xrope'"),
        ("videorope", 0, r"temporal_spacing must be a positive finite number, got 0"),
        ("videorope", -2.0, r"temporal_spacing must be a positive finite number, got -2\.0"),
        ("videorope", float("nan"), r"temporal_spacing must be a positive finite number, got nan"),
        ("videorope", "2", r"temporal_spacing must be a number, got '2'"),
        ("mrope", 2.0, r"'mrope' scheme takes none, got 2\.0"),
        (None, None, r"got None"),
    ],
)
def test_bad_scheme_or_spacing_is_refused_by_name(scheme, spacing, message):
    model = tiny_model()
    with pytest.raises(PositionSchemeError, match=message) as error:
        stave.set_position_scheme(model, scheme, temporal_spacing=spacing)
    assert isinstance(error.value, ValueError) and isinstance(error.value, StaveError)
    assert "get_rope_index" not in vars(model.model) and "position_scheme" not in model.config.to_dict()


def test_unsupported_families_and_modules_are_refused_by_name(monkeypatch):
    from stave.models import qwen2_vl

    with pytest.raises(TypeError, match="stave supports these model families.*got Linear"):
        stave.set_position_scheme(torch.nn.Linear(2, 2), "videorope")
    with pytest.raises(TypeError, match="not the bare tower"):
        stave.set_position_scheme(stave.vision_tower(tiny_model()), "videorope")
    # a family whose adapter has no position schemes (as Qwen3-VL's): a TypeError naming the family
    monkeypatch.setattr(qwen2_vl, "QWEN2_VL", dataclasses.replace(qwen2_vl.QWEN2_VL, positions=None))
    with pytest.raises(
        UnsupportedPositionScheme, match=r"Qwen2-VL \(Qwen2VLModel\): stave has no position schemes"
    ) as error:
        stave.set_position_scheme(tiny_model(), "videorope")
    assert isinstance(error.value, TypeError) and isinstance(error.value, StaveError)
    assert stave.position_scheme(stave.set_position_scheme(tiny_model(), "mrope")).name == "mrope"  # stock: fine
    for other in sorted(set(FAMILIES) - set(WITH_SCHEMES)):  # the real families without schemes (Qwen3-VL, ...)
        with pytest.raises(UnsupportedPositionScheme, match="stave has no position schemes for this family"):
            stave.set_position_scheme(tiny_model(other), "videorope")
        assert stave.position_scheme(stave.set_position_scheme(tiny_model(other), "mrope")).name == "mrope"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.position_scheme=xrope", r"model\.position_scheme / model\.temporal_spacing: .*got 'xrope'"),
        ("model.temporal_spacing=0", r"model\.temporal_spacing: .*positive finite number, got 0"),
        ("model.temporal_spacing=2", r"model\.temporal_spacing: temporal_spacing is set but position_scheme is not"),
    ],
)
def test_recipe_refuses_bad_position_settings_naming_the_key(data, tmp_path, override, message):
    recipe = tiny_recipe(data, tmp_path / "out")
    recipe["model"]["position_scheme"] = None if "spacing=2" in override else "videorope"
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe, [override])
    assert not (tmp_path / "out").exists()


def test_ask_takes_the_scheme_from_the_command_line_and_names_bad_flags(tmp_path, capsys):
    from training_data import moving_square

    from stave.cli import main
    from stave.video.encode import write_video

    tokenizer = build_word_tokenizer(WORDS)
    model = tiny_model(tokenizer=tokenizer, seed=4)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    video = write_video(tmp_path / "clip.mp4", moving_square("left", frames=8), fps=4)
    flags = ["--model", str(tmp_path / "model"), "--video", str(video), "--frames", "8", "--max-pixels", "3136",
             "--min-pixels", "3136", "--max-new-tokens", "2", "what ?"]  # fmt: skip
    question = [
        {"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": "what ?"}]}
    ]
    options = VideoOptions(nframes=8, min_pixels=3136, max_pixels=3136)
    videorope = stave.set_position_scheme(model, "videorope", temporal_spacing=0.5)
    expected = generated_text(videorope, tokenizer, question, options, max_new_tokens=2)
    assert main(["ask", *flags, "--position-scheme", "videorope", "--temporal-spacing", "0.5"]) == 0
    assert capsys.readouterr().out == expected + "\n"

    assert main(["ask", *flags, "--temporal-spacing", "2"]) == 2
    assert "--temporal-spacing needs --position-scheme videorope" in capsys.readouterr().err
    assert main(["ask", *flags, "--position-scheme", "videorope", "--temporal-spacing", "-1"]) == 2
    assert "temporal_spacing must be a positive finite number, got -1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ask", *flags, "--position-scheme", "xrope"])
    assert "invalid choice: 'xrope'" in capsys.readouterr().err


def test_stave_eval_records_the_scheme_it_used_and_resumes_only_with_it(tmp_path, capsys):
    from benchmark_fixtures import write_mvbench
    from training_data import moving_square

    from stave.cli import main
    from stave.video.encode import write_video

    def clip(path):
        write_video(path, moving_square("left", frames=8), fps=4)

    record = {"video": "a.mp4", "question": "what ?", "candidates": ["left", "right"], "answer": "left"}
    data = write_mvbench(tmp_path / "mvbench", {"action_antonym": [record]}, video_writer=clip)
    tokenizer = build_word_tokenizer(WORDS)
    tiny_model(tokenizer=tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    flags = ["eval", "--model", str(tmp_path / "model"), "--benchmark", "mvbench", "--data", str(data), "--frames",
             "4", "--min-pixels", "3136", "--max-pixels", "3136", "--output", str(tmp_path / "run"), "--scoring",
             "loglik"]  # fmt: skip
    assert main([*flags, "--position-scheme", "videorope"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["position_scheme"] == {"name": "videorope", "temporal_spacing": 2.0}
    capsys.readouterr()
    assert main(flags) == 2  # the same folder with the stock positions: refused, naming the setting
    assert "position_scheme" in capsys.readouterr().err
