"""VideoCache: a second read with the same options is a hit with equal contents; a changed file or changed
options miss; memory stays within its byte bound; a damaged file on disk is detected and decoded again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from stave.video import VideoCache, VideoClip, VideoNotFoundError, VideoOptions, read_video
from stave.video.encode import write_video

SMALL = dict(min_pixels=28 * 28, max_pixels=56 * 84)
OPTIONS = VideoOptions(nframes=4, **SMALL)


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 56, 84, 3), dtype=np.uint8)


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", frames(8), fps=4)


def assert_same_clip(a: VideoClip, b: VideoClip) -> None:
    assert torch.equal(a.frames, b.frames)
    for name in ("timestamps", "indices", "source_fps", "duration", "total_frames", "sampled_fps", "source", "backend"):
        assert getattr(a, name) == getattr(b, name), name


def test_second_read_is_a_hit_with_equal_contents(video, monkeypatch):
    cache = VideoCache()
    first = cache.read(video, OPTIONS)
    second = cache.read(video, OPTIONS)
    assert (cache.hits, cache.misses) == (1, 1)
    assert_same_clip(first, read_video(video, OPTIONS))
    assert_same_clip(second, first)
    second.frames.zero_()  # the caller's copy: the cached frames are untouched
    assert_same_clip(cache.read(video, OPTIONS), first)
    monkeypatch.chdir(video.parent)  # the same file named another way: a hit, named as the caller named it
    assert_same_clip(cache.read(video.name, OPTIONS), read_video(video.name, OPTIONS))
    assert cache.hits == 3


def test_changed_file_misses(video):
    cache = VideoCache()
    cache.read(video, OPTIONS)
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes, new mtime
    cache.read(video, OPTIONS)
    assert (cache.hits, cache.misses) == (0, 2)
    write_video(video, frames(10, seed=1), fps=4)  # rewritten: new size (and pixels)
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # even with the mtime seen before
    clip = cache.read(video, OPTIONS)
    assert (cache.hits, cache.misses) == (0, 3)
    assert clip.total_frames == 10 and torch.equal(clip.frames, read_video(video, OPTIONS).frames)


def test_options_that_change_frames_miss_and_timeout_does_not(video):
    cache = VideoCache()
    cache.read(video, OPTIONS)
    for options in (
        VideoOptions(nframes=2, **SMALL),
        VideoOptions(nframes=4, min_pixels=28 * 28, max_pixels=28 * 56),
        VideoOptions(nframes=4, start=0.5, **SMALL),
    ):
        cache.read(video, options)
    cache.read(video, OPTIONS, factor=14)
    assert (cache.hits, cache.misses) == (0, 5)
    cache.read(video, VideoOptions(nframes=4, timeout=5.0, **SMALL))
    assert (cache.hits, cache.misses) == (1, 5)  # fmt: skip


def test_auto_backend_shares_entries_with_the_backend_it_resolves_to(video):
    from stave.video.backends import get_backend

    cache = VideoCache()
    resolved, _ = get_backend("auto", video)
    cache.read(video, VideoOptions(nframes=4, backend="auto", **SMALL))
    clip = cache.read(video, VideoOptions(nframes=4, backend=resolved, **SMALL))
    assert (cache.hits, cache.misses) == (1, 1) and clip.backend == resolved


def test_memory_stays_within_its_byte_bound(tmp_path):
    paths = [write_video(tmp_path / f"{i}.mp4", frames(8, seed=i), fps=4) for i in range(3)]
    one = read_video(paths[0], OPTIONS).frames.numel()
    cache = VideoCache(max_bytes=2 * one)
    for path in paths:
        cache.read(path, OPTIONS)
    assert len(cache) == 2 and cache.nbytes == 2 * one and cache.evictions == 1
    cache.read(paths[2], OPTIONS)  # most recent: still held
    cache.read(paths[0], OPTIONS)  # least recent: was dropped
    assert (cache.hits, cache.misses) == (1, 4)
    tiny = VideoCache(max_bytes=one - 1)  # a video larger than the bound is not held at all
    tiny.read(paths[0], OPTIONS)
    assert len(tiny) == 0 and tiny.nbytes == 0


def test_disk_entries_survive_a_new_cache_and_are_written_atomically(video, tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    first = VideoCache(directory).read(video, OPTIONS)
    files = list(directory.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temporary file left behind
    cache = VideoCache(directory)
    assert_same_clip(cache.read(video, OPTIONS), first)
    assert (cache.hits, cache.disk_hits, cache.misses) == (1, 1, 0)

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: (replaced.append((Path(src), Path(dst))), real_replace(src, dst))
    )
    VideoCache(directory).read(video, VideoOptions(nframes=2, **SMALL))
    ((src, dst),) = replaced
    assert src.parent == dst.parent == directory and src.name.endswith(".tmp") and not src.exists()


def test_entries_of_an_older_format_are_not_reused(video, tmp_path, monkeypatch):
    """Entries written before the uint8 resize (format 1) hold pixels stave no longer makes: they miss."""
    import stave.video.cache as cache_module

    assert cache_module.FORMAT >= 2
    directory = tmp_path / "cache"
    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "FORMAT", 1)
        VideoCache(directory).read(video, OPTIONS)
    cache = VideoCache(directory)
    assert_same_clip(cache.read(video, OPTIONS), read_video(video, OPTIONS))
    assert (cache.hits, cache.misses) == (0, 1)


@pytest.mark.parametrize("damage", ["flip a frame byte", "truncate", "garbage", "other key"])
def test_damaged_disk_entry_is_detected_and_decoded_again(video, tmp_path, damage):
    directory = tmp_path / "cache"
    expected = VideoCache(directory).read(video, OPTIONS)
    (file,) = directory.iterdir()
    data = bytearray(file.read_bytes())
    if damage == "flip a frame byte":
        data[-5] ^= 0xFF  # inside the frame data: the file still parses, the checksum does not match
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a safetensors file")
    else:  # a valid entry of another video under this entry's name
        other = write_video(tmp_path / "other.mp4", frames(8, seed=3), fps=4)
        VideoCache(tmp_path / "other").read(other, OPTIONS)
        data = bytearray(next((tmp_path / "other").iterdir()).read_bytes())
    file.write_bytes(bytes(data))

    cache = VideoCache(directory)
    with pytest.warns(UserWarning, match=r"video cache file .*\.safetensors is damaged"):
        clip = cache.read(video, OPTIONS)
    assert_same_clip(clip, expected)
    assert (cache.hits, cache.misses, cache.corrupt) == (0, 1, 1)
    again = VideoCache(directory)  # the damaged file was replaced by a good one
    assert_same_clip(again.read(video, OPTIONS), expected)
    assert (again.disk_hits, again.corrupt) == (1, 0)


def test_frame_folders_are_keyed_by_their_images_and_fps(tmp_path):
    from PIL import Image

    folder = tmp_path / "episode"
    folder.mkdir()
    for i, frame in enumerate(frames(4)):
        Image.fromarray(frame).save(folder / f"{i + 1:05d}.png")
    cache = VideoCache()
    cache.read(folder, OPTIONS, source_fps=3.0)
    cache.read(folder, OPTIONS, source_fps=3.0)
    cache.read(folder, OPTIONS, source_fps=6.0)
    assert (cache.hits, cache.misses) == (1, 2)
    Image.fromarray(frames(1, seed=9)[0]).save(folder / "00002.png")  # one image rewritten
    clip = cache.read(folder, OPTIONS, source_fps=3.0)
    assert (cache.hits, cache.misses) == (1, 3)
    assert torch.equal(clip.frames, read_video(folder, OPTIONS, source_fps=3.0).frames)


def test_errors_and_in_memory_frames_pass_through(tmp_path):
    cache = VideoCache()
    with pytest.raises(VideoNotFoundError, match=r"missing\.mp4"):
        cache.read(tmp_path / "missing.mp4", OPTIONS)
    array = frames(4)
    assert torch.equal(cache.read(array, OPTIONS).frames, read_video(array, OPTIONS).frames)
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_processor_reads_through_its_cache(tmp_path, video):
    from stave.processing import VideoChatProcessor
    from stave.tokenizer import build_word_tokenizer

    cache = VideoCache()
    processor = VideoChatProcessor(build_word_tokenizer(["what"]), video_options=OPTIONS, cache=cache)
    sample = {"video": str(video), "conversations": [{"from": "human", "value": "<video> what"}]}
    first = processor.encode(sample, train=False)
    second = processor.encode(sample, train=False)
    assert (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first["pixel_values_videos"], second["pixel_values_videos"])
