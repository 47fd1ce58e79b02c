"""Errors of the video input pipeline. Every one names the source and the reason."""

from __future__ import annotations

from ..errors import StaveError


class VideoError(StaveError):
    """A video (or image sequence) could not be turned into model input.

    Attributes:
        source: the path (or a description of an in-memory input).
        reason: what went wrong, in words.
    """

    def __init__(self, source: object, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The file or frame folder does not exist."""


class VideoDecodeError(VideoError):
    """The file is not a video, is corrupt or truncated, or has no decodable frame."""


class VideoSamplingError(VideoError, ValueError):
    """The requested frames cannot be taken (bad options, start/end outside the video, too few frames)."""


class VideoShapeError(VideoError, ValueError):
    """The frames cannot be resized for the model (aspect ratio above 200, wrong array shape or dtype)."""


class VideoTimeoutError(VideoError, TimeoutError):
    """Decoding took longer than VideoOptions.timeout."""


class VideoBackendError(VideoError, ImportError):
    """The decoding library asked for (VideoOptions.backend) is not installed or cannot be loaded; the
    message names the extra that installs it."""
