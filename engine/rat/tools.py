"""Copying and exporting RAT columns block by block, between GDAL RATs and
Zarr RAT stores (through :func:`tessera.engine.rat.tables.open_rat`).

    from tessera.engine import copy_rat
    copy_rat("segments.img", "segments_rat.zarr", columns=["b1_mean", "b1_median"])

A column is never held whole in memory by these functions (GDAL keeps a
GeoTIFF's ``.aux.xml`` table in memory itself). Everything that can be
checked is checked before the destination is touched; a failed or cancelled
copy leaves the destination as it was (see :func:`copy_rat`).
"""

import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..errors import CancelledError, TesseraError
from ..io.output_safety import TargetLock
from ..io.store_location import store_location
from ..progress import Progress
from .staging import open_rat_edit, same_values
from .tables import INT32_MAX, INT32_MIN, ZarrRat, is_zarr_target, open_rat, rat_target_name

#: Rows per block: a multiple of the Zarr store's default chunk size (500000).
DEFAULT_BLOCK_ROWS = 1_000_000


@dataclass
class CopyRatResult:
    """What :func:`copy_rat` wrote."""

    destination: str
    columns: list
    row_count: int


@dataclass
class RatBlock:
    """Rows ``start .. start + len - 1`` of the chosen columns."""

    start: int
    columns: dict

    def __len__(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0


def open_rat_source(source, band=1, storage_options=None):
    """Open a RAT for reading: a raster (path or dataset, ``band``) or a Zarr store.

    Raises :class:`TesseraError` when the raster has no raster attribute table.
    """
    rat = open_rat(source, band=band, storage_options=storage_options)
    if not rat.column_names():
        rat.discard()
        where = rat_target_name(source) if is_zarr_target(source) \
            else f"band {band} of {rat_target_name(source)}"
        raise TesseraError(f"There is no raster attribute table (no column) in {where}.")
    return rat


def choose_columns(rat, columns=None):
    """The names among ``columns`` (all when empty), checked to exist and to hold
    one value per row; duplicates dropped, order kept."""
    available = rat.column_names()
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    chosen = list(dict.fromkeys(columns or available))
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise TesseraError(f"The RAT of {rat.name} has no column(s) {', '.join(unknown)} "
                           f"(it has: {', '.join(available)}).")
    wide = [c for c in chosen if rat.column_width(c) != 1]
    if wide:
        raise TesseraError(f"Column(s) {', '.join(wide)} of {rat.name} hold several values per "
                           "row; only single-value columns can be copied or exported.")
    return chosen


def iter_rat_blocks(rat, columns, block_rows=DEFAULT_BLOCK_ROWS, progress=None,
                    cancelled=None):
    """Yield :class:`RatBlock` s of ``columns`` of an open RAT, top to bottom."""
    reporter = progress if isinstance(progress, Progress) else Progress(progress, cancelled)
    rows = rat.row_count()
    block_rows = _block_rows(rat, block_rows)
    for start in range(0, rows, block_rows):
        reporter.check()
        yield RatBlock(start, {name: rat.read(name, start, block_rows) for name in columns})
        reporter.update(min(start + block_rows, rows) / rows)


def copy_rat(source, destination, columns=None, overwrite=False, source_band=1,
             destination_band=1, block_rows=DEFAULT_BLOCK_ROWS, progress=None,
             cancelled=None, storage_options=None):
    """Copy RAT columns from ``source`` to ``destination``, block by block.

    Either side is a raster (path or dataset; its band's RAT) or a Zarr RAT
    store (``.zarr`` path or ``s3://`` URL). A missing destination is
    created: a store, or a one-pixel ``.img``/``.tif`` holding only the RAT.
    ``columns`` (names, or a comma-separated string; empty: all) keep their
    kind; into a Zarr store their exact numpy dtype. The destination grows to
    the source's row count; rows past the source's end get 0 / "" in the
    copied columns. Columns that exist already are an error unless
    ``overwrite`` (a GDAL column must then be of the same kind; a Zarr column
    is replaced).

    The copy is written through a staged copy of the destination
    (:mod:`tessera.engine.rat.staging`), read back and then published: a failed, cancelled
    or killed copy leaves the destination as it was. One copy at a time
    writes a destination; another waits.
    """
    reporter = Progress(progress, cancelled)
    if _same_target(source, destination, source_band, destination_band):
        raise TesseraError(f"The source and the destination are the same RAT "
                           f"({rat_target_name(source)}).")
    name = rat_target_name(destination)
    with open_rat_source(source, source_band, storage_options) as src, TargetLock(
            _local_path(destination), waiting=reporter.note, cancelled=reporter.is_cancelled):
        chosen = choose_columns(src, columns)
        plan = _plan_copy(src, chosen, destination, destination_band, overwrite,
                          storage_options, reporter)
        reporter.phase(plan.scan_share, 1.0, f"Copying {len(chosen)} column(s)")
        edit = open_rat_edit(destination, destination_band,
                             template=src.dataset if hasattr(src, "dataset") else None,
                             storage_options=storage_options)
        try:
            _copy_columns(src, edit.table, chosen, plan, block_rows, reporter)
            edit.stage()
            _read_back(src, edit, chosen, block_rows)
            reporter.check()
            edit.publish()
        except BaseException as error:
            edit.discard()
            kept = (f"Nothing was kept: {name} was removed." if plan.created
                    else f"{name} is as it was.")
            if isinstance(error, CancelledError):
                raise CancelledError(f"Cancelled by the user. {kept}") from None
            if isinstance(error, TesseraError):
                raise TesseraError(f"{error} {kept}") from error
            raise
    return CopyRatResult(name, chosen, plan.rows)


def _read_back(src, edit, chosen, block_rows):
    """Fail unless the staged destination holds every copied column as the source."""
    with edit.reopen() as dst:
        rows = src.row_count()
        for column in chosen:
            for start in range(0, rows, block_rows):
                expected = src.read(column, start, block_rows)
                if not dst.has_column(column) or not same_values(
                        dst.read(column, start, len(expected)), expected):
                    raise TesseraError(f"Copying column '{column}' to {dst.name} failed: it "
                                       "does not read back as written (is the disk full?).")


@dataclass
class _CopyPlan:
    rows: int            # row count of the destination after the copy
    old_rows: int        # its row count before (0 when created)
    created: bool        # the destination did not exist
    existing: dict       # destination column -> kind, for the chosen columns it has
    kinds: dict          # chosen column -> (kind, dtype) in the source
    scan_share: float    # progress share of the range check


def _plan_copy(src, chosen, destination, band, overwrite, storage_options, reporter):
    """Everything checked before the destination is touched."""
    kinds = {c: (src.column_kind(c), src.column_dtype(c)) for c in chosen}
    created = not _exists(destination, storage_options)
    existing, old_rows = {}, 0
    if not created:
        with open_rat(destination, band=band, storage_options=storage_options) as dst:
            old_rows = dst.row_count()
            existing = {c: dst.column_kind(c) for c in chosen if dst.has_column(c)}
            zarr_destination = isinstance(dst, ZarrRat)
        if existing and not overwrite:
            raise TesseraError(f"{rat_target_name(destination)} already has the column(s) "
                               f"{', '.join(existing)}: choose to overwrite them, or other "
                               "columns.")
        wrong = [f"{c} ({kind}, the source's is {kinds[c][0]})" for c, kind in existing.items()
                 if kind != kinds[c][0] and not zarr_destination]
        if wrong:
            raise TesseraError(f"Cannot overwrite column(s) of another type in "
                               f"{rat_target_name(destination)}: {', '.join(wrong)}.")
    _check_writable(destination)
    scan_share = 0.0
    if not is_zarr_target(destination):  # GDAL integer columns are 32-bit
        wide = [c for c, (kind, dtype) in kinds.items()
                if kind == "integer" and not np.can_cast(dtype, np.int32, "safe")]
        if wide:
            scan_share = 0.2
            reporter.phase(0.0, scan_share, "Checking integer ranges")
            _check_int32(src, wide, reporter)
    rows = max(src.row_count(), old_rows)
    return _CopyPlan(rows, old_rows, created, existing, kinds, scan_share)


def _check_int32(src, columns, reporter):
    for block in iter_rat_blocks(src, columns, progress=reporter):
        for name, values in block.columns.items():
            if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):
                raise TesseraError(
                    f"Column '{name}' of {src.name} holds values ({values.min()}..{values.max()})"
                    " that a GDAL integer column (32-bit) cannot hold; copy it to a Zarr store."
                )


def _copy_columns(src, dst, chosen, plan, block_rows, reporter):
    if dst.row_count() < plan.rows:
        dst.set_row_count(plan.rows)
    source_rows = src.row_count()
    block_rows = _block_rows(dst, block_rows)
    total = max(1, len(chosen) * max(source_rows, 1))
    for index, name in enumerate(chosen):
        kind, dtype = plan.kinds[name]
        replaced = isinstance(dst, ZarrRat) and name in plan.existing
        if replaced:
            dst.delete_column(name)
        if replaced or name not in plan.existing:
            dst.create_column(name, kind, dtype if isinstance(dst, ZarrRat) else None)
        for start in range(0, source_rows, block_rows):
            reporter.check()
            dst.write(name, src.read(name, start, block_rows), start)
            reporter.update((index * source_rows + min(start + block_rows, source_rows)) / total)
        if name in plan.existing and not replaced:  # rows past the source's end
            _clear_rows(dst, name, kind, source_rows, plan.rows, block_rows)
    reporter.check()


def _clear_rows(dst, name, kind, start, stop, block_rows):
    fill = {"integer": 0, "real": 0.0}.get(kind, "")
    for first in range(start, stop, block_rows):
        count = min(block_rows, stop - first)
        dst.write(name, np.full(count, fill, dtype=object if kind == "string" else None), first)


def _block_rows(rat, requested):
    """``requested`` rounded down to whole chunks of a Zarr store (when it spans one)."""
    requested = max(1, int(requested or DEFAULT_BLOCK_ROWS))
    if isinstance(rat, ZarrRat) and requested > rat.store.chunk_size:
        return requested // rat.store.chunk_size * rat.store.chunk_size
    return requested


def _exists(target, storage_options):
    if isinstance(target, gdal.Dataset):
        return True
    if is_zarr_target(target):
        from .store import RatStore

        return RatStore.exists(target, storage_options)
    return os.path.exists(os.fspath(target))


def _local_path(target):
    """The local path of a raster or store; None for datasets and S3 stores."""
    if isinstance(target, gdal.Dataset):
        return None
    if is_zarr_target(target):
        location = store_location(target)
        return None if location.is_remote else location.path
    return os.fspath(target)


def _check_writable(target):
    path = _local_path(target)
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TesseraError(f"Cannot write {path}: the folder {folder} does not exist.")
    probe = path if os.path.exists(path) else folder
    if not os.access(probe, os.W_OK):
        raise TesseraError(f"Cannot write {path}: {probe} is not writable.")


def _same_target(source, destination, source_band, destination_band):
    if isinstance(source, gdal.Dataset) or isinstance(destination, gdal.Dataset):
        return source is destination and source_band == destination_band

    def key(target):
        path = _local_path(target)
        return store_location(target).url if path is None else os.path.realpath(path)

    same = key(source) == key(destination)
    return same and (is_zarr_target(source) or source_band == destination_band)
