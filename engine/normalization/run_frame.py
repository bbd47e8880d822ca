"""What both normalizations run inside: their outputs checked before any work and
published together (:class:`~.outputs.RunOutputs`), GDAL's block cache capped, the Dask
cluster when one is asked for, the threads the pieces follow and the vector mask per
image."""

import functools
import os
from contextlib import contextmanager

from ..distributed import cluster_client
from ..io.raster_io import gdal_cache_limit
from .corrected_output import NORMALIZATION_CACHE_BYTES


@contextmanager
def normalization_run(purpose, image_set, checks, mask, scheduler, threads, reporter):
    """Yield ``(run, client, threads, masks)``. ``checks`` are RunOutputs' arguments
    (targets, inputs, folders, overwrite, say, cancelled); ``mask`` the vector mask's
    (path, mode, field), path None for none; ``purpose`` names the run for messages."""
    from ..io.vector_mask import VectorMask
    from .outputs import RunOutputs

    with RunOutputs(*checks) as run, gdal_cache_limit(NORMALIZATION_CACHE_BYTES), \
            cluster_client(scheduler, f"{purpose} on a Dask cluster", reporter) as client:
        vector_mask = VectorMask(*mask) if mask[0] else None
        masks = [vector_mask.for_image(i.name, i.crs_wkt) if vector_mask else None
                 for i in image_set.images]
        yield run, client, run_threads(threads, client), masks


def run_threads(threads, client=None):
    """The threads a run's pieces follow: as given, else the CPU cores (with a Dask
    ``client``: its workers' threads)."""
    if threads:
        return max(1, int(threads))
    if client is not None:
        from ..distributed import worker_threads

        return worker_threads(client)
    return max(1, os.cpu_count() or 1)


def statistics_runner(client, name):
    """How the statistics' pieces run: this machine's threads, or tasks on ``client``
    (under the run's GDAL cache cap there too: a piece reading without flushing would
    otherwise fill the worker's default cache, 5 % of its memory, with fresh blocks)."""
    if client is None:
        from ..parallel import run_in_threads

        return run_in_threads
    from ..distributed import task_runner

    return task_runner(client, name,
                       functools.partial(gdal_cache_limit, NORMALIZATION_CACHE_BYTES))
