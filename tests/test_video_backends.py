"""Decoding backends: torchcodec and decord give the VideoClip PyAV gives (frames chosen, timestamps, fps,
duration, frame count; pixels within a rounding step of colour conversion) and the same errors; a backend
that cannot be used is named with what to install; no decoding library is imported before it is asked for.

Tests of a backend skip, with the reason, where it is not installed or cannot be loaded; where
STAVE_EXPECT_EXTRAS=1 (scripts/test.sh's extras environment, which installs both) that is a failure."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import skip_optional
from test_video import moving_frames  # colour gradients: chroma the YUV 4:2:0 round trip must rebuild

from stave.video import (
    VideoBackendError,
    VideoDecodeError,
    VideoError,
    VideoOptions,
    VideoTimeoutError,
    available_backends,
    read_video,
)
from stave.video import backends as video_backends
from stave.video.encode import write_video

SMALL = dict(min_pixels=28 * 28, max_pixels=56 * 84)
OTHER_BACKENDS = ["torchcodec", "decord"]
# YUV -> RGB conversion may round differently between libraries and FFmpeg builds. Measured (2026-12-01, the
# 14 files of these tests, scripts/test.sh's extras environment): identical pixels, max difference 0, with
# decord2 3.4.0 and torchcodec 0.17.0 (on Debian's FFmpeg 5.1) against PyAV 18.1.0; a resampling or a wrong
# frame is far above these bounds.
MAX_PIXEL_DIFFERENCE = 3
MEAN_PIXEL_DIFFERENCE = 0.5


@pytest.fixture(autouse=True)
def _fresh_backend_loading():
    video_backends._load.cache_clear()
    yield
    video_backends._load.cache_clear()


@pytest.fixture(params=OTHER_BACKENDS)
def backend(request) -> str:
    reason = available_backends()[request.param]
    if reason is not None:
        skip_optional(f"{request.param} cannot be used here: {reason}")
    return request.param


def numbered_frames(count: int, height: int = 64, width: int = 96) -> np.ndarray:
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i] = 8 * i
    return frames


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backends")
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.2, 1.25]
    return {
        "numbered": write_video(root / "numbered.mp4", numbered_frames(30), fps=10, keyframe_interval=5),
        "coloured": write_video(root / "coloured.mp4", moving_frames(36), fps=12),
        "sparse keys": write_video(root / "sparse.mp4", numbered_frames(31), fps=30, keyframe_interval=3),
        "variable rate": write_video(root / "vfr.mp4", numbered_frames(8), fps=10, timestamps=times),
    }


CASES = [
    ("numbered", VideoOptions(nframes=6, **SMALL)),
    ("numbered", VideoOptions(fps=5.0, **SMALL)),
    ("numbered", VideoOptions(nframes=4, start=1.0, end=2.0, **SMALL)),
    ("coloured", VideoOptions(nframes=36, min_pixels=28 * 28, max_pixels=112 * 84)),  # every frame, no resize
    ("coloured", VideoOptions(fps=2.0, end=2.5, **SMALL)),
    ("sparse keys", VideoOptions(nframes=16, **SMALL)),
    ("variable rate", VideoOptions(nframes=8, **SMALL)),
]


@pytest.mark.parametrize(("file", "options"), CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_backend_gives_the_clip_pyav_gives(backend, files, file, options):
    reference = read_video(files[file], options)
    clip = read_video(files[file], dataclasses.replace(options, backend=backend))
    assert clip.backend == backend and reference.backend == "pyav"
    assert clip.indices == reference.indices
    assert clip.timestamps == reference.timestamps
    for name in ("source_fps", "duration", "total_frames", "sampled_fps", "source"):
        assert getattr(clip, name) == getattr(reference, name), name
    assert clip.frames.shape == reference.frames.shape and clip.frames.dtype == torch.uint8
    difference = (clip.frames.float() - reference.frames.float()).abs()
    assert difference.max() <= MAX_PIXEL_DIFFERENCE and difference.mean() <= MEAN_PIXEL_DIFFERENCE


@pytest.mark.parametrize("width", [16, 32, 48, 80, 96, 144, 334])
def test_backend_decodes_every_frame_width_as_pyav_does(backend, tmp_path, width):
    """decord2 3.4.0 pads the rows of frames of some widths (16, 32, 48, 96, 144 here; see
    stave.video.backends.decord): the pixels must still be PyAV's."""
    rng = np.random.default_rng(width)
    frames = rng.integers(0, 256, (6, 64, width, 3), dtype=np.uint8)
    path = write_video(tmp_path / f"width{width}.mp4", frames, fps=10)
    options = VideoOptions(nframes=6, min_pixels=28 * 28, max_pixels=64 * 1024)
    reference = read_video(path, options)
    clip = read_video(path, dataclasses.replace(options, backend=backend))
    assert clip.indices == reference.indices and clip.frames.shape == reference.frames.shape
    difference = (clip.frames.float() - reference.frames.float()).abs()
    assert difference.max() <= MAX_PIXEL_DIFFERENCE and difference.mean() <= MEAN_PIXEL_DIFFERENCE


def test_backend_takes_the_numbered_frames(backend, files):
    for nframes in (2, 8, 30):
        clip = read_video(files["sparse keys"], VideoOptions(nframes=nframes, backend=backend, **SMALL))
        assert [round(float(f.float().mean()) / 8) for f in clip.frames] == clip.indices


def write_bad_files(root: Path, good: Path) -> dict[str, Path]:
    import av

    (root / "notes.mp4").write_text("this is not a video\n" * 20)
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    with av.open(str(root / "sound.m4a"), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return {
        "missing": root / "missing.mp4",
        "not a video": root / "notes.mp4",
        "truncated": root / "truncated.mp4",
        "audio only": root / "sound.m4a",
    }


def test_backend_raises_the_errors_pyav_raises(backend, files, tmp_path):
    for kind, path in write_bad_files(tmp_path, files["numbered"]).items():
        errors = []
        for name in ("pyav", backend):
            with pytest.raises(VideoError) as caught:
                read_video(path, VideoOptions(nframes=6, backend=name, **SMALL))
            errors.append(caught.value)
        assert type(errors[1]) is type(errors[0]), kind
        assert errors[1].source == errors[0].source == str(path), kind
        assert path.name in str(errors[1])
    with pytest.raises(VideoTimeoutError, match=r"numbered\.mp4: .* longer than the timeout"):
        read_video(files["numbered"], VideoOptions(nframes=30, timeout=1e-9, backend=backend, **SMALL))


def test_backend_that_disagrees_with_the_frame_table_is_an_error(backend, files, monkeypatch):
    """Frames are never taken from a backend whose timestamps differ from the file's frame table."""
    import stave.video.decode as decode

    read_table = decode.read_frame_table

    def doubled_times(path, timeout):
        table = read_table(path, timeout)
        return dataclasses.replace(table, pts=[2 * p for p in table.pts], times=[2 * t for t in table.times])

    monkeypatch.setattr(decode, "read_frame_table", doubled_times)
    with pytest.raises(VideoDecodeError, match=rf"numbered\.mp4: {backend} .*(puts|returned) frames at"):
        read_video(files["numbered"], VideoOptions(nframes=6, backend=backend, **SMALL))


# -- choosing a backend ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_that_is_not_installed_names_the_extra_to_install(name, files, monkeypatch):
    for module in [m for m in sys.modules if m.startswith(f"{name}.")] + [name]:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import name` fail, as if it were not installed
    with pytest.raises(VideoBackendError) as caught:
        read_video(files["numbered"], VideoOptions(backend=name))
    assert isinstance(caught.value, ImportError)
    message = str(caught.value)
    assert message.startswith(str(files["numbered"])) and f"video backend '{name}' is not installed" in message
    assert f"pip install 'stave[{name}]'" in message


@pytest.fixture
def broken_torchcodec(monkeypatch):
    """torchcodec found on the path but failing to load, as a wheel does next to a torch it was not built for."""
    from stave.video.backends import torchcodec as torchcodec_backend

    def load():
        raise OSError("libavutil.so.59: cannot open shared object file")

    monkeypatch.setattr(torchcodec_backend, "load", load)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "torchcodec" else real_find_spec(n))
    video_backends._load.cache_clear()


def test_backend_that_is_installed_but_cannot_load_says_why(files, broken_torchcodec):
    with pytest.raises(VideoBackendError, match=r"'torchcodec' is installed but cannot be loaded \(OSError: libavutil"):
        read_video(files["numbered"], VideoOptions(backend="torchcodec"))
    assert "cannot open shared object" in available_backends()["torchcodec"]
    assert available_backends()["pyav"] is None


def test_torchcodec_without_ffmpeg_is_reported_unusable(files, monkeypatch):
    """torchcodec 0.17 imports without FFmpeg's libraries and fails only when a video is opened; stave reports
    it as unusable before (ffmpeg_major_version is None), and "auto" takes PyAV."""
    import types

    fake = types.ModuleType("torchcodec")
    fake.ffmpeg_major_version = None
    decoders = types.ModuleType("torchcodec.decoders")
    decoders.VideoDecoder = object
    monkeypatch.setitem(sys.modules, "torchcodec", fake)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)
    monkeypatch.setattr(video_backends, "_installed", lambda name: True)
    assert "FFmpeg core library" in available_backends()["torchcodec"]
    with pytest.raises(VideoBackendError, match=r"'torchcodec' is installed but cannot be loaded \(OSError: .*FFmpeg"):
        read_video(files["numbered"], VideoOptions(backend="torchcodec"))
    with pytest.warns(UserWarning, match="'torchcodec' is installed but cannot be used"):
        assert read_video(files["numbered"], VideoOptions(nframes=2, backend="auto", **SMALL)).backend == "pyav"


def test_auto_takes_the_first_usable_backend_of_its_order(files):
    assert video_backends.AUTO_ORDER == ("torchcodec", "pyav")
    clip = read_video(files["numbered"], VideoOptions(nframes=6, backend="auto", **SMALL))
    assert clip.backend == ("torchcodec" if available_backends()["torchcodec"] is None else "pyav")


def test_auto_reports_an_installed_backend_that_cannot_load_and_uses_the_next(files, broken_torchcodec):
    with pytest.warns(UserWarning, match=r"video backend 'torchcodec' is installed but cannot be used \(OSError"):
        clip = read_video(files["numbered"], VideoOptions(nframes=6, backend="auto", **SMALL))
    assert clip.backend == "pyav"
    assert clip.indices == read_video(files["numbered"], VideoOptions(nframes=6, **SMALL)).indices


def test_decoding_libraries_are_imported_only_when_asked_for(files):
    code = (
        "import sys, stave, stave.video, stave.processing\n"
        "from stave.video import VideoOptions, read_video\n"
        f"read_video({str(files['numbered'])!r}, VideoOptions(nframes=2, backend='pyav'))\n"
        "print(sorted(m for m in ('torchcodec', 'decord') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
