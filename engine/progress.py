"""Progress reporting and cancellation for long engine work.

Engine functions take ``progress(fraction, message)`` and ``cancelled()``
callables; :class:`Progress` wraps them so that the work can be split in
phases that each fill a share of the bar.
"""

from .errors import CancelledError


class Progress:
    """Report a fraction in [0, 1] with a phase message; raise on cancel."""

    def __init__(self, progress=None, cancelled=None):
        self._progress = progress
        self._cancelled = cancelled
        self._start = 0.0
        self._span = 1.0
        self._message = ""
        self._fraction = 0.0

    def phase(self, start, end, message):
        """Begin a phase that maps its own 0..1 onto ``start..end`` of the bar."""
        self.check()
        self._start, self._span, self._message = start, end - start, message
        self.update(0.0)

    def update(self, fraction):
        """Report ``fraction`` (0..1) of the current phase."""
        if self._progress is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            self._fraction = self._start + self._span * fraction
            self._progress(self._fraction, self._message)

    def note(self, message):
        """Say ``message`` without moving the bar (e.g. while waiting)."""
        if self._progress is not None:
            self._progress(self._fraction, message)

    def is_cancelled(self):
        return self._cancelled is not None and bool(self._cancelled())

    def check(self):
        """Raise :class:`CancelledError` when the caller asked to stop."""
        if self.is_cancelled():
            raise CancelledError()
