"""InternVL (transformers' InternVLForConditionalGeneration, an InternViT tower of frames as rows with a CLS token
and LayerScale), what only this family has: `pixel_items` (the tiles of one image, the missing-grouping error), the
CLS token and the LayerScale residual, the feature-layer limit, RMSNorm towers, pooling of projected tokens and
processor parity, on the tiny-internvl preset. The properties every family shares run on it through the shared tests
(tests/conftest.py's `preset` and `tower_preset`)."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_temporal
from transformers import InternVLConfig, InternVLForConditionalGeneration

import stave
from stave.models.internvl import InternVLTemporalLayer, MissingPixelItems
from stave.presets import TINY_PRESETS, tiny_model
from stave.temporal import TemporalLayout
from stave.testing import model_inputs

PRESET = "tiny-internvl"
GRID = (4, 4)  # 32 x 32 frames in 8 x 8 patches
VIDEOS = [(4, *GRID), (2, *GRID), (3, *GRID)]
IMAGES = [(1, *GRID), (1, *GRID)]


def tower_features(model, inputs) -> torch.Tensor:
    """The tower's last hidden states (rows, 1 + patches, D) for the model inputs' pixel_values and pixel_items."""
    tower = stave.vision_tower(model)
    return tower(inputs["pixel_values"], pixel_items=inputs["pixel_items"]).last_hidden_state


def tiny_variant(vision: dict | None = None, **top_level) -> torch.nn.Module:
    """The tiny-internvl model with other vision config values or top-level config values."""
    _, tiny_vision, text = TINY_PRESETS[PRESET]
    config = InternVLConfig(vision_config={**tiny_vision, **(vision or {})}, text_config=dict(text), image_token_id=120,
                            **top_level)  # fmt: skip
    return InternVLForConditionalGeneration._from_config(config).eval()


def rows_of(inputs) -> list[tuple[int, int, bool]]:
    """(first row, rows, is_video) per item of model inputs."""
    out, start = [], 0
    for rows, video in inputs["pixel_items"].tolist():
        out.append((start, rows, bool(video)))
        start += rows
    return out


def test_random_sta_changes_videos_and_leaves_images_and_their_tiles_alone():
    model = tiny_model(PRESET)
    inputs = model_inputs(model, videos=VIDEOS[:2], images=IMAGES)
    inputs["pixel_items"] = torch.tensor([[2, 0], [4, 1], [2, 1]])  # the two image rows: one image of 2 tiles
    with torch.no_grad():
        base = tower_features(model, inputs)
        stave.add_temporal_attention(model, init="random")
        out = tower_features(model, inputs)
    for start, rows, video in rows_of(inputs):
        change = (out[start : start + rows] - base[start : start + rows]).abs().max()
        assert change > 1e-3 if video else change == 0


def test_images_apply_runs_sta_on_each_tile_alone():
    """images="apply": every image row is a single-frame item (its tiles are not time)."""
    model = tiny_model(PRESET)
    inputs = dict(model_inputs(model, images=IMAGES), pixel_items=torch.tensor([[2, 0]]))  # one image of 2 tiles
    with torch.no_grad():
        base = tower_features(model, inputs)
        stave.add_temporal_attention(model, init="random", images="apply")
        out = tower_features(model, inputs)
        alone = [tower_features(model, {"pixel_values": inputs["pixel_values"][k : k + 1],
                                        "pixel_items": torch.tensor([[1, 0]])}) for k in range(2)]  # fmt: skip
    assert (out - base).abs().max() > 1e-3
    torch.testing.assert_close(out, torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_sta_leaves_the_cls_token_of_every_row_alone_and_follows_the_layerscale_residual():
    """One block: STA's update is zero on each row's CLS token and lands after the attention's LayerScaled residual
    (spatial_first), so with the MLP silenced the block is x + lambda_1 * attn + STA."""
    model = tiny_model(PRESET)
    stave.add_temporal_attention(model, init="random")
    randomize_temporal(model)
    block = stave.vision_tower(model).encoder.layer[0]
    assert isinstance(block, InternVLTemporalLayer) and type(block.norm3) is type(block.layernorm_before)
    x = torch.randn(6, 17, 32)  # two videos of 3 frames: CLS + 16 patches per row
    layout = TemporalLayout.from_items([(3, 16, True)] * 2, head_dim=8, rope_theta=10000.0, row_prefix=1)
    with torch.no_grad():
        updated = block.temporal_update(x, layout)
        assert torch.equal(updated[:, 0], x[:, 0]) and (updated[:, 1:] - x[:, 1:]).abs().min() > 0
        for param in block.mlp.parameters():
            param.zero_()
        attended = x + block.lambda_1 * block.attention(block.layernorm_before(x))[0]
        torch.testing.assert_close(block(x, temporal_layout=layout), block.temporal_update(attended, layout))


def test_without_pixel_items_a_model_with_sta_names_what_is_missing():
    model = tiny_model(PRESET)
    inputs = model_inputs(model, videos=VIDEOS[:1])
    transformers_like = {k: v for k, v in inputs.items() if k != "pixel_items"}  # what InternVLProcessor makes
    with torch.no_grad():
        model(**transformers_like)  # the stock model needs no grouping
        stave.add_temporal_attention(model)
        with pytest.raises(MissingPixelItems, match="pixel_items.*InternVLProcessor does not record"):
            model(**transformers_like)
        with pytest.raises(MissingPixelItems, match="pixel_items"):
            stave.vision_tower(model)(inputs["pixel_values"])
        with pytest.raises(ValueError, match="describes 3 rows of pixel_values .* has 4"):
            model(**dict(inputs, pixel_items=torch.tensor([[3, 1]])))


def test_sta_goes_only_into_the_blocks_that_feed_the_selected_feature_layer():
    """vision_feature_layer -2 takes the hidden states after block 1 of 3: block 2 changes nothing the LLM sees."""
    model = tiny_variant(vision_feature_layer=-2)
    stave.add_temporal_attention(model)
    assert [hasattr(b, "temp_attn") for b in stave.vision_tower(model).encoder.layer] == [True, True, False]
    bare = stave.add_temporal_attention(stave.vision_tower(tiny_model(PRESET)))  # a bare tower: every block
    assert all(hasattr(b, "temp_attn") for b in bare.encoder.layer)


def test_rms_norm_towers_get_an_rms_norm3_and_stay_the_identity_at_zero_init():
    """InternViT-6B's blocks: RMSNorm and qk-norm."""
    model = tiny_variant(vision=dict(norm_type="rms_norm", use_qk_norm=True))
    inputs = model_inputs(model, videos=VIDEOS[:2], images=IMAGES[:1])
    with torch.no_grad():
        base = model(**inputs).logits
        stave.add_temporal_attention(model)
        assert (model(**inputs).logits - base).abs().max() <= 1e-6
    block = stave.vision_tower(model).encoder.layer[0]
    assert type(block.norm3).__name__ == "InternVLVisionRMSNorm"


def test_pooled_video_reaches_the_llm_as_the_mean_of_its_frames_projected_tokens():
    """Each video's projected tokens averaged over its frames ("mean") or over runs of 2 frames ("mean:2": 4 frames
    in runs of 2 and 2, 3 frames in runs of 2 and 1); an image of 2 tiles keeps both tiles' tokens."""
    model = tiny_model(PRESET)
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    items = torch.tensor([[2, 0], [4, 1], [3, 1]])  # an image of 2 tiles, videos of 4 and 3 frames
    videos = [VIDEOS[0], VIDEOS[2]]
    inputs = dict(model_inputs(model, videos=videos, images=IMAGES), pixel_items=items)
    base = stave.modeling._language_side(model)

    def image_features(inputs):
        out = base.get_image_features(inputs["pixel_values"], pixel_items=inputs["pixel_items"])
        return out if isinstance(out, torch.Tensor) else stave.models.vision_outputs(out)[0]

    with torch.no_grad():
        features = image_features(inputs)
        for mode, runs in (("mean", [(2, 6), (6, 9)]), ("mean:2", [(2, 4), (4, 6), (6, 8), (8, 9)])):
            stave.set_temporal_pooling(model, mode)
            pooled_inputs = dict(model_inputs(model, videos=videos, images=IMAGES), pixel_items=items)
            pooled = image_features(pooled_inputs)
            assert pooled.shape[0] == 2 + len(runs)  # the image's tiles, then one row per run of frames
            torch.testing.assert_close(pooled[:2], features[:2])
            for row, (start, end) in enumerate(runs, start=2):
                torch.testing.assert_close(pooled[row], features[start:end].mean(0))
            assert pooled_inputs["input_ids"].shape[1] == inputs["input_ids"].shape[1] - (7 - len(runs)) * 4
            assert torch.isfinite(model(**pooled_inputs).logits).all()


# --- processing -------------------------------------------------------------------------------------------------


def _assert_same_inputs(name: str, ours: dict, theirs: dict) -> None:
    assert set(theirs) == {"input_ids", "pixel_values"}, name
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist(), name
    assert ours["pixel_values"].shape == theirs["pixel_values"].shape, name
    # transformers rescales and normalises in one fused step: one float32 rounding apart at most
    assert (ours["pixel_values"] - theirs["pixel_values"].float()).abs().max() <= 1e-6, name


def _expected_pixel_items(case: dict, indices: list[list[int]]) -> list[list[int]]:
    """Per item (rows, is_video): a video's frames; an image's dynamic tiles, a columns x rows grid of transformers'
    choice (get_optimal_tiled_canvas, 1 to 12 tiles at 32 x 32) plus a thumbnail where it has several."""
    from stave.models.internvl import get_optimal_tiled_canvas

    taken, out = iter(indices), []
    for kind, frames in case["sources"]:
        if kind == "video":
            out.append([len(next(taken)), 1])
        else:
            columns, rows = get_optimal_tiled_canvas(tuple(frames.shape[:2]), (32, 32), 1, 12)
            out.append([columns * rows + (columns * rows > 1), 0])
    return out


def test_inputs_equal_the_stored_outputs_of_transformers_processor():
    """Token ids ("Frame{i}: <img> <IMG_CONTEXT> x 4 </img>" per frame, "<img> <IMG_CONTEXT> x 4k </img>" per image
    of k tiles) and pixel_values (32 x 32, ImageNet-normalised, images' dynamic tiles and frames in prompt order)
    equal what transformers 5.24's InternVLProcessor made of the same frames and images
    (tests/fixtures/make_internvl_processor_fixture.py): a video, an image of 3 x 2 tiles before an enlarged video,
    video-image-video, and images of 3 x 1, 1 x 2 and (a small one) 3 x 4 tiles, each with its thumbnail;
    pixel_items records each item's rows: an image's tiles are one item, not a video."""
    from fixtures.make_internvl_processor_fixture import FIXTURE, conversation_cases, stave_inputs
    from fixtures.make_internvl_processor_fixture import tokenizer as fixture_tokenizer
    from safetensors.torch import load_file

    stored = load_file(FIXTURE)
    tok = fixture_tokenizer()
    for case in conversation_cases():
        ours, indices = stave_inputs(case, tok)
        theirs = {key.split(".", 1)[1]: value for key, value in stored.items() if key.split(".", 1)[0] == case["name"]}
        _assert_same_inputs(case["name"], ours, theirs)
        assert ours["pixel_items"].tolist() == _expected_pixel_items(case, indices), case["name"]


def test_inputs_equal_transformers_processor_live():
    """The same comparison against transformers' InternVLProcessor run here, where torchvision imports."""
    from conftest import require_torchvision
    from fixtures.make_internvl_processor_fixture import conversation_cases, reference_inputs, stave_inputs
    from fixtures.make_internvl_processor_fixture import tokenizer as fixture_tokenizer

    require_torchvision()
    tok = fixture_tokenizer()
    for case in conversation_cases():
        ours, indices = stave_inputs(case, tok)
        _assert_same_inputs(case["name"], ours, reference_inputs(case, indices, tok))


def test_sta_leaves_a_batchs_dynamic_tiles_alone_and_changes_its_video():
    """A batch of a wide image (2 x 1 tiles + thumbnail), a small one (one tile) and a video: each image's tiles are
    one non-video item of pixel_items; with random STA the images reach the LLM as from the stock model,
    the video does not; each image sample is the same alone (media_batches)."""
    from media_batches import check_sta_leaves_tiles_alone_and_changes_the_video

    from stave.presets import tiny_tokenizer

    tokenizer = tiny_tokenizer(PRESET, ["what", "happens", "?"])
    batch = check_sta_leaves_tiles_alone_and_changes_the_video(tiny_model(PRESET, tokenizer=tokenizer), tokenizer)
    assert batch["pixel_items"].tolist() == [[3, 0], [1, 0], [4, 1]] and batch["pixel_values"].shape[0] == 8


def test_a_pooled_model_gets_one_frame_block_per_video_and_a_batch_keeps_each_samples_items():
    from fixtures.make_internvl_processor_fixture import conversation_cases

    from stave.presets import tiny_tokenizer
    from stave.processing import VideoChatProcessor
    from stave.video import VideoOptions

    tokenizer = tiny_tokenizer(PRESET, ["what", "happens", "here", "?"])
    model = tiny_model(PRESET, tokenizer=tokenizer)
    case = conversation_cases()[2]  # video (2 frames), image, video (2 frames)
    context = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    options = VideoOptions(nframes=2)
    plain = VideoChatProcessor.for_model(tokenizer, model, options).encode(case["messages"], train=False)
    stave.set_temporal_pooling(model, "mean")
    processor = VideoChatProcessor.for_model(tokenizer, model, options)
    pooled = processor.encode(case["messages"], train=False)
    assert (plain["input_ids"] == context).sum() == (2 + 1 + 2) * 4
    assert (pooled["input_ids"] == context).sum() == (1 + 1 + 1) * 4
    assert torch.equal(plain["pixel_values"], pooled["pixel_values"])
    batch = processor.collate([pooled, processor.encode(conversation_cases()[0]["messages"], train=False)])
    assert batch["pixel_items"].tolist() == [[2, 1], [1, 0], [2, 1], [2, 1]]
    assert batch["pixel_values"].shape[0] == 7 and "mm_token_type_ids" not in batch
    stave.add_temporal_attention(model)
    randomize_temporal(model)
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()

    stave.set_temporal_pooling(model, "mean:2")  # 3 frames per video: runs of 2 and 1, two frame blocks
    processor = VideoChatProcessor.for_model(tokenizer, model, VideoOptions(nframes=3, frame_factor=1))
    runs = processor.encode(case["messages"], train=False)
    assert (runs["input_ids"] == context).sum() == (2 + 1 + 2) * 4
    assert runs["pixel_items"].tolist() == [[3, 1], [1, 0], [3, 1]]
    text = tokenizer.decode(runs["input_ids"])
    assert text.count("frame1") == text.count("frame2") == 2 and "frame3" not in text, text
    with torch.no_grad():  # the model's features fill the prompt's context tokens exactly
        assert torch.isfinite(model(**processor.collate([runs])).logits).all()
