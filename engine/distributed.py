"""Running the engine's tasks on a Dask cluster (optional: ``dask.distributed``).

The engine functions that scale out take ``scheduler=``:

- ``None`` (or ``""``): this process's threads, as always; Dask is never imported;
- ``"local"``: a ``LocalCluster`` of worker processes sized to this machine, started for
  the run and closed after it;
- an address such as ``"tcp://host:8786"``: a running Dask scheduler (its workers must be
  able to import ``tessera`` and read the inputs: shared paths, ``/vsis3/``, ``s3://``);
- a ``distributed.Client``: used as it is and left open.

:func:`connect` gives the client; :func:`run_tasks` runs module-level functions as tasks
with progress as they finish, cancel, and a clear message when workers die.
"""

import multiprocessing
import multiprocessing.spawn
import os
import shutil
import sys
import time
from contextlib import contextmanager

from .dependencies import require
from .errors import CancelledError, TesseraError
from .io.output_safety import redact
from .memory import available_memory, large_buffers_reused

#: How often :func:`run_tasks` looks at the futures and the cancel flag (seconds).
POLL_SECONDS = 0.05


def uses_cluster(scheduler):
    """True when ``scheduler`` asks for Dask (not None nor empty text)."""
    return scheduler is not None and not (isinstance(scheduler, str) and not scheduler.strip())


def check_scheduler(scheduler, purpose="Running on a Dask cluster"):
    """Before any other check: a scheduler needs ``dask[distributed]`` installed."""
    if uses_cluster(scheduler):
        require("distributed", purpose=purpose)


def local_cluster_size():
    """(workers, memory per worker in bytes or None) for a LocalCluster on this machine:
    one single-threaded worker process per core."""
    workers = max(1, os.cpu_count() or 1)
    free = available_memory()
    return workers, (None if free is None else int(free * 0.8 / workers))


@contextmanager
def connect(scheduler, purpose="Running on a Dask cluster"):
    """Yield a ``distributed.Client`` for ``scheduler`` (see the module); a cluster or
    connection made here is closed on leaving."""
    require("distributed", purpose=purpose)
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if not isinstance(scheduler, str):
        raise TesseraError(
            f"scheduler={scheduler!r} is not understood: give None (this machine's threads), "
            "'local' (a Dask cluster on this machine), a scheduler address such as "
            "'tcp://host:8786', or a distributed.Client.")
    scheduler = scheduler.strip()
    if scheduler.lower() == "local":
        with _local_cluster() as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="15s")
    except (OSError, TimeoutError, ValueError) as error:
        raise TesseraError(
            f"No Dask scheduler answers at {scheduler} ({error.__class__.__name__}). Start "
            "one (dask scheduler / dask worker), check the address and port, or leave the "
            "scheduler empty to run on this machine.") from None
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _local_cluster():
    import logging

    from distributed import Client, LocalCluster

    workers, memory = local_cluster_size()
    with _python_for_workers():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=":0",
                               memory_limit=memory or "auto", silence_logs=logging.CRITICAL)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


@contextmanager
def _python_for_workers():
    """Worker processes start a Python of their own: this interpreter's. Inside QGIS
    ``sys.executable`` is QGIS itself, or whichever ``python3`` comes first on PATH (seen:
    a pyenv shim without GDAL), so it is used only when it lives under this Python's
    prefix."""
    python = worker_python()
    if python == sys.executable:
        yield
        return
    previous = multiprocessing.spawn.get_executable()
    multiprocessing.set_executable(python)
    try:
        yield
    finally:
        multiprocessing.set_executable(previous)


def worker_python():
    """The Python executable of this interpreter (for starting worker processes)."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    current = os.path.realpath(sys.executable or "")
    if os.path.basename(current).lower().startswith("python") and any(
            current.startswith(prefix + os.sep) for prefix in prefixes):
        return sys.executable
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in (sys.exec_prefix, sys.base_exec_prefix):
        for candidate in (os.path.join(prefix, "bin", f"python{version}"),
                          os.path.join(prefix, "bin", f"python{sys.version_info[0]}"),
                          os.path.join(prefix, "python.exe")):
            if os.path.isfile(candidate):
                return candidate
    found = shutil.which(f"python{version}")
    if found is None:
        raise TesseraError(f"A local Dask cluster needs Python {version} to start its workers "
                           "(the Python QGIS runs on); none was found.")
    return found


def share(client, value):
    """``value`` as a future to pass to tasks: sent to the cluster once, fetched by the
    workers that need it. It is a task's result, not scattered data, so that the
    scheduler can make it again when the workers holding it die (scattered data would
    be lost with them, and every task depending on it cancelled)."""
    return client.submit(_value, value, pure=False,
                         key=f"tessera-shared-{time.monotonic_ns()}")


def _value(value):
    return value


def run_tasks(client, calls, reporter=None, weights=None, name="tessera"):
    """Run ``calls`` — ``(function, *arguments)`` tuples of module-level functions — as
    tasks on ``client``; return their results in order.

    Progress (``reporter.update``) follows the finished ``weights``; a cancel cancels every
    future and raises :class:`CancelledError`; the first failure cancels the rest and is
    raised as it was raised on the worker. Tasks of a worker that dies are run again
    elsewhere (Dask's rule); a task that killed several workers fails the run cleanly."""
    futures = submit(client, calls, name)
    wait_tasks(client, futures, reporter, weights, name)
    return client.gather(futures)


def wait_tasks(client, futures, reporter=None, weights=None, name="tessera",
               on_finished=None):
    """Wait until ``futures`` are finished, their results left on the workers (progress,
    cancel and failures as :func:`run_tasks`); on leaving early every future is
    cancelled. ``on_finished(index)``, when given, is called once per future as soon as it
    is seen finished (e.g. to fetch its result while the others still run)."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    weights = [1.0] * len(futures) if weights is None else [float(w) for w in weights]
    total = sum(weights) or 1.0
    pending = dict(enumerate(weights))
    done = 0.0
    try:
        while pending:
            for index in list(pending):
                status = futures[index].status
                # "lost": its worker died; Dask runs it again (finished results held by
                # that worker too: gather waits for them to be computed again)
                if status == "finished":
                    done += pending.pop(index)
                    if on_finished is not None:
                        on_finished(index)
                elif status in ("error", "cancelled"):
                    futures[index].result()  # raises the task's error
                    raise TesseraError(f"A Dask task of {name} was {status}.")
            if reporter is not None:
                reporter.update(done / total)
                if reporter.is_cancelled():
                    raise CancelledError()
            if pending:
                _wait_for_one([futures[index] for index in pending])
    except KilledWorker as error:
        raise TesseraError(
            f"Dask workers died while running {name} ({error}); nothing was published. "
            "Check the workers' memory limit and logs, then run again.") from None
    except FutureCancelledError as error:  # e.g. lost with a worker and not computable again
        raise TesseraError(
            f"A Dask task of {name} was lost ({error}); nothing was published. Run "
            "again.") from None
    finally:
        if pending:
            client.cancel(futures)


def _wait_for_one(futures):
    """Until one of ``futures`` changes state, at most :data:`POLL_SECONDS` (the next look
    at the cancel button); lost futures (being run again) are only waited for."""
    import asyncio

    from distributed import wait
    from distributed.client import FuturesCancelledError

    running = [future for future in futures if future.status == "pending"]
    if not running:
        time.sleep(POLL_SECONDS)
        return
    try:
        wait(running, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
    except (TimeoutError, asyncio.TimeoutError, FuturesCancelledError):  # noqa: UP041
        pass  # the caller looks at the states (before Python 3.11 asyncio's is a class
        # of its own)


def submit(client, calls, name="tessera"):
    """Futures of ``calls`` (``(function, *arguments)``), none of them cached by key; each
    runs on its worker through :func:`run_task`."""
    return [client.submit(run_task, function, *arguments, pure=False,
                          key=f"{name}-{index}-{time.monotonic_ns()}")
            for index, (function, *arguments) in enumerate(calls)]


def run_task(function, *arguments):
    """``function(*arguments)`` on a worker, its large buffers reused as in a process of
    threads (:func:`~.memory.large_buffers_reused`: a Dask nanny's ``MALLOC_TRIM_THRESHOLD_``
    otherwise makes every window's arrays fresh pages)."""
    with large_buffers_reused():
        return function(*arguments)


@contextmanager
def cluster_client(scheduler, purpose="Running on a Dask cluster", reporter=None):
    """:func:`connect` when ``scheduler`` asks for Dask, else None (Dask not imported);
    ``reporter`` (a :class:`~.progress.Progress`) is told which cluster runs the work."""
    if not uses_cluster(scheduler):
        yield None
        return
    with connect(scheduler, purpose) as client:
        if reporter is not None:
            reporter.note(f"{purpose}: {describe_cluster(client)}")
        yield client


def describe_cluster(client):
    """The scheduler's address and the workers and threads it has, for a log line."""
    threads = client.nthreads()
    address = getattr(client.scheduler, "address", None) or "an in-process scheduler"
    return (f"scheduler {redact(str(address))}, {len(threads)} worker(s), "
            f"{sum(threads.values())} thread(s)")


def worker_threads(client):
    """The threads of all the cluster's workers (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def task_runner(client, name="tessera", within=None):
    """A stand-in for :func:`~.parallel.run_in_threads` that runs its ``(function, weight)``
    tasks on ``client``: each ``function`` (picklable, e.g. a ``functools.partial`` of a
    module-level function) is called as ``function(tick)`` on a worker with a ``tick``
    that does nothing (progress follows the finished tasks' weights). ``within``: a
    picklable callable giving a context manager each task runs inside on its worker, for
    the process-wide settings the caller's threads run under (e.g. a GDAL cache cap)."""

    def run(tasks, threads, reporter):
        calls = [(_call_without_ticks, function, within) for function, _ in tasks]
        return run_tasks(client, calls, reporter, [weight for _, weight in tasks], name)

    return run


def _call_without_ticks(function, within=None):
    if within is None:
        return function(_no_tick)
    with within():
        return function(_no_tick)


def _no_tick(amount=0):
    """Progress of a task on a worker: counted on the client as the task finishes."""


def wait_until_stopped(client, name, timeout=60.0):
    """Wait (at most ``timeout`` seconds) until no worker still runs a task of ``name``:
    a cancelled task that was already running goes on until its end, and may still be
    writing files that the caller is about to remove."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = client.run(_running_tasks, f"{name}-")
        except Exception:  # noqa: BLE001 (a closing cluster: nothing left to wait for)
            return
        if not any(running.values()):
            return
        time.sleep(POLL_SECONDS * 4)


def _running_tasks(prefix, dask_worker=None):
    """The keys of the tasks this worker is running whose key starts with ``prefix``."""
    return [str(task.key) for task in dask_worker.state.executing
            if str(task.key).startswith(prefix)]
