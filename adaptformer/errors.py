"""Errors the command-line tools print as one line (tools/_cli.py); importable without Paddle."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class ExportError(ValueError):
    """A model cannot be exported or converted (paddle.jit.save, paddle2onnx); the message says why."""


def one_line(text) -> str:
    """`text` (a name taken from a file) with line breaks and other whitespace runs as single spaces."""
    return " ".join(str(text).split())


def short_reason(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    msg = str(e).strip().rstrip(":").splitlines()
    reason = f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."
