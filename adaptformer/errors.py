"""Errors the command-line tools print as one line (tools/_cli.py); importable without Paddle."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class ExportError(ValueError):
    """A model cannot be exported or converted (paddle.jit.save, paddle2onnx); the message says why."""


def one_line(text) -> str:
    """`text` (a name taken from a file) with line breaks and other whitespace runs as single spaces."""
    return " ".join(str(text).split())
