"""The video input pipeline: file -> decoded, sampled, resized frames -> packed model inputs."""

from .decode import VideoClip, read_video, resize_frames, to_rgb_chw
from .errors import (
    VideoDecodeError,
    VideoError,
    VideoNotFoundError,
    VideoSamplingError,
    VideoShapeError,
    VideoTimeoutError,
)
from .options import VideoOptions
from .packing import PatchSpec, pack_batch, pack_frames
from .sampling import frame_indices, number_of_frames, smart_resize

__all__ = [
    "PatchSpec",
    "VideoClip",
    "VideoDecodeError",
    "VideoError",
    "VideoNotFoundError",
    "VideoOptions",
    "VideoSamplingError",
    "VideoShapeError",
    "VideoTimeoutError",
    "frame_indices",
    "number_of_frames",
    "pack_batch",
    "pack_frames",
    "read_video",
    "resize_frames",
    "smart_resize",
    "to_rgb_chw",
]
