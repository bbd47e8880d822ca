"""One raster attribute table (RAT) interface over two back-ends.

Every Tessera writer and reader of RAT columns uses :func:`open_rat`, which
returns a :class:`RatTable`:

- :class:`GdalRat` — the RAT of a band in a GDAL file. Drivers whose RAT is
  stored in the file itself (HFA ``.img``, KEA) are edited in place; for the
  others (GTiff keeps its RAT in the ``.aux.xml`` side-car) the table is
  edited in memory and stored on :meth:`RatTable.close` through
  ``SetDefaultRAT``, the only way such edits persist.
- :class:`ZarrRat` — a Zarr RAT store (:mod:`tessera.engine.rat.store`), local or ``s3://``.

Column kinds are ``"integer"``, ``"real"`` and ``"string"``. Rows are
addressed by segment id (row 0 is id 0).
"""

import os

import numpy as np
from osgeo import gdal

from ..errors import TesseraError
from ..io.output_safety import redact
from ..io.raster_io import gdal_quiet, get_band, open_raster, raster_name
from ..io.store_location import StoreLocation, store_location

KINDS = ("integer", "real", "string")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

#: Drivers whose RAT edits go straight to the file.
LIVE_RAT_DRIVERS = {"HFA", "KEA"}
#: Drivers Tessera creates a RAT-only file with, by file extension.
_RAT_FILE_DRIVERS = {".img": "HFA", ".kea": "KEA", ".tif": "GTiff", ".tiff": "GTiff"}

_GFT_KIND = {gdal.GFT_Integer: "integer", gdal.GFT_Real: "real", gdal.GFT_String: "string"}
_KIND_GFT = {kind: gft for gft, kind in _GFT_KIND.items()}


def is_zarr_target(target):
    """True when ``target`` names a Zarr RAT store: a path ending ``.zarr``, an
    ``s3://`` URL, or a :class:`~.store_location.StoreLocation` (a store whatever its name)."""
    if isinstance(target, StoreLocation):
        return True
    if not isinstance(target, (str, os.PathLike)):
        return False
    try:
        location = store_location(target)
    except TesseraError:  # an S3 address it refuses (credentials): refused again, clearly
        return os.fspath(target).lower().startswith("s3://")
    return location.is_remote or location.path.lower().endswith(".zarr")


def rat_target_name(target):
    """A name for messages: a store's address or a raster's path."""
    return target.name if isinstance(target, StoreLocation) else redact(raster_name(target))


def kind_of_dtype(dtype):
    """The column kind that holds values of a numpy dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return "integer"
    if dtype.kind == "f":
        return "real"
    if dtype.kind in "SUOT":
        return "string"
    raise TesseraError(f"RAT columns cannot hold values of type {dtype}.")


class RatTable:
    """Columns of a RAT, read and written by blocks of rows.

    Values read are ``int32``/``float64`` arrays for GDAL tables, the stored
    dtype for Zarr stores, and ``object`` arrays of ``str`` for string
    columns of either.
    """

    name = ""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.discard()
        return False

    # The interface every back-end implements.
    def row_count(self):
        raise NotImplementedError

    def set_row_count(self, rows):
        raise NotImplementedError

    def column_names(self):
        raise NotImplementedError

    def column_kind(self, column):
        raise NotImplementedError

    def column_dtype(self, column):
        """The numpy dtype :meth:`read` returns for ``column``."""
        raise NotImplementedError

    def column_width(self, column):
        """Values per row (1 except for multi-value columns of Zarr stores)."""
        return 1

    def create_column(self, column, kind, dtype=None):
        """Create ``column`` of ``kind``; back-ends that store numpy dtypes (Zarr) use
        ``dtype`` when given, the others keep to the kind."""
        raise NotImplementedError

    def delete_column(self, column):
        raise TesseraError(f"Columns of the RAT of {self.name} cannot be deleted.")

    def read(self, column, start=0, length=None):
        raise NotImplementedError

    def write(self, column, values, start=0):
        raise NotImplementedError

    def close(self):
        """Store pending edits and release the file."""

    def discard(self):
        """Release the file, dropping edits not yet stored where possible."""
        self.close()

    # Shared helpers.
    def has_column(self, column):
        return column in self.column_names()

    def _check_column(self, column):
        if not self.has_column(column):
            raise TesseraError(f"The RAT of {self.name} has no column '{column}'.")

    def _check_kind(self, kind):
        if kind not in KINDS:
            raise TesseraError(f"Unknown RAT column kind '{kind}' (use one of {', '.join(KINDS)}).")

    def _check_rows(self, start, count):
        rows = self.row_count()
        if start < 0 or start + count > rows:
            raise TesseraError(
                f"Rows {start}..{start + count - 1} are outside the RAT of {self.name}, "
                f"which has {rows} rows."
            )

    def _read_span(self, start, length):
        """``(start, length)`` clipped to the table (a block may end short)."""
        if start < 0 or (length is not None and length < 0):
            raise TesseraError(f"Cannot read rows from {start} ({length} rows) of the RAT of "
                               f"{self.name}: start and length must not be negative.")
        rows = self.row_count()
        length = rows - start if length is None else min(length, rows - start)
        return int(start), max(int(length), 0)


class GdalRat(RatTable):
    """The RAT of one band of a GDAL dataset.

    Tables kept in the file (HFA, KEA) are read and written by blocks. Other
    tables live in memory (GTiff's ``.aux.xml``) and GDAL 3.6 corrupts
    memory on their block IO at a non-zero start row, so their columns are
    read and written whole, through a cache of one column at a time that is
    stored on :meth:`close`.
    """

    def __init__(self, dataset, band=1, update=False):
        self.dataset = dataset
        self.name = raster_name(dataset)
        self.band = get_band(dataset, band, "raster")
        self.update = update
        driver = dataset.GetDriver().ShortName if dataset.GetDriver() else ""
        rat = self.band.GetDefaultRAT()
        # Only a table the driver hands out lives in the file; a new one is in memory.
        self.live = driver in LIVE_RAT_DRIVERS and rat is not None
        if rat is None:
            rat = gdal.RasterAttributeTable()
        elif update and not self.live:
            rat = rat.Clone()
        self.rat = rat
        self._dirty = False
        self._cache = {}      # column index -> whole column (tables held in memory)
        self._changed = set()

    def row_count(self):
        return self.rat.GetRowCount()

    def set_row_count(self, rows):
        self._require_update()
        self._flush_cache()
        old = self.row_count()
        self.rat.SetRowCount(int(rows))
        self._dirty = True
        if self.live and rows > old:
            self._fill_new_rows(old, int(rows))

    def _fill_new_rows(self, start, stop, block_rows=1_000_000):
        """Write 0 / "" into grown rows: GDAL 3.6's HFA leaves them unwritten, and a
        string column with unwritten rows cannot be read back at all."""
        for index, column in enumerate(self.column_names()):
            kind = self.column_kind(column)
            for first in range(start, stop, block_rows):
                count = min(block_rows, stop - first)
                fill = np.zeros(count, np.int32) if kind == "integer" else (
                    np.zeros(count) if kind == "real" else np.full(count, b"", dtype="S1"))
                if self.rat.WriteArray(fill, index, first) != 0:
                    raise TesseraError(f"Growing the RAT of {self.name} failed.")

    def column_names(self):
        return [self.rat.GetNameOfCol(i) for i in range(self.rat.GetColumnCount())]

    def replace_table(self, rat):
        """Make ``rat`` (a ``gdal.RasterAttributeTable``) the whole table to store."""
        self._require_update()
        self._cache.clear()
        self._changed.clear()
        self.rat = rat.Clone()
        self._dirty = True

    def _index(self, column):
        for i in range(self.rat.GetColumnCount()):
            if self.rat.GetNameOfCol(i) == column:
                return i
        raise TesseraError(f"The RAT of {self.name} has no column '{column}'.")

    def column_kind(self, column):
        return _GFT_KIND.get(self.rat.GetTypeOfCol(self._index(column)), "string")

    def column_dtype(self, column):
        return np.dtype(_read_dtype(self.column_kind(column)))

    def column_usage(self, column):
        """GDAL's usage code of a column (e.g. ``gdal.GFU_PixelCount``)."""
        return self.rat.GetUsageOfCol(self._index(column))

    def create_column(self, column, kind, dtype=None):
        self._require_update()
        self._check_kind(kind)
        if self.has_column(column):
            raise TesseraError(f"The RAT of {self.name} already has a column '{column}'.")
        if self.rat.CreateColumn(column, _KIND_GFT[kind], gdal.GFU_Generic) != 0:
            raise TesseraError(f"Cannot create column '{column}' in the RAT of {self.name}.")
        self._dirty = True

    def read(self, column, start=0, length=None):
        index = self._index(column)
        kind = self.column_kind(column)
        start, length = self._read_span(start, length)
        if length == 0:
            return np.empty(0, dtype=_read_dtype(kind))
        if not self.live:
            return self._whole(index)[start:start + length].copy()
        values = self.rat.ReadAsArray(index, start=start, length=length)
        return _as_text(values) if kind == "string" else values

    def write(self, column, values, start=0):
        self._require_update()
        index = self._index(column)
        values = _as_kind(np.asarray(values), self.column_kind(column), column, self.name)
        self._check_rows(start, len(values))
        if not len(values):
            return
        if self.live:
            stored = _as_utf8(values) if values.dtype == object else values
            if self.rat.WriteArray(stored, index, int(start)) != 0:
                raise TesseraError(f"Writing column '{column}' of the RAT of {self.name} failed.")
        else:
            self._whole(index)[start:start + len(values)] = values
            self._changed.add(index)
        self._dirty = True

    def _whole(self, index):
        """Column ``index`` whole (strings as ``str`` objects); other cached columns
        are stored first and dropped, so one column at a time is held."""
        if index not in self._cache:
            self._flush_cache()
            values = self.rat.ReadAsArray(index)
            if values.dtype.kind in "SU":
                values = _as_text(values)
            self._cache[index] = values
        return self._cache[index]

    def _flush_cache(self):
        for index in sorted(self._changed):
            whole = self._cache[index]
            if whole.dtype == object:
                whole = _as_utf8(whole)
            if self.rat.WriteArray(whole, index) != 0:
                raise TesseraError(f"Writing the RAT of {self.name} failed.")
        self._cache.clear()
        self._changed.clear()

    def close(self):
        if self.dataset is None:
            return
        if self.update and self._dirty and not self.live:
            self._flush_cache()
            if self.band.SetDefaultRAT(self.rat) != 0:
                raise TesseraError(f"Storing the RAT of {self.name} failed.")
        self.dataset.FlushCache()
        self._release()

    def discard(self):
        if self.dataset is not None:
            self._release()

    def _release(self):
        self._cache.clear()
        self.rat = self.band = self.dataset = None

    def _require_update(self):
        if not self.update:
            raise TesseraError(f"The RAT of {self.name} is open read-only.")


def _as_text(values):
    """Strings as an ``object`` array of ``str`` (GDAL hands out UTF-8 bytes)."""
    text = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        text[i] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text


def _as_utf8(values):
    """Strings as the UTF-8 bytes GDAL's WriteArray takes."""
    return np.array([v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values],
                    dtype="S")


class ZarrRat(RatTable):
    """A Zarr RAT store seen through the RAT interface.

    Columns are created ``int32`` (integer), ``float64`` (real) or
    variable-length strings unless a ``dtype`` is given; values are checked by
    the store, so nothing is narrowed silently.
    """

    DTYPES = {"integer": np.dtype(np.int32), "real": np.dtype(np.float64), "string": str}

    def __init__(self, path, update=False, create=False, storage_options=None):
        from .store import RatStore

        self.update = update
        self.store = RatStore(path, read_only=not update, create=create,
                              storage_options=storage_options)
        self.name = self.store.name

    def row_count(self):
        return self.store.row_count

    def set_row_count(self, rows):
        self.store.set_row_count(int(rows))

    def column_names(self):
        return self.store.column_names()

    def column_kind(self, column):
        return kind_of_dtype(self.store.column_dtype(column))

    def column_dtype(self, column):
        return self.store.column_dtype(column)

    def column_width(self, column):
        return self.store.column_width(column)

    def create_column(self, column, kind, dtype=None):
        self._check_kind(kind)
        if dtype is not None and kind_of_dtype(dtype) != kind:
            raise TesseraError(f"Column '{column}' of {self.name}: {np.dtype(dtype)} values are "
                               f"not of the kind '{kind}'.")
        self.store.create_column(column, self.DTYPES[kind] if dtype is None else dtype)

    def delete_column(self, column):
        self.store.delete_column(column)

    def read(self, column, start=0, length=None):
        self._check_single(column)
        start, length = self._read_span(start, length)
        return self.store.read_block(column, start, length)

    def write(self, column, values, start=0):
        self._check_single(column)
        values = np.asarray(values)
        if self.column_kind(column) == "integer" and values.dtype.kind == "f":
            values = _whole_numbers(values, column, self.name)
        self.store.write_block(column, values, int(start))

    def _check_single(self, column):
        width = self.store.column_width(column)
        if width != 1:
            raise TesseraError(f"Column '{column}' of {self.name} holds {width} values per row; "
                               "only single-value columns can be read as a RAT column.")

    def close(self):
        if self.store is not None:
            self.store.close()
            self.store = None


def _read_dtype(kind):
    return {"integer": np.int32, "real": np.float64}.get(kind, object)


def _whole_numbers(values, column, name):
    """Float values that are all whole numbers, as int64 (else an error)."""
    finite = np.isfinite(values)
    if not finite.all() or not np.array_equal(values, np.round(values)):
        raise TesseraError(
            f"Column '{column}' of {name} holds integers; non-integer values "
            "cannot be written to it."
        )
    if values.size and (values.min() < -(2.0**63) or values.max() >= 2.0**63):
        raise TesseraError(f"Values for column '{column}' of {name} are too large for integers.")
    return values.astype(np.int64)


def _as_kind(values, kind, column, name):
    """Convert ``values`` for a GDAL column of ``kind`` without silent loss."""
    if values.ndim != 1:
        raise TesseraError(f"Values for column '{column}' of {name} must be one-dimensional.")
    if kind == "integer":
        if values.dtype.kind == "f":
            values = _whole_numbers(values, column, name)
        elif values.dtype.kind not in "biu":
            raise TesseraError(f"Column '{column}' of {name} holds integers, not {values.dtype}.")
        if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):
            raise TesseraError(
                f"Values for column '{column}' of {name} do not fit a 32-bit integer column."
            )
        return values.astype(np.int32, copy=False)
    if kind == "real":
        if values.dtype.kind not in "biuf":
            raise TesseraError(f"Column '{column}' of {name} holds numbers, not {values.dtype}.")
        return values.astype(np.float64, copy=False)
    if values.dtype.kind not in "OUS":
        raise TesseraError(f"Column '{column}' of {name} holds strings, not {values.dtype}.")
    return _as_text(values)


def open_rat(target, band=1, update=False, create=False, template=None, storage_options=None):
    """Open the RAT at ``target`` through the common interface.

    ``target`` is a GDAL dataset, a raster path, or a Zarr store path/URL
    (ending ``.zarr`` or ``s3://...``; ``storage_options`` go to s3fs). With
    ``create`` a missing target is created: a Zarr store, or a one-pixel
    raster whose driver follows the extension (``.img`` HFA, ``.tif`` GTiff
    with ``.aux.xml``, ``.kea`` KEA), georeferenced like ``template`` when given.
    """
    if is_zarr_target(target):
        return ZarrRat(target, update=update, create=create, storage_options=storage_options)
    if isinstance(target, gdal.Dataset):
        return GdalRat(target, band, update)
    path = os.fspath(target)
    if not os.path.exists(path):
        if not create:
            raise TesseraError(f"RAT file not found: {path}")
        return GdalRat(create_rat_file(path, template), 1, True)
    return GdalRat(open_raster(path, update=update), band, update)


def rat_file_driver(name):
    """The GDAL driver Tessera creates a RAT-only file ``name`` with (by its extension)."""
    driver_name = _RAT_FILE_DRIVERS.get(os.path.splitext(os.fspath(name))[1].lower())
    if driver_name is None:
        raise TesseraError(
            f"Cannot tell which format to write the RAT file {name} in: use a name ending "
            ".img (Erdas Imagine), .tif (GeoTIFF with .aux.xml) or .zarr (Zarr RAT store)."
        )
    driver = gdal.GetDriverByName(driver_name)
    if driver is None:
        raise TesseraError(f"This GDAL has no {driver_name} driver to write {name}.")
    return driver


def create_rat_file(path, template=None, name=None):
    """A one-pixel raster at ``path`` to hold a RAT, in the format of ``name``'s extension
    (default ``path``'s)."""
    driver = rat_file_driver(name or path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TesseraError(f"The folder of the RAT file {path} does not exist.")
    with gdal_quiet():
        dataset = driver.Create(path, 1, 1, 1, gdal.GDT_UInt32)
    if dataset is None:
        raise TesseraError(f"Cannot create the RAT file {path}: {gdal.GetLastErrorMsg()}")
    if template is not None:
        dataset.SetGeoTransform(template.GetGeoTransform())
        dataset.SetProjection(template.GetProjection())
    return dataset
