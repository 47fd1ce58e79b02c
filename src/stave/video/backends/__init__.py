"""Video file decoders ("backends"), chosen with VideoOptions.backend.

Each backend is one small module: `load()` imports its library (nothing is imported until a file is read
with it) and `decode(path, table, indices, deadline)` yields the frames at `indices` of the file's
FrameTable as RGB uint8 tensors. Which frames to take, their timestamps and their target size are decided
before, from the frame table, identically for every backend; only the decoded pixels may differ between
libraries, by a rounding step of their YUV-to-RGB conversion.

"auto" takes the first usable backend of AUTO_ORDER: torchcodec, which decoded the sampled frames as fast
as PyAV or faster on CPU (0-35% less time, benchmarks/RESULTS.md), else PyAV. PyAV stays the default of
VideoOptions: it is always installed (its wheels bundle FFmpeg, where torchcodec needs system FFmpeg and a
build matching torch), so a run decodes alike on every machine, and the differences in speed were small
next to the resize all backends share. decord is used only when asked for by name: the original package
is unmaintained, with known leaks and hangs.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from functools import cache
from types import ModuleType

from ..errors import VideoBackendError

BACKENDS = ("pyav", "torchcodec", "decord")
AUTO_ORDER = ("torchcodec", "pyav")
LIBRARIES = {"pyav": "av", "torchcodec": "torchcodec", "decord": "decord"}  # the module each one imports
INSTALL = {
    "pyav": "pip install av",
    "torchcodec": "pip install 'stave[torchcodec]' (torchcodec also needs FFmpeg's shared libraries, major "
    "version 4 to 9, and a build matching the installed torch: PyPI's Linux wheels need a CUDA build of torch)",
    "decord": "pip install 'stave[decord]'",
}


@cache
def _load(name: str) -> tuple[ModuleType | None, str | None]:
    """(backend module, None) when its library loads, else (None, why not). Tried once per process."""
    module = importlib.import_module(f"{__name__}.{name}")
    try:
        module.load()
    except (ImportError, OSError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, f"{type(error).__name__}: {message}"
    return module, None


def available_backends() -> dict[str, str | None]:
    """Every backend name -> None where it can be used here, else the reason it cannot (for logs)."""
    return {name: _load(name)[1] for name in BACKENDS}


def get_backend(name: str, source: object) -> tuple[str, ModuleType]:
    """The backend to decode `source` with: (its name, its module); "auto" resolved by AUTO_ORDER.

    Raises:
        VideoBackendError (an ImportError) naming the backend, why it cannot be used and what to install.
    """
    if name == "auto":
        for candidate in AUTO_ORDER:
            module, reason = _load(candidate)
            if module is not None:
                return candidate, module
            if _installed(candidate):
                warnings.warn(f"video backend {candidate!r} is installed but cannot be used ({reason})", stacklevel=3)
        raise VideoBackendError(source, f"no video backend can be used; install one of {', '.join(AUTO_ORDER)}")
    if name not in BACKENDS:
        raise VideoBackendError(source, f"unknown video backend {name!r}; known: {', '.join(BACKENDS)}")
    module, reason = _load(name)
    if module is None:
        state = "is installed but cannot be loaded" if _installed(name) else "is not installed"
        raise VideoBackendError(source, f"video backend {name!r} {state} ({reason}); to use it: {INSTALL[name]}")
    return name, module


def _installed(name: str) -> bool:
    """Whether the backend's library is on the path (found without importing it)."""
    return importlib.util.find_spec(LIBRARIES[name]) is not None
