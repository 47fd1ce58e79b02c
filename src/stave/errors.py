"""The base of every error stave raises for bad input or a state it refuses to work from.

Each subclass also derives from the built-in type that describes it (ValueError for bad values,
FileNotFoundError for a missing video, ImportError for a missing extra, ...), so code that catches the
built-in types keeps working. Every message names the file, record or field and the reason; the `stave`
command prints it as one line (exit status 2) and the traceback only with `--debug`.
"""

from __future__ import annotations


class StaveError(Exception):
    """Bad input (a file, record, field or option) or a state stave refuses; the message says which and why."""


class MissingExtraError(StaveError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def error_message(error: BaseException) -> str:
    """An error's message on one line, as the `stave` command and `stave app` show it (its type when it has none)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
