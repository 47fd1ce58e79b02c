"""A per-run cache of decoded and resized videos: evaluation and multi-epoch training read each video
once per set of options, not once per use.

Entries are keyed by the file (absolute path, size and modification time; for a frame folder, those of
every frame image) and by everything that decides the frames: the VideoOptions (all but `timeout`) with
"auto" resolved to the backend that decodes, the resize factor, and the frame rate given for folders.
They are kept in memory, least recently used first out once `max_bytes` is exceeded, and optionally in a
directory as safetensors files, written to a temporary name and renamed into place (os.replace), so a
reader never sees half a file, and checked on load (key and SHA-256 of the frames): a damaged file is
counted, reported with a warning, decoded again and rewritten; it is never returned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import get_backend
from .decode import FRAME_SUFFIXES, VideoClip, read_video
from .options import IMAGE_FACTOR, VideoOptions

# Version of the key and of the files on disk; 2: frames resized as uint8 (resize_frames), so entries of 1, resized
# in float32, are pixels stave no longer makes and are not reused.
FORMAT = 2


class VideoCache:
    """Decoded videos kept for the run, in memory and optionally on disk.

    Args:
        directory: where to keep decoded videos as safetensors files (created if missing); None keeps them
            in memory only. Files are never deleted by the cache, except damaged ones it replaces.
        max_bytes: bound on the frames held in memory (uint8 bytes); a video larger than it alone is not
            held in memory (but is on disk, given a directory).

    Attributes:
        hits: reads answered from the cache (memory or disk).
        disk_hits: the part of `hits` answered from disk.
        misses: reads that decoded the video.
        corrupt: files on disk that failed their check and were decoded again (also counted in `misses`).
        evictions: videos dropped from memory to stay within `max_bytes`.
    """

    def __init__(self, directory: str | Path | None = None, max_bytes: int = 4 * 1024**3) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.hits = self.disk_hits = self.misses = self.corrupt = self.evictions = 0
        self._memory: OrderedDict[str, VideoClip] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def read(
        self,
        source: str | Path | Sequence[Any] | np.ndarray | torch.Tensor,
        options: VideoOptions | None = None,
        *,
        factor: int = IMAGE_FACTOR,
        source_fps: float = 1.0,
    ) -> VideoClip:
        """read_video through the cache: the same arguments, the same VideoClip contents.

        Frames already in memory (image lists, arrays) are passed to read_video and not cached.
        """
        options = options or VideoOptions()
        if not isinstance(source, (str, Path)) or not Path(source).exists():
            return read_video(source, options, factor=factor, source_fps=source_fps)  # nothing to key, or an error
        path = Path(source).resolve()
        key = self._key(path, options, factor, source_fps)
        digest = hashlib.sha256(key.encode()).hexdigest()
        with self._lock:
            clip = self._memory.get(digest)
            if clip is not None:
                self._memory.move_to_end(digest)
                self.hits += 1
                return _copy(clip, options, source)
        clip = self._load(digest, key, options)
        if clip is not None:
            with self._lock:
                self.hits += 1
                self.disk_hits += 1
        else:
            clip = read_video(path, options, factor=factor, source_fps=source_fps)
            with self._lock:
                self.misses += 1
            self._store(digest, key, clip)
        self._remember(digest, clip)
        return _copy(clip, options, source)

    @property
    def nbytes(self) -> int:
        """Bytes of frames held in memory."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._memory)

    def stats(self) -> dict[str, int]:
        """Counters and memory use, for logs."""
        return {
            "hits": self.hits,
            "disk_hits": self.disk_hits,
            "misses": self.misses,
            "corrupt": self.corrupt,
            "evictions": self.evictions,
            "videos_in_memory": len(self._memory),
            "bytes_in_memory": self._bytes,
        }

    def clear(self) -> None:
        """Forget what is held in memory (files on disk stay)."""
        with self._lock:
            self._memory.clear()
            self._bytes = 0

    # -- keys ----------------------------------------------------------------------------------------

    def _key(self, path: Path, options: VideoOptions, factor: int, source_fps: float) -> str:
        settings = options.to_dict()
        del settings["timeout"]  # decides whether a read finishes, not which pixels it gives
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
            settings["backend"] = "frames"
            settings["source_fps"] = source_fps
        else:
            stat = path.stat()
            stamp = [stat.st_size, stat.st_mtime_ns]
            settings["backend"] = get_backend(options.backend, path)[0]
        settings["factor"] = factor
        return json.dumps({"format": FORMAT, "path": str(path), "file": stamp, "options": settings}, sort_keys=True)

    # -- memory --------------------------------------------------------------------------------------

    def _remember(self, digest: str, clip: VideoClip) -> None:
        size = clip.frames.numel() * clip.frames.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            if digest in self._memory:
                return
            self._memory[digest] = clip
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._memory.popitem(last=False)
                self._bytes -= dropped.frames.numel() * dropped.frames.element_size()
                self.evictions += 1

    # -- disk ----------------------------------------------------------------------------------------

    def _file(self, digest: str) -> Path | None:
        return self.directory / f"{digest}.safetensors" if self.directory is not None else None

    def _load(self, digest: str, key: str, options: VideoOptions) -> VideoClip | None:
        file = self._file(digest)
        if file is None or not file.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                frames = f.get_tensor("frames")
            if meta.get("key") != key:
                raise ValueError("it belongs to another video or other options")
            if _checksum(frames) != meta.get("sha256"):
                raise ValueError("its frames do not match their checksum")
            fields = json.loads(meta["clip"])
            return VideoClip(frames=frames, options=options, **fields)
        except Exception as error:  # any failure to read or check the file means: decode again
            with self._lock:
                self.corrupt += 1
            warnings.warn(f"video cache file {file} is damaged ({error}); decoding the video again", stacklevel=3)
            file.unlink(missing_ok=True)
            return None

    def _store(self, digest: str, key: str, clip: VideoClip) -> None:
        file = self._file(digest)
        if file is None:
            return
        from safetensors.torch import save_file

        frames = clip.frames.contiguous()
        fields = {
            f.name: getattr(clip, f.name) for f in dataclasses.fields(clip) if f.name not in ("frames", "options")
        }
        meta = {"key": key, "sha256": _checksum(frames), "clip": json.dumps(fields)}
        handle, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{digest[:16]}.", suffix=".tmp")
        os.close(handle)
        try:
            save_file({"frames": frames}, temporary, metadata=meta)
            os.replace(temporary, file)
        finally:
            Path(temporary).unlink(missing_ok=True)


def _checksum(frames: torch.Tensor) -> str:
    return hashlib.sha256(frames.contiguous().numpy()).hexdigest()


def _copy(clip: VideoClip, options: VideoOptions, source: str | Path) -> VideoClip:
    """A clip of its own for the caller (in-place changes to it never reach the cache), naming the source as
    the caller did, as read_video would."""
    return dataclasses.replace(
        clip,
        frames=clip.frames.clone(),
        timestamps=list(clip.timestamps),
        indices=list(clip.indices),
        source=str(Path(source)),
        options=options,
    )
