"""MVBench in its published layout (Hugging Face OpenGVLab/MVBench): 20 multiple-choice tasks.

Layout::

    root/json/<task>.json      a list of {"video": name, "question": str, "candidates": [str, ...],
                               "answer": one of the candidates, "start"/"end": seconds (some tasks)}
    root/video/<folder>/<video>    the task's videos, folder per task (TASKS below)

layout="main" (default): the main revision's folders, as read by the authors' evaluation notebook
(OpenGVLab/Ask-Anything video_chat2/mvbench.ipynb). Five tasks select a clip of their source video by the
record's start/end seconds (VideoRef.start/end), and episodic reasoning reads a folder of JPEG frames
(%05d.jpg) taken at 3 fps (VideoRef.frame_fps = 3).
layout="segments": the "video" revision, whose folders hold those clips pre-cut (as lmms-eval reads it):
every task is a plain video file and start/end are not used.

task = the json file's stem (e.g. "action_sequence"); qid = "<task>/<index in the file>"; options = the
candidates in file order; the answer must equal one candidate. `tasks=` selects some tasks (default: every
json file in root/json, each of which must be a known task).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..items import LETTERS, BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .reading import (
    OnMissing,
    check_on_missing,
    expect_type,
    field,
    finish,
    read_json,
    videos_present,
)

FRAME_FOLDER_FPS = 3.0


@dataclass(frozen=True)
class MVBenchTask:
    """Where one task's media live in each published layout, and how the main layout reads them."""

    main_folder: str
    segments_folder: str
    bound: bool = False  # main layout: clip by the record's start/end seconds
    frames: bool = False  # main layout: a folder of %05d.jpg frames at FRAME_FOLDER_FPS


TASKS: dict[str, MVBenchTask] = {
    "action_sequence": MVBenchTask("star/Charades_v1_480", "star/Charades_segment", bound=True),
    "action_prediction": MVBenchTask("star/Charades_v1_480", "star/Charades_segment", bound=True),
    "action_antonym": MVBenchTask("ssv2_video", "ssv2_video_mp4"),
    "fine_grained_action": MVBenchTask("Moments_in_Time_Raw/videos", "Moments_in_Time_Raw/videos"),
    "unexpected_action": MVBenchTask("FunQA_test/test", "FunQA_test/test"),
    "object_existence": MVBenchTask("clevrer/video_validation", "clevrer/video_validation"),
    "object_interaction": MVBenchTask("star/Charades_v1_480", "star/Charades_segment", bound=True),
    "object_shuffle": MVBenchTask("perception/videos", "perception/videos"),
    "moving_direction": MVBenchTask("clevrer/video_validation", "clevrer/video_validation"),
    "action_localization": MVBenchTask("sta/sta_video", "sta/sta_video_segment", bound=True),
    "scene_transition": MVBenchTask("scene_qa/video", "scene_qa/video"),
    "action_count": MVBenchTask("perception/videos", "perception/videos"),
    "moving_count": MVBenchTask("clevrer/video_validation", "clevrer/video_validation"),
    "moving_attribute": MVBenchTask("clevrer/video_validation", "clevrer/video_validation"),
    "state_change": MVBenchTask("perception/videos", "perception/videos"),
    "fine_grained_pose": MVBenchTask("nturgbd", "nturgbd_convert"),
    "character_order": MVBenchTask("perception/videos", "perception/videos"),
    "egocentric_navigation": MVBenchTask("vlnqa", "vlnqa"),
    "episodic_reasoning": MVBenchTask("tvqa/frames_fps3_hq", "tvqa/video_fps3_hq_segment", bound=True, frames=True),
    "counterfactual_inference": MVBenchTask("clevrer/video_validation", "clevrer/video_validation"),
}
LAYOUTS = ("main", "segments")


def load_mvbench(
    root: str | Path,
    *,
    on_missing: OnMissing = "skip",
    seed: int = 0,
    report: LoadReport | None = None,
    tasks: Sequence[str] | None = None,
    layout: str = "main",
) -> list[EvalItem]:
    """MVBench questions from root/json/<task>.json (see the module docstring). `seed` is unused."""
    check_on_missing(on_missing)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    if tasks is None:
        found = sorted((root / "json").glob("*.json"))
        if not found:
            raise BenchmarkFormatError(f"{root / 'json'}: no MVBench task files (<task>.json) found")
        for path in found:
            if path.stem not in TASKS:
                raise BenchmarkFormatError(f"{path}: unknown MVBench task {path.stem!r}; known: {sorted(TASKS)}")
        tasks = [path.stem for path in found]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown MVBench tasks {unknown}; known: {sorted(TASKS)}")

    items, skipped = [], []
    for task in tasks:
        spec = TASKS[task]
        main = layout == "main"
        folder = root / "video" / (spec.main_folder if main else spec.segments_folder)
        path = root / "json" / f"{task}.json"
        records = expect_type(read_json(path), list, path, "top level", "a JSON list of questions")
        for i, record in enumerate(records):
            where = f"[{i}]"
            video = folder / field(record, "video", str, path, where)
            question = field(record, "question", str, path, where)
            candidates = field(record, "candidates", list[str], path, where)
            answer = field(record, "answer", str, path, where)
            if not 2 <= len(candidates) <= len(LETTERS):
                raise BenchmarkFormatError(
                    f"{path}: {where}: field 'candidates' has {len(candidates)} entries, expected 2 to {len(LETTERS)}"
                )
            if answer not in candidates:
                raise BenchmarkFormatError(f"{path}: {where}: field 'answer' {answer!r} is not one of the candidates")
            start = end = None
            if main and spec.bound:
                start = float(field(record, "start", (int, float), path, where))
                end = float(field(record, "end", (int, float), path, where))
            frames = main and spec.frames
            if not videos_present(
                [video], where=f"{path} {where}", on_missing=on_missing, skipped=skipped, folder=frames
            ):
                continue
            items.append(
                EvalItem(
                    qid=f"{task}/{i}",
                    task=task,
                    question=question,
                    videos=(VideoRef(video, start=start, end=end, frame_fps=FRAME_FOLDER_FPS if frames else None),),
                    options=tuple(candidates),
                    answer=answer,
                )
            )
    return finish("mvbench", items, skipped, report)
