"""Writing per-segment result columns to a RAT target.

A :class:`RatOutput` is checked before any computation (outputs that are
inputs, existing columns, kinds, writability) so that a run fails early and
leaves the target as it was; the results are written only once they are all
computed, through a staged copy (:mod:`tessera.engine.rat.staging`) that is read back before
it replaces the target.
"""

import csv
import os
import tempfile

import numpy as np

from ..errors import TesseraError
from ..io.output_safety import (
    Publication,
    TargetLock,
    check_not_read_only,
    check_targets,
    file_part,
    redact,
    same_file,
)
from ..io.raster_io import open_raster, raster_name
from ..io.store_location import store_location
from ..progress import Progress
from .staging import open_rat_edit, same_values
from .tables import LIVE_RAT_DRIVERS, ZarrRat, is_zarr_target, open_rat, rat_file_driver

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
    """The RAT that receives ``columns`` (a list of ``(name, kind)``), and the optional CSV
    ``table`` published with it.

    ``target`` None (or the segment file's own path) means the RAT of band
    ``segment_band`` of the segment file; a path ending ``.zarr`` (or an ``s3://`` URL)
    a Zarr RAT store; another path a GDAL file holding only the RAT (created when
    missing). ``inputs`` are the run's other input files as ``(path, role)``: no output
    may be one of them. ``overwrite`` allows replacing columns of the same names and an
    existing ``table``.
    """

    def __init__(self, target, segments, segment_band, columns, overwrite=False, table=None,
                 inputs=()):
        self.segments = segments
        self.segment_band = segment_band
        segment_file = file_part(segments)
        if (target is not None and segment_file and not is_zarr_target(target)
                and same_file(target, segment_file)):
            target = None  # the segment file named explicitly: its own RAT
        self.own_rat = target is None
        self.target = segments if self.own_rat else target
        self.columns = list(columns)
        self.overwrite = overwrite
        self.table = os.fspath(table) if table else None
        self.inputs = [(segment_file, "segment raster"), *inputs]
        self.existing_rows = 0
        self.existing_kinds = {}

    @property
    def name(self):
        if self.own_rat:
            return f"the RAT of {raster_name(self.segments)}"
        return redact(os.fspath(self.target))

    @property
    def location(self):
        """What is written: the segment file, the separate RAT file or the store."""
        return raster_name(self.segments) if self.own_rat else redact(os.fspath(self.target))

    def check(self):
        """Raise before any work when the outputs cannot be written."""
        rat_file = None if self.own_rat else self.target
        check_targets([(rat_file, "output RAT", True), (self.table, "output table")],
                      self.inputs, overwrite=self.overwrite)
        self._check_writable()
        if rat_file and not is_zarr_target(rat_file) and not os.path.exists(rat_file):
            rat_file_driver(rat_file)
        self.existing_rows, self.existing_kinds = 0, {}
        if self._target_exists():
            with self._open_read() as rat:
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
            from .store import RatStore

            return RatStore.exists(self.target)
        return os.path.exists(self.target)

    def _check_writable(self):
        if is_zarr_target(self.target) and store_location(self.target).is_remote:
            return
        path = raster_name(self.segments) if self.own_rat else os.fspath(self.target)
        if self.own_rat and not os.path.exists(path):
            return  # an in-memory dataset: written through its handle
        folder = os.path.dirname(os.path.abspath(path)) or "."
        if not os.access(folder, os.W_OK):  # files are replaced by renames in their folder
            raise TesseraError(f"Cannot write {self.name}: the folder {folder} is not "
                               "writable.")
        if self.own_rat:  # what is replaced: the file, or its .aux.xml side-car
            driver = open_raster(self.segments).GetDriver().ShortName
            check_not_read_only(path if driver in LIVE_RAT_DRIVERS else path + ".aux.xml",
                                "file holding the RAT of the segment raster")

    def _open_read(self):
        if self.own_rat:
            return open_rat(self.segments, self.segment_band)
        return open_rat(self.target)

    def _open_edit(self):
        if self.own_rat:
            return open_rat_edit(self.segments, self.segment_band)
        return open_rat_edit(self.target, template=open_raster(self.segments))

    def write(self, results, null_id, reporter=None, write_table=None):
        """Write ``results`` (columns x rows, float64), keeping the null row as it was, and
        the CSV through ``write_table(path)``; both are published when both are complete
        and the RAT was read back. One run at a time writes a target: another run waits
        here, then checks the target again."""
        reporter = reporter or Progress()
        with TargetLock(self.location, waiting=reporter.note, cancelled=reporter.is_cancelled):
            self.check()
            with Publication() as table:
                if self.table:
                    write_table(table.add(self.table))
                edit = self._open_edit()
                try:
                    kept = self._write_columns(edit.table, results, null_id, reporter)
                    edit.stage()
                    self._read_back(edit, results, null_id, kept)
                    reporter.check()
                    edit.publish()
                except BaseException:
                    edit.discard()
                    raise

    @property
    def is_zarr(self):
        """True when the target is a Zarr RAT store (which other processes can write)."""
        return not self.own_rat and is_zarr_target(self.target)

    def write_by(self, rows, null_id, reporter, write_blocks):
        """Write a Zarr target's columns by ``write_blocks(store, hidden, kept)``: others
        (e.g. Dask workers) write row blocks of the staged hidden columns (``hidden`` maps
        each column to its name in the store ``store``; ``kept`` gives the null row's value
        to keep) and check them; the columns are published when it returns, discarded when
        it raises or the run is cancelled."""
        with TargetLock(self.location, waiting=reporter.note, cancelled=reporter.is_cancelled):
            self.check()
            edit = self._open_edit()
            try:
                kept = self._prepare_columns(edit.table, rows, null_id)
                write_blocks(os.fspath(self.target), dict(edit.table.staged), kept)
                reporter.check()
                edit.publish()
            except BaseException:
                edit.discard()
                raise

    def _write_columns(self, rat, results, null_id, reporter):
        """Write every column; returns the values kept in the null row, by column."""
        rows = results.shape[1]
        kept = self._prepare_columns(rat, rows, null_id)
        for index, column in _gathered_columns(results):
            name, kind = self.columns[index]
            _keep_null_row(column, null_id, kept[name])
            for start in range(0, rows, WRITE_BLOCK_ROWS):
                reporter.check()
                block = column[start:start + WRITE_BLOCK_ROWS]
                rat.write(name, _for_kind(block, kind), start)
            reporter.update((index + 1) / len(self.columns))
        return kept

    def _prepare_columns(self, rat, rows, null_id):
        """Give ``rat`` the rows and (empty) columns; returns the values kept in the null
        row, by column."""
        if rat.row_count() < rows:
            rat.set_row_count(rows)
        kept = {}
        for name, _ in self.columns:
            old = name in self.existing_kinds and 0 <= null_id < rat.row_count()
            kept[name] = rat.read(name, null_id, 1)[0] if old else 0
            if old and isinstance(rat, ZarrRat):  # replaced by a complete new column
                rat.delete_column(name)
        for name, kind in self.columns:
            if not rat.has_column(name):
                rat.create_column(name, kind)
        return kept

    def _read_back(self, edit, results, null_id, kept):
        """Fail unless the staged RAT holds every column as written."""
        rows = results.shape[1]
        with edit.reopen() as rat:
            if rat.row_count() < rows:
                raise TesseraError(f"Writing {self.name} failed: it has {rat.row_count()} rows "
                                   f"after writing {rows}. Nothing was changed.")
            for index, column in _gathered_columns(results):
                name, kind = self.columns[index]
                _keep_null_row(column, null_id, kept[name])
                if not rat.has_column(name) or not all(
                        same_values(rat.read(name, start, WRITE_BLOCK_ROWS),
                                     _for_kind(column[start:start + WRITE_BLOCK_ROWS], kind))
                        for start in range(0, rows, WRITE_BLOCK_ROWS)):
                    raise TesseraError(f"Writing column '{name}' to {self.name} failed: it "
                                       "does not read back as written (is the disk full?). "
                                       "Nothing was changed.")


def _keep_null_row(column, null_id, value):
    if 0 <= null_id < len(column):
        column[null_id] = value


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
    try:
        _write_rows(path, ids, columns, results, kinds, keys, key_name, missing_as_empty)
    except OSError as error:
        raise TesseraError(f"Writing the table {path} failed: {error.strerror or error}.") \
            from None


def _write_rows(path, ids, columns, results, kinds, keys, key_name, missing_as_empty):
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
