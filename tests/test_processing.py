"""Conversations -> model inputs: both public formats, video token expansion, labels, padding, and a
forward pass of a tiny model on the result."""

from __future__ import annotations

import warnings

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
        ({"video": "a.mp4", "conversations": [{"value": "hi"}]},
         r"conversations\[0\]: a message needs 'from' and 'value'"),
        ({"video": ["a.mp4", "b.mp4"], "conversations": [{"from": "human", "value": "<video> x"}]},
         r"sample: 1 <video> placeholder\(s\) in the text but 2 video\(s\) in 'video'"),
        ({"conversations": [{"from": "human", "value": "<video> x"}]}, r"1 <video> placeholder\(s\) .* but 0 video"),
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



@pytest.mark.parametrize("pooling, truncated", [(None, True), ("mean:2", False), ("mean:3", True), ("mean", False)])
def test_the_4_57_truncation_warning_is_about_the_seconds_the_positions_use(tokenizer, data_root, pooling, truncated):
    """8 of 8 frames at 4 fps: 0.5 s per temporal patch. Pooled by mean:K, M-RoPE places runs at 0.5 x K s (1.0:
    whole, nothing truncated; 1.5: truncated); with `mean` each video is one step, at its start, whatever the value.
    transformers 5 truncates nothing."""
    model = qwen2_5_vl(tokenizer)
    if pooling:
        stave.set_temporal_pooling(model, pooling)
    processor = VideoChatProcessor.for_model(tokenizer, model, VideoOptions(nframes=8, **SMALL), data_root=data_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoded = processor.encode(llava("a.mp4"), train=True)
    assert encoded["second_per_grid_ts"].tolist() == [0.5]  # the processor's value; pooling scales it in the model
    messages = [str(w.message) for w in caught if "truncates" in str(w.message)]
    assert len(messages) == (truncated and TRANSFORMERS_MAJOR < 5)
    if messages and pooling:
        assert "[1.5] (x 3, the seconds of each pooled run of 3 temporal patches) act as [1.0]" in messages[0]


# -- the published formats, one placeholder rule ----------------------------------------------------------------

QUESTION = "what is happening?"
ANSWER = "moving left"
# Each record below is the shape a framework documents, with this test's question, answer and videos.
PUBLISHED = {
    # LLaMA-Factory data/mllm_video_demo.json (and data/README.md, "OpenAI Format" + "Multimodal Video Dataset")
    "llamafactory-openai": {
        "messages": [{"content": f"<video>{QUESTION}", "role": "user"}, {"content": ANSWER, "role": "assistant"}],
        "videos": ["a.mp4"],
    },
    # LLaMA-Factory data/README.md, "Sharegpt Format" / "Multimodal Video Dataset"
    "llamafactory-sharegpt": {
        "conversations": [{"from": "human", "value": f"<video>{QUESTION}"}, {"from": "gpt", "value": ANSWER}],
        "videos": ["a.mp4"],
    },
    # LLaMA-Factory data/README.md, "Alpaca Format" (+ a videos column)
    "llamafactory-alpaca": {"instruction": f"<video>{QUESTION}", "input": "", "output": ANSWER, "videos": ["a.mp4"]},
    # ms-swift docs/source_en/Customization/Custom-dataset.md, "Multimodal" (videos may also be "video")
    "ms-swift": {
        "messages": [{"role": "user", "content": f"<video>{QUESTION}"}, {"role": "assistant", "content": ANSWER}],
        "videos": ["a.mp4"],
    },
    # Qwen qwen-vl-finetune/README.md (Qwen3-VL repository), "Video Example"
    "qwen-vl-finetune": {
        "video": "a.mp4",
        "conversations": [{"from": "human", "value": f"<video>\n{QUESTION}"}, {"from": "gpt", "value": ANSWER}],
    },
    # Qwen messages with typed content (qwen-vl-utils)
    "qwen-messages": [
        {"role": "user", "content": [{"type": "video", "video": "a.mp4"}, {"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": ANSWER},
    ],
}


@pytest.mark.parametrize("shape", list(PUBLISHED))
def test_every_published_format_gives_the_same_inputs(processor, shape):
    reference = processor.encode(PUBLISHED["qwen-messages"], train=True)
    encoded = processor.encode(PUBLISHED[shape], train=True)
    assert encoded["video_grid_thw"].tolist() == reference["video_grid_thw"].tolist() == [[2, 4, 6]]
    for key in ("input_ids", "labels", "mm_token_type_ids", "pixel_values_videos"):
        assert torch.equal(encoded[key], reference[key]), key


def test_the_llamafactory_demo_record_keeps_its_video_and_no_placeholder_text(processor, tokenizer):
    """The record of issue #23: once read as text only, '<video>' trained on and the video dropped."""
    messages_ = to_messages(PUBLISHED["llamafactory-openai"])
    assert messages_[0]["content"] == [{"type": "video", "video": "a.mp4"}, {"type": "text", "text": QUESTION}]
    encoded = processor.encode(PUBLISHED["llamafactory-openai"], train=True)
    assert (encoded["mm_token_type_ids"] == 2).sum() == 2 * 4 * 6 // 4
    assert "<video>" not in tokenizer.convert_ids_to_tokens(encoded["input_ids"].tolist())


def test_system_prompt_multi_turn_and_media_in_placeholder_order():
    record = {  # ms-swift's "Multimodal" SFT example: system, an image and a video in one turn, then more turns
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "<image>what is this, <video>what is in the video?"},
            {"role": "assistant", "content": "red"},
            {"role": "user", "content": "<video>and here?"},
            {"role": "assistant", "content": "blue"},
        ],
        "images": ["x.png"],
        "videos": ["a.mp4", "b.mp4"],
    }
    out = to_messages(record)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert out[1]["content"] == [
        {"type": "image", "image": "x.png"},
        {"type": "text", "text": "what is this,"},
        {"type": "video", "video": "a.mp4"},
        {"type": "text", "text": "what is in the video?"},
    ]
    assert out[3]["content"][0] == {"type": "video", "video": "b.mp4"}
    sharegpt = {  # LLaMA-Factory's sharegpt "system" column; alpaca's history pairs
        "conversations": [{"from": "human", "value": "<video>q"}, {"from": "gpt", "value": "a"}],
        "system": "be brief",
        "videos": ["a.mp4"],
    }
    assert to_messages(sharegpt)[0] == {"role": "system", "content": [{"type": "text", "text": "be brief"}]}
    alpaca = {"instruction": "<video>q2", "input": "why", "output": "a2", "history": [["q1", "a1"]], "video": "a.mp4"}
    assert [(m["role"], [i.get("text", i.get("video")) for i in m["content"]]) for m in to_messages(alpaca)] == [
        ("user", ["q1"]), ("assistant", ["a1"]), ("user", ["a.mp4", "q2\nwhy"]), ("assistant", ["a2"])
    ]  # fmt: skip


def _turns(question, answer="left"):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        # a placeholder without media: the record without its "videos" list
        ({"messages": _turns("<video>what?")}, r"1 <video> placeholder\(s\) in the text but 0 video\(s\) given"),
        # media without a placeholder
        ({"messages": _turns("what?"), "videos": ["a.mp4"]}, r"0 <video> placeholder\(s\) .* 1 video\(s\) in 'videos'"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "what?"}, {"from": "gpt", "value": "x"}]},
         r"0 <video> placeholder\(s\) in the text but 1 video\(s\) in 'video'; put a <video>"),
        # more placeholders than media, per kind
        ({"messages": _turns("<video><video>what?"), "videos": ["a.mp4"]}, r"2 <video> placeholder\(s\) .* 1 video"),
        ({"messages": _turns("<video><image>what?"), "videos": ["a.mp4"]}, r"1 <image> placeholder\(s\) .* 0 image"),
        # frames given as if they were videos
        ({"messages": _turns("<video>what?"), "videos": ["f0.png", "f1.png"]}, r"a list inside the list"),
        # a placeholder string where the format gives media as items
        ([{"role": "user", "content": [{"type": "video", "video": "a.mp4"}, {"type": "text", "text": "<video>q"}]},
          {"role": "assistant", "content": "x"}], r"sample\[0\]\.content\[1\]\.text: holds <video>"),
        ({"messages": _turns("<audio>what?")}, r"messages\[0\]\.content: holds <audio>; audio is not supported"),
        ({"video": "a.mp4", "videos": ["a.mp4"], "messages": _turns("<video>q")}, r"both 'videos' and 'video'"),
    ],
)  # fmt: skip
def test_placeholders_must_match_the_media_in_every_format(record, message):
    with pytest.raises(ConversationError, match=message):
        to_messages(record)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "<video>q"}, {"from": "gpt", "value": 123}]},
         r"f\.jsonl:line 3\.conversations\[1\]\.value: must be a string, got int 123"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "<video>q"},
                                              {"from": "gpt", "value": ["left", "right"]}]},
         r"conversations\[1\]\.value: must be a string, got list"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "x"}]},
         r"conversations\[0\]\.value: must be a string, got NoneType None"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "<video>q"}, {"from": "gpt", "value": ""}]},
         r"conversations\[1\]\.value: an empty answer"),
        ({"messages": _turns("q", [{"type": "text", "text": " "}])}, r"messages\[1\]\.content: an answer must hold"),
        ({"messages": _turns("q", "a") + [{"role": "system", "content": "late"}]}, r"system prompt must come first"),
        ({"messages": _turns("q", "a"), "system": 7}, r"f\.jsonl:line 3\.system: a system prompt is a string"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "loss": False}]},
         r"messages\[1\]\.loss: per-turn loss switches \(ms-swift\) are not supported"),
        ({"messages": [{"role": "tool", "content": "q"}]}, r"messages\[0\]\.role: tool-use turns \('tool'\)"),
        ({"messages": _turns("q"), "tools": "[...]"}, r"f\.jsonl:line 3\.tools: tool descriptions"),
        ({"instruction": "q", "output": 5}, r"f\.jsonl:line 3\.output: must be a string"),
        ({"messages": _turns("<video>q"), "videos": [7]}, r"videos\[0\]: a video is a path or a list of frame"),
        ({"messages": _turns("<image>q"), "images": [["x.png"]]}, r"images\[0\]: an image is a path, got a list"),
    ],
)  # fmt: skip
def test_bad_values_are_named_never_coerced_to_text(record, message):
    with pytest.raises(ConversationError, match=message):
        to_messages(record, "f.jsonl:line 3")


def _video_item(**settings):
    return [
        {"role": "user", "content": [{"type": "video", "video": "a.mp4", **settings}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "x"},
    ]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_video_item(nframes="many"), r"f:line 1\[0\]\.content\[0\]: VideoOptions\.nframes must be a positive int"),
        (_video_item(nframes=0), r"\[0\]\.content\[0\]: VideoOptions\.nframes must be a positive int, got 0"),
        (_video_item(fps="fast"), r"VideoOptions\.fps must be a positive number, got 'fast'"),
        (_video_item(source_fps="fast"), r"\[0\]\.content\[0\]\.source_fps: must be a positive number"),
        (_video_item(video_start=3, video_end=1), r"start \(3\) must be before end \(1\)"),
        (_video_item(min_frames=12), r"min_frames \(12\) > max_frames \(8\)"),  # against the run's max_frames=8
        (_video_item(resized_height=56), r"\.resized_height: not supported; give min_pixels/max_pixels"),
        (_video_item(fsp=2), r"\.fsp: unknown key of a video item"),
        ({"messages": _turns("<video>q"), "videos": ["a.mp4"], "chat_template_kwargs": {"nframes": "many"}},
         r"messages\[0\]\.content\[0\]: VideoOptions\.nframes"),
        ({"messages": _turns("<video>q"), "videos": ["a.mp4"], "chat_template_kwargs": {"enable_thinking": False}},
         r"chat_template_kwargs\.enable_thinking: not read by stave"),
    ],
)  # fmt: skip
def test_video_settings_of_a_record_are_checked_where_they_are_written(record, message):
    with pytest.raises(ConversationError, match=message):
        to_messages(record, "f:line 1", video_options=VideoOptions(max_frames=8))


def test_ms_swift_chat_template_kwargs_set_the_records_video_settings(processor):
    record = dict(PUBLISHED["ms-swift"], chat_template_kwargs={"nframes": 2})
    assert processor.encode(record, train=True)["video_grid_thw"].tolist() == [[1, 4, 6]]  # 2 frames, not 4
    assert processor.encode(PUBLISHED["ms-swift"], train=True)["video_grid_thw"].tolist() == [[2, 4, 6]]
    with pytest.raises(ConversationError, match=r"sample\.messages\[0\]\.content\[0\]: VideoOptions\.nframes"):
        processor.encode(dict(PUBLISHED["ms-swift"], chat_template_kwargs={"nframes": -1}), train=True)


def test_a_video_given_as_frame_paths_reads_like_its_frames(processor, data_root):
    from PIL import Image

    frames = np.random.default_rng(1).integers(0, 255, (4, 56, 84, 3), dtype=np.uint8)
    (data_root / "frames").mkdir(exist_ok=True)
    names = []
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(data_root / "frames" / f"{i}.png")
        names.append(f"frames/{i}.png")
    listed = {"messages": _turns("<video>what?", "left"), "videos": [names]}  # LLaMA-Factory / ms-swift frames
    video = {"type": "video", "video": names, "source_fps": 2}  # qwen-vl-utils: a video as a list of frames
    item = [{"role": "user", "content": [video, {"type": "text", "text": "what?"}]}, _turns("", "left")[1]]
    folder = processor.encode(
        [{"role": "user", "content": [{"type": "video", "video": "frames"}, {"type": "text", "text": "what?"}]},
         {"role": "assistant", "content": "left"}], train=True)  # fmt: skip
    for sample in (listed, item):
        encoded = processor.encode(sample, train=True)
        assert torch.equal(encoded["pixel_values_videos"], folder["pixel_values_videos"])
        assert torch.equal(encoded["input_ids"], folder["input_ids"])
    assert processor.encode(item, train=True)["clips"][0].source_fps == 2
    from stave.video import VideoNotFoundError

    with pytest.raises(VideoNotFoundError, match=r"frames/9\.png: no such frame file \(frame 1 of 2\)"):
        processor.encode({"messages": _turns("<video>q"), "videos": [[names[0], "frames/9.png"]]}, train=True)


def test_image_items_take_their_own_pixel_bounds(processor):
    image = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    sample = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "red?"}]},
        {"role": "assistant", "content": "blue"},
    ]
    assert processor.encode(sample, train=True)["image_grid_thw"].tolist() == [[1, 8, 8]]
    sample[0]["content"][0]["max_pixels"] = 56 * 56
    assert processor.encode(sample, train=True)["image_grid_thw"].tolist() == [[1, 4, 4]]


def test_llamafactory_dataset_info_columns_and_tags_rename_the_keys():
    from stave.conversations import RecordLayout

    # LLaMA-Factory data/README.md: "columns" and "tags" of a sharegpt entry, here all renamed
    entry = {
        "file_name": "d.json",
        "formatting": "sharegpt",
        "columns": {"messages": "dialog", "videos": "clips", "system": "preamble"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "USER", "assistant_tag": "BOT"},
    }
    layout = RecordLayout.from_dataset_info(entry, "info['x']")
    record = {
        "dialog": [{"speaker": "USER", "text": "<video>q"}, {"speaker": "BOT", "text": "a"}],
        "clips": ["a.mp4"],
        "preamble": "be brief",
        "videos": ["ignored: not a mapped column"],
    }
    out = to_messages(record, layout=layout)
    assert [m["role"] for m in out] == ["system", "user", "assistant"]
    assert out[1]["content"][0] == {"type": "video", "video": "a.mp4"}
    with pytest.raises(ConversationError, match=r"dialog\[0\]\.speaker: unknown speaker 'human'; expected one of"):
        to_messages({"dialog": [{"speaker": "human", "text": "q"}]}, layout=layout)
    # no "formatting": LLaMA-Factory's default, alpaca, with its default columns
    alpaca = RecordLayout.from_dataset_info({"file_name": "d.json", "columns": {"videos": "videos"}}, "e")
    out = to_messages({"instruction": "<video>q", "output": "a", "videos": ["a.mp4"]}, layout=alpaca)
    assert [m["role"] for m in out] == ["user", "assistant"] and out[0]["content"][0]["video"] == "a.mp4"
    for bad, message in [
        ({"hf_hub_url": "x/y"}, r"info\['x'\]\.hf_hub_url: stave reads local files"),
        ({"ranking": True}, r"ranking: preference data"),
        ({"columns": {"tools": "tools"}}, r"columns\.tools: tool descriptions"),
        ({"columns": {"audios": "audios"}}, r"columns\.audios: audio is not supported"),
        ({"video_fps": 2}, r"video_fps: a run setting: data\.video\.fps"),
        ({"num_samples": 10}, r"num_samples: draw a share of the file with the dataset's `ratio`"),
        ({"formatting": "chatml"}, r"formatting: must be alpaca, sharegpt or openai"),
        ({"tags": {"role": "from"}}, r"tags\.role: unknown"),
    ]:
        with pytest.raises(ConversationError, match=message):
            RecordLayout.from_dataset_info({"file_name": "d.json", **bad}, "info['x']")


# --- Qwen3-VL / Qwen3.5 prompts: parity with transformers' Qwen3VLProcessor ---------------------------------


def _assert_same_qwen3_inputs(name: str, ours: dict, theirs: dict, *, token_types: bool) -> None:
    keys = {k for k in theirs if k != "mm_token_type_ids" or token_types}
    assert keys <= set(ours), (name, sorted(keys - set(ours)))
    for key in sorted(keys):
        expected = torch.as_tensor(theirs[key])
        if expected.is_floating_point():
            assert ours[key].shape == expected.shape, (name, key)
            assert (ours[key] - expected.float()).abs().max() <= 1e-5, (name, key)
        else:
            assert ours[key].tolist() == expected.tolist(), (name, key)


def test_qwen3_inputs_equal_the_stored_outputs_of_transformers_processor():
    """Token ids (a `<t.t seconds>` text and a vision block per temporal patch), mm_token_type_ids, pixel values
    and grids equal what transformers 5.24's Qwen3VLProcessor made of the same frames and settings
    (tests/fixtures/make_qwen3_processor_fixture.py). transformers 4.57's processor writes the blocks without the
    template's outer <|vision_start|>/<|vision_end|> and marks no video tokens in mm_token_type_ids (which 4.57's
    model does not take): there the token ids are compared live (next test)."""
    from fixtures.make_qwen3_processor_fixture import FIXTURE, conversation_cases, stave_inputs
    from safetensors.torch import load_file

    stored = load_file(FIXTURE)
    tok = None
    for case in conversation_cases():
        from fixtures.make_qwen3_processor_fixture import tokenizer as fixture_tokenizer

        tok = tok or fixture_tokenizer()
        ours, _ = stave_inputs(case, tok)
        theirs = {key.split(".", 1)[1]: value for key, value in stored.items() if key.split(".", 1)[0] == case["name"]}
        assert theirs, case["name"]
        if TRANSFORMERS_MAJOR < 5:
            theirs = {k: v for k, v in theirs.items() if k not in ("input_ids", "mm_token_type_ids")}
        _assert_same_qwen3_inputs(case["name"], ours, theirs, token_types=True)


def test_qwen3_inputs_equal_transformers_processor_live():
    """The same comparison against transformers' Qwen3VLProcessor run here, where torchvision imports (see
    README, "Parity with transformers' processors"), on the installed transformers."""
    from conftest import require_torchvision
    from fixtures.make_qwen3_processor_fixture import conversation_cases, reference_inputs, stave_inputs, tokenizer

    require_torchvision()
    tok = tokenizer()
    for case in conversation_cases():
        ours, indices = stave_inputs(case, tok)
        _assert_same_qwen3_inputs(
            case["name"], ours, reference_inputs(case, indices, tok), token_types=TRANSFORMERS_MAJOR >= 5
        )


def test_qwen3_inputs_with_no_video_options_equal_transformers_processor_with_its_defaults(tmp_path):
    """The model's defaults: stave's processor for a Qwen3-VL model given no video options, on a video file,
    gives the token ids, pixel values and grids transformers 5.24's Qwen3VLProcessor made of the same file with
    no settings, configured as the published checkpoints are (tests/fixtures/make_qwen3_processor_fixture.py):
    5 frames of 2.5 s at 2 fps (an odd count; qwen-vl-utils' rule would take 4), one 64x96 size for all of them
    within the budget over the whole video, timestamps of the sampled frames. On 4.57 the token ids of the
    processor differ only in the outer vision tokens (the next test compares them live)."""
    from fixtures.make_qwen3_processor_fixture import DEFAULTS_CASE, FIXTURE, stave_default_inputs
    from safetensors.torch import load_file

    name = DEFAULTS_CASE[0]
    stored = {key.split(".", 1)[1]: value for key, value in load_file(FIXTURE).items() if key.startswith(f"{name}.")}
    path = tmp_path / "video.mp4"
    path.write_bytes(stored.pop("video_file").numpy().tobytes())
    ours = stave_default_inputs(path)
    assert stored["video_grid_thw"].tolist() == [[3, 4, 6]]
    if TRANSFORMERS_MAJOR < 5:
        stored = {k: v for k, v in stored.items() if k not in ("input_ids", "mm_token_type_ids")}
    _assert_same_qwen3_inputs(name, ours, stored, token_types=True)


def test_qwen3_inputs_with_no_video_options_equal_transformers_processor_with_its_defaults_live(tmp_path):
    """The same against transformers' Qwen3VLProcessor run here on a freshly written file, where torchvision and
    a video decoder for transformers import (the extras run), on the installed transformers."""
    from conftest import require_torchvision
    from fixtures.make_qwen3_processor_fixture import (
        reference_default_inputs,
        stave_default_inputs,
        write_defaults_video,
    )

    require_torchvision()
    path = write_defaults_video(tmp_path / "video.mp4")
    theirs = reference_default_inputs(path)
    _assert_same_qwen3_inputs("defaults", stave_default_inputs(path), theirs, token_types=TRANSFORMERS_MAJOR >= 5)


def test_each_family_has_its_processors_default_video_options(preset):
    """No video options: Qwen2-VL and Qwen2.5-VL keep stave's VideoOptions() (qwen-vl-utils' rules); Qwen3-VL
    and Qwen3.5 take transformers' Qwen3VLVideoProcessor's frame rule (the installed class's fps and frame
    bounds) and the published checkpoints' budget over the whole video (video_preprocessor_config.json);
    InternVL, whose InternVLVideoProcessor samples no frames by default, 2 fps with 4..32 frames."""
    from fixtures.make_qwen3_processor_fixture import PUBLISHED_VIDEO_SIZE
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    from stave.presets import TINY_PRESETS, _classes, tiny_tokenizer

    tokenizer = tiny_tokenizer(preset)
    family, vision, text = TINY_PRESETS[preset]
    config = _classes(family)[0](vision_config=vision, text_config=text)
    options = VideoChatProcessor.for_model(tokenizer, config).video_options
    if preset == "tiny-internvl":
        assert options == VideoOptions(fps=2.0, min_frames=4, max_frames=32)
        return
    if "qwen3" not in preset:
        assert options == VideoOptions()
        return
    assert (options.budget, options.frame_factor, options.min_pixels, options.max_pixels) == (
        "video", 1, PUBLISHED_VIDEO_SIZE["shortest_edge"], PUBLISHED_VIDEO_SIZE["longest_edge"]
    )
    assert (options.fps, options.min_frames, options.max_frames, options.nframes) == (
        Qwen3VLVideoProcessor.fps, Qwen3VLVideoProcessor.min_frames, Qwen3VLVideoProcessor.max_frames, None
    )
    assert getattr(Qwen3VLVideoProcessor, "cap_pixels_per_frame", None) is None  # unset: no per-frame cap (5.24)
    given = VideoOptions(nframes=4)
    assert VideoChatProcessor.for_model(tokenizer, config, given).video_options is given


def test_frames_chosen_with_frame_factor_1_are_transformers_qwen3_choice():
    """frame_factor=1 with fps 2 and 4..768 frames takes the frames Qwen3VLVideoProcessor.sample_frames takes:
    int(seconds * fps) clamped to the bounds and the frames there (odd counts kept), spread by linspace."""
    from types import SimpleNamespace

    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    from stave.models.qwen3_vl import VIDEO_OPTIONS
    from stave.video import frame_indices, number_of_frames

    defaults = SimpleNamespace(fps=2, min_frames=4, max_frames=768)
    for total, fps in [(25, 10.0), (30, 30.0), (3, 1.0), (301, 29.97), (91, 24.0), (10000, 30.0), (7, 2.0), (2, 30.0)]:
        metadata = VideoMetadata(total_num_frames=total, fps=fps)
        theirs = Qwen3VLVideoProcessor.sample_frames(defaults, metadata).tolist()
        n = number_of_frames(VIDEO_OPTIONS, total, fps)
        assert frame_indices(0, total - 1, n) == theirs, (total, fps)
    assert number_of_frames(VIDEO_OPTIONS, 25, 10.0) == 5 and number_of_frames(VideoOptions(), 25, 10.0) == 4


def test_one_size_within_a_budget_over_the_video_is_transformers_qwen3_smart_resize():
    """budget "video": video_size_in_budget equals transformers' Qwen3-VL smart_resize (installed version) for
    odd and even frame counts, sizes kept, rounded, shrunk (the published budget of 24576 patches of 32x32 over
    40 frames of 720p) and enlarged; sides under 32 are scaled up as 5.x does (4.57 refuses them)."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as theirs

    from stave.video.sampling import video_size_in_budget

    published = (4096, 25165824)
    cases = [
        (5, 70, 100, *published), (40, 720, 1280, *published), (41, 720, 1280, *published), (768, 360, 640, *published),
        (4, 1080, 1920, *published), (7, 97, 130, 8 * 1024 * 7, 16 * 1024 * 7), (2, 40, 52, 6 * 1024 * 2, 9 * 1024 * 2),
        (3, 33, 33, 64 * 1024, 128 * 1024), (9, 2000, 64, 4096, 50000), (6, 64, 64, 4096, 4096),
        (5, 64, 64, 4096, 18432), (7, 64, 64, 30000, 10**6),  # within the budget only as 4 and 8 frames
    ]  # fmt: skip
    if TRANSFORMERS_MAJOR >= 5:
        cases += [(4, 20, 300, *published), (4, 24, 24, *published), (10, 8, 100, 4096, 100000)]
    for n, height, width, low, high in cases:
        expected = theirs(n, height, width, temporal_factor=2, factor=32, min_pixels=low, max_pixels=high)
        assert video_size_in_budget(height, width, n, 32, low, high) == expected, (n, height, width, low, high)
    assert video_size_in_budget(720, 1280, 40, 32, *published) == (576, 1056)  # 20 x 18 x 33 = 11,880 tokens
