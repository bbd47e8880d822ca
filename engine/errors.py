"""Exceptions raised by the engine; their messages are meant for users."""


class TesseraError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class CancelledError(TesseraError):
    """The caller asked to stop; nothing was written."""

    def __init__(self, message="Cancelled by the user; no output was written."):
        super().__init__(message)
