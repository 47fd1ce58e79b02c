"""Conversations -> model inputs: both public formats, video token expansion, labels, padding, and a
forward pass of a tiny model on the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stave
from stave.presets import tiny_model
from stave.processing import IGNORE_INDEX, NEEDS_MM_TOKEN_TYPES, ConversationError, VideoChatProcessor, to_messages
from stave.tokenizer import build_word_tokenizer
from stave.video import PatchSpec, VideoOptions
from stave.video.encode import write_video

WORDS = ["what", "is", "happening", "?", "moving", "left", "right", "which", "moved", "first", "red", "blue"]
OPTIONS = VideoOptions(nframes=4, min_pixels=28 * 28, max_pixels=56 * 84)


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
