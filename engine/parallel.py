"""Running pieces of windowed work on a few threads, with progress and cancel.

The heavy lifting inside each piece (GDAL reads and writes, nogil numba
kernels) releases the GIL, so Python threads run it in parallel. Progress is
reported and cancellation checked from the calling thread only.
"""

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager

from .errors import CancelledError


class SharedSetting:
    """A process-wide setting that runs overlapping in threads hold together: the first
    to enter changes it, the last to leave puts it back."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = None

    @contextmanager
    def held(self, change, restore, each=None):
        """While the block runs: ``change()`` when no other block holds the setting (its
        result is what ``restore(saved)`` gets when the last block leaves), ``each()``
        on every entry (e.g. a lower cap than the one in force)."""
        with self._lock:
            if self._users == 0:
                self._saved = change()
            self._users += 1
            if each is not None:
                each()
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    restore(self._saved)


def split_evenly(items, parts):
    """``items`` cut into at most ``parts`` contiguous, non-empty runs."""
    items = list(items)
    parts = max(1, min(int(parts), len(items)))
    size, extra = divmod(len(items), parts)
    runs, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        runs.append(items[start:end])
        start = end
    return [run for run in runs if run]


def run_in_threads(tasks, threads, reporter):
    """Run ``(function, weight)`` tasks; each is called as ``function(tick)``.

    ``tick(amount)`` records ``amount`` of the task's ``weight`` as done and
    raises :class:`CancelledError` once the work is being stopped. Returns
    the results in task order; the first error (or a cancel) stops the rest.
    """
    total = float(sum(weight for _, weight in tasks)) or 1.0
    done = [0.0]
    stop = threading.Event()
    lock = threading.Lock()

    def tick(amount=0):
        if stop.is_set():
            raise CancelledError()
        with lock:
            done[0] += amount
        if threads <= 1:
            reporter.update(done[0] / total)
            if reporter.is_cancelled():
                stop.set()
                raise CancelledError()

    if threads <= 1:
        return [function(tick) for function, _ in tasks]
    with ThreadPoolExecutor(max_workers=int(threads), thread_name_prefix="tessera") as pool:
        futures = [pool.submit(function, tick) for function, _ in tasks]
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                reporter.update(done[0] / total)
                failed = [f for f in finished if f.exception() is not None]
                if failed:
                    raise failed[0].exception()
                if reporter.is_cancelled():
                    raise CancelledError()
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            wait(futures)
            raise
    return [future.result() for future in futures]
