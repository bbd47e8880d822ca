"""Writing per-segment result columns to a RAT target.

A :class:`RatOutput` is checked before any computation (existing columns,
kinds, writability) so that a run fails early and leaves the target as it
was; the results are written only once they are all computed.
"""

import csv
import os
import tempfile

import numpy as np

from .errors import TesseraError
from .raster_io import open_raster, raster_name
from .rat import is_zarr_target, open_rat
from .store_location import store_location

#: Rows written per block (a multiple of the Zarr store's default chunk size).
WRITE_BLOCK_ROWS = 1_000_000
#: Result tables larger than this live in a temporary file instead of memory.
MEMORY_BUDGET = 512 * 2**20
#: Bytes of result columns gathered at once for writing.
GATHER_BYTES = 32 * 2**20
#: Rows of the result table transposed at once (they stay in the CPU cache meanwhile).
GATHER_ROWS = 16384


def allocate_results(rows, columns):
    """A float64 table indexed ``[column, row]`` and laid out row-major (one cache line per
    row), not filled (its pages are touched by whoever writes them first); a temporary
    memory-mapped file when larger than :data:`MEMORY_BUDGET`."""
    if rows * columns * 8 <= MEMORY_BUDGET:
        table = np.empty((rows, columns), np.float64)
    else:
        table = np.memmap(tempfile.TemporaryFile(prefix="tessera-results-"), np.float64, "w+",
                          shape=(rows, columns))
    return table.T


class RatOutput:
    """The RAT that receives ``columns`` (a list of ``(name, kind)``).

    ``target`` None means the RAT of band ``segment_band`` of the segment
    file; a path ending ``.zarr`` (or an ``s3://`` URL) a Zarr RAT store;
    another path a GDAL file holding only the RAT (created when missing).
    """

    def __init__(self, target, segments, segment_band, columns, overwrite=False):
        self.segments = segments
        self.segment_band = segment_band
        self.own_rat = target is None
        self.target = segments if self.own_rat else target
        self.columns = list(columns)
        self.overwrite = overwrite
        self.existing_rows = 0
        self.existing_kinds = {}

    @property
    def name(self):
        if self.own_rat:
            return f"the RAT of {raster_name(self.segments)}"
        return os.fspath(self.target)

    def check(self):
        """Raise before any work when the columns cannot be written."""
        self._check_writable()
        if self._target_exists():
            with self._open(update=False) as rat:
                self.existing_rows = rat.row_count()
                self.existing_kinds = {c: rat.column_kind(c) for c in rat.column_names()}
        clash = [name for name, _ in self.columns if name in self.existing_kinds]
        if clash and not self.overwrite:
            raise TesseraError(
                f"{_capital(self.name)} already has the column(s) {', '.join(clash)}: "
                "choose to overwrite them, or other column names."
            )
        wrong = [
            f"{name} ({self.existing_kinds[name]}, needs {kind})"
            for name, kind in self.columns
            if name in self.existing_kinds and self.existing_kinds[name] != kind
        ]
        if wrong:
            raise TesseraError(
                f"Cannot overwrite column(s) of another type in {self.name}: {', '.join(wrong)}."
            )

    def _target_exists(self):
        if self.own_rat:
            return True
        if is_zarr_target(self.target):
            from .rat_store import RatStore

            return RatStore.exists(self.target)
        return os.path.exists(self.target)

    def _check_writable(self):
        if is_zarr_target(self.target) and store_location(self.target).is_remote:
            return
        path = raster_name(self.segments) if self.own_rat else os.fspath(self.target)
        if self.own_rat and not os.path.exists(path):
            return  # an in-memory dataset: written through its handle
        folder = os.path.dirname(os.path.abspath(path)) or "."
        probe = path if os.path.exists(path) and not os.path.isdir(path) else folder
        if not os.access(probe, os.W_OK) or not os.access(folder, os.W_OK):
            raise TesseraError(f"Cannot write {self.name}: {probe} is not writable.")

    def _open(self, update):
        if self.own_rat:
            dataset = self.segments
            if update and os.path.exists(raster_name(dataset)):
                dataset = open_raster(raster_name(dataset), update=True)
            return open_rat(dataset, self.segment_band, update=update)
        return open_rat(self.target, update=update, create=update,
                        template=open_raster(self.segments))

    def write(self, results, null_id, progress=None):
        """Write ``results`` (columns x rows, float64) and keep the null row as it was."""
        rows = results.shape[1]
        with self._open(update=True) as rat:
            if rat.row_count() < rows:
                rat.set_row_count(rows)
            for name, kind in self.columns:
                if not rat.has_column(name):
                    rat.create_column(name, kind)
            for index, column in _gathered_columns(results):
                name, kind = self.columns[index]
                if 0 <= null_id < rows:  # the null row keeps its content
                    kept = name in self.existing_kinds
                    column[null_id] = rat.read(name, null_id, 1)[0] if kept else 0
                for start in range(0, rows, WRITE_BLOCK_ROWS):
                    block = column[start:start + WRITE_BLOCK_ROWS]
                    rat.write(name, _for_kind(block, kind), start)
                if progress is not None:
                    progress((index + 1) / len(self.columns))


def _gathered_columns(results):
    """Yield (index, contiguous copy) of every column of ``results`` (columns x rows laid
    out row-major), a few columns at a time through one buffer (valid until the next
    item): copying row blocks reads each row once per group instead of once per column."""
    columns, rows = results.shape
    size = max(1, min(columns, GATHER_BYTES // max(1, 8 * rows)))
    buffer = np.empty((size, rows), np.float64)
    for first in range(0, columns, size):
        group = buffer[: min(size, columns - first)]
        for start in range(0, rows, GATHER_ROWS):
            group[:, start:start + GATHER_ROWS] = results[first:first + len(group),
                                                          start:start + GATHER_ROWS]
        for offset, column in enumerate(group):
            yield first + offset, column


def _for_kind(block, kind):
    if kind == "integer":
        return block.astype(np.int64)
    return block


def _capital(text):
    return text[:1].upper() + text[1:]


def write_table(path, ids, columns, results, keys=None, key_name="id", missing_as_empty=False):
    """Write a CSV table: an ``id`` column, then one column per statistic.

    ``ids`` index the columns of ``results``; ``keys[id]`` (default the id
    itself) is written in the first column, named ``key_name``. With
    ``missing_as_empty``, NaN values are written as empty cells.
    """
    kinds = [kind for _, kind in columns]
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([key_name] + [name for name, _ in columns])
        for start in range(0, len(ids), 100_000):
            chunk = ids[start:start + 100_000]
            values = results[:, chunk]
            for row, zone in enumerate(chunk):
                key = zone if keys is None else keys[zone]
                writer.writerow([int(key)] + [
                    _format(values[c, row], kinds[c], missing_as_empty) for c in range(len(kinds))
                ])


def _format(value, kind, missing_as_empty=False):
    if missing_as_empty and np.isnan(value):
        return ""
    if kind == "integer" and np.isfinite(value):
        return str(int(value))
    return repr(float(value))
