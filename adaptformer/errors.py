"""Every error the command-line tools print as one line and exit 2 on (tools/_cli.py).

Importable without Paddle: config validation and the file readers raise these before any
model is built. Each message names the file, key or value and what was expected.
"""


class UserError(Exception):
    """Something the user handed us is wrong; the message says which and why, in one line."""


class ConfigError(UserError, ValueError):
    """A config file or override is wrong; the message says where and why."""


class DataError(UserError, ValueError):
    """The data cannot be loaded as configured; the message names the file and the config key."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class UnsafePickleError(CheckpointError):
    """A file names a global outside the safe reader's allow-list; nothing from it was executed."""


class CheckpointReadError(CheckpointError):
    """A file is missing, damaged, too large for what it declares, or not the kind expected."""


class ExportError(UserError, ValueError):
    """A model cannot be exported or converted (paddle.jit.save, paddle2onnx); the message says why."""


class OutputError(UserError, OSError):
    """An output file or folder cannot be written, or would replace a file it must not; the message says which."""


class InputFileError(UserError, OSError):
    """A file handed to us is not a regular file, is larger than its kind can be, or is not the
    text it should be (adaptformer/files/opener.py). An OSError, so image readers treat it as an
    unreadable image."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where and which checkpoint is kept."""


def one_line(text) -> str:
    """`text` (a name taken from a file) with line breaks and other whitespace runs as single spaces."""
    return " ".join(str(text).split())


def quoted(text) -> str:
    """`text` as it may appear in a one-line output: as is when printable, else escaped in quotes
    (a file or class name holding a newline cannot forge an output line)."""
    text = str(text)
    if text.isprintable() and text.strip() == text:
        return text
    return repr(text)


def short_reason(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    msg = str(e).strip().rstrip(":").splitlines()
    reason = f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."


def short_list(items, limit: int = 6) -> str:
    """'a, b, c ... (+n more)' for error messages and reports."""
    items = list(items)
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(map(str, items[:limit])) + more
