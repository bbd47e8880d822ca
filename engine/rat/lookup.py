"""RAT columns as lookup tables indexed by segment id.

The tools that put per-segment values back on the map (:mod:`tessera.engine.rat.to_raster`,
:mod:`tessera.engine.segments.polygons`) open a segmentation's RAT (the segment file's own,
a separate GDAL file or a Zarr RAT store) with :func:`open_segment_rat` and
read the chosen numeric columns block by block into one table, row = id,
with missing values already replaced by the nodata value
(:func:`read_lookup`). A million segments and a few columns take a few tens
of MB; a table larger than :data:`LOOKUP_BUDGET` lives in a temporary
memory-mapped file.
"""

import math
import tempfile
from dataclasses import dataclass

import numpy as np

from ..errors import TesseraError
from .tools import choose_columns, iter_rat_blocks, open_rat_source

#: Lookup tables larger than this are memory-mapped temporary files.
LOOKUP_BUDGET = 1 << 30
#: Output data types of :func:`lookup_dtype` (``auto``: see there).
DATA_TYPES = ("auto", "float32", "float64")


def open_segment_rat(segments, segment_band=1, rat=None, rat_band=1):
    """Open the RAT of a segmentation for reading.

    ``rat`` None (or empty) is the RAT of band ``segment_band`` of the
    segment file itself; a path ending ``.zarr`` (or an ``s3://`` URL) a Zarr
    RAT store; another path a GDAL file whose band ``rat_band`` holds it.
    """
    if rat is None or (isinstance(rat, str) and not rat.strip()):
        return open_rat_source(segments, segment_band)
    return open_rat_source(rat, rat_band)


def numeric_columns(rat, columns):
    """The chosen column names, checked to exist and to hold numbers."""
    chosen = choose_columns(rat, columns)
    text = [c for c in chosen if rat.column_kind(c) == "string"]
    if text:
        raise TesseraError(
            f"Column(s) {', '.join(text)} of the RAT of {rat.name} hold text; "
            "only numeric columns can be put on the map as values (choose others).")
    return chosen


def lookup_dtype(rat, columns, data_type="auto"):
    """The one pixel type for every column: ``auto`` gives int32 when every column is an
    integer column that fits 32 bits (every GDAL integer column does), else float64 (exact
    for integers up to 2**53); ``float32`` and ``float64`` force that type."""
    if data_type not in DATA_TYPES:
        raise TesseraError(f"Unknown data type '{data_type}' (use one of {', '.join(DATA_TYPES)}).")
    if data_type != "auto":
        return np.dtype(data_type)
    narrow = all(rat.column_kind(c) == "integer"
                 and np.can_cast(rat.column_dtype(c), np.int32, "safe") for c in columns)
    return np.dtype(np.int32) if narrow else np.dtype(np.float64)


def check_nodata(nodata, dtype):
    """``nodata`` as a value of ``dtype``, or a clear error."""
    nodata = float(nodata)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        if math.isnan(nodata) or not nodata.is_integer() or not info.min <= nodata <= info.max:
            raise TesseraError(
                f"The missing value {nodata:g} cannot be the nodata value of a {np.dtype(dtype)} "
                "raster: give an integer within its range, or choose a float data type.")
        return int(nodata)
    return nodata


@dataclass
class Lookup:
    """Per column: values indexed by id (``table[id, column]``; row ``len - 1`` is the
    nodata row every id outside the RAT goes to) and the valid range."""

    table: np.ndarray
    columns: list
    nodata: float
    ranges: dict

    @property
    def rows(self):
        """Rows of the RAT (ids 0 .. rows - 1 have values)."""
        return self.table.shape[0] - 1


def read_lookup(rat, columns, dtype, nodata, null_id=None, missing_value=None,
                progress=None, cancelled=None):
    """Read ``columns`` of an open RAT into a :class:`Lookup` of ``dtype``.

    Values equal to ``missing_value`` and NaN become ``nodata``, and so does
    the row of ``null_id``.
    """
    rows = rat.row_count()
    shape = (rows + 1, len(columns))
    size = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if size <= LOOKUP_BUDGET:
        table = np.empty(shape, dtype)
    else:
        table = np.memmap(tempfile.TemporaryFile(prefix="tessera-lookup-"), dtype, "w+",
                          shape=shape)
    lows = [math.inf] * len(columns)
    highs = [-math.inf] * len(columns)
    for block in iter_rat_blocks(rat, columns, progress=progress, cancelled=cancelled):
        stop = block.start + len(block)
        for index, name in enumerate(columns):
            values = np.asarray(block.columns[name])
            missing = np.zeros(len(values), np.bool_)
            if values.dtype.kind == "f":
                missing |= np.isnan(values)
            if missing_value is not None and not math.isnan(float(missing_value)):
                missing |= values == missing_value
            if null_id is not None and block.start <= null_id < stop:
                missing[null_id - block.start] = True
            valid = values[~missing]
            if valid.size:
                lows[index] = min(lows[index], float(valid.min()))
                highs[index] = max(highs[index], float(valid.max()))
            column = table[block.start:stop, index]
            column[:] = values.astype(dtype, copy=False) if dtype.kind == "f" else values
            column[missing] = nodata
    table[rows] = nodata
    ranges = {name: (lows[i], highs[i]) if lows[i] <= highs[i] else (None, None)
              for i, name in enumerate(columns)}
    return Lookup(table, list(columns), nodata, ranges)
