"""Drawing synthetic clips: flat shapes on a plain grey background, moved by linear interpolation.

A `Clip` says what happens, not how many frames show it: every object has a start and an end state
(centre, size, angle) and a phase, the part of the clip in which it moves (all of it, its first half or its
second half). `render_clip` evaluates the clip at K poses (K = frames, or frames / 2 when each pose is held
for one temporal patch) and draws each pose.

Time reversal is exact. `Clip.reversed()` swaps every object's start and end and its first and second
half; the pose at step k is computed with integer step counts, as (start * (n - i) + end * i) / n, so the
reversed clip evaluates the same two products at step K-1-k and adds them in the other order — the same
floating-point value. Its frames are therefore bit-identical to the original's in reverse order: no single
frame, and no set of frames, tells a clip from its partner; only their order does.

Coordinates are pixels, x to the right and y down; angles are degrees, clockwise on screen; an object's
size is the side of its bounding box at angle 0. Edges are antialiased by supersampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

PATCH = 14  # pixels per side of a Qwen2-VL patch
TEMPORAL_PATCH = 2  # frames per temporal patch (Qwen2-VL's temporal_patch_size)
BACKGROUND = 128  # grey level of the plain background
SUPERSAMPLE = 4  # samples per pixel side for antialiased edges

SHAPES = ("square", "circle", "triangle", "arrow")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 210, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
PHASES = ("whole", "first", "second")

# Shapes as unions of convex polygons in the unit box [-0.5, 0.5]^2 at angle 0 (the circle is exact). The
# arrow points up and has no rotational symmetry, so any turn of less than 360 degrees is visible.
_POLYGONS: dict[str, tuple[np.ndarray, ...]] = {
    "square": (np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]),),
    "triangle": (np.array([(0.0, -0.5), (0.5, 0.5), (-0.5, 0.5)]),),
    "arrow": (
        np.array([(0.0, -0.5), (0.5, 0.05), (-0.5, 0.05)]),
        np.array([(-0.18, 0.0), (0.18, 0.0), (0.18, 0.5), (-0.18, 0.5)]),
    ),
}


def reach(shape: str) -> float:
    """Largest distance from the centre to a point of `shape`, in units of its size (bounds any rotation)."""
    if shape == "circle":
        return 0.5
    return max(float(np.hypot(*polygon.T).max()) for polygon in _POLYGONS[shape])


@dataclass(frozen=True)
class ObjectState:
    """Where an object is at one instant: centre (x, y) and size in pixels, angle in degrees clockwise."""

    x: float
    y: float
    size: float
    angle: float = 0.0


@dataclass(frozen=True)
class MovingObject:
    """A shape that goes from `start` to `end` during its `phase` ("whole", "first" or "second" half of the
    clip) and rests before and after it."""

    shape: str
    colour: str
    start: ObjectState
    end: ObjectState
    phase: str = "whole"

    @property
    def name(self) -> str:
        """How questions and labels call it, e.g. "red square"."""
        return f"{self.colour} {self.shape}"

    def reversed(self) -> MovingObject:
        phase = {"whole": "whole", "first": "second", "second": "first"}[self.phase]
        return replace(self, start=self.end, end=self.start, phase=phase)

    def state(self, step: int, poses: int) -> ObjectState:
        """The state at pose `step` of `poses` (0-based)."""
        first, last = _window(self.phase, poses)
        n = last - first
        i = min(max(step - first, 0), n)
        a, b = self.start, self.end
        # a * (n - i) + b * i: the reversed object computes b * i' + a * (n - i') with i' = n - i, the same sum
        return ObjectState(*((p * (n - i) + q * i) / n for p, q in zip(_values(a), _values(b), strict=True)))


@dataclass(frozen=True)
class Clip:
    """What a synthetic video shows: objects (drawn in order, later ones on top) on a size x size frame."""

    size: int
    objects: tuple[MovingObject, ...]

    def reversed(self) -> Clip:
        """The same clip played backwards (exactly; see the module docstring)."""
        return replace(self, objects=tuple(obj.reversed() for obj in self.objects))

    def poses(self, count: int) -> list[tuple[ObjectState, ...]]:
        """Every object's state at `count` evenly spaced instants."""
        return [tuple(obj.state(step, count) for obj in self.objects) for step in range(count)]


def poses_per_clip(frames: int, hold: bool) -> int:
    """Distinct poses in a video of `frames` frames: each pose fills one temporal patch when `hold`."""
    return frames // TEMPORAL_PATCH if hold else frames


def render_clip(clip: Clip, frames: int, *, hold: bool = False) -> np.ndarray:
    """Draw `clip` as (frames, size, size, 3) uint8 RGB. With `hold`, every pose is repeated for
    TEMPORAL_PATCH consecutive frames, so that motion happens only between temporal patches."""
    if hold and frames % TEMPORAL_PATCH:
        raise ValueError(f"with hold, frames must be a multiple of {TEMPORAL_PATCH}, got {frames}")
    drawn: dict[tuple[ObjectState, ...], np.ndarray] = {}  # poses at rest are drawn once
    images = []
    for pose in clip.poses(poses_per_clip(frames, hold)):
        if pose not in drawn:
            drawn[pose] = render_pose(clip, pose)
        images.append(drawn[pose])
    video = np.stack(images)
    return np.repeat(video, TEMPORAL_PATCH, axis=0) if hold else video


def render_pose(clip: Clip, states: tuple[ObjectState, ...]) -> np.ndarray:
    """One (size, size, 3) uint8 frame with the clip's objects at `states`."""
    image = np.full((clip.size, clip.size, 3), float(BACKGROUND))
    for obj, state in zip(clip.objects, states, strict=True):
        box, cover = _coverage(obj.shape, state, clip.size)
        region = image[box]
        region += (np.array(COLOURS[obj.colour], dtype=float) - region) * cover[..., None]
    return np.rint(image).astype(np.uint8)


def _values(state: ObjectState) -> tuple[float, float, float, float]:
    return state.x, state.y, state.size, state.angle


def _window(phase: str, poses: int) -> tuple[int, int]:
    """First and last pose of the motion. The two halves mirror each other in time; with an odd number of
    intervals between poses the middle one is a pause, so neither half overlaps the other."""
    last = poses - 1
    half = last // 2
    if phase == "whole" and last >= 1:
        return 0, last
    if phase in ("first", "second") and half >= 1:
        return (0, half) if phase == "first" else (last - half, last)
    raise ValueError(f"phase {phase!r} needs more than {poses} poses")


def _coverage(shape: str, state: ObjectState, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """The pixel box around the object and the fraction of each of its pixels that the shape covers."""
    r = reach(shape) * state.size + 1.0
    x0, x1 = max(0, math.floor(state.x - r)), min(size, math.ceil(state.x + r))
    y0, y1 = max(0, math.floor(state.y - r)), min(size, math.ceil(state.y + r))
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (np.arange(x0, x1)[:, None] + offsets).ravel()
    ys = (np.arange(y0, y1)[:, None] + offsets).ravel()
    # into the shape's unit box: translate, undo the rotation, scale
    dx, dy = np.meshgrid((xs - state.x) / state.size, (ys - state.y) / state.size)
    theta = math.radians(state.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    if shape == "circle":
        inside = u * u + v * v <= 0.25
    else:
        inside = np.zeros(u.shape, dtype=bool)
        for polygon in _POLYGONS[shape]:
            inside |= _in_convex(polygon, u, v)
    cover = inside.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(axis=(1, 3))
    return (slice(y0, y1), slice(x0, x1)), cover


def _in_convex(polygon: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points on the same side of every edge of a convex polygon (either winding)."""
    positive = np.ones(u.shape, dtype=bool)
    negative = np.ones(u.shape, dtype=bool)
    for (px, py), (qx, qy) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        cross = (qx - px) * (v - py) - (qy - py) * (u - px)
        positive &= cross >= 0
        negative &= cross <= 0
    return positive | negative
