"""Errors the command-line tools print as one line (tools/_cli.py); importable without Paddle."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""
