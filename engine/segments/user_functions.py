"""Per-segment statistics computed by the user's own numba function.

    from numba import njit
    from tessera.engine import segment_user_stats

    @njit
    def value_spread(points, null_value, int_out, float_out, parameter):
        float_out[0] = points["val"].max() - points["val"].min()
        int_out[0] = points.shape[0]

    segment_user_stats("segments.tif", "image.tif", value_spread,
                       columns=[("spread", "real"), ("valid", "integer")])

The calling convention is pyshepseg's ``calcPerSegmentSpatialStatsTiled``:
once all of a segment's pixels have been read, ``function(points,
null_value, int_out, float_out, parameter)`` is called with

- ``points``: the segment's valid pixels (see :mod:`tessera.engine.segments.points`:
  fields ``x`` (column), ``y`` (row) in the whole raster and ``val``);
- ``null_value``: the image's nodata value, else NaN for a float image and
  the smallest int64 for an integer one (no pixel has it);
- ``int_out`` (int64) and ``float_out`` (float64): one slot per integer /
  real column, in the order of ``columns``, pre-filled with the missing value;
- ``parameter``: the caller's ``parameter`` (anything numba accepts).

Segments without a valid pixel are not passed to the function: all their
columns get the missing value. numba does not check array bounds: a function
writing past ``int_out``/``float_out`` corrupts memory (develop it with
``@njit(boundscheck=True)``). The function sees all of a segment's points
at once, so memory holds every pixel of the segments still open (as in
pyshepseg); the built-in statistics of :func:`segment_spatial_stats` are
streamed instead.

A function compiled with ``parallel=True`` runs on numba's threading layer;
the ``workqueue`` layer aborts the whole process (QGIS included) when two
threads enter it at once, so such functions are called one at a time across
all runs (a module-level lock) unless the layer is the thread-safe ``tbb`` or
``omp``.
"""

import math
import threading
import time

import numpy as np

from ..dependencies import require
from ..errors import TesseraError
from ..io.raster_io import plan_windows, raster_name
from ..progress import Progress
from ..rat.output import RatOutput
from .inputs import open_segment_inputs
from .pipeline import (
    COLLECTOR_BYTES_PER_ID,
    check_segment_ids,
    collect_segments,
    present_ids,
    segment_totals,
    write_segment_results,
)

_GDAL_KINDS = {0: "integer", 1: "real"}  # gdal.GFT_Integer, gdal.GFT_Real
#: numba's threading layers that may be entered by several threads at once.
THREADSAFE_LAYERS = ("tbb", "omp")
#: Held around every call of a ``parallel=True`` user function on another layer.
_PARALLEL_CALLS = threading.Lock()


def segment_user_stats(segments, image, function, columns, parameter=None, band=1,
                       missing_value=-9999, output_rat=None, overwrite=False, progress=None,
                       cancelled=None, segment_band=1, output_table=None, window_size=None,
                       read_threads=2):
    """Call the numba ``function`` on every segment's points; write its results.

    ``columns`` lists ``(name, kind)`` with kind ``"integer"`` or ``"real"``
    (or ``gdal.GFT_Integer`` / ``gdal.GFT_Real``); the function fills
    ``int_out[i]`` for the i-th integer column and ``float_out[j]`` for the
    j-th real one. ``band`` is the image band whose values the points carry.
    The other arguments work as in :func:`~tessera.engine.segment_stats`.
    Returns a :class:`~tessera.engine.SegmentStatsResult`.
    """
    require("numba", purpose="Per-segment user functions")
    from .collector import SegmentCollector

    started = time.perf_counter()
    reporter = Progress(progress, cancelled)
    if not hasattr(function, "py_func"):
        raise TesseraError(
            f"The function {getattr(function, '__name__', function)!r} must be a numba "
            "function: decorate it with @numba.njit."
        )
    columns = _user_columns(columns)
    missing = _missing_for(columns, missing_value)
    if image is None:
        raise TesseraError("A user function needs an image: its points carry image values.")
    inputs = open_segment_inputs(segments, image, segment_band, band)
    if inputs.image_dtype == np.uint64:
        raise TesseraError(
            f"The image {raster_name(inputs.image)} holds 64-bit unsigned values, which the "
            "int64 point values cannot hold."
        )
    seg_ds = inputs.segments
    output = RatOutput(output_rat, seg_ds, segment_band, columns, overwrite, output_table,
                       inputs=[(inputs.image, "image")])
    output.check()

    timings = {}
    totals, span = segment_totals(seg_ds, segment_band, inputs.null_id, reporter, read_threads,
                                  timings, started)
    check_segment_ids(0, len(totals) - 1, seg_ds, COLLECTOR_BYTES_PER_ID + 8 * len(columns))
    row_count = max(len(totals), output.existing_rows)
    caller = UserFunctionCall(function, parameter, columns, missing, inputs.image_dtype,
                              inputs.image_nodata, row_count)
    caller.check_compiles()

    reporter.phase(*span, "Calling the user function on every segment")
    collector = SegmentCollector(totals, inputs.null_id, 1, caller.value_dtype,
                                 with_positions=True)
    windows = plan_windows(seg_ds, segment_band, window_size=window_size,
                           also=[(inputs.image, inputs.image_band)])
    sources = [(seg_ds, [segment_band], None), (inputs.image, [inputs.image_band], None)]
    timings["statistics"] = collect_segments(collector, sources, windows, read_threads,
                                             reporter, caller.run)
    present = present_ids(totals, inputs.null_id)
    null_id = inputs.null_id
    seg_ds = inputs = collector = None  # release read handles before writing
    return write_segment_results(output, caller.results, columns, present, null_id, row_count,
                                 output_table, reporter, timings, started)


class UserFunctionCall:
    """The user function with its fixed arguments, output buffers and results
    (columns x ``rows``, float64, filled with the missing value)."""

    def __init__(self, function, parameter, columns, missing, image_dtype, nodata, rows):
        from .points import point_dtype

        self.function = function
        self.parameter = parameter
        self.point_dtype = point_dtype(image_dtype)
        self.value_dtype = self.point_dtype["val"]
        value = self.value_dtype.type
        self.has_nodata = nodata is not None
        self.nodata = value(nodata if self.has_nodata else 0)
        if self.has_nodata:
            self.null_value = value(nodata)
        elif self.value_dtype.kind == "f":
            self.null_value = np.float64(np.nan)
        else:
            self.null_value = np.int64(np.iinfo(np.int64).min)
        self.int_columns = np.array([i for i, (_, k) in enumerate(columns) if k == "integer"],
                                    np.int64)
        self.float_columns = np.array([i for i, (_, k) in enumerate(columns) if k == "real"],
                                      np.int64)
        self.missing = missing
        self.missing_int = int(missing) if len(self.int_columns) else 0
        self.int_out = np.zeros(len(self.int_columns), np.int64)
        self.float_out = np.zeros(len(self.float_columns), np.float64)
        self.points = np.zeros(0, self.point_dtype)
        self.results = np.full((len(columns), rows), missing, np.float64)
        self.parallel = bool(getattr(function, "targetoptions", {}).get("parallel"))

    def run(self, batch):
        """Call the function on every segment of a collector batch (a ``parallel=True``
        function one run at a time unless numba's threading layer is thread-safe)."""
        longest = int(batch.lengths.max())
        if longest > len(self.points):
            self.points = np.zeros(max(longest, 2 * len(self.points)), self.point_dtype)
        if self.parallel and threading_layer() not in THREADSAFE_LAYERS:
            with _PARALLEL_CALLS:
                self._call(batch)
        else:
            self._call(batch)

    def _call(self, batch):
        from .points import call_user_function

        call_user_function(
            self.function, self.parameter, batch.ids, batch.starts, batch.lengths,
            batch.values, batch.rows, batch.cols, self.nodata, self.has_nodata,
            self.null_value, self.points, self.int_out, self.float_out, self.int_columns,
            self.float_columns, self.missing_int, self.missing, self.results)

    def check_compiles(self):
        """Compile the user function for its arguments, or raise a clear error.

        numba keeps a failed compilation's error in the function's cache for
        the function's lifetime; its traceback would keep this call's frames,
        and the GDAL datasets they hold, alive until the interpreter exits,
        when closing them crashes (GDAL is shut down by then). So the
        tracebacks are dropped.
        """
        from numba import typeof
        from numba.core.errors import NumbaError

        arguments = (self.points, self.null_value, self.int_out, self.float_out,
                     self.parameter)
        try:
            self.function.compile(tuple(typeof(a) for a in arguments))
            return
        except NumbaError as error:
            detail = " ".join(str(error).strip().splitlines()[:6])
            _drop_tracebacks(error)
        raise TesseraError(
            f"The user function {self.function.__name__} cannot be compiled for the "
            f"arguments (points, null value, int64 array, float64 array, parameter): {detail}"
        )


def threading_layer():
    """numba's threading layer in use, else the one configured ("default" until a
    parallel function first ran)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        return str(numba.config.THREADING_LAYER).lower()


def _drop_tracebacks(error):
    """Clear the tracebacks of ``error`` and of the errors it was raised from."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


def _user_columns(columns):
    checked = []
    for entry in columns or ():
        try:
            name, kind = entry
        except (TypeError, ValueError):
            raise TesseraError(f"A column must be (name, kind), not {entry!r}.") from None
        kind = _GDAL_KINDS.get(kind, kind) if isinstance(kind, int) else str(kind).lower()
        if kind not in ("integer", "real"):
            raise TesseraError(f"Column {name}: kind must be 'integer' or 'real', not {kind!r}.")
        checked.append((str(name), kind))
    if not checked:
        raise TesseraError("Give at least one output column (name, kind).")
    names = [name for name, _ in checked]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TesseraError(f"Column name(s) used twice: {', '.join(twice)}.")
    return checked


def _missing_for(columns, missing_value):
    try:
        value = float(missing_value)
    except (TypeError, ValueError):
        raise TesseraError(f"The missing value {missing_value!r} is not a number.") from None
    integers = [name for name, kind in columns if kind == "integer"]
    if integers and (not math.isfinite(value) or not value.is_integer()
                     or not -(2**31) <= value < 2**31):
        raise TesseraError(
            f"The missing value {missing_value} cannot be stored in the integer column(s) "
            f"{', '.join(integers[:4])}: choose a whole number such as -9999."
        )
    return value
