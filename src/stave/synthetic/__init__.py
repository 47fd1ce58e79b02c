"""Synthetic videos whose classes only temporal order can tell apart, with annotations in public formats.

Why: STA claims to help a video LLM see *when* things happen. Real benchmarks mix that with appearance, so
this package makes clips where appearance carries no answer: each action class has a partner class that
is its exact time reverse (left->right / right->left, up / down, clockwise / counterclockwise turn of an
arrow, approaching (growing) / receding (shrinking)), so a clip and its partner hold the same frames in
opposite order, bit for bit. Order questions (which of two objects moves first) are pairs of the same
kind. Still clips with questions on shape, position and colour are the controls a model must pass
without any temporal reasoning (and what a tiny base model learns to localise objects on).

`hold` repeats every pose for one temporal patch (2 frames): Qwen2-VL's Conv3d patch embedding sees two
frames at once, so motion inside a temporal patch is visible to the plain vision tower; with `hold`,
motion happens only between temporal patches, where only temporal attention (or the LLM) can see it.

Layout: `scene` draws clips (shapes, states, exact reversal, hold), `tasks` says what each task shows and
asks, `dataset` plans the split and writes videos and annotations. The command is
`stave synth --out DIR --n N --seed S [--hold] [--frames F] [--size PX] [--fps FPS]`.
"""

from .dataset import (
    GENERATOR_VERSION,
    Sample,
    SynthError,
    SynthOptions,
    SynthResult,
    conversation_records,
    generate,
    labels,
    mvbench_records,
    plan,
    ssv2_record,
)
from .scene import Clip, MovingObject, ObjectState, render_clip
from .tasks import PAIR_TASKS, PAIRS, TASKS, Member, Question, draw_group, vocabulary

__all__ = [
    "GENERATOR_VERSION",
    "PAIRS",
    "PAIR_TASKS",
    "TASKS",
    "Clip",
    "Member",
    "MovingObject",
    "ObjectState",
    "Question",
    "Sample",
    "SynthError",
    "SynthOptions",
    "SynthResult",
    "conversation_records",
    "draw_group",
    "generate",
    "labels",
    "mvbench_records",
    "plan",
    "render_clip",
    "ssv2_record",
    "vocabulary",
]
