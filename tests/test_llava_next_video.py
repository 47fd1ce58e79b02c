"""LLaVA-NeXT-Video (issue #15: a new frame-per-image family in one adapter file): processing equal to transformers'
LlavaNextVideoProcessor, what is particular to its CLIP tower (STA never on the CLS token, never after the feature
layer; LoRA likewise), temporal pooling's prompt, training and evaluation, on the tiny random preset. What every
family shares (identity at zero init, images untouched, order, batching, stage-1 gradients, save/load, generate,
pooled order) is tested on tiny-llava-next-video by the shared property tests (conftest's `preset`, `tower_preset`)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import randomize_temporal

import stave
from stave.models import vision_outputs
from stave.models.frame_towers import encoder_layers, video_frames
from stave.presets import tiny_model, tiny_tokenizer
from stave.processing import ConversationError, VideoChatProcessor
from stave.testing import model_inputs
from stave.video import VideoOptions

PRESET = "tiny-llava-next-video"
WORDS = ["what", "happens", "?", "left", "right"]


def _assert_same_inputs(name: str, ours: dict, theirs: dict) -> None:
    assert set(theirs) <= set(ours), (name, sorted(set(theirs) - set(ours)))
    for key, expected in theirs.items():
        expected = torch.as_tensor(expected)
        if expected.is_floating_point():
            assert ours[key].shape == expected.shape, (name, key, ours[key].shape, expected.shape)
            # transformers rescales and normalises in one fused step: one float32 rounding apart at most
            assert (ours[key] - expected.float()).abs().max() <= 1e-6, (name, key)
        else:
            assert ours[key].tolist() == expected.tolist(), (name, key)


def test_inputs_equal_the_stored_outputs_of_transformers_processor():
    """Token ids (each `<video>` as F * 2 * 2 `<video>` tokens, no newline) and pixel_values_videos (shorter side
    resized to 32, center-cropped to 32 x 32, CLIP-normalised) equal what transformers 5.24's LlavaNextVideoProcessor
    made of the same frames (tests/fixtures/make_llava_next_video_processor_fixture.py): landscape, portrait
    (odd crop offsets), an enlarged clip and two videos in one prompt."""
    from fixtures.make_llava_next_video_processor_fixture import FIXTURE, conversation_cases, stave_inputs
    from fixtures.make_llava_next_video_processor_fixture import tokenizer as fixture_tokenizer
    from safetensors.torch import load_file

    stored = load_file(FIXTURE)
    tok = fixture_tokenizer()
    for case in conversation_cases():
        ours, _ = stave_inputs(case, tok)
        theirs = {key.split(".", 1)[1]: value for key, value in stored.items() if key.split(".", 1)[0] == case["name"]}
        assert set(theirs) == {"input_ids", "pixel_values_videos"}, case["name"]
        _assert_same_inputs(case["name"], ours, theirs)


def test_inputs_equal_transformers_processor_live():
    """The same comparison against transformers' LlavaNextVideoProcessor run here, where torchvision imports."""
    from conftest import require_torchvision
    from fixtures.make_llava_next_video_processor_fixture import conversation_cases, reference_inputs, stave_inputs
    from fixtures.make_llava_next_video_processor_fixture import tokenizer as fixture_tokenizer

    require_torchvision()
    tok = fixture_tokenizer()
    for case in conversation_cases():
        ours, indices = stave_inputs(case, tok)
        _assert_same_inputs(case["name"], ours, reference_inputs(case, indices, tok))


def test_shortest_edge_resizes_keeping_the_aspect_and_excludes_frame_size():
    """The shorter side becomes S, the longer int(S * long / short) (transformers' rounding down)."""
    from stave.video import read_video

    for (height, width), size in [((40, 57), (32, 45)), ((45, 33), (43, 32)), ((20, 20), (32, 32))]:
        source = np.zeros((2, height, width, 3), dtype=np.uint8)
        assert read_video(source, VideoOptions(nframes=2, shortest_edge=32)).frames.shape[-2:] == size
    with pytest.raises(ValueError, match="frame_size and shortest_edge are mutually exclusive"):
        VideoOptions(frame_size=(32, 32), shortest_edge=32)


def test_pooling_shortens_the_prompt_to_one_frame_and_images_are_refused_naming_the_sample():
    tokenizer = tiny_tokenizer(PRESET, WORDS)
    model = tiny_model(PRESET, tokenizer=tokenizer)
    video = tokenizer.convert_tokens_to_ids("<video>")
    frames = np.random.default_rng(0).integers(0, 255, (8, 40, 56, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "video", "video": frames, "source_fps": 3.0},
                                             {"type": "text", "text": "what happens ?"}]}]  # fmt: skip
    options = VideoOptions(nframes=6)
    plain = VideoChatProcessor.for_model(tokenizer, model, options).encode(messages, train=False)
    stave.set_temporal_pooling(model, "mean")
    pooled = VideoChatProcessor.for_model(tokenizer, model, options).encode(messages, train=False)
    assert (plain["input_ids"] == video).sum() == 6 * 4 and (pooled["input_ids"] == video).sum() == 4
    assert torch.equal(plain["pixel_values_videos"], pooled["pixel_values_videos"])
    stave.set_temporal_pooling(model, "mean:4")  # runs of 4 and 2 frames: two frames' worth of tokens
    windowed = VideoChatProcessor.for_model(tokenizer, model, options).encode(messages, train=False)
    assert (windowed["input_ids"] == video).sum() == 2 * 4
    with torch.no_grad():  # and the model's features: as many tokens as the prompt holds
        features = vision_outputs(model.model.get_video_features(windowed["pixel_values_videos"]))
    assert sum(f.numel() // f.shape[-1] for f in features) == 2 * 4
    image = {"role": "user", "content": [{"type": "image", "image": frames[0]}, {"type": "text", "text": "?"}]}
    with pytest.raises(ConversationError, match="^record 3: LLaVA-NeXT-Video: stave's processor takes videos only"):
        VideoChatProcessor.for_model(tokenizer, model).encode([image], train=False, name="record 3")


# --- STA in the CLIP tower --------------------------------------------------------------------------------------


def frames(count, seed=0):
    """(count, 3, 32, 32) random pixels (already normalised)."""
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def tower_states(tower, pixels, frames_per_video=None, layer=-2):
    """The tower's hidden states of `layer` (rows, 1 + 16, D; the CLS token first): videos of `frames_per_video`
    frames, or images without."""
    if frames_per_video is None:
        return tower(pixels, output_hidden_states=True).hidden_states[layer]
    with video_frames(frames_per_video):
        return tower(pixels, output_hidden_states=True).hidden_states[layer]


def sta_model(**overrides):
    model = tiny_model(PRESET)
    stave.add_temporal_attention(model, **overrides)
    randomize_temporal(model)
    return model


def test_sta_goes_only_into_the_layers_that_feed_the_llm():
    """vision_feature_layer -2 (published): the last CLIP layer's output reaches nothing the LLM sees."""
    model = stave.add_temporal_attention(tiny_model(PRESET))
    assert [hasattr(layer, "temp_attn") for layer in encoder_layers(stave.vision_tower(model))] == [True, True, False]
    with pytest.raises(ValueError, match=r"blocks \[2\] come after the vision feature layer"):
        stave.add_temporal_attention(tiny_model(PRESET), layers=[0, 2])


def test_update_lands_on_its_own_patch_in_every_frame_of_its_own_video_and_never_on_cls():
    """With spatial attention and MLP silenced, a layer is x + STA(norm3(x)): perturbing one patch of one frame
    changes exactly that patch position in every frame of that video (token 1 + position: CLS first), nothing in the
    other video, and no CLS token."""
    model = sta_model()
    tower = stave.vision_tower(model)
    with torch.no_grad():
        for layer in encoder_layers(tower):
            for module in (layer.self_attn, layer.mlp):
                for param in module.parameters():
                    param.zero_()
    pixels = frames(6)  # two videos of 3 frames
    changed = pixels.clone()
    changed[4, :, 8:16, 16:24] += 3.0  # video 1, its frame 1, patch (row 1, column 2) = position 6, token 7
    with torch.no_grad():
        diff = (tower_states(tower, changed, 3) - tower_states(tower, pixels, 3)).abs().sum(-1)  # (6, 17)
    assert set(map(tuple, torch.nonzero(diff > 1e-6).tolist())) == {(3, 7), (4, 7), (5, 7)}


def test_cls_tokens_get_no_temporal_update():
    """A CLS token differs from the stock tower's only through spatial attention to patches STA changed: with the
    first layer alone given STA, the first layer's output CLS tokens are the stock ones exactly, its patches not."""
    stock = tiny_model(PRESET)
    model = tiny_model(PRESET)
    stave.add_temporal_attention(model, layers=[0])
    randomize_temporal(model)
    pixels = frames(4)
    with torch.no_grad():
        before = tower_states(stave.vision_tower(stock), pixels, 4, layer=1)
        after = tower_states(stave.vision_tower(model), pixels, 4, layer=1)
    assert torch.equal(before[:, 0], after[:, 0])
    assert (before[:, 1:] - after[:, 1:]).abs().max() > 1e-3


def test_lora_targets_clip_and_llm_linears_and_a_text_only_batch_reaches_every_parameter():
    """LoRA adapts the linears of the CLIP layers that feed the LLM (not the last one: vision_feature_layer -2 leaves
    its output unused) and the LLM's, never STA or the projector; in full fine-tuning a batch
    without pixels still gives every parameter a (zero) gradient: the last CLIP layer (after the feature layer), the
    projector and image_newline (outside the tower) included."""
    from peft import get_peft_model

    from stave.training.recipe import LoraSection
    from stave.training.run import vision_participation
    from stave.training.stages import lora_config

    model = stave.add_temporal_attention(tiny_model(PRESET).train())
    peft_model = get_peft_model(model, lora_config(model, LoraSection(), with_temporal=True))
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in peft_model.named_parameters() if ".lora_A." in name}
    tower_layers = {name for name in adapted if ".encoder.layers." in name}
    llm_layers = {name for name in adapted if ".language_model." in name}
    assert {re.search(r"\.layers\.(\d+)\.", name)[1] for name in tower_layers} == {"0", "1"}  # of 3 layers
    assert len(tower_layers) == 2 * 6 and len(llm_layers) == 2 * 7 and len(adapted) == 2 * 6 + 2 * 7
    assert not any("temp_attn" in name or "norm3" in name or "projector" in name for name in adapted)
    full = tiny_model(PRESET).train()
    inputs = model_inputs(full, text_tokens=5)
    with vision_participation(full):
        full(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert [name for name, param in full.named_parameters() if param.grad is None] == []


# --- commands ---------------------------------------------------------------------------------------------------


def test_train_and_eval_from_the_command_line(tmp_path, capsys):
    """A 2-step two-stage train (STA, then STA + LoRA) of the tiny preset from configs/tiny.yaml, then eval of the
    trained model on an MVBench layout."""
    import json

    from benchmark_fixtures import write_mvbench
    from conftest import ROOT
    from training_data import moving_square, write_dataset

    from stave.cli import main
    from stave.video.encode import write_video

    data = write_dataset(tmp_path / "data", 4)
    output = tmp_path / "run"
    overrides = [f"model.path={PRESET}", f"data.datasets.0.path={data}", f"output_dir={output}",
                 "training.max_steps=2", "training.save_steps=2", "data.video.nframes=4"]  # fmt: skip
    assert main(["train", str(ROOT / "configs" / "tiny.yaml"), *overrides]) == 0
    model = output / "stage2" / "model"
    loaded = stave.load_model(model)
    assert stave.temporal_config(loaded) is not None and type(loaded.model).__name__ == "StaveLlavaNextVideoModel"

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


def test_info_counts_sta_on_the_published_tower(capsys):
    """CLIP ViT-L/14-336: 24 layers of width 1024 (16 heads of 64); a bare tower counts STA in all 24."""
    from stave.cli import main

    assert main(["info", "--preset", "llava-next-video-7b"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("llava-next-video-7b"))
    assert row.split()[1:6] == ["24", "24", "4x64", "303,507,456", "1,052,416"]
