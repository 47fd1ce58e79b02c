"""Temporal pooling: each video reaches the LLM as the mean of its merged tokens over its temporal patches ("mean"),
or over each run of K consecutive ones ("mean:K"), each placed as one temporal patch; images untouched; kept by
save/load; used by the processor, evaluation and training."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import example_batch, generated_text, merged_tokens, random_frames, randomize_temporal, tower_outputs
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
    """The inputs_embeds, position_ids and (Qwen3-VL) deepstack_visual_embeds the LLM receives in a forward pass."""
    seen = {}

    def capture(module, args, kwargs):
        seen.update(inputs_embeds=kwargs["inputs_embeds"], position_ids=kwargs["position_ids"])
        seen["deepstack"] = kwargs.get("deepstack_visual_embeds")

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


def _run_means(tokens: torch.Tensor, window: int | None) -> torch.Tensor:
    """(t, n, D) -> (ceil(t/window), n, D): the means of runs of `window` rows (the last one shorter), written out."""
    t = tokens.shape[0]
    size = t if window is None else window
    return torch.stack([tokens[start : start + size].mean(0) for start in range(0, t, size)])


def test_pooled_video_reaches_the_llm_as_the_means_over_runs_of_temporal_patches_placed_as_one_each(packed_preset):
    """"mean": one run of all t temporal patches; "mean:2" on t = 5: runs of 2, 2 and 1, i.e. 3 temporal steps."""
    preset = packed_preset
    grids = [(5, 4, 4), (2, 4, 6)]
    model = tiny_model(preset)
    outputs = None
    for mode, window, steps in (("mean", None, [1, 1]), ("mean:2", 2, [3, 1])):
        stave.set_temporal_pooling(model, mode)
        assert stave.temporal_pooling(model) == mode
        inputs = model_inputs(model, videos=grids, images=[(1, 4, 4)])
        video = inputs["input_ids"][0] == model.config.video_token_id
        assert video.sum() == steps[0] * 4 * 4 // 4 + steps[1] * 4 * 6 // 4  # unpooled: 5 * 4 + 2 * 6

        seen = _llm_inputs(model, inputs)
        if outputs is None:  # merged tokens, then Qwen3-VL's deepstack features, of every video
            outputs = tower_outputs(stave.vision_tower(model), inputs["pixel_values_videos"], inputs["video_grid_thw"])
        pooled = []
        for level in outputs:
            per_video = level.split([t * h * w // 4 for t, h, w in grids])
            pooled.append(torch.cat([
                _run_means(x.reshape(t, h * w // 4, -1), window).flatten(0, 1)
                for x, (t, h, w) in zip(per_video, grids, strict=True)
            ]))  # fmt: skip
        torch.testing.assert_close(seen["inputs_embeds"][0, video], pooled[0], rtol=0, atol=1e-6)
        for level, expected in zip(seen["deepstack"] or [], pooled[1:], strict=True):  # after the image's rows
            torch.testing.assert_close(level[-len(expected) :], expected, rtol=0, atol=1e-6)
        assert len(seen["deepstack"] or []) == len(outputs) - 1

        # M-RoPE places each pooled video as the stock model places a video of one temporal patch per run
        stock = tiny_model(preset)
        runs = [(n, h, w) for n, (_, h, w) in zip(steps, grids, strict=True)]
        as_runs = model_inputs(stock, videos=runs, images=[(1, 4, 4)])
        assert torch.equal(as_runs["input_ids"], inputs["input_ids"])
        assert torch.equal(_llm_inputs(stock, as_runs)["position_ids"], seen["position_ids"])


def test_qwen2_5_vl_places_each_run_at_the_time_of_its_first_temporal_patch():
    """second_per_grid_ts is scaled by the window: the runs of patches (0, 1), (2, 3), (4) of a 5-patch video sit at
    the temporal positions the stock model gives patches 0, 2 and 4 (a shorter last run starts where its patch
    does); height and width positions and the text after the video as stock places a video of 3 patches."""
    preset = "tiny-qwen2.5-vl"
    pooled = stave.set_temporal_pooling(tiny_model(preset), "mean:2")
    stock = tiny_model(preset)
    seconds = {"second_per_grid_ts": torch.tensor([1.0])}  # whole seconds: transformers 4.57 truncates others
    inputs = {**model_inputs(pooled, videos=[(5, 4, 4)]), **seconds}
    unpooled = {**model_inputs(stock, videos=[(5, 4, 4)]), **seconds}
    video = inputs["input_ids"][0] == pooled.config.video_token_id
    positions = _llm_inputs(pooled, inputs)["position_ids"][:, 0]
    stock_time = _llm_inputs(stock, unpooled)["position_ids"][0, 0]
    stock_time = stock_time[unpooled["input_ids"][0] == stock.config.video_token_id].reshape(5, 4)
    assert positions[0, video].reshape(3, 4).tolist() == stock_time[[0, 2, 4]].tolist()
    assert len(set(stock_time[:, 0].tolist())) == 5  # the stock time axis tells the patches apart (tps * 1 s apart)
    three = {**model_inputs(stock, videos=[(3, 4, 4)]), "second_per_grid_ts": torch.tensor([2.0])}
    assert torch.equal(_llm_inputs(stock, three)["position_ids"][:, 0], positions)


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

    # "mean:2" on 5 temporal patches (runs (0, 1), (2, 3), (4)): order within a run is invisible, that of runs is not
    stave.set_temporal_pooling(pooled, "mean:2")
    five = random_frames(pooled, (5, 4, 4), seed=1, held=True)
    step = five.shape[0] // 5  # frames per temporal step

    def patches(order):
        return torch.cat([five[step * p : step * p + step] for p in order])

    logits = _video_logits(pooled, five)
    torch.testing.assert_close(_video_logits(pooled, patches([1, 0, 3, 2, 4])), logits, rtol=0, atol=1e-5)
    assert (_video_logits(pooled, patches([2, 3, 0, 1, 4])) - logits).abs().max() > 1e-3

    with_sta = stave.add_temporal_attention(tiny_model(preset), stave.TemporalConfig(init="random"))
    stave.set_temporal_pooling(with_sta, "mean")
    assert (_video_logits(with_sta, video) - _video_logits(with_sta, reverse)).abs().max() > 1e-3


def test_save_pretrained_and_load_model_keep_pooling(preset, tmp_path):
    model = stave.set_temporal_pooling(stave.add_temporal_attention(tiny_model(preset)), "mean:2")
    randomize_temporal(model)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["temporal_pooling"] == "mean:2"
    inputs = model_inputs(model, **example_batch(model))

    loaded = stave.load_model(tmp_path)
    assert stave.temporal_pooling(loaded) == "mean:2" and stave.temporal_config(loaded) is not None
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
    forms = r"the modes are 'mean' \(the average over all of a video's temporal patches\) and 'mean:K' with K"
    for mode in ("max", "mean:0", "mean:x", "mean:02", "mean: 2", 2):
        with pytest.raises(ValueError, match=rf"^temporal pooling {re.escape(repr(mode))}: {forms}"):
            stave.set_temporal_pooling(tiny_model(), mode)
    with pytest.raises(ValueError, match=r"^temporal pooling 'mean:1': averages nothing .* no pooling is None"):
        stave.set_temporal_pooling(tiny_model(), "mean:1")
    with pytest.raises(TypeError, match="not the bare tower"):
        stave.set_temporal_pooling(stave.vision_tower(tiny_model()), "mean")
    with pytest.raises(ValueError, match=r"^temporal pooling 'mean:1'"):
        VideoChatProcessor(build_word_tokenizer(WORDS), temporal_pooling="mean:1")


@pytest.mark.parametrize("pooling", [None, "mean:2"])  # "mean": one run; generation places runs as any pooled grid
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
SMALL_VIDEO = VideoOptions(nframes=6, min_pixels=56 * 56, max_pixels=56 * 56)  # 3 temporal patches


def _video_question():
    frames = _held_video().permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
    return [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "what ?"}]}]


def test_processor_and_evaluation_read_pooling_from_the_model(tmp_path):
    tokenizer = build_word_tokenizer(WORDS)
    model = stave.set_temporal_pooling(tiny_model(tokenizer=tokenizer, seed=4), "mean:2")  # answers in words
    pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")

    processor = VideoChatProcessor.for_model(tokenizer, model, SMALL_VIDEO)
    encoded = processor.encode(_video_question(), train=False)
    assert encoded["video_grid_thw"].tolist() == [[3, 4, 4]]  # the tower still gets every frame
    assert (encoded["input_ids"] == pad).sum() == 2 * 4 == (encoded["mm_token_type_ids"] == 2).sum()  # runs 2, 1
    assert VideoChatProcessor.for_model(tokenizer, model.config).temporal_pooling == "mean:2"
    assert VideoChatProcessor.for_model(tokenizer, tiny_model(tokenizer=tokenizer)).temporal_pooling is None

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    answerer = load_answerer(tmp_path, video_options=SMALL_VIDEO, max_new_tokens=2)
    assert answerer.processor.temporal_pooling == "mean:2"
    encoded = answerer.processor.encode(_video_question(), train=False)
    assert (encoded["input_ids"] == pad).sum() == 2 * 4
    expected = generated_text(model, tokenizer, _video_question(), SMALL_VIDEO, max_new_tokens=2)
    assert answerer.generate_encoded([encoded, encoded]) == [expected, expected]



def test_stave_eval_records_the_pooling_it_used_and_resumes_only_with_it(tmp_path, capsys):
    from benchmark_fixtures import write_mvbench
    from training_data import moving_square

    from stave.cli import main
    from stave.video.encode import write_video

    record = {"video": "a.mp4", "question": "what ?", "candidates": ["left", "right"], "answer": "left"}
    data = write_mvbench(
        tmp_path / "mvbench",
        {"action_antonym": [record]},
        video_writer=lambda path: write_video(path, moving_square("left", frames=8), fps=4),
    )
    tokenizer = build_word_tokenizer(WORDS)
    stave.set_temporal_pooling(tiny_model(tokenizer=tokenizer), "mean:2").save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    flags = ["eval", "--model", str(tmp_path / "model"), "--benchmark", "mvbench", "--data", str(data), "--frames",
             "4", "--min-pixels", "3136", "--max-pixels", "3136", "--output", str(tmp_path / "run"), "--scoring",
             "loglik"]  # fmt: skip
    assert main(flags) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["temporal_pooling"] == "mean:2" and results["settings"]["position_scheme"] is None
    assert "(temporal pooling mean:2)" in (tmp_path / "run" / "results.md").read_text()
    capsys.readouterr()
    tiny_model(tokenizer=tokenizer).save_pretrained(tmp_path / "model")  # the same folder, now not pooled
    assert main(flags) == 2  # resuming the pooled run's predictions with it: refused, naming the setting
    assert "temporal_pooling: 'mean:2' there, None now" in capsys.readouterr().err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 2)


def test_recipe_pools_the_trained_and_saved_model(data, tmp_path):
    recipe = tiny_recipe(data, tmp_path / "out", max_steps=2)
    recipe["model"]["temporal_pooling"] = "mean:2"
    model_dir = train(load_recipe(recipe))
    assert json.loads((model_dir / "config.json").read_text())["temporal_pooling"] == "mean:2"
    assert stave.temporal_pooling(stave.load_model(model_dir)) == "mean:2"
    run = json.loads((model_dir / "stave-run.json").read_text())
    assert run["recipe"]["model"]["temporal_pooling"] == "mean:2"


@pytest.mark.version_independent
@pytest.mark.parametrize("mode", ["max", "mean:1", "mean:two"])
def test_recipe_rejects_an_unknown_pooling_naming_the_file_and_key(data, tmp_path, mode):
    recipe_file = tmp_path / "pooled.yaml"
    recipe_file.write_text(yaml.safe_dump(tiny_recipe(data, tmp_path / "out")))
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(recipe_file))}: model\.temporal_pooling: temporal pooling "
                       rf"'{mode}': .*'mean:K' with K .*; or null"):  # fmt: skip
        train(load_recipe(recipe_file, [f"model.temporal_pooling={mode}"]))
    assert not (tmp_path / "out").exists()


QWEN3 = ["tiny-qwen3-vl", "tiny-qwen3-vl-moe", "tiny-qwen3.5", "tiny-qwen3.5-moe"]


@pytest.mark.parametrize("family_preset", QWEN3)
def test_qwen3_pooled_prompt_is_one_block_per_run_with_its_mean_time_and_reverse_invariant_within_runs(family_preset):
    """Qwen3-VL / Qwen3.5 prompts give each temporal patch a timestamp and a vision block; pooled with "mean", a
    video is one block whose timestamp is the mean time of its temporal patches, so a clip and its exact reverse (the
    same frame times) give the LLM identical inputs, and without STA identical logits; unpooled they differ. With
    "mean:2", one block per run of 2 patches after the run's mean time: reversing the patches within each run
    changes nothing, swapping two runs does."""
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

    # "mean:2" on 5 patches (10 frames at 0, 0.5, ..., 4.5 s; patches at 0.25, 1.25, ... 4.25 s): runs (0, 1), (2, 3),
    # (4) at 0.75, 2.75 and 4.25 s
    stave.set_temporal_pooling(pooled, "mean:2")
    processor = VideoChatProcessor.for_model(tokenizer, pooled, dataclasses.replace(options, nframes=10))
    five = _held_video(distinct=5, size=64).permute(0, 2, 3, 1).numpy()
    orders = ([0, 1, 2, 3, 4], [1, 0, 3, 2, 4], [2, 3, 0, 1, 4])  # as recorded, reversed within runs, runs swapped
    videos = [np.concatenate([five[2 * p : 2 * p + 2] for p in order]) for order in orders]
    encoded = [processor.encode(question(video), train=False) for video in videos]
    assert all(torch.equal(item["input_ids"], encoded[0]["input_ids"]) for item in encoded)
    text = tokenizer.decode(encoded[0]["input_ids"])
    assert text.count("seconds") == 3 and all(f"< {t} . {d} seconds >" in text for t, d in ((0, 8), (2, 8), (4, 2)))
    assert (encoded[0]["input_ids"] == tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum() == 3 * 4
    logits = [_logits(pooled, processor.collate([item])) for item in encoded]
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-5)
    assert (logits[2] - logits[0]).abs().max() > 1e-3
