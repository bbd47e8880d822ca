"""User functions over a segment's points (pyshepseg's calling convention), the points
helpers, and the segment collector's pixel positions they rely on."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import PLUGINS_DIR
from numba import njit
from osgeo import gdal
from raster_files import GEOTRANSFORM, read_rat, speckled_segments, write_raster
from spatial_reference import diagonal_rms_reference, lag_columns, valid_mask

from tessera.engine import (
    CancelledError,
    TesseraError,
    points_to_array,
    points_to_mask,
    segment_spatial_stats,
    segment_user_stats,
)
from tessera.engine.segments.collector import SegmentCollector


def _segments(rows, cols, seed):
    """Random-order ids: ragged blocks, split segments and specks crossing tiles."""
    return speckled_segments(rows, cols, 7, 0.03, seed)


@pytest.mark.parametrize("bands, dtype", [(2, np.int32), (3, np.uint16), (4, np.uint16),
                                          (2, np.uint8), (1, np.float32)])
def test_collector_positions_are_whole_raster_rows_and_columns(bands, dtype):
    """Every band of every pixel reaches its segment (bands filling 2, 4 or 8 bytes are
    copied as one integer; 3 x 16 bits band by band)."""
    rows, cols = 45, 52
    seg = _segments(rows, cols, seed=1)
    image = np.random.default_rng(2).integers(0, 250, (bands, rows, cols)).astype(dtype)
    totals = np.bincount(seg.ravel())
    collector = SegmentCollector(totals, 0, bands, dtype, with_positions=True)
    seen = {}
    for row0 in range(0, rows, 8):
        for col0 in range(0, cols, 11):
            window = (slice(row0, row0 + 8), slice(col0, col0 + 11))
            for batch in collector.add_tile(seg[window], image[:, window[0], window[1]],
                                            row0, col0):
                for sid, start, length in zip(batch.ids, batch.starts, batch.lengths,
                                              strict=True):
                    part = slice(start, start + length)
                    assert sid not in seen
                    seen[int(sid)] = (batch.rows[part].copy(), batch.cols[part].copy(),
                                      batch.values[:, part].copy())
    collector.check_complete()
    expected_ids = set(np.unique(seg)) - {0}
    assert set(seen) == expected_ids
    for sid, (got_rows, got_cols, got_values) in seen.items():
        want_rows, want_cols = np.nonzero(seg == sid)
        got = sorted(zip(got_rows.tolist(), got_cols.tolist(), *got_values.tolist(),
                         strict=True))
        want = sorted(zip(want_rows.tolist(), want_cols.tolist(),
                          *image[:, want_rows, want_cols].tolist(), strict=True))
        assert got == want, sid


def test_collector_holds_only_the_segments_open_across_the_tile_edge():
    rows, cols, strip = 120, 150, 10
    seg = _segments(rows, cols, seed=3)
    totals = np.bincount(seg.ravel())
    collector = SegmentCollector(totals, 0, 1, np.uint16)
    image = np.zeros((1, rows, cols), np.uint16)
    completed = []
    for row0 in range(0, rows, strip):
        for batch in collector.add_tile(seg[row0:row0 + strip], image[:, row0:row0 + strip],
                                        row0, 0):
            completed.extend(batch.ids.tolist())
        above, below = seg[:row0 + strip], seg[row0 + strip:]
        open_ids = np.setdiff1d(np.intersect1d(above, below), [0])
        assert collector.open_pixels() == totals[open_ids].sum()
        assert sorted(completed) == sorted(set(np.unique(above)) - set(open_ids) - {0})
    assert collector.open_pixels() == 0
    assert collector.capacity <= max(1 << 16, 4 * strip * cols)


def test_collector_batches_stay_intact_until_before_compaction():
    """Batches handed out are read late (as the statistics threads do): their values
    must still be the segments' pixels when the collector announces a compaction."""
    rows, cols, strip = 400, 400, 10
    rng = np.random.default_rng(5)
    blocks = (np.arange(rows)[:, None] // 7) * 100 + np.arange(cols)[None, :] // 7
    seg = rng.permutation(blocks.max() + 1)[blocks] + 1   # 7 x 7 blocks, random ids
    image = rng.integers(0, 60000, (2, rows, cols)).astype(np.uint16)
    totals = np.bincount(seg.ravel())
    pending, checked, compactions = [], set(), []

    def check_pending():
        for batch in pending:
            for sid, start, length in zip(batch.ids, batch.starts, batch.lengths, strict=True):
                got = np.sort(batch.values[:, start:start + length], axis=1)
                assert np.array_equal(got, np.sort(image[:, seg == sid], axis=1)), sid
                checked.add(int(sid))
        pending.clear()

    collector = SegmentCollector(totals, 0, 2, np.uint16,
                                 before_compaction=lambda: compactions.append(check_pending()))
    for row0 in range(0, rows, strip):
        pending.extend(collector.add_tile(seg[row0:row0 + strip], image[:, row0:row0 + strip]))
    check_pending()
    assert len(compactions) >= 2
    assert checked == set(np.unique(seg).tolist()) - {0}


@njit
def point_summary(points, null_value, int_out, float_out, parameter):
    """int: count, min x, max y; float: mean x, mean y, sum of values * parameter, null."""
    int_out[0] = points.shape[0]
    xmin = points[0].x
    ymax = points[0].y
    sum_x = 0.0
    sum_y = 0.0
    total = 0.0
    for pt in points:
        xmin = min(xmin, pt.x)
        ymax = max(ymax, pt.y)
        sum_x += pt.x
        sum_y += pt.y
        total += pt.val
    int_out[1] = xmin
    int_out[2] = ymax
    float_out[0] = sum_x / points.shape[0]
    float_out[1] = sum_y / points.shape[0]
    float_out[2] = total * parameter
    float_out[3] = null_value


SUMMARY_COLUMNS = [("n", "integer"), ("mean_x", "real"), ("xmin", "integer"),
                   ("mean_y", "real"), ("ymax", "integer"), ("scaled_sum", "real"),
                   ("null", "real")]


@pytest.mark.parametrize("dtype,nodata,null", [
    ("int16", -1, -1.0), ("uint16", None, float(np.iinfo(np.int64).min)),
    ("float32", -9999.0, -9999.0), ("float64", None, np.nan),
])
def test_user_function_sees_every_valid_point(tmp_path, dtype, nodata, null):
    rows, cols = 40, 47
    seg = _segments(rows, cols, seed=3)
    rng = np.random.default_rng(4)
    image = rng.integers(0, 500, (rows, cols)).astype(dtype)
    if nodata is not None:
        image[rng.random((rows, cols)) < 0.1] = nodata
    if image.dtype.kind == "f":
        image[rng.random((rows, cols)) < 0.05] = np.nan
    victim = int(seg[20, 20])   # made a segment without a valid pixel when possible
    invalid = nodata if nodata is not None else (np.nan if image.dtype.kind == "f" else None)
    if invalid is not None:
        image[seg == victim] = invalid
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    image_path = write_raster(tmp_path / "image.tif", image, nodata=nodata)
    result = segment_user_stats(seg_path, image_path, point_summary, SUMMARY_COLUMNS,
                                parameter=0.5, window_size=9)
    assert result.columns == [name for name, _ in SUMMARY_COLUMNS]
    rat = read_rat(seg_path)
    assert rat["n"].dtype.kind == "i" and rat["mean_x"].dtype.kind == "f"
    valid = valid_mask(image, nodata)
    checked = 0
    for sid in np.unique(seg[seg != 0]):
        r, c = np.nonzero((seg == sid) & valid)
        if not len(r):
            assert all(rat[name][sid] == -9999 for name, _ in SUMMARY_COLUMNS), sid
            continue
        assert rat["n"][sid] == len(r)
        assert (rat["xmin"][sid], rat["ymax"][sid]) == (c.min(), r.max())
        assert rat["mean_x"][sid] == pytest.approx(c.mean(), rel=1e-12)
        assert rat["mean_y"][sid] == pytest.approx(r.mean(), rel=1e-12)
        assert rat["scaled_sum"][sid] == pytest.approx(0.5 * image[r, c].astype(float).sum())
        assert rat["null"][sid] == null or (np.isnan(null) and np.isnan(rat["null"][sid]))
        checked += 1
    assert checked > 20
    if invalid is not None:
        assert not valid[seg == victim].any() and rat["n"][victim] == -9999


@njit
def array_and_mask(points, null_value, int_out, float_out, parameter):
    """int: height, width, cells equal to the null value, mask cells; float: sum under mask."""
    array = points_to_array(points, null_value)
    mask = points_to_mask(points)
    int_out[0] = array.shape[0]
    int_out[1] = array.shape[1]
    int_out[2] = (array == null_value).sum()
    int_out[3] = mask.sum()
    float_out[0] = array.ravel()[mask.ravel()].sum()


def test_points_to_array_and_mask(tmp_path):
    rows, cols = 36, 41
    seg = _segments(rows, cols, seed=5)
    image = np.random.default_rng(6).integers(1, 100, (rows, cols)).astype(np.uint8)
    image[::5, ::3] = 0
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=0)
    columns = [("height", gdal.GFT_Integer), ("width", gdal.GFT_Integer),
               ("outside", gdal.GFT_Integer), ("inside", gdal.GFT_Integer),
               ("sum", gdal.GFT_Real)]
    segment_user_stats(seg_path, image_path, array_and_mask, columns, window_size=10)
    rat = read_rat(seg_path)
    for sid in np.unique(seg[seg != 0]):
        r, c = np.nonzero((seg == sid) & (image != 0))
        height, width = r.max() - r.min() + 1, c.max() - c.min() + 1
        assert (rat["height"][sid], rat["width"][sid]) == (height, width)
        assert rat["inside"][sid] == len(r)
        assert rat["outside"][sid] == height * width - len(r)
        assert rat["sum"][sid] == image[r, c].sum()


@njit
def pyshepseg_style_variogram(points, null_value, int_out, float_out, max_lag):
    """pyshepseg's userFuncVariogram logic: a 2-D array of the segment, the down-right
    offsets 1..max_lag in both directions, binned by the integer part of the distance."""
    tile = points_to_array(points, null_value)
    counts = np.zeros(max_lag, np.int64)
    sums = np.zeros(max_lag)
    height, width = tile.shape
    for y in range(height):
        for x in range(width):
            if tile[y, x] == null_value:
                continue
            for dy in range(1, max_lag + 1):
                for dx in range(1, max_lag + 1):
                    if y + dy < height and x + dx < width and tile[y + dy, x + dx] != null_value:
                        lag = int(np.sqrt(dy * dy + dx * dx))
                        if 0 < lag <= max_lag:
                            counts[lag - 1] += 1
                            sums[lag - 1] += (tile[y, x] - tile[y + dy, x + dx]) ** 2
    for k in range(max_lag):
        if counts[k] > 0:
            float_out[k] = np.sqrt(sums[k] / counts[k])


def test_pyshepseg_variogram_as_a_user_function_equals_the_diagonalrms_builtin(tmp_path):
    rows, cols = 48, 50
    seg = _segments(rows, cols, seed=7)
    image = np.random.default_rng(8).integers(1, 3000, (rows, cols)).astype(np.int32)
    image[np.random.default_rng(9).random((rows, cols)) < 0.05] = -1
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    image_path = write_raster(tmp_path / "image.tif", image, nodata=-1)
    lags = 3
    columns = [(f"user_{k}", "real") for k in range(1, lags + 1)]
    segment_user_stats(seg_path, image_path, pyshepseg_style_variogram, columns,
                       parameter=lags, window_size=12)
    segment_spatial_stats(seg_path, image_path, statistics=["diagonalrms"], max_lag=lags,
                          window_size=12)
    rat = read_rat(seg_path)
    reference = lag_columns(diagonal_rms_reference(seg, image, lags, nodata=-1), "drms")
    compared = 0
    for sid, expected in reference.items():
        for k in range(1, lags + 1):
            user, builtin = rat[f"user_{k}"][sid], rat[f"drms_{k}"][sid]
            want = expected[f"drms_{k}"]
            assert user == pytest.approx(builtin, rel=1e-12), (sid, k)
            assert builtin == (-9999 if want is None else pytest.approx(want, rel=1e-12))
            compared += want is not None
    assert compared > 50


@njit
def mean_corner_coordinate(points, null_value, int_out, float_out, transform):
    """pyshepseg's userFuncMeanCoord: the mean of pixel *corner* coordinates."""
    sum_x = 0.0
    sum_y = 0.0
    for pt in points:
        sum_x += transform[0] + transform[1] * pt.x + transform[2] * pt.y
        sum_y += transform[3] + transform[4] * pt.x + transform[5] * pt.y
    float_out[0] = sum_x / points.shape[0]
    float_out[1] = sum_y / points.shape[0]


def test_pyshepseg_mean_coordinate_is_half_a_pixel_off_the_centroid(tmp_path):
    rows, cols = 30, 33
    seg = _segments(rows, cols, seed=10)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    image_path = write_raster(tmp_path / "image.tif", np.ones((rows, cols), np.uint8))
    segment_user_stats(seg_path, image_path, mean_corner_coordinate,
                       [("corner_x", "real"), ("corner_y", "real")],
                       parameter=np.array(GEOTRANSFORM), window_size=8)
    segment_spatial_stats(seg_path, statistics=["centroid"], window_size=8)
    rat = read_rat(seg_path)
    ids = np.unique(seg[seg != 0])
    np.testing.assert_allclose(rat["corner_x"][ids] + 5, rat["centroid_x"][ids], rtol=1e-13)
    np.testing.assert_allclose(rat["corner_y"][ids] - 5, rat["centroid_y"][ids], rtol=1e-13)


@njit
def uses_a_missing_attribute(points, null_value, int_out, float_out, parameter):
    float_out[0] = parameter.no_such_thing


def not_compiled(points, null_value, int_out, float_out, parameter):
    float_out[0] = 1.0


def test_user_function_errors_are_clear_and_write_nothing(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", np.ones((6, 6), np.uint8))
    image_path = write_raster(tmp_path / "image.tif", np.ones((6, 6), np.uint16))
    cases = [
        (dict(function=not_compiled), "must be a numba function.*@numba.njit"),
        (dict(function=uses_a_missing_attribute, parameter=1.5),
         "uses_a_missing_attribute cannot be compiled"),
        (dict(columns=[("a", "text")]), "kind must be 'integer' or 'real'"),
        (dict(columns=[]), "at least one output column"),
        (dict(columns=[("a", "real"), ("a", "real")]), "used twice: a"),
        (dict(columns=[("n", "integer")], missing_value=np.nan), "missing value nan.*n"),
        (dict(image=None), "needs an image"),
    ]
    for kwargs, match in cases:
        arguments = dict(segments=seg_path, image=image_path, function=point_summary,
                         columns=[("x", "real")])
        arguments.update(kwargs)
        with pytest.raises(TesseraError, match=match):
            segment_user_stats(**arguments)
    assert read_rat(seg_path) == {}


def test_user_function_on_a_segment_spanning_every_tile_and_cancel(tmp_path):
    rows, cols = 90, 70
    seg = np.ones((rows, cols), np.uint16)
    seg[30:60, 20:50] = 2
    image = np.random.default_rng(11).integers(0, 50, (rows, cols)).astype(np.uint16)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    segment_user_stats(seg_path, image_path, point_summary, SUMMARY_COLUMNS, parameter=1.0,
                       window_size=16, output_rat=str(tmp_path / "user.img"))
    rat = read_rat(tmp_path / "user.img")
    assert rat["n"][1] == rows * cols - 900 and rat["n"][2] == 900
    assert rat["scaled_sum"][1] == image[seg == 1].sum()
    assert rat["mean_x"][2] == pytest.approx(34.5) and math.isclose(rat["mean_y"][2], 44.5)

    calls = []
    with pytest.raises(CancelledError):
        segment_user_stats(seg_path, image_path, point_summary, SUMMARY_COLUMNS, parameter=1.0,
                           window_size=16, cancelled=lambda: calls.append(1) or len(calls) > 3)
    assert read_rat(seg_path) == {}


COMPILE_FAILURE_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {plugins!r})
    from numba import njit
    from qgis.core import QgsApplication
    from tessera.engine import TesseraError, segment_user_stats

    @njit
    def broken(points, null_value, int_out, float_out, parameter):
        float_out[0] = parameter.no_such_thing

    app = QgsApplication([], False)
    app.initQgis()
    try:
        segment_user_stats({seg!r}, {image!r}, broken, [("x", "real")], parameter=1.5)
    except TesseraError as error:
        print("refused:", str(error)[:60])
    app.exitQgis()
""")


def test_a_function_that_fails_to_compile_does_not_crash_qgis_at_exit(tmp_path):
    """numba caches the failed compilation's error for the function's lifetime; its
    traceback must not keep GDAL datasets alive until after QGIS has shut GDAL down."""
    seg_path = write_raster(tmp_path / "seg.tif", np.ones((6, 6), np.uint8))
    image_path = write_raster(tmp_path / "image.tif", np.ones((6, 6), np.uint16))
    script = COMPILE_FAILURE_SCRIPT.format(plugins=PLUGINS_DIR, seg=seg_path, image=image_path)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert "refused: The user function broken cannot be compiled" in done.stdout, done.stderr
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


PARALLEL_SCRIPT = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {plugins!r})
    import numpy as np
    from numba import njit, prange
    from tessera.engine import segment_user_stats
    from tessera.engine.rat.store import RatStore

    @njit(parallel=True)
    def parallel_sum(points, null_value, int_out, float_out, parameter):
        total = 0.0
        for i in prange(points.shape[0]):
            total += points[i].val
        float_out[0] = total
        int_out[0] = points.shape[0]

    def run(k):
        try:
            segment_user_stats({seg!r}, {image!r}, parallel_sum,
                               [("total", "real"), ("count", "integer")],
                               output_rat={folder!r} + f"/run{{k}}.zarr")
        except BaseException as error:
            errors.append(error)

    errors = []
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    import numba
    print("layer", numba.threading_layer())
    for k in range(2):
        with RatStore({folder!r} + f"/run{{k}}.zarr", read_only=True) as store:
            rows = store.row_count
            print("total", k, ",".join(map(repr, store.read_block("total", 0, rows).tolist())))
            print("count", k, ",".join(map(str, store.read_block("count", 0, rows).tolist())))
""")


def test_a_parallel_function_called_from_two_threads_does_not_abort_the_process(tmp_path):
    """numba's workqueue layer aborts the process (exit 134) when two threads enter it at
    once: calls of parallel=True functions are serialised on that layer."""
    seg = speckled_segments(120, 90, 9, 0.02, seed=5)
    image = np.random.default_rng(6).integers(1, 500, seg.shape).astype(np.uint16)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    script = PARALLEL_SCRIPT.format(plugins=PLUGINS_DIR, seg=seg_path, image=image_path,
                                    folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue"})
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines()
                 if line.startswith("layer"))
    assert lines["layer"] == "workqueue"
    want_total = np.bincount(seg.ravel(), weights=image.ravel().astype(float))
    want_count = np.bincount(seg.ravel())
    present = want_count > 0
    present[0] = False  # id 0 not compared (the null id where the raster has no nodata)
    for line in done.stdout.splitlines():
        kind, _, values = line.partition(" ")
        if kind in ("total", "count"):
            got = np.array([float(v) for v in values.split(" ", 1)[1].split(",")])
            want = want_total if kind == "total" else want_count
            np.testing.assert_allclose(got[present], want[present])
    assert done.stdout.count("total ") == 2 and done.stdout.count("count ") == 2
