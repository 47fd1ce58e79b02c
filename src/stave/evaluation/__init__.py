"""Evaluation: benchmark loaders (stave.evaluation.benchmarks) yield items (stave.evaluation.items), which are
prompted (prompts), answered by a model (model), scored (answers, run) and compared (compare)."""

from .benchmarks import BENCHMARKS, load_benchmark
from .items import BenchmarkFormatError, EvalItem, LoadReport, VideoRef
from .model import ModelAnswerer, ask, load_answerer
from .run import EvalError, EvalSettings, evaluate

__all__ = [
    "BENCHMARKS",
    "BenchmarkFormatError",
    "EvalError",
    "EvalItem",
    "EvalSettings",
    "LoadReport",
    "ModelAnswerer",
    "VideoRef",
    "ask",
    "evaluate",
    "load_answerer",
    "load_benchmark",
]
