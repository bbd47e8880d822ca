"""The tests' Dask cluster: two single-threaded worker processes on 127.0.0.1 (as issue 21
asks), its dashboard on a free port."""

import pytest

distributed = pytest.importorskip("distributed")


def two_workers():
    """A new LocalCluster (a context manager) of two single-threaded worker processes."""
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=":0")

