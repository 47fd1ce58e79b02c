"""`stave app`: a web page to ask a model about a video, see the frames it was given, its temporal attention
(STA), and two models' answers side by side.

    stave.app.backend   the functions behind the page: models, sampling, streamed answers, the frame strip,
                        the settings of every answer (no gradio: unit-testable without the extra)
    stave.app.page      the Gradio page on top of them (`pip install 'stave[app]'`)
"""

from __future__ import annotations

from types import ModuleType

from ..errors import MissingExtraError


def require_gradio() -> ModuleType:
    """gradio, or a MissingExtraError naming the extra that installs it."""
    try:
        import gradio
    except ImportError as error:
        raise MissingExtraError(f"stave app needs gradio ({error}): pip install 'stave[app]'") from None
    return gradio
