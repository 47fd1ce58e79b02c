"""Multi-turn question-answer conversations written by an LLM from video captions (the paper's WebVid-QA,
which keeps instruction following during STA training): captions in (WebVid's CSV or any CSV / JSONL of video
and caption), training conversations out, every generation checked, resumable (`stave make-qa`).

    sources.py      captioned videos from the input file
    prompt.py       the instruction sent per caption
    generators.py   a local transformers causal LM (batched), or an OpenAI-compatible endpoint (concurrent)
    validation.py   parsing and the rules a pair and a video must pass
    run.py          the resumable run and its output folder
"""

from .generators import (
    Completion,
    EndpointGenerator,
    GeneratorError,
    LocalGenerator,
    QAGenerator,
    Request,
    Sampling,
    SamplingError,
)
from .prompt import QAPrompt
from .run import MakeQAError, make_qa, summarize, training_record, video_seed
from .sources import CaptionedVideo, CaptionSourceError, read_captions
from .validation import QARules, Reject, Verdict, validate_generation

__all__ = [
    "CaptionSourceError",
    "CaptionedVideo",
    "Completion",
    "EndpointGenerator",
    "GeneratorError",
    "LocalGenerator",
    "MakeQAError",
    "QAGenerator",
    "QAPrompt",
    "QARules",
    "Reject",
    "Request",
    "Sampling",
    "SamplingError",
    "Verdict",
    "make_qa",
    "read_captions",
    "summarize",
    "training_record",
    "validate_generation",
    "video_seed",
]
