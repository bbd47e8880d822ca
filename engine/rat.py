"""One raster attribute table (RAT) interface over two back-ends.

Every Tessera writer and reader of RAT columns uses :func:`open_rat`, which
returns a :class:`RatTable`:

- :class:`GdalRat` — the RAT of a band in a GDAL file. Drivers whose RAT is
  stored in the file itself (HFA ``.img``, KEA) are edited in place; for the
  others (GTiff keeps its RAT in the ``.aux.xml`` side-car) the table is
  edited in memory and stored on :meth:`RatTable.close` through
  ``SetDefaultRAT``, the only way such edits persist.
- :class:`ZarrRat` — a Zarr RAT store (:mod:`.rat_store`), local or ``s3://``.

Column kinds are ``"integer"``, ``"real"`` and ``"string"``. Rows are
addressed by segment id (row 0 is id 0).
"""

import contextlib
import os

import numpy as np
from osgeo import gdal

from .errors import TesseraError
from .raster_io import gdal_quiet, get_band, open_raster, raster_name

KINDS = ("integer", "real", "string")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

#: Drivers whose RAT edits go straight to the file.
_LIVE_RAT_DRIVERS = {"HFA", "KEA"}
#: Drivers Tessera creates a RAT-only file with, by file extension.
_RAT_FILE_DRIVERS = {".img": "HFA", ".kea": "KEA", ".tif": "GTiff", ".tiff": "GTiff"}

_GFT_KIND = {gdal.GFT_Integer: "integer", gdal.GFT_Real: "real", gdal.GFT_String: "string"}
_KIND_GFT = {kind: gft for gft, kind in _GFT_KIND.items()}


def is_zarr_target(target):
    """True when ``target`` names a Zarr RAT store (``.zarr`` or ``s3://``)."""
    if not isinstance(target, (str, os.PathLike)):
        return False
    text = os.fspath(target).rstrip("/\\")
    return text.lower().endswith(".zarr") or text.startswith("s3://")


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
    """Columns of a RAT, read and written by blocks of rows."""

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

    def create_column(self, column, kind):
        raise NotImplementedError

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


class GdalRat(RatTable):
    """The RAT of one band of a GDAL dataset.

    Tables kept in the file (HFA, KEA) are read and written by blocks. Other
    tables live in memory (GTiff's ``.aux.xml``) and GDAL 3.6 corrupts
    memory on their block IO at a non-zero start row, so their columns are
    read and written whole, through a cache stored on :meth:`close`.
    """

    def __init__(self, dataset, band=1, update=False):
        self.dataset = dataset
        self.name = raster_name(dataset)
        self.band = get_band(dataset, band, "raster")
        self.update = update
        driver = dataset.GetDriver().ShortName if dataset.GetDriver() else ""
        self.live = driver in _LIVE_RAT_DRIVERS
        rat = self.band.GetDefaultRAT()
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
        self.rat.SetRowCount(int(rows))
        self._dirty = True

    def column_names(self):
        return [self.rat.GetNameOfCol(i) for i in range(self.rat.GetColumnCount())]

    def _index(self, column):
        for i in range(self.rat.GetColumnCount()):
            if self.rat.GetNameOfCol(i) == column:
                return i
        raise TesseraError(f"The RAT of {self.name} has no column '{column}'.")

    def column_kind(self, column):
        return _GFT_KIND.get(self.rat.GetTypeOfCol(self._index(column)), "string")

    def column_usage(self, column):
        """GDAL's usage code of a column (e.g. ``gdal.GFU_PixelCount``)."""
        return self.rat.GetUsageOfCol(self._index(column))

    def create_column(self, column, kind):
        self._require_update()
        self._check_kind(kind)
        if self.has_column(column):
            raise TesseraError(f"The RAT of {self.name} already has a column '{column}'.")
        if self.rat.CreateColumn(column, _KIND_GFT[kind], gdal.GFU_Generic) != 0:
            raise TesseraError(f"Cannot create column '{column}' in the RAT of {self.name}.")
        self._dirty = True

    def read(self, column, start=0, length=None):
        index = self._index(column)
        rows = self.row_count()
        length = rows - start if length is None else min(length, rows - start)
        if length <= 0:
            return np.empty(0, dtype=_read_dtype(self.column_kind(column)))
        if self.live:
            return self.rat.ReadAsArray(index, start=int(start), length=int(length))
        return self._whole(index)[start:start + length].copy()

    def write(self, column, values, start=0):
        self._require_update()
        index = self._index(column)
        values = _as_kind(np.asarray(values), self.column_kind(column), column, self.name)
        self._check_rows(start, len(values))
        if not len(values):
            return
        if self.live:
            if self.rat.WriteArray(values, index, int(start)) != 0:
                raise TesseraError(f"Writing column '{column}' of the RAT of {self.name} failed.")
        else:
            whole = self._whole(index)
            if whole.dtype.kind == "S":
                whole = self._cache[index] = whole.astype(object)
            whole[start:start + len(values)] = values
            self._changed.add(index)
        self._dirty = True

    def _whole(self, index):
        if index not in self._cache:
            self._cache[index] = self.rat.ReadAsArray(index)
        return self._cache[index]

    def _flush_cache(self):
        for index in sorted(self._changed):
            whole = self._cache[index]
            if whole.dtype == object:
                whole = np.array([_as_bytes(v) for v in whole], dtype="S")
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


def _as_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


class ZarrRat(RatTable):
    """A Zarr RAT store seen through the RAT interface."""

    DTYPES = {"integer": np.dtype(np.int32), "real": np.dtype(np.float64)}

    def __init__(self, path, update=False, create=False):
        from .rat_store import RatStore

        self.name = os.fspath(path)
        self.update = update
        self.store = RatStore(path, read_only=not update, create=create)

    def row_count(self):
        return self.store.row_count

    def set_row_count(self, rows):
        self.store.set_row_count(int(rows))

    def column_names(self):
        return self.store.column_names()

    def column_kind(self, column):
        self._check_column(column)
        return kind_of_dtype(self.store.column_dtype(column))

    def create_column(self, column, kind):
        self._check_kind(kind)
        if kind == "string":
            dtype = np.dtypes.StringDType() if hasattr(np, "dtypes") and hasattr(
                np.dtypes, "StringDType"
            ) else np.dtype(object)
        else:
            dtype = self.DTYPES[kind]
        self.store.create_column(column, dtype)

    def read(self, column, start=0, length=None):
        self._check_column(column)
        rows = self.row_count()
        length = rows - start if length is None else length
        return self.store.read_block(column, int(start), int(length))

    def write(self, column, values, start=0):
        self._check_column(column)
        kind = self.column_kind(column)
        values = _as_kind(np.asarray(values), kind, column, self.name)
        if kind != "string":
            values = values.astype(self.store.column_dtype(column), copy=False)
        self.store.write_block(column, values, int(start))

    def close(self):
        if self.store is not None:
            self.store.close()
            self.store = None


def _read_dtype(kind):
    return {"integer": np.int32, "real": np.float64}.get(kind, object)


def _as_kind(values, kind, column, name):
    """Convert ``values`` for a column of ``kind`` without silent loss."""
    if values.ndim != 1:
        raise TesseraError(f"Values for column '{column}' of {name} must be one-dimensional.")
    if kind == "integer":
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all() or not np.array_equal(values, np.round(values)):
                raise TesseraError(
                    f"Column '{column}' of {name} holds integers; non-integer values "
                    "cannot be written to it."
                )
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
    return values


def open_rat(target, band=1, update=False, create=False, template=None):
    """Open the RAT at ``target`` through the common interface.

    ``target`` is a GDAL dataset, a raster path, or a Zarr store path/URL
    (ending ``.zarr`` or ``s3://...``). With ``create`` a missing target is
    created: a Zarr store, or a one-pixel raster whose driver follows the
    extension (``.img`` HFA, ``.tif`` GTiff with ``.aux.xml``, ``.kea`` KEA),
    georeferenced like ``template`` when given.
    """
    if is_zarr_target(target):
        return ZarrRat(target, update=update, create=create)
    if isinstance(target, gdal.Dataset):
        return GdalRat(target, band, update)
    path = os.fspath(target)
    if not os.path.exists(path):
        if not create:
            raise TesseraError(f"RAT file not found: {path}")
        return GdalRat(_create_rat_file(path, template), 1, True)
    return GdalRat(open_raster(path, update=update), band, update)


def _create_rat_file(path, template=None):
    extension = os.path.splitext(path)[1].lower()
    driver_name = _RAT_FILE_DRIVERS.get(extension)
    if driver_name is None:
        raise TesseraError(
            f"Cannot tell which format to write the RAT file {path} in: use a name ending "
            ".img (Erdas Imagine), .tif (GeoTIFF with .aux.xml) or .zarr (Zarr RAT store)."
        )
    driver = gdal.GetDriverByName(driver_name)
    if driver is None:
        raise TesseraError(f"This GDAL has no {driver_name} driver to write {path}.")
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


@contextlib.contextmanager
def rewrite_side_car_rat(path, band=1):
    """Keep the RAT of ``path`` (band ``band``) across code that may rewrite its
    ``.aux.xml``: the RAT is copied on entry and stored again on exit. Files
    whose driver keeps the RAT inside the file are left alone."""
    dataset = open_raster(path)
    driver = dataset.GetDriver().ShortName if dataset.GetDriver() else ""
    rat = dataset.GetRasterBand(band).GetDefaultRAT()
    kept = rat.Clone() if rat is not None and driver not in _LIVE_RAT_DRIVERS else None
    dataset = None
    yield
    if kept is not None:
        dataset = open_raster(path, update=True)
        dataset.GetRasterBand(band).SetDefaultRAT(kept)
        dataset = None
