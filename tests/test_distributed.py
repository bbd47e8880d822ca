"""The Dask scheduler choice (engine/distributed.py): connecting, running tasks, progress,
cancel and failures, on LocalClusters started by the tests on 127.0.0.1."""

import operator
import os
import subprocess
import sys
import threading

import pytest

from tessera.engine.distributed import connect, run_tasks, uses_cluster
from tessera.engine.errors import CancelledError, TesseraError
from tessera.engine.progress import Progress

distributed = pytest.importorskip("distributed")


def test_the_default_path_never_imports_dask():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import tessera.engine as e; "
            "import tessera.engine.segments.statistics, tessera.engine.zonal.statistics; "
            "import tessera.engine.segments.spatial, tessera.engine.zonal.tile_tasks; "
            "import tessera.engine.normalization.global_regression, "
            "tessera.engine.normalization.local_block_adjustment, "
            "tessera.engine.normalization.distributed_output; "
            "import tessera.engine.distributed as d; assert not d.uses_cluster(None); "
            "assert not d.uses_cluster('  '); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    from conftest import PLUGINS_DIR

    out = subprocess.run([sys.executable, "-c", code, PLUGINS_DIR], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_scheduler_values_are_told_apart():
    assert uses_cluster("local") and uses_cluster("tcp://127.0.0.1:8786")
    assert not uses_cluster(None) and not uses_cluster("")
    with pytest.raises(TesseraError, match="not understood"):
        with connect(42):
            pass


def test_an_address_without_a_scheduler_is_a_clear_error():
    with pytest.raises(TesseraError, match=r"No Dask scheduler answers at tcp://127.0.0.1:9"):
        with connect("tcp://127.0.0.1:9"):
            pass


def test_tasks_run_in_order_with_progress(client):
    seen = []
    results = run_tasks(client, [(operator.mul, i, 3) for i in range(7)],
                        Progress(lambda fraction, message: seen.append(fraction)))
    assert results == [i * 3 for i in range(7)]
    assert seen and seen[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(seen, seen[1:], strict=False))


def test_a_task_error_reaches_the_caller_as_raised(client):
    with pytest.raises(ZeroDivisionError):
        run_tasks(client, [(operator.add, 1, 1), (operator.truediv, 1, 0)], Progress())


def test_cancel_stops_and_cancels_the_futures(client):
    import time

    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        run_tasks(client, [(time.sleep, 30)] * 2, Progress(None, stop.is_set))
    assert time.monotonic() - started < 10
    # the workers are free again: a new task runs at once
    assert run_tasks(client, [(operator.add, 2, 2)], Progress()) == [4]


def test_a_client_is_used_as_it_is_and_left_open(client):
    with connect(client) as same:
        assert same is client
    assert client.status == "running"


def test_the_local_cluster_starts_and_closes():
    with connect("local") as local:
        workers = local.scheduler_info()["workers"]
        assert len(workers) >= 1
        assert run_tasks(local, [(operator.add, 1, 2)], Progress()) == [3]
    assert local.status == "closed"


def test_workers_start_this_python_where_sys_executable_is_another(monkeypatch, tmp_path):
    """In QGIS sys.executable is QGIS or the first python3 on PATH (seen: a pyenv shim
    without GDAL): the local cluster's workers still run this interpreter."""
    import os

    from tessera.engine.distributed import worker_python

    shim = tmp_path / "shims" / "python3"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\nexit 3\n")
    shim.chmod(0o755)
    real = os.path.realpath(sys.executable)
    monkeypatch.setattr(sys, "executable", str(shim))
    chosen = worker_python()
    assert chosen != str(shim) and os.path.realpath(chosen) == real
    with connect("local") as local:
        found = run_tasks(local, [(_worker_facts,)], Progress())[0]
    assert os.path.realpath(found[0]) == real and found[1]


def _worker_facts():
    import sys

    import numba  # noqa: F401
    from osgeo import gdal

    return sys.executable, gdal.__version__


def test_results_lost_with_a_dead_worker_are_computed_again(client):
    """A worker dying while it holds finished results: Dask computes them again and the run
    goes on (a lost task is not a failure)."""
    import os
    import signal
    import time

    killed = []

    class KillOnce(Progress):
        def update(self, fraction):
            if fraction > 0 and not killed:
                holders = [w for w, keys in client.has_what().items() if keys]
                if holders:
                    pid = client.run(os.getpid, workers=holders[:1])[holders[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    calls = [(time.sleep, 0.3)] * 3 + [(operator.mul, i, 2) for i in range(6)]
    results = run_tasks(client, calls, KillOnce())
    assert results[3:] == [i * 2 for i in range(6)]
    assert killed
    client.wait_for_workers(2, timeout=60)


def _fresh_mapping_per_buffer(size=8 << 20):
    """Whether glibc serves a ``size``-byte array (a task's window) with a fresh mmap,
    given back when freed: every window then costs new zeroed pages (page faults,
    system CPU)."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    before = mallinfo2().hblks
    buffer = np.ones(size, np.uint8)
    mapped = mallinfo2().hblks - before
    del buffer
    return mapped > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_tasks_reuse_large_buffers_despite_the_nannys_trim_threshold():
    """Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_, which makes every buffer
    above 128 KiB a fresh mmap (page faults, system CPU); a task run by run_tasks has its
    windows' buffers served from the heap and reused, as in a process of threads, and the
    worker's own setting is back afterwards. (A cluster of its own: no task of another
    test still running on its workers.)"""
    with connect("local") as local:
        environments = local.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert all(value is not None for value in environments.values())
        assert run_tasks(local, [(_fresh_mapping_per_buffer,)] * 2, Progress()) == [False] * 2
        assert all(local.run(_fresh_mapping_per_buffer).values())

def test_a_task_runner_runs_its_tasks_within_the_callers_settings(client):
    """Process-wide settings the caller's threads run under (the run's GDAL cache cap)
    hold in the worker during each task, and not after it."""
    import functools

    from osgeo import gdal

    from tessera.engine.distributed import task_runner
    from tessera.engine.io.raster_io import gdal_cache_limit

    capped = task_runner(client, "tessera-test", functools.partial(gdal_cache_limit, 3 << 20))
    assert capped([(_cache_max, 1)] * 2, 1, Progress()) == [3 << 20] * 2
    assert all(v > 3 << 20 for v in client.run(gdal.GetCacheMax).values())


def _cache_max(tick):
    from osgeo import gdal

    return gdal.GetCacheMax()
