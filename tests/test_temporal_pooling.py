"""Temporal pooling: each video reaches the LLM as the mean of its merged tokens over its temporal patches,
placed as one temporal patch; images untouched; kept by save/load; used by the processor, evaluation and
training."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import example_batch, generated_text, merged_tokens, random_frames, randomize_temporal
from training_data import tiny_recipe, write_dataset

import stave
from stave.evaluation import load_answerer
from stave.models import find_vision_tower
from stave.presets import tiny_model
from stave.processing import IGNORE_INDEX, VideoChatProcessor
from stave.testing import model_inputs, video_inputs
from stave.tokenizer import build_word_tokenizer
from stave.training import RecipeError, load_recipe, train
from stave.video import VideoOptions


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


def _llm_inputs(model, inputs) -> dict[str, torch.Tensor]:
    """The inputs_embeds and position_ids the LLM receives in a forward pass."""
    seen = {}

    def capture(module, args, kwargs):
        seen.update(inputs_embeds=kwargs["inputs_embeds"], position_ids=kwargs["position_ids"])

    handle = model.model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        _logits(model, inputs)
    finally:
        handle.remove()
    return seen


def _count(inputs, token_id: int) -> int:
    return int((inputs["input_ids"] == token_id).sum())


def _placeholders(model) -> list[int]:
    """The ids of the family's media tokens (placeholders, vision start and end), from the model's config."""
    media = find_vision_tower(model)[0].media
    return [getattr(model.config, key) for key, _ in media.config_tokens]


def test_pooled_video_reaches_the_llm_as_the_mean_over_temporal_patches_placed_as_one(packed_preset):
    preset = packed_preset
    grids = [(4, 4, 4), (2, 4, 6)]
    model = stave.set_temporal_pooling(tiny_model(preset), "mean")
    assert stave.temporal_pooling(model) == "mean"
    inputs = model_inputs(model, videos=grids, images=[(1, 4, 4)])
    video = inputs["input_ids"][0] == model.config.video_token_id
    assert video.sum() == 4 * 4 // 4 + 4 * 6 // 4  # h*w/merge² per video (unpooled: 16 + 12)

    seen = _llm_inputs(model, inputs)
    tokens = merged_tokens(stave.vision_tower(model), inputs["pixel_values_videos"], inputs["video_grid_thw"])
    per_video = tokens.split([t * h * w // 4 for t, h, w in grids])
    expected = torch.cat([x.reshape(t, h * w // 4, -1).mean(0) for x, (t, h, w) in zip(per_video, grids, strict=True)])
    torch.testing.assert_close(seen["inputs_embeds"][0, video], expected, rtol=0, atol=1e-6)

    # M-RoPE places each pooled video as the stock model places a video of one temporal patch
    stock = tiny_model(preset)
    one_patch = model_inputs(stock, videos=[(1, h, w) for _, h, w in grids], images=[(1, 4, 4)])
    assert torch.equal(one_patch["input_ids"], inputs["input_ids"])
    assert torch.equal(_llm_inputs(stock, one_patch)["position_ids"], seen["position_ids"])


def test_images_in_a_batch_with_videos_are_not_pooled(packed_preset):
    model = stave.set_temporal_pooling(tiny_model(packed_preset), "mean")
    # an image of two temporal patches (Qwen's processors never make one): pooling it would halve its tokens
    inputs = model_inputs(model, videos=[(4, 4, 4)], images=[(2, 4, 4)])
    image = inputs["input_ids"][0] == model.config.image_token_id
    assert image.sum() == 2 * 4 * 4 // 4 and _count(inputs, model.config.video_token_id) == 4
    seen = _llm_inputs(model, inputs)
    expected = merged_tokens(stave.vision_tower(model), inputs["pixel_values"], inputs["image_grid_thw"])
    torch.testing.assert_close(seen["inputs_embeds"][0, image], expected, rtol=0, atol=1e-6)


def _held_video(distinct: int = 4, size: int = 56, seed: int = 0) -> torch.Tensor:
    """(2*distinct, 3, size, size) uint8 frames, each held for 2 frames: every temporal patch is one still frame,
    so reversing the frames only permutes whole temporal patches (the plain tower sees no motion inside one)."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (distinct, 3, size, size), generator=generator, dtype=torch.uint8)
    return frames.repeat_interleave(2, dim=0)


def _video_logits(model, frames: torch.Tensor) -> torch.Tensor:
    return _logits(model, video_inputs(model, [frames]))


def test_pooled_llm_cannot_see_frame_order_and_only_sta_can_carry_it(preset):
    video = random_frames(tiny_model(preset), (4, 4, 4), held=True)  # each temporal step one still frame
    reverse = video.flip(0)

    plain = tiny_model(preset)  # unpooled: the LLM's positions show it which temporal step came first
    assert (_video_logits(plain, video) - _video_logits(plain, reverse)).abs().max() > 1e-3

    pooled = stave.set_temporal_pooling(tiny_model(preset), "mean")
    torch.testing.assert_close(_video_logits(pooled, video), _video_logits(pooled, reverse), rtol=0, atol=1e-5)

    with_sta = stave.add_temporal_attention(tiny_model(preset), stave.TemporalConfig(init="random"))
    stave.set_temporal_pooling(with_sta, "mean")
    assert (_video_logits(with_sta, video) - _video_logits(with_sta, reverse)).abs().max() > 1e-3


def test_save_pretrained_and_load_model_keep_pooling(preset, tmp_path):
    model = stave.set_temporal_pooling(stave.add_temporal_attention(tiny_model(preset)), "mean")
    randomize_temporal(model)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["temporal_pooling"] == "mean"
    inputs = model_inputs(model, **example_batch(model))

    loaded = stave.load_model(tmp_path)
    assert stave.temporal_pooling(loaded) == "mean" and stave.temporal_config(loaded) is not None
    assert torch.equal(_logits(loaded, inputs), _logits(model, inputs))

    # stock from_pretrained keeps the config entry but not the pooling: said by name, never silently wrong
    stock = type(model).from_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match=r"does not pool.*stave\.load_model"):
        stave.temporal_pooling(stock)


def test_pooling_off_restores_the_stock_model_and_its_config():
    model = tiny_model()
    stave.set_temporal_pooling(model, "mean")
    stave.set_temporal_pooling(model, None)
    assert stave.temporal_pooling(model) is None and "temporal_pooling" not in model.config.to_dict()
    assert not {"get_video_features", "get_rope_index"} & set(vars(model.model))
    inputs = model_inputs(model, videos=[(4, 4, 4)])
    assert _count(inputs, model.config.video_token_id) == 16
    assert torch.equal(_logits(model, inputs), _logits(tiny_model(), inputs))


def test_bad_mode_and_bare_tower_are_refused():
    with pytest.raises(ValueError, match=r"one of \['mean'\], got 'max'"):
        stave.set_temporal_pooling(tiny_model(), "max")
    with pytest.raises(TypeError, match="not the bare tower"):
        stave.set_temporal_pooling(stave.vision_tower(tiny_model()), "mean")


@pytest.mark.parametrize("pooling", [None, "mean"])
def test_generate_agrees_with_the_step_by_step_forward_pass_pooled_or_not(preset, pooling):
    model = stave.set_temporal_pooling(tiny_model(preset), pooling)
    batch = example_batch(model)
    inputs = model_inputs(model, videos=batch["videos"][:1], images=batch["images"])
    assert stave.temporal_pooling(model) == pooling
    placeholders = _placeholders(model)  # a text answer holds none
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=2, output_logits=True,
            return_dict_in_generate=True, suppress_tokens=placeholders,
        )  # fmt: skip
    prompt, tokens = inputs["input_ids"].shape[1], out.sequences
    assert tokens.shape == (1, prompt + 3)
    for k in range(3):  # each step's logits (cached decoding, pooled positions) are a full forward pass's (no cache)
        grown = {
            **inputs,
            "input_ids": tokens[:, : prompt + k],
            "attention_mask": torch.ones_like(tokens[:, : prompt + k]),
        }
        if "mm_token_type_ids" in inputs:
            grown["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], tokens[:, prompt : prompt + k] * 0], 1)
        full = _logits(model, grown)[0, -1]
        torch.testing.assert_close(out.logits[k][0], full, atol=1e-5, rtol=1e-4)
        full[placeholders] = -torch.inf
        assert tokens[0, prompt + k] == full.argmax(), k


def test_training_step_through_peft_lora_gives_gradients(preset):
    from peft import LoraConfig, get_peft_model

    model = stave.set_temporal_pooling(stave.add_temporal_attention(tiny_model(preset)), "mean")
    batch = example_batch(model)
    inputs = model_inputs(model, videos=batch["videos"][:1], images=batch["images"])
    labels = inputs["input_ids"].clone()
    labels[torch.isin(inputs["input_ids"], torch.tensor(_placeholders(model)))] = IGNORE_INDEX  # never targets

    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=2, target_modules=r".*language_model.*\.q_proj"))
    for _, parameter in stave.temporal_parameters(model):
        parameter.requires_grad_(True)
    assert stave.temporal_pooling(model) == "mean"
    model.train()
    loss = model(**inputs, labels=labels, use_cache=False).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any("lora_B" in n and g.abs().max() > 0 for n, g in grads.items())
    assert any("temp_attn.proj" in n and g.abs().max() > 0 for n, g in grads.items())


WORDS = ["what", "happens", "?", "left", "right"]
SMALL_VIDEO = VideoOptions(nframes=8, min_pixels=56 * 56, max_pixels=56 * 56)


def _video_question():
    frames = _held_video().permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
    return [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "what ?"}]}]


def test_processor_and_evaluation_read_pooling_from_the_model(tmp_path):
    tokenizer = build_word_tokenizer(WORDS)
    model = stave.set_temporal_pooling(tiny_model(tokenizer=tokenizer, seed=4), "mean")  # answers in words (4.57, 5.x)
    pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")

    processor = VideoChatProcessor.for_model(tokenizer, model, SMALL_VIDEO)
    encoded = processor.encode(_video_question(), train=False)
    assert encoded["video_grid_thw"].tolist() == [[4, 4, 4]]  # the tower still gets every frame
    assert (encoded["input_ids"] == pad).sum() == 4 == (encoded["mm_token_type_ids"] == 2).sum()
    assert VideoChatProcessor.for_model(tokenizer, model.config).temporal_pooling == "mean"
    assert VideoChatProcessor.for_model(tokenizer, tiny_model(tokenizer=tokenizer)).temporal_pooling is None

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    answerer = load_answerer(tmp_path, video_options=SMALL_VIDEO, max_new_tokens=2)
    assert answerer.processor.temporal_pooling == "mean"
    encoded = answerer.processor.encode(_video_question(), train=False)
    assert (encoded["input_ids"] == pad).sum() == 4
    expected = generated_text(model, tokenizer, _video_question(), SMALL_VIDEO, max_new_tokens=2)
    assert answerer.generate_encoded([encoded, encoded]) == [expected, expected]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 2)


def test_recipe_pools_the_trained_and_saved_model(data, tmp_path):
    recipe = tiny_recipe(data, tmp_path / "out", max_steps=2)
    recipe["model"]["temporal_pooling"] = "mean"
    model_dir = train(load_recipe(recipe))
    assert json.loads((model_dir / "config.json").read_text())["temporal_pooling"] == "mean"
    assert stave.temporal_pooling(stave.load_model(model_dir)) == "mean"
    run = json.loads((model_dir / "stave-run.json").read_text())
    assert run["recipe"]["model"]["temporal_pooling"] == "mean"


def test_recipe_rejects_an_unknown_pooling_naming_the_key(data, tmp_path):
    with pytest.raises(RecipeError, match=r"model\.temporal_pooling: must be null or one of \['mean'\], got 'max'"):
        train(tiny_recipe(data, tmp_path / "out"), ["model.temporal_pooling=max"])
    assert not (tmp_path / "out").exists()


QWEN3 = ["tiny-qwen3-vl", "tiny-qwen3-vl-moe", "tiny-qwen3.5", "tiny-qwen3.5-moe"]


@pytest.mark.parametrize("family_preset", QWEN3)
def test_qwen3_pooled_prompt_is_one_block_with_the_mean_frame_time_and_reverse_invariant(family_preset):
    """Qwen3-VL / Qwen3.5 prompts give each temporal patch a timestamp and a vision block; pooled, a video is one
    block whose timestamp is the mean time of its sampled frames, so a clip and its exact reverse (the same
    frame times) give the LLM identical inputs, and without STA identical logits; unpooled they differ."""
    from conftest import FAMILIES

    from stave.presets import tiny_vocabulary

    if family_preset not in FAMILIES:
        pytest.skip(f"{family_preset} needs transformers 5")
    tokenizer = build_word_tokenizer([*WORDS, *tiny_vocabulary(family_preset)])
    options = VideoOptions(nframes=8, min_pixels=64 * 64, max_pixels=64 * 64)
    frames = _held_video(size=64).permute(0, 2, 3, 1).numpy()

    def question(video):
        return [{"role": "user", "content": [{"type": "video", "video": video, "source_fps": 2.0},
                                             {"type": "text", "text": "what ?"}]}]  # fmt: skip

    plain = tiny_model(family_preset, tokenizer=tokenizer)
    processor = VideoChatProcessor.for_model(tokenizer, plain, options)
    forward = processor.encode(question(frames), train=False)
    text = tokenizer.decode(forward["input_ids"])
    assert "< 0 . 2 seconds >" in text  # the first temporal patch: frames at 0 and 0.5 s, "<0.2 seconds>" (0.25)
    assert (forward["input_ids"] == tokenizer.convert_tokens_to_ids("<|vision_start|>")).sum() >= 4

    pooled = stave.set_temporal_pooling(tiny_model(family_preset, tokenizer=tokenizer), "mean")
    processor = VideoChatProcessor.for_model(tokenizer, pooled, options)
    clip = processor.encode(question(frames), train=False)
    reverse = processor.encode(question(frames[::-1].copy()), train=False)
    assert torch.equal(clip["input_ids"], reverse["input_ids"])
    text = tokenizer.decode(clip["input_ids"])
    assert text.count("seconds") == 1 and "< 1 . 8 seconds >" in text  # mean of 0, 0.5, ..., 3.5 = 1.75 -> 1.8
    assert (clip["input_ids"] == tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum() == 4  # (64/16)^2 / 4
    logits = [_logits(pooled, processor.collate([item])) for item in (clip, reverse)]
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=1e-5)
    unpooled = VideoChatProcessor.for_model(tokenizer, plain, options)
    batches = [unpooled.collate([unpooled.encode(question(v), train=False)]) for v in (frames, frames[::-1].copy())]
    assert (_logits(plain, batches[0]) - _logits(plain, batches[1])).abs().max() > 1e-3
