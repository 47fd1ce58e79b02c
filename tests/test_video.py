"""The video input pipeline: sampling rules, decoding (PyAV, folders, arrays), resizing, packing, and every
kind of bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import skip_optional
from fixtures.make_processor_fixture import (
    FIXTURE as PROCESSOR_FIXTURE,
)
from fixtures.make_processor_fixture import (
    PATCH_VALUES,
    case_frames,
    inputs_sha256,
    parity_cases,
    processor_outputs,
    torchvision_processors,
)
from safetensors import safe_open
from safetensors.torch import load_file

from stave.video import (
    PatchSpec,
    VideoDecodeError,
    VideoNotFoundError,
    VideoOptions,
    VideoSamplingError,
    VideoShapeError,
    VideoTimeoutError,
    frame_indices,
    number_of_frames,
    pack_batch,
    pack_frames,
    read_image,
    read_video,
    resize_frames,
    smart_resize,
)
from stave.video.encode import write_video
from stave.video.sampling import video_frame_size

SMALL = dict(min_pixels=28 * 28, max_pixels=56 * 84)


def numbered_frames(count: int, height: int = 64, width: int = 96) -> np.ndarray:
    """Frame i is a flat grey of value 8 * i, so a decoded frame tells which source frame it was."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i] = 8 * i
    return frames


def frame_numbers(clip) -> list[int]:
    return [round(float(f.float().mean()) / 8) for f in clip.frames]


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    """30 frames at 10 fps (3 s), a keyframe every 5 frames."""
    return write_video(tmp_path_factory.mktemp("v") / "numbered.mp4", numbered_frames(30), fps=10, keyframe_interval=5)


# -- sampling rules ----------------------------------------------------------------------------------


def test_fps_rule_clamps_and_rounds_to_even():
    assert number_of_frames(VideoOptions(fps=2.0), available=300, video_fps=30) == 20  # 10 s at 2 fps
    assert number_of_frames(VideoOptions(fps=2.0), available=30, video_fps=30) == 4  # min_frames
    assert number_of_frames(VideoOptions(fps=1.0, max_frames=9), available=3000, video_fps=30) == 8
    assert number_of_frames(VideoOptions(fps=30.0), available=7, video_fps=30) == 6  # <= available, even


def test_nframes_rule_rounds_to_even_and_refuses_more_than_available():
    assert number_of_frames(VideoOptions(nframes=7), available=30, video_fps=10) == 8
    assert number_of_frames(VideoOptions(nframes=5), available=30, video_fps=10) == 4  # round half to even
    with pytest.raises(ValueError, match=r"asks for 40 frames but the clip has 30"):
        number_of_frames(VideoOptions(nframes=40), available=30, video_fps=10)
    assert number_of_frames(VideoOptions(nframes=4), available=1, video_fps=10) == 1  # padded by the packer


def test_indices_match_torch_linspace_round():
    for first, last, n in [(0, 29, 6), (3, 250, 16), (0, 1, 2), (10, 10, 1)]:
        expected = torch.linspace(first, last, n).round().long().tolist()
        assert frame_indices(first, last, n) == expected


def test_smart_resize_follows_qwen_rules():
    assert smart_resize(360, 640, 28, 4 * 28 * 28, 16384 * 28 * 28) == (364, 644)
    h, w = smart_resize(2160, 3840, 28, 128 * 28 * 28, 768 * 28 * 28)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 768 * 28 * 28 and abs(w / h - 16 / 9) < 0.1
    h, w = smart_resize(20, 30, 28, 128 * 28 * 28, 768 * 28 * 28)
    assert h * w >= 128 * 28 * 28
    with pytest.raises(ValueError, match="aspect ratio must be at most 200"):
        smart_resize(10, 2010, 28, 28 * 28, 10**8)


def test_total_pixel_budget_shrinks_long_videos():
    options = VideoOptions(max_pixels=768 * 28 * 28, total_pixels=20 * 768 * 28 * 28)
    short = video_frame_size(720, 1280, 8, options, 28)
    long = video_frame_size(720, 1280, 200, options, 28)
    assert short[0] * short[1] <= 768 * 28 * 28
    assert long[0] * long[1] <= max(20 * 768 * 28 * 28 / 200 * 2, 1.05 * options.min_pixels)
    assert long[0] * long[1] < short[0] * short[1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [(dict(nframes=4, fps=2.0), "mutually exclusive"), (dict(nframes=0), "nframes"), (dict(fps=-1), "fps"),
     (dict(start=3.0, end=1.0), "start"), (dict(min_frames=9, max_frames=4), "min_frames"),
     (dict(backend="ffmpeg"), "backend"), (dict(timeout=0), "timeout")],
)  # fmt: skip
def test_invalid_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        VideoOptions(**kwargs)


# -- decoding ----------------------------------------------------------------------------------------


def test_reads_the_requested_frames_with_their_timestamps(clip_path):
    clip = read_video(clip_path, VideoOptions(nframes=6, **SMALL))
    assert clip.indices == [0, 6, 12, 17, 23, 29]
    assert frame_numbers(clip) == clip.indices
    assert clip.timestamps == pytest.approx([i / 10 for i in clip.indices])
    assert (clip.source_fps, clip.duration, clip.total_frames) == (10.0, pytest.approx(3.0), 30)
    assert clip.sampled_fps == pytest.approx(2.0)
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape[1] == 3
    assert clip.frames.shape[2] % 28 == 0 and clip.frames.shape[3] % 28 == 0


def test_seeking_decoder_takes_the_same_frames_as_a_full_decode(tmp_path):
    frames = numbered_frames(31)
    path = write_video(tmp_path / "sparse_keys.mp4", frames, fps=30, keyframe_interval=3)
    for nframes in (2, 4, 8, 16, 30):
        clip = read_video(path, VideoOptions(nframes=nframes, **SMALL))
        assert frame_numbers(clip) == clip.indices == frame_indices(0, 30, nframes)


def test_fps_and_clip_bounds(clip_path):
    clip = read_video(clip_path, VideoOptions(fps=5.0, **SMALL))
    assert len(clip.indices) == 14 and clip.sampled_fps == pytest.approx(14 / 3.0, rel=0.1)
    clip = read_video(clip_path, VideoOptions(nframes=4, start=1.0, end=2.0, **SMALL))
    assert all(1.0 <= t <= 2.0 for t in clip.timestamps) and frame_numbers(clip) == clip.indices


def test_variable_frame_rate_reports_true_timestamps(tmp_path):
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.2, 1.25]
    path = write_video(tmp_path / "vfr.mp4", numbered_frames(8), fps=10, timestamps=times)
    clip = read_video(path, VideoOptions(nframes=8, **SMALL))
    assert clip.timestamps == pytest.approx(times, abs=1e-3)
    assert frame_numbers(clip) == list(range(8))


def test_frame_folder_pil_list_and_arrays_agree(tmp_path):
    from PIL import Image

    frames = numbered_frames(6, 56, 84)
    folder = tmp_path / "episode"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i + 1:05d}.png")
    options = VideoOptions(nframes=4, **SMALL)
    from_folder = read_video(folder, options, source_fps=3.0)
    from_pil = read_video([Image.fromarray(f) for f in frames], options, source_fps=3.0)
    from_numpy = read_video(frames, options, source_fps=3.0)
    from_torch = read_video(torch.from_numpy(frames), options, source_fps=3.0)
    for clip in (from_pil, from_numpy, from_torch):
        assert torch.equal(clip.frames, from_folder.frames)
    assert from_folder.timestamps == pytest.approx([i / 3.0 for i in from_folder.indices])


def test_grey_and_alpha_frames_become_rgb(tmp_path):
    from PIL import Image

    grey = np.full((2, 56, 56, 1), 100, np.uint8)
    rgba = np.concatenate([np.full((2, 56, 56, 3), 50, np.uint8), np.zeros((2, 56, 56, 1), np.uint8)], axis=-1)
    assert read_video(grey, VideoOptions(**SMALL)).frames.unique().tolist() == [100]
    assert read_video(rgba, VideoOptions(**SMALL)).frames.unique().tolist() == [50]  # alpha dropped
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.fromarray(grey[0, ..., 0], mode="L").save(folder / "00001.png")
    Image.fromarray(rgba[0], mode="RGBA").save(folder / "00002.png")
    clip = read_video(folder, VideoOptions(**SMALL))
    assert clip.frames.shape[:2] == (2, 3)


def test_enormous_frames_are_bounded_by_the_pixel_budget(tmp_path):
    path = write_video(tmp_path / "big.mp4", np.zeros((2, 1080, 1920, 3), np.uint8), fps=10)
    clip = read_video(path, VideoOptions(nframes=2, min_pixels=28 * 28, max_pixels=64 * 28 * 28))
    assert clip.frames.shape[2] * clip.frames.shape[3] <= 64 * 28 * 28


def test_single_frame_clip_is_padded_to_a_temporal_patch():
    clip = read_video(numbered_frames(1, 56, 56), VideoOptions(nframes=2, **SMALL))
    assert clip.frames.shape[0] == 1
    pixels, grid = pack_frames(clip.frames)
    assert grid == (1, 4, 4)
    patch = pixels.view(16, 3, 2, 14 * 14)
    assert torch.equal(patch[:, :, 0], patch[:, :, 1])  # the frame was repeated in time


# -- bad input ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match=r"missing\.mp4: no such file"):
        read_video(tmp_path / "missing.mp4")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoDecodeError, match=r"notes\.mp4: not a readable video"):
        read_video(path)


def test_truncated_video(tmp_path, clip_path):
    data = clip_path.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4"):
        read_video(path, VideoOptions(nframes=6, **SMALL))


def test_video_without_frames(tmp_path):
    import av

    path = tmp_path / "empty.mkv"
    container = av.open(str(path), mode="w", format="matroska")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(VideoDecodeError, match=r"empty\.mkv: (no video frames|not a readable video)"):
        read_video(path)


def test_audio_only_file(tmp_path):
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match=r"sound\.m4a: no video stream"):
        read_video(path)


def test_fewer_frames_than_asked(clip_path):
    with pytest.raises(VideoSamplingError, match=r"numbered\.mp4: nframes=40 asks for 40 frames but the clip has 30"):
        read_video(clip_path, VideoOptions(nframes=40))


def test_start_beyond_duration(clip_path):
    with pytest.raises(VideoSamplingError, match=r"start=5.0s is beyond the clip's duration of 3.000s"):
        read_video(clip_path, VideoOptions(start=5.0))
    with pytest.raises(VideoSamplingError, match=r"end=9.0s is beyond"):
        read_video(clip_path, VideoOptions(end=9.0))


def test_extreme_aspect_ratio_is_refused():
    with pytest.raises(VideoShapeError, match="aspect ratio must be at most 200"):
        read_video(np.zeros((2, 2, 500, 3), np.uint8))


def test_wrong_array_shape_or_dtype():
    with pytest.raises(VideoShapeError, match=r"expected \(T, H, W, C\)"):
        read_video(np.zeros((2, 56, 56), np.uint8))
    with pytest.raises(VideoShapeError, match="expected uint8 frames"):
        read_video(np.zeros((2, 56, 56, 3), np.float32))


def test_empty_folder_and_unreadable_frame(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="folder holds no frame images"):
        read_video(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoDecodeError, match=r"00001\.jpg: not a readable image"):
        read_video(broken)


def test_decode_has_a_timeout(clip_path):
    with pytest.raises(VideoTimeoutError, match=r"numbered\.mp4: .* longer than the timeout"):
        read_video(clip_path, VideoOptions(nframes=30, timeout=1e-9, **SMALL))


FIFO_SCRIPT = """
import sys, time
from pathlib import Path
from stave.video import VideoError, VideoOptions, check_video, read_video
from stave.video.backends.frame_table import open_container

fifo = Path(sys.argv[1])
for call in (lambda: read_video(fifo, VideoOptions(timeout=2.0)), lambda: check_video(fifo, VideoOptions(timeout=2.0)),
             lambda: open_container(fifo, 0.5)):
    start = time.monotonic()
    try:
        call()
    except VideoError as error:
        print(f"{type(error).__name__}|{error}|{time.monotonic() - start:.2f}", flush=True)
"""


def test_a_fifo_is_refused_and_opening_one_stops_at_the_timeout(tmp_path):
    """A FIFO without a writer blocks open(2) for good, whatever PyAV's timeout: read_video and check_video
    refuse it up front, and the opening itself (reached for regular files only) gives up at its timeout.
    Run in a child process, so that a regression fails by the child's timeout instead of hanging the suite."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-c", FIFO_SCRIPT, str(fifo)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    refused = f"VideoDecodeError|{fifo}: not a regular file but a FIFO (named pipe); stave reads video files"
    read, checked, opened = result.stdout.splitlines()
    assert read.startswith(refused) and checked.startswith(refused)
    name, message, seconds = opened.split("|")
    assert name == "VideoTimeoutError" and message == f"{fifo}: opening took longer than the timeout of 0.5s"
    assert 0.5 <= float(seconds) < 10


def test_a_device_is_not_read_as_a_video():
    with pytest.raises(VideoDecodeError, match=r"^/dev/null: not a regular file but a character device"):
        read_video("/dev/null")


def test_check_video_finds_what_read_video_would_refuse_without_decoding(clip_path, tmp_path, monkeypatch):
    from stave.video import check_video
    from stave.video.backends import pyav

    monkeypatch.setattr(pyav, "decode", None)  # nothing may be decoded
    check_video(clip_path, VideoOptions(nframes=30))
    with pytest.raises(VideoNotFoundError, match="missing.mp4: no such file"):
        check_video(tmp_path / "missing.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoDecodeError, match=r"text\.mp4: not a readable video"):
        check_video(tmp_path / "text.mp4")
    with pytest.raises(VideoSamplingError, match="nframes=32 asks for 32 frames but the clip has 30"):
        check_video(clip_path, VideoOptions(nframes=32))
    with pytest.raises(VideoSamplingError, match="start=5.0s is beyond"):
        check_video(clip_path, VideoOptions(start=5.0))


def moving_frames(count: int, height: int = 72, width: int = 112) -> np.ndarray:
    """Moving colour gradients: x264 codes most of them as B-frames, many of which nothing references."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = (4 * x + 9 * t) % 256
        frames[t, ..., 1] = (3 * y + 5 * t) % 256
        frames[t, ..., 2] = (2 * (x + y) + 7 * t) % 256
    return frames


@pytest.fixture
def decoded_frames(monkeypatch):
    """Counts the frames PyAV's decoder gives out."""
    from stave.video.backends import pyav

    count = {"frames": 0}
    decoded = pyav._Stream._decoded

    def counting(stream):
        for frame in decoded(stream):
            count["frames"] += 1
            yield frame

    monkeypatch.setattr(pyav._Stream, "_decoded", counting)
    return count


@pytest.mark.parametrize(
    "options",
    [VideoOptions(nframes=6), VideoOptions(fps=5.0), VideoOptions(nframes=60), VideoOptions(nframes=4, start=1.0)],
    ids=["6-frames", "fps-5", "every-frame", "from-1s"],
)
def test_skipping_unreferenced_frames_changes_no_taken_frame(tmp_path, monkeypatch, decoded_frames, options):
    from stave.video.backends import pyav

    options = dataclasses.replace(options, min_pixels=28 * 28, max_pixels=112 * 84)  # no resize: raw pixels
    for interval in (None, 7):
        path = write_video(tmp_path / f"moving_{interval}.mp4", moving_frames(60), fps=20, keyframe_interval=interval)
        decoded_frames["frames"] = 0
        skipping = read_video(path, options)
        with_skips = decoded_frames["frames"]
        decoded_frames["frames"] = 0
        with monkeypatch.context() as patch:
            patch.setattr(pyav, "SKIP_NONREF_CODECS", frozenset())
            full = read_video(path, options)
        assert torch.equal(skipping.frames, full.frames) and skipping.indices == full.indices
        if len(full.indices) < 60:
            assert with_skips < decoded_frames["frames"]  # unwanted, unreferenced frames were not decoded


def test_a_wanted_frame_lost_to_skipping_is_decoded_in_full(tmp_path, monkeypatch):
    """Should skipping ever drop a wanted frame, the decoder goes back and decodes the file in full."""
    from stave.video.backends import pyav

    path = write_video(tmp_path / "moving.mp4", moving_frames(40), fps=20)
    options = VideoOptions(nframes=8, min_pixels=28 * 28, max_pixels=112 * 84)
    expected = read_video(path, options)
    decoded = pyav._Stream._decoded
    lost = set()

    def losing_a_frame(stream):
        for frame in decoded(stream):
            if stream.skip_nonref and frame.pts in stream.wanted and not lost:
                lost.add(frame.pts)
                continue
            yield frame

    monkeypatch.setattr(pyav._Stream, "_decoded", losing_a_frame)
    clip = read_video(path, options)
    assert lost and torch.equal(clip.frames, expected.frames)


def test_frames_are_resized_once_the_decoder_has_finished_or_the_bound_is_reached(clip_path, monkeypatch):
    import stave.video.decode as decode

    decoding = {"now": False}
    resizes = []  # (frames, whether the decoder was still running) of every resize
    get_backend, resize = decode.get_backend, decode.resize_frames

    def watched_backend(name, source):
        name, module = get_backend(name, source)

        def watched_decode(*args):
            decoding["now"] = True
            yield from module.decode(*args)
            decoding["now"] = False

        return name, SimpleNamespace(decode=watched_decode)

    def watched_resize(frames, height, width):
        resizes.append((len(frames), decoding["now"]))
        return resize(frames, height, width)

    monkeypatch.setattr(decode, "get_backend", watched_backend)
    monkeypatch.setattr(decode, "resize_frames", watched_resize)
    options = VideoOptions(nframes=30, **SMALL)
    clip = read_video(clip_path, options)
    assert [n for n, _ in resizes] == [8, 8, 8, 6] and not any(running for _, running in resizes)
    resizes.clear()
    monkeypatch.setattr(decode, "DECODED_BYTES", 3 * (3 * 64 * 96))  # three of the clip's frames
    bounded = read_video(clip_path, options)
    assert max(n for n, _ in resizes) == 3 and any(running for _, running in resizes)
    assert torch.equal(bounded.frames, clip.frames) and bounded.indices == clip.indices


def test_frames_are_the_same_with_one_and_two_torch_threads_whose_count_is_left_alone(clip_path):
    threads = torch.get_num_threads()
    try:
        clips = []
        for n in (1, 2):
            torch.set_num_threads(n)
            clips.append(read_video(clip_path, VideoOptions(nframes=8, **SMALL)))  # 64x96 -> 56x84: resized
            assert torch.get_num_threads() == n
        assert torch.equal(clips[0].frames, clips[1].frames)
    finally:
        torch.set_num_threads(threads)


# -- packing -----------------------------------------------------------------------------------------


def stave_outputs(case: dict) -> tuple[torch.Tensor, list[list[int]]]:
    """What stave makes of a parity case: read_image or read_video (an in-memory array), then pack_frames."""
    if case["kind"] == "image":
        frames = read_image(case["frames"][0], **case["budget"])
    else:
        frames = read_video(case["frames"], VideoOptions(nframes=len(case["frames"]), **case["budget"])).frames
    pixels, grid = pack_frames(frames)
    return pixels, [list(grid)]


def assert_same_pixels(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape, f"{name}: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    difference = (ours - theirs).abs()
    levels = (difference * 255 * 0.27).round()  # about how many uint8 levels apart (std ~0.27)
    assert difference.max() <= 1e-5, (
        f"{name}: max |stave - transformers| {difference.max():.3g}, {(difference > 1e-5).float().mean():.2%} of "
        f"values differ, by up to ~{levels.max():.0f} uint8 levels"
    )


def stored_processor_output(name: str) -> tuple[torch.Tensor, list[list[int]]]:
    """(pixel_values, grid_thw) transformers' processors gave for the parity case `name` (the stored fixture)."""
    stored = load_file(PROCESSOR_FIXTURE)
    levels = stored[f"{name}.levels"].long()
    column_channel = torch.arange(PATCH_VALUES) // (PATCH_VALUES // 3)
    return stored["normalised"][column_channel.expand_as(levels), levels], stored[f"{name}.grid_thw"].tolist()


def test_resizing_and_packing_match_the_stored_transformers_output():
    """read_image / read_video + pack_frames give the pixel values transformers' torchvision processors gave
    (tests/fixtures/make_processor_fixture.py), resizing on: odd sizes, images and videos, shrunk and enlarged."""
    with safe_open(PROCESSOR_FIXTURE, "pt") as stored:
        metadata = stored.metadata()
    cases = parity_cases()
    assert inputs_sha256(cases) == metadata["inputs_sha256"], "the generated inputs changed: regenerate the fixture"
    for case in cases:
        expected, grid = stored_processor_output(case["name"])
        pixels, our_grid = stave_outputs(case)
        assert our_grid == grid, case["name"]
        assert_same_pixels(case["name"], pixels, expected)


def test_resizing_and_packing_match_transformers_processors_live():
    """The same comparison against transformers' torchvision processors run here, where torchvision imports
    (not beside the project's torch 2.13; see README, "Parity with transformers' processors")."""
    try:
        image_class, video_class = torchvision_processors()
    except Exception as error:  # torchvision fails to import in several ways beside a mismatched torch
        skip_optional(f"transformers' torchvision processors cannot be imported: {type(error).__name__}: {error}")
    for case in parity_cases():
        theirs, grid = processor_outputs(case)
        ours, our_grid = stave_outputs(case)
        assert our_grid == grid.tolist(), case["name"]
        assert_same_pixels(case["name"], ours, theirs)


def test_resize_is_torch_uint8_bicubic_with_antialias_on_cpu_and_float_elsewhere():
    """resize_frames resizes uint8 frames as they are on the CPU (torchvision's rule), which differs from the
    float32 resize by whole levels on hard edges; on other devices it is the float32 resize, clamped, rounded."""
    frames = torch.from_numpy(case_frames(0, 2, 97, 513)).permute(0, 3, 1, 2)
    ours = resize_frames(frames, 56, 280)
    expected = torch.nn.functional.interpolate(frames, size=(56, 280), mode="bicubic", antialias=True)
    assert ours.dtype == torch.uint8 and torch.equal(ours, expected)
    in_float = torch.nn.functional.interpolate(frames.float(), size=(56, 280), mode="bicubic", antialias=True)
    assert (in_float.clamp(0, 255).round() != ours).any()  # the test tells the two apart
    device = SimpleNamespace(type="cuda")
    fake = SimpleNamespace(shape=frames.shape, dtype=torch.uint8, device=device, float=frames.float)
    assert torch.equal(resize_frames(fake, 56, 280), in_float.clamp(0, 255).round().to(torch.uint8))
    assert resize_frames(frames, 97, 513) is frames


def test_read_image_takes_files_pil_images_and_arrays_alike(tmp_path):
    from PIL import Image

    array = case_frames(3, 1, 45, 67)[0]
    Image.fromarray(array).save(tmp_path / "image.png")
    files = read_image(tmp_path / "image.png")
    assert files.shape == (1, 3, 56, 56) and files.dtype == torch.uint8
    assert torch.equal(read_image(Image.fromarray(array)), files)
    assert torch.equal(read_image(torch.from_numpy(array)), files)
    assert read_image(array, min_pixels=16 * 28 * 28).shape == (1, 3, 112, 140)  # the pixel bounds are applied
    grey = read_image(array[..., 0])
    assert grey.shape == (1, 3, 56, 56) and torch.equal(grey[:, 0], grey[:, 2])


def test_read_image_errors_name_the_source_and_the_reason(tmp_path):
    with pytest.raises(VideoNotFoundError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(VideoNotFoundError, match="is a folder, not an image"):
        read_image(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(VideoDecodeError, match=r"notes\.png: not a readable image"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(VideoShapeError, match=r"<ndarray image>: expected an \(H, W, C\) uint8 frame"):
        read_image(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(VideoShapeError, match="aspect ratio must be at most 200"):
        read_image(np.zeros((2, 500, 3), np.uint8))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("spec", [PatchSpec(), PatchSpec(14, 1, 1)], ids=["qwen2-vl", "no-merge-no-time"])
def test_packing_is_the_normalise_then_patchify_formula_bit_for_bit(dtype, spec):
    """The out-of-place (x / 255 - mean) / std on (T, 3, H, W), then patch order, as the processors do."""
    frames = torch.randint(0, 256, (3, 3, 2 * spec.factor, 3 * spec.factor), dtype=torch.uint8).to(dtype)
    original = frames.clone()
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    x = (frames.to(torch.float32) * (1 / 255) - mean) / std
    tp, p, m = spec.temporal_patch_size, spec.patch_size, spec.merge_size
    x = torch.cat([x, x[-1:].expand((-3) % tp, -1, -1, -1)])
    t, h, w = x.shape[0] // tp, x.shape[2] // p, x.shape[3] // p
    x = x.view(t, tp, 3, h // m, m, p, w // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    pixels, grid = pack_frames(frames, spec)
    assert grid == (t, h, w) and torch.equal(pixels, x.reshape(t * h * w, -1))
    assert torch.equal(frames, original)  # normalised in place, but never in the caller's tensor


def test_packed_batch_feeds_a_tiny_model():
    import stave
    from stave.presets import tiny_model

    model = stave.add_temporal_attention(tiny_model())
    spec = PatchSpec.from_vision_config(model.config.vision_config)
    clips = [read_video(numbered_frames(n, 56, 84), VideoOptions(nframes=n, **SMALL)) for n in (4, 2)]
    pixels, grid_thw = pack_batch([c.frames for c in clips], spec)
    assert grid_thw.tolist() == [[2, 4, 6], [1, 4, 6]]
    out = stave.vision_tower(model)(pixels, grid_thw=grid_thw)
    merged = out.pooler_output if hasattr(out, "pooler_output") else out
    assert merged.shape[0] == (48 + 24) // 4


def test_slow_decoding_stops_at_the_deadline(clip_path, monkeypatch):
    """A decoder that keeps running past the timeout is stopped between frames."""
    import stave.video.backends.frame_table as frame_table

    clock = iter(range(0, 10**6, 3))  # every reading of the clock is 3 s later: the second frame comes too late
    monkeypatch.setattr(frame_table.time, "monotonic", lambda: next(clock))
    with pytest.raises(VideoTimeoutError, match=r"numbered\.mp4: decoding took longer than the timeout of 10.0s"):
        read_video(clip_path, VideoOptions(nframes=30, timeout=10.0, **SMALL))
