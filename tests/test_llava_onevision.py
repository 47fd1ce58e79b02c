"""LLaVA-OneVision (issue #15, Part B), what only this family has: processing equal to transformers'
LlavaOnevisionProcessor, its pooled prompt, STA only in the layers that feed the feature layer, its LoRA targets and
the commands on the tiny preset. The properties every family shares (identity at zero init, images and tiles left
alone, separation, frame order, own-token placement, gradients, save/load, generate, pooling's blindness to order)
run on it through the shared tests (tests/conftest.py's `preset` and `tower_preset`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from conftest import randomize_temporal

import stave
from stave.models import vision_outputs
from stave.models.frame_towers import encoder_layers
from stave.presets import tiny_model, tiny_tokenizer
from stave.processing import ConversationError, VideoChatProcessor
from stave.testing import model_inputs, tower_items
from stave.video import VideoOptions

PRESET = "tiny-llava-onevision"
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
WORDS = ["what", "happens", "?", "left", "right", "up"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(PRESET, WORDS)


def conversation(frames, answer=None, fps=3.0):
    messages = [
        {"role": "user", "content": [{"type": "video", "video": frames, "source_fps": fps},
                                     {"type": "text", "text": "what happens ?"}]},
    ]  # fmt: skip
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def clip(seed, frames=8, height=40, width=56):
    return np.random.default_rng(seed).integers(0, 255, (frames, height, width, 3), dtype=np.uint8)


# --- processing -------------------------------------------------------------------------------------------------


def _assert_same_inputs(name: str, ours: dict, theirs: dict) -> None:
    assert set(theirs) <= set(ours), (name, sorted(set(theirs) - set(ours)))
    for key, expected in theirs.items():
        expected = torch.as_tensor(expected)
        if expected.is_floating_point():
            assert ours[key].shape == expected.shape, (name, key)
            # transformers rescales and normalises in one fused step: one float32 rounding apart at most
            assert (ours[key] - expected.float()).abs().max() <= 1e-6, (name, key)
        else:
            assert ours[key].tolist() == expected.tolist(), (name, key)


def test_inputs_equal_the_stored_outputs_of_transformers_processor():
    """Token ids (each `<video>` as F * 2 * 2 + 1 `<video>` tokens: frames, pooled 2 x 2 per frame, the newline; each
    `<image>` as its anyres count) and pixel_values_videos (frames resized to 32 x 32, SigLIP-normalised),
    pixel_values (a base image and anyres tiles per image), image_sizes and batch_num_images equal what
    transformers 5.24's LlavaOnevisionProcessor made of the same frames and images
    (tests/fixtures/make_llava_onevision_processor_fixture.py): a shrunk, an enlarged clip and two videos in one
    prompt; a video then a wide image on 1 x 2 tiles, a small image, an image on 2 x 2 tiles whose features the
    model downscales (anyres_max_1), two images in one prompt (each a padded square, one tile)."""
    from fixtures.make_llava_onevision_processor_fixture import FIXTURE, conversation_cases, stave_inputs
    from fixtures.make_llava_onevision_processor_fixture import tokenizer as fixture_tokenizer
    from safetensors.torch import load_file

    stored = load_file(FIXTURE)
    tok = fixture_tokenizer()
    for case in conversation_cases():
        ours, _ = stave_inputs(case, tok)
        theirs = {key.split(".", 1)[1]: value for key, value in stored.items() if key.split(".", 1)[0] == case["name"]}
        kinds = {kind for kind, _ in case["sources"]}
        expected = {"input_ids"} | ({"pixel_values_videos"} if "video" in kinds else set())
        expected |= {"pixel_values", "image_sizes", "batch_num_images"} if "image" in kinds else set()
        assert set(theirs) == expected, case["name"]
        _assert_same_inputs(case["name"], ours, theirs)


def test_inputs_equal_transformers_processor_live():
    """The same comparison against transformers' LlavaOnevisionProcessor run here, where torchvision imports."""
    from conftest import require_torchvision
    from fixtures.make_llava_onevision_processor_fixture import (
        conversation_cases,
        reference_inputs,
        stave_inputs,
    )
    from fixtures.make_llava_onevision_processor_fixture import tokenizer as fixture_tokenizer

    require_torchvision()
    tok = fixture_tokenizer()
    for case in conversation_cases():
        ours, indices = stave_inputs(case, tok)
        _assert_same_inputs(case["name"], ours, reference_inputs(case, indices, tok))


def test_a_pooled_model_gets_one_frames_tokens_per_run_of_frames_and_the_newline_per_video(tokenizer):
    model = tiny_model(PRESET, tokenizer=tokenizer)
    video = tokenizer.convert_tokens_to_ids("<video>")
    options = VideoOptions(nframes=5, frame_factor=1)
    plain = VideoChatProcessor.for_model(tokenizer, model, options).encode(conversation(clip(0)), train=False)
    assert (plain["input_ids"] == video).sum() == 5 * 4 + 1
    for mode, runs in (("mean", 1), ("mean:2", 3)):  # runs of 2, 2 and 1 frames
        stave.set_temporal_pooling(model, mode)
        pooled = VideoChatProcessor.for_model(tokenizer, model, options).encode(conversation(clip(0)), train=False)
        assert (pooled["input_ids"] == video).sum() == runs * 4 + 1
        assert torch.equal(plain["pixel_values_videos"], pooled["pixel_values_videos"])
        batch = VideoChatProcessor.for_model(tokenizer, model).collate([pooled])
        assert "mm_token_type_ids" not in batch
        with torch.no_grad():  # the model's features fill the prompt's video tokens exactly
            assert torch.isfinite(model(**batch).logits).all()


def test_images_without_the_models_anyres_settings_are_refused_naming_the_sample(tokenizer):
    from stave.models.frame_towers import FrameSpec

    spec = FrameSpec(32, 8, (0.5,) * 3, (0.5,) * 3)  # no image_grid_pinpoints: not built with for_model
    processor = VideoChatProcessor(tokenizer, spec, model_type="llava_onevision")
    content = [{"type": "image", "image": clip(0, frames=1)[0]}, {"type": "text", "text": "?"}]
    with pytest.raises(ConversationError, match="^record 3: LLaVA-OneVision: images need the model's image_grid_pin"):
        processor.encode([{"role": "user", "content": content}], train=False, name="record 3")


def test_sta_leaves_a_batchs_anyres_tiles_alone_and_changes_its_video(tokenizer):
    """A batch of a wide image (base + 1 x 2 tiles), a small one (base + 1 tile, zero-padded to 3 as transformers
    pads a batch) and a video: with random STA the images reach the LLM as from the stock model, the video does not;
    each image sample is the same alone (media_batches)."""
    from media_batches import check_sta_leaves_tiles_alone_and_changes_the_video

    batch = check_sta_leaves_tiles_alone_and_changes_the_video(tiny_model(PRESET, tokenizer=tokenizer), tokenizer)
    assert batch["pixel_values"].shape == (2, 3, 3, 32, 32) and not batch["pixel_values"][1, 2].any()
    assert batch["image_sizes"].tolist() == [[30, 64], [20, 20]] and batch["batch_num_images"].tolist() == [1, 1]
    assert batch["pixel_values_videos"].shape == (1, 4, 3, 32, 32)


def test_a_batch_of_a_two_image_sample_and_a_one_image_sample_runs_through_the_model(tokenizer):
    """The model splits pixel_values by batch_num_images (a sample's only image: anyres tiles; each of several: one
    padded square) and checks the `<image>` counts against its features: a batch of both kinds runs, and each
    sample's logits are those it gets alone."""
    model = tiny_model(PRESET, tokenizer=tokenizer)
    processor = VideoChatProcessor.for_model(tokenizer, model)
    rng = np.random.default_rng(1)

    def sample(*shapes):
        content = [{"type": "image", "image": rng.integers(0, 255, (*shape, 3), dtype=np.uint8)} for shape in shapes]
        return processor.encode([{"role": "user", "content": [*content, {"type": "text", "text": "?"}]}], train=False)

    samples = [sample((30, 50), (44, 20)), sample((37, 90))]
    batch = processor.collate(samples)
    assert batch["batch_num_images"].tolist() == [2, 1] and batch["pixel_values"].shape == (3, 3, 3, 32, 32)
    with torch.no_grad():
        logits = model(**batch).logits
        for i, one in enumerate(samples):
            alone = model(**processor.collate([one])).logits[0]
            assert torch.allclose(logits[i, : alone.shape[0]], alone, atol=1e-5), i


# --- STA in the SigLIP tower ------------------------------------------------------------------------------------

def test_images_and_their_tiles_get_no_temporal_update_even_with_images_apply():
    """Images and the tiles of one image are not time: with random STA and images="apply", every image's tower
    outputs (a base image and its tile, rows of one tower call) stay those of the stock tower, bit for bit."""
    model = tiny_model(PRESET)
    inputs = model_inputs(model, images=[(1, 4, 4), (1, 4, 4)])
    with torch.no_grad():
        before = tower_items(model, inputs)
        stave.add_temporal_attention(model, init="random", images="apply")
        after = tower_items(model, inputs)
    assert [outputs.shape[0] for _, outputs in after] == [2, 2]  # a base image and one tile each
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(after, before, strict=True))


def test_blocks_after_the_feature_layer_get_no_sta_and_naming_one_is_refused():
    """vision_feature_layer -2 takes the hidden states before the last layer: STA goes into layers 0 and 1 only."""
    model = tiny_model(PRESET)
    model.config.vision_feature_layer = -2
    stave.add_temporal_attention(model)
    layers = encoder_layers(stave.vision_tower(model))
    assert [hasattr(layer, "temp_attn") for layer in layers] == [True, True, False]
    other = tiny_model(PRESET)
    other.config.vision_feature_layer = -2
    with pytest.raises(ValueError, match=r"blocks \[2\] come after the vision feature layer"):
        stave.add_temporal_attention(other, layers=[0, 2])


def frames(count, seed=0):
    """(count, 3, 32, 32) random pixels (already normalised)."""
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def features(model, kind, *args):
    """get_image_features / get_video_features of the base model with the config's feature layer and strategy
    (transformers 4.57 requires them), every tensor it hands the LLM (vision_outputs)."""
    config = model.config
    selection = dict(
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
    )
    return vision_outputs(getattr(model.model, f"get_{kind}_features")(*args, **selection))


def test_pooled_llm_inputs_of_a_clip_and_its_reverse_are_equal_without_sta_and_differ_with_it():
    model = tiny_model(PRESET)
    five = frames(5)[None]
    with torch.no_grad():  # "mean:2" on 5 frames: the means of frames (0, 1), (2, 3), (4), order visible between runs
        per_frame = features(model, "video", five)[0][:, : 5 * 4].reshape(1, 5, 4, -1)
        stave.set_temporal_pooling(model, "mean:2")
        runs = features(model, "video", five)[0]
        assert runs.shape[-2] == 3 * 4 + (1 if TRANSFORMERS_MAJOR >= 5 else 0)
        expected = torch.stack([per_frame[:, 0:2].mean(1), per_frame[:, 2:4].mean(1), per_frame[:, 4]], 1)
        torch.testing.assert_close(runs[:, : 3 * 4], expected.flatten(1, 2), rtol=0, atol=1e-7)
        within = features(model, "video", five[:, [1, 0, 3, 2, 4]])[0]
        torch.testing.assert_close(within, runs, atol=1e-7, rtol=1e-6)
        swapped = features(model, "video", five[:, [2, 3, 0, 1, 4]])[0]
        assert (swapped - runs)[:, : 2 * 4].abs().max() > 0.1 * runs[:, : 2 * 4].abs().max()  # the first two runs
    stave.set_temporal_pooling(model, "mean")
    clip_frames = frames(4)[None]
    with torch.no_grad():
        forward = features(model, "video", clip_frames)[0]
        backward = features(model, "video", clip_frames.flip(1))[0]
        torch.testing.assert_close(forward, backward, atol=1e-7, rtol=1e-6)
        assert forward.shape[-2] == 4 + (1 if TRANSFORMERS_MAJOR >= 5 else 0)  # 2 x 2 tokens (5.x: and the newline)
        stave.add_temporal_attention(model)
        randomize_temporal(model)
        forward = features(model, "video", clip_frames)[0]
        backward = features(model, "video", clip_frames.flip(1))[0]
    # the tiny projector's outputs are small (largest about 0.03): STA's change is a few % of them, 1000x the
    # rounding differences of the reversed clip without STA
    tokens = slice(0, 4)  # the 2 x 2 pooled tokens, not the newline (5.x)
    assert (forward[:, tokens] - backward[:, tokens]).abs().max() > 0.01 * forward[:, tokens].abs().max()


def test_lora_targets_the_siglip_and_llm_linears_never_sta_and_a_blank_image_reaches_every_tower_parameter():
    from peft import get_peft_model

    from stave.training.recipe import LoraSection
    from stave.training.run import vision_participation
    from stave.training.stages import lora_config

    model = stave.add_temporal_attention(tiny_model(PRESET).train())
    peft_model = get_peft_model(model, lora_config(model, LoraSection(), with_temporal=True))
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in peft_model.named_parameters() if ".lora_A." in name}
    tower_layers = {name for name in adapted if ".encoder.layers." in name}
    llm_layers = {name for name in adapted if ".language_model." in name}
    assert len(tower_layers) == 3 * 6 and len(llm_layers) == 2 * 7 and len(adapted) == 3 * 6 + 2 * 7
    assert not any("temp_attn" in name or "norm3" in name or "projector" in name for name in adapted)
    # a text-only batch: the blank image (no temporal update) still reaches every tower parameter, STA's included
    inputs = model_inputs(model, text_tokens=5)
    with vision_participation(peft_model):
        peft_model(**inputs, labels=inputs["input_ids"]).loss.backward()
    tower = stave.vision_tower(model)
    trainable = [(name, p) for name, p in tower.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]


def test_a_text_only_batch_reaches_the_projector_and_image_newline_in_full_fine_tuning():
    """The projector and image_newline sit outside the tower: the blank image also goes through get_image_features."""
    from stave.training.run import vision_participation

    model = tiny_model(PRESET).train()
    inputs = model_inputs(model, text_tokens=5)
    with vision_participation(model):
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert [name for name, param in model.named_parameters() if param.grad is None] == []


# --- commands ---------------------------------------------------------------------------------------------------


def test_forward_train_eval_ask_and_explain_from_the_command_line(tmp_path, capsys):
    """The tiny preset goes through every command: forward, a 2-step two-stage train (STA, then STA + LoRA) from
    configs/tiny.yaml, eval of the trained model on an MVBench layout, ask and explain (a t x t map over its 4
    frames of 4 x 4 patches)."""
    import json

    from benchmark_fixtures import write_mvbench
    from conftest import ROOT
    from training_data import moving_square, write_dataset

    from stave.cli import main
    from stave.video.encode import write_video

    assert main(["forward", "--preset", PRESET]) == 0
    assert "max |diff| to base = 0\n" in capsys.readouterr().out

    data = write_dataset(tmp_path / "data", kinds=["video", "image", "video", "video"])  # 56 x 56: base + 2 x 2 tiles
    output = tmp_path / "run"
    overrides = [f"model.path={PRESET}", f"data.datasets.0.path={data}", f"output_dir={output}",
                 "training.max_steps=2", "training.save_steps=2", "data.video.nframes=4"]  # fmt: skip
    assert main(["train", str(ROOT / "configs" / "tiny.yaml"), *overrides]) == 0
    model = output / "stage2" / "model"
    loaded = stave.load_model(model)
    assert stave.temporal_config(loaded) is not None and type(loaded.model).__name__ == "StaveLlavaOnevisionModel"
    capsys.readouterr()

    def clip(path):
        write_video(path, moving_square("left" if "a" in path.stem else "right", frames=8), fps=4)

    tasks = {"action_antonym": [
        {"video": "a.mp4", "question": f"which way {k} ?", "candidates": ["left", "right"], "answer": "left"}
        for k in range(2)
    ]}  # fmt: skip
    bench = write_mvbench(tmp_path / "mvbench", tasks, video_writer=clip)
    assert main(["eval", "--model", str(model), "--benchmark", "mvbench", "--data", str(bench), "--frames", "4",
                 "--output", str(tmp_path / "eval"), "--scoring", "loglik"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["overall"]["n"] == 2

    clip_path = write_video(tmp_path / "clip.mp4", moving_square("left", frames=8), fps=4)
    flags = ["--model", str(model), "--video", str(clip_path), "--frames", "4"]
    capsys.readouterr()
    assert main(["ask", *flags, "which way ?", "--max-new-tokens", "2"]) == 0
    answer = stave.evaluation.ask(str(model), clip_path, "which way ?", video_options=VideoOptions(nframes=4),
                                  max_new_tokens=2)  # fmt: skip
    assert capsys.readouterr().out == (answer or "(the model produced no text)") + "\n"
    assert main(["explain", *flags, "--out", str(tmp_path / "map.png")]) == 0
    assert "grid t,h,w = (4, 4, 4)" in capsys.readouterr().out and (tmp_path / "map.png").stat().st_size > 2000


def test_info_counts_sta_on_the_published_tower(capsys):
    """26 SigLIP layers of width 1152 (16 heads of 72): the same STA per block as Qwen3-VL-8B's blocks."""
    from stave.cli import main

    assert main(["info", "--preset", "llava-onevision-7b"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("llava-onevision-7b"))
    assert row.split()[1:6] == ["26", "26", "4x72", "397,747,744", "1,331,424"]
