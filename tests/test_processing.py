"""Conversations -> model inputs: both public formats, video token expansion, labels, padding, and a
forward pass of a tiny model on the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stave
from stave.presets import tiny_model
from stave.processing import (
    IGNORE_INDEX,
    NEEDS_MM_TOKEN_TYPES,
    TRANSFORMERS_MAJOR,
    ConversationError,
    VideoChatProcessor,
    to_messages,
)
from stave.tokenizer import build_word_tokenizer
from stave.video import PatchSpec, VideoOptions
from stave.video.encode import write_video

WORDS = ["what", "is", "happening", "?", "moving", "left", "right", "which", "moved", "first", "red", "blue"]
SMALL = dict(min_pixels=28 * 28, max_pixels=56 * 84)
OPTIONS = VideoOptions(nframes=4, **SMALL)


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(WORDS)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    write_video(root / "a.mp4", rng.integers(0, 255, (8, 56, 84, 3), dtype=np.uint8), fps=4)
    write_video(root / "b.mp4", rng.integers(0, 255, (6, 84, 56, 3), dtype=np.uint8), fps=4)
    return root


@pytest.fixture
def processor(tokenizer, data_root):
    return VideoChatProcessor(tokenizer, PatchSpec(), OPTIONS, data_root=data_root)


def llava(video="a.mp4", question="<video>\nwhat is happening?", answer="moving left"):
    return {"video": video, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}


def messages(video="a.mp4", answer="moving left"):
    return [
        {
            "role": "user",
            "content": [{"type": "video", "video": video}, {"type": "text", "text": "what is happening?"}],
        },
        {"role": "assistant", "content": answer},
    ]


def test_both_formats_give_identical_inputs(processor):
    a = processor.encode(llava(), train=True)
    b = processor.encode(messages(), train=True)
    c = processor.encode({"messages": messages()}, train=True)
    for key in ("input_ids", "labels", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw"):
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key


def test_video_pad_expands_to_the_merged_token_count(processor, tokenizer):
    encoded = processor.encode(messages(), train=True)
    ((t, h, w),) = encoded["video_grid_thw"].tolist()
    pads = (encoded["input_ids"] == tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum().item()
    assert pads == t * h * w // 4 == (encoded["mm_token_type_ids"] == 2).sum().item()
    assert encoded["pixel_values_videos"].shape[0] == t * h * w
    start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    first_pad = encoded["input_ids"].tolist().index(tokenizer.convert_tokens_to_ids("<|video_pad|>"))
    assert encoded["input_ids"][first_pad - 1] == start


def test_labels_cover_exactly_the_answers(processor, tokenizer):
    sample = {
        "video": "a.mp4",
        "conversations": [
            {"from": "human", "value": "<video> what is happening?"},
            {"from": "gpt", "value": "moving left"},
            {"from": "human", "value": "which moved first?"},
            {"from": "gpt", "value": "red"},
        ],
    }
    encoded = processor.encode(sample, train=True)
    labelled = encoded["labels"][encoded["labels"] != IGNORE_INDEX].tolist()
    assert tokenizer.convert_ids_to_tokens(labelled) == ["moving", "left", "<|im_end|>", "red", "<|im_end|>"]


def test_generation_prompt_has_no_labels(processor, tokenizer):
    encoded = processor.encode(messages()[:1], train=False)
    assert "labels" not in encoded
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][-2:].tolist()) == ["<|im_start|>", "assistant"]


def test_collate_pads_right_for_training_and_left_for_generation(processor, tokenizer):
    long = processor.encode(llava(video="b.mp4", answer="moving right"), train=True)
    short = processor.encode(llava(question="<video> what?", answer="left"), train=True)
    batch = processor.collate([long, short], padding_side="right")
    n_long, n_short = len(long["input_ids"]), len(short["input_ids"])
    assert batch["input_ids"].shape == (2, max(n_long, n_short))
    assert batch["attention_mask"].sum(1).tolist() == [n_long, n_short]
    assert batch["attention_mask"][1, :n_short].all() and not batch["attention_mask"][1, n_short:].any()
    assert (batch["labels"][1, n_short:] == IGNORE_INDEX).all()
    assert batch["video_grid_thw"].tolist() == long["video_grid_thw"].tolist() + short["video_grid_thw"].tolist()
    assert ("mm_token_type_ids" in batch) == NEEDS_MM_TOKEN_TYPES
    left = processor.collate([long, short], padding_side="left")
    assert left["attention_mask"][1, -n_short:].all() and not left["attention_mask"][1, :-n_short].any()
    assert torch.equal(left["input_ids"][1, -n_short:], short["input_ids"])


def test_batch_runs_through_a_tiny_model_with_sta(processor, tokenizer):
    model = stave.add_temporal_attention(tiny_model())
    model.resize_token_embeddings(len(tokenizer))
    model.config.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    model.config.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    model.config.vision_start_token_id = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    model.config.vision_end_token_id = tokenizer.convert_tokens_to_ids("<|vision_end|>")
    batch = processor.collate([processor.encode(llava(), train=True), processor.encode(messages("b.mp4"), train=True)])
    out = model(**batch)
    assert torch.isfinite(out.loss)


def test_images_are_supported(processor, tokenizer):
    image = np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8)
    sample = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "red?"}]},
        {"role": "assistant", "content": "blue"},
    ]
    encoded = processor.encode(sample, train=True)
    assert encoded["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert (encoded["mm_token_type_ids"] == 1).sum() == 4


def test_image_pixels_are_those_of_transformers_processors(tokenizer, tmp_path):
    """An image file in a conversation gets the pixel values transformers' torchvision image processor gave it
    (the stored fixture; resizing on)."""
    from fixtures.make_processor_fixture import parity_cases
    from PIL import Image
    from test_video import stored_processor_output

    case = next(c for c in parity_cases() if c["name"] == "image_97x513")
    Image.fromarray(case["frames"][0]).save(tmp_path / "image.png")
    budget = case["budget"]
    processor = VideoChatProcessor(
        tokenizer, image_min_pixels=budget["min_pixels"], image_max_pixels=budget["max_pixels"], data_root=tmp_path
    )
    sample = {
        "image": "image.png",
        "conversations": [{"from": "human", "value": "<image> red?"}, {"from": "gpt", "value": "blue"}],
    }
    encoded = processor.encode(sample, train=True)
    expected, grid = stored_processor_output(case["name"])
    assert encoded["image_grid_thw"].tolist() == grid
    assert (encoded["pixel_values"] - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"video": "a.mp4"}, r"expected 'messages' or 'conversations'"),
        ({"video": "a.mp4", "conversations": []}, r"conversations: must be a non-empty list"),
        ({"video": "a.mp4", "conversations": [{"from": "robot", "value": "hi"}]}, r"conversations\[0\]\.from"),
        ({"video": "a.mp4", "conversations": [{"value": "hi"}]}, r"conversations\[0\]: needs 'from' and 'value'"),
        ({"video": ["a.mp4", "b.mp4"], "conversations": [{"from": "human", "value": "<video> x"}]},
         r"video: 2 given but 1 placeholder"),
        ({"conversations": [{"from": "human", "value": "<video> x"}]}, r"more <video> placeholders"),
        ([{"role": "user"}], r"sample\[0\]: a message needs 'role' and 'content'"),
        ([{"role": "user", "content": [{"type": "audio"}]}], r"sample\[0\]\.content\[0\]"),
    ],
)  # fmt: skip
def test_malformed_conversations_name_the_field(sample, message):
    with pytest.raises(ConversationError, match=message):
        to_messages(sample)


def test_training_sample_must_end_with_an_answer(processor):
    with pytest.raises(ConversationError, match="must end with an assistant answer"):
        processor.encode(messages()[:1], train=True)


def test_missing_video_is_named(processor):
    from stave.video import VideoNotFoundError

    with pytest.raises(VideoNotFoundError, match=r"nope\.mp4"):
        processor.encode(llava(video="nope.mp4"), train=True)


# -- Qwen2.5-VL: second_per_grid_ts ----------------------------------------------------------------------


def qwen2_5_vl(tokenizer):
    model = tiny_model("tiny-qwen2.5-vl")
    model.resize_token_embeddings(len(tokenizer))
    for name, token in (
        ("video_token_id", "<|video_pad|>"),
        ("image_token_id", "<|image_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        setattr(model.config, name, tokenizer.convert_tokens_to_ids(token))
    return model


def temporal_positions(model, batch) -> list[list[int]]:
    """The temporal (first) M-RoPE position of every video token, per sample, as the model computes them."""
    import inspect

    names = inspect.signature(model.model.get_rope_index).parameters
    keys = ("input_ids", "mm_token_type_ids", "video_grid_thw", "second_per_grid_ts", "attention_mask")
    positions, _ = model.model.get_rope_index(**{k: batch[k] for k in keys if k in names and k in batch})
    video = batch["input_ids"] == model.config.video_token_id
    return [positions[0, i][video[i]].tolist() for i in range(len(video))]


@pytest.mark.filterwarnings("ignore:transformers .* truncates:UserWarning")  # 4.57: tested below
def test_qwen2_5_vl_batches_carry_second_per_grid_ts_per_video(tokenizer, data_root):
    model = qwen2_5_vl(tokenizer)
    processor = VideoChatProcessor.for_model(tokenizer, model, OPTIONS, data_root=data_root)
    assert processor.model_type == "qwen2_5_vl" and processor.spec.temporal_patch_size == 2
    a, b = processor.encode(llava("a.mp4"), train=True), processor.encode(llava("b.mp4"), train=True)
    # a: 8 frames at 4 fps, 4 taken over 2 s -> 2 fps; b: 6 frames at 4 fps, 4 taken over 1.5 s -> 8/3 fps
    assert [c.sampled_fps for c in a["clips"] + b["clips"]] == pytest.approx([2.0, 8 / 3])
    for encoded in (a, b):
        (clip,) = encoded["clips"]
        expected = torch.tensor([2 / clip.sampled_fps], dtype=torch.float32)
        assert encoded["second_per_grid_ts"].dtype == torch.float32
        assert torch.equal(encoded["second_per_grid_ts"], expected)
    batch = processor.collate([a, b])
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([1.0, 0.75])
    assert len(batch["second_per_grid_ts"]) == len(batch["video_grid_thw"])


def test_qwen2_vl_batches_have_no_second_per_grid_ts(processor):
    assert processor.model_type == "qwen2_vl"
    batch = processor.collate([processor.encode(llava(), train=True)])
    assert "second_per_grid_ts" not in batch
    with pytest.raises(ValueError, match="model_type must be one of"):
        VideoChatProcessor(processor.tokenizer, model_type="llava")


@pytest.mark.filterwarnings("ignore:transformers .* truncates:UserWarning")  # 4.57: tested below
def test_qwen2_5_vl_model_places_video_tokens_by_second_per_grid_ts(tokenizer, data_root):
    """The model consumes the values: the temporal positions of video tokens step by tokens_per_second *
    second_per_grid_ts, and other values change the positions and the logits."""
    model = qwen2_5_vl(tokenizer)
    processor = VideoChatProcessor.for_model(tokenizer, model, VideoOptions(nframes=6, **SMALL), data_root=data_root)
    batch = processor.collate([processor.encode(llava("a.mp4"), train=True)])  # 6 of 8 frames at 4 fps: 3 fps
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([2 / 3])
    per_second = model.config.vision_config.tokens_per_second
    batch["second_per_grid_ts"] = torch.tensor([2.0])  # whole seconds: used alike by transformers 4.57 and 5.x
    positions = temporal_positions(model, batch)[0]
    steps = sorted(set(positions))
    assert len(steps) == 3 and [s - steps[0] for s in steps] == [0, 2 * per_second, 4 * per_second]
    with torch.no_grad():
        out = model(**batch)
        batch["second_per_grid_ts"] = torch.tensor([1.0])
        assert sorted(set(temporal_positions(model, batch)[0]))[1] - steps[0] == per_second
        other = model(**batch)
    assert torch.isfinite(out.loss) and not torch.allclose(out.logits, other.logits)


def test_fractional_second_per_grid_ts_is_used_as_is_on_transformers_5_and_truncated_on_4(tokenizer, data_root):
    model = qwen2_5_vl(tokenizer)
    processor = VideoChatProcessor.for_model(tokenizer, model, VideoOptions(nframes=6, **SMALL), data_root=data_root)
    if TRANSFORMERS_MAJOR < 5:
        with pytest.warns(UserWarning, match=r"truncates Qwen2.5-VL's second_per_grid_ts"):
            encoded = processor.encode(llava("a.mp4"), train=True)
    else:
        encoded = processor.encode(llava("a.mp4"), train=True)
    batch = processor.collate([encoded])
    interval = model.config.vision_config.tokens_per_second * 2 / 3
    steps = sorted(set(temporal_positions(model, batch)[0]))
    if TRANSFORMERS_MAJOR < 5:
        assert len(steps) == 1  # int(2/3) == 0: every temporal patch at one position
    else:
        assert [s - steps[0] for s in steps] == [int(k * interval) for k in range(3)]
