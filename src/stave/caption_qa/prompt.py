"""The instruction that asks an LLM for question-answer pairs about a captioned video.

The paper (WebVid-QA) does not publish its prompt; this one asks for what its use needs: several questions a
viewer could ask, answered only from the caption, spoken as by one who watched, as a JSON list that
stave.caption_qa.validation parses. A prompt file (YAML or JSON, keys `system` and `user`) replaces it; `{caption}`
and `{pairs}` in `user` are filled in (no other braces are read, so JSON examples need no escaping).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StaveError

DEFAULT_SYSTEM = (
    "You write question-answer pairs about videos, for training a video assistant. You follow the format exactly."
)
DEFAULT_USER = """A short video has this caption:
"{caption}"

Write {pairs} different questions that someone watching this video could ask, each with its correct answer.
- Use only what the caption says; do not invent details.
- Ask about the actions, the people, animals and objects, how they look, the place, and the order of events.
- Speak as one who watched the video: never mention a caption or a description.
- A question must not give away its own answer, and must not repeat the caption.
- Answers are one or two sentences.
Reply with a JSON list and nothing else: [{"question": "...", "answer": "..."}, ...]"""


class PromptError(StaveError, ValueError):
    """A prompt (or prompt file) that cannot be used; names the file and the key."""


@dataclass(frozen=True)
class QAPrompt:
    """The chat messages sent for one caption: an optional system message and the user message built from
    `user` with `{caption}` and `{pairs}` (the number of pairs asked for) filled in."""

    user: str = DEFAULT_USER
    system: str | None = DEFAULT_SYSTEM
    pairs: int = 4

    def __post_init__(self) -> None:
        if "{caption}" not in self.user:
            raise PromptError("prompt: the user message must contain {caption}")
        if self.pairs < 1:
            raise PromptError(f"prompt: pairs must be >= 1, got {self.pairs}")

    def messages(self, caption: str) -> list[dict[str, str]]:
        user = self.user.replace("{caption}", caption).replace("{pairs}", str(self.pairs))
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": user}]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str | Path, pairs: int = 4) -> QAPrompt:
        """A prompt file: a YAML (or JSON) mapping with `user` and optionally `system` (null: none)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise PromptError(f"{path}: cannot read the prompt file: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str):
            raise PromptError(f"{path}: a prompt file is a mapping with a `user` text (and optionally `system`)")
        unknown = sorted(set(data) - {"user", "system"})
        if unknown:
            raise PromptError(f"{path}: unknown keys {unknown}; a prompt file has `user` and `system`")
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise PromptError(f"{path}.system: must be text or null")
        try:
            return cls(user=data["user"], system=system, pairs=pairs)
        except PromptError as error:
            raise PromptError(f"{path}: {error}") from None
