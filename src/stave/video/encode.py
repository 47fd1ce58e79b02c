"""Writing frames as a real video file (H.264 by default), for generated test and demo data."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def write_video(
    path: str | Path,
    frames: np.ndarray | torch.Tensor,
    fps: float = 30.0,
    *,
    codec: str = "libx264",
    keyframe_interval: int | None = None,
    timestamps: Sequence[float] | None = None,
    crf: int = 18,
) -> Path:
    """Encode (T, H, W, 3) uint8 frames (H, W even) to `path` with PyAV.

    Args:
        fps: nominal frame rate.
        keyframe_interval: frames between keyframes (GOP size); None keeps the encoder's default.
        timestamps: seconds of each frame, for variable-frame-rate files (default: i / fps).
        crf: H.264 quality (lower is better; 18 is visually lossless).
    """
    import av

    path = Path(path)
    array = torch.as_tensor(frames).numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {array.shape} {array.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = array.shape[2], array.shape[1]
        stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf)} if codec == "libx264" else {}
        if keyframe_interval is not None:
            stream.codec_context.gop_size = keyframe_interval
            if codec == "libx264":
                options.update(
                    {"keyint": str(keyframe_interval), "min-keyint": str(keyframe_interval), "scenecut": "0"}
                )
        if options and codec == "libx264":
            stream.options = {
                "x264-params": ":".join(f"{k}={v}" for k, v in options.items() if k != "crf"),
                "crf": options["crf"],
            }
        time_base = Fraction(1, 1000) if timestamps is not None else None
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, image in enumerate(array):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if timestamps is not None:
                frame.pts = round(timestamps[i] * 1000)
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
