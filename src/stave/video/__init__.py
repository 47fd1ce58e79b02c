"""The video input pipeline: file -> decoded, sampled, resized frames -> packed model inputs."""

from .backends import available_backends
from .cache import VideoCache
from .decode import VideoClip, check_video, read_image, read_video, resize_frames, to_rgb_chw
from .errors import (
    VideoBackendError,
    VideoDecodeError,
    VideoError,
    VideoNotFoundError,
    VideoSamplingError,
    VideoShapeError,
    VideoTimeoutError,
)
from .options import VideoOptions
from .packing import PatchSpec, pack_batch, pack_frames, seconds_per_grid
from .sampling import frame_indices, number_of_frames, smart_resize

__all__ = [
    "VideoBackendError",
    "PatchSpec",
    "VideoCache",
    "VideoClip",
    "VideoDecodeError",
    "VideoError",
    "VideoNotFoundError",
    "VideoOptions",
    "VideoSamplingError",
    "VideoShapeError",
    "VideoTimeoutError",
    "available_backends",
    "check_video",
    "frame_indices",
    "number_of_frames",
    "pack_batch",
    "pack_frames",
    "read_image",
    "read_video",
    "seconds_per_grid",
    "resize_frames",
    "smart_resize",
    "to_rgb_chw",
]
