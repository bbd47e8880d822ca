"""Local block adjustment: a brightness gradient removed from the real WorldView
scene, block means and maps against numpy, interpolation against a hand case,
the block-count formula (Landsat), values <= 0, window-size independence,
save/load of block maps, every bad input, and the algorithm through Processing
and qgis_process."""

import os
import warnings

import numpy as np
import pytest
import shapely
from conftest import shared_data
from normalization_scenes import (
    WORLDVIEW_NODATA,
    cut_windows,
    distort,
    overlap_difference,
    pixel_centres,
    read,
    read_scene,
    shifted,
    utm_wkt,
    write,
    write_polygons,
)
from osgeo import gdal

from tessera.engine import TesseraError, local_block_adjustment
from tessera.engine.normalization.block_maps import grid_from_target

GT = (500000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)


def test_a_smooth_gradient_is_removed_on_the_real_scene(tmp_path):
    scene = read_scene(shared_data("worldview", "Worldview_2016-09-30.tif"))
    (a, gt_a), (b, gt_b) = cut_windows(scene, ((0, 0), (0, 150)), 300)
    yy, xx = np.mgrid[0:300, 0:300]
    gradient = 0.75 + 0.5 * (xx + 0.5 * yy) / 450.0  # x 0.75 .. 1.25, smooth
    paths = [write(tmp_path / "a.tif", a, gt_a, scene[2]),
             write(tmp_path / "b.tif", distort(b, [1] * 8, [0] * 8, field=gradient), gt_b,
                   scene[2])]
    inputs = [read(p) for p in paths]
    result = local_block_adjustment(paths, tmp_path / "out", blocks=400, threads=2)
    outputs = [read(p) for p in result.outputs]
    before = overlap_difference(inputs[0], gt_a, inputs[1], gt_b, WORLDVIEW_NODATA)
    after = overlap_difference(outputs[0], gt_a, outputs[1], gt_b, WORLDVIEW_NODATA)
    assert after <= 0.2 * before, (before, after)
    valid = inputs[0] != WORLDVIEW_NODATA
    change = np.abs(outputs[0] - inputs[0])[valid] / np.maximum(inputs[0][valid], 1)
    assert change.mean() < 0.05  # the undistorted image changes little
    for source, output in zip(inputs, outputs, strict=True):
        assert np.array_equal(source == WORLDVIEW_NODATA, output == WORLDVIEW_NODATA)


def synthetic(tmp_path, name, array, row0=0, col0=0, nodata=-9999, dtype=np.int16, wkt=None,
              geotransform=GT):
    return write(tmp_path / f"{name}.tif", array, shifted(geotransform, row0, col0),
                 wkt or utm_wkt(), nodata=nodata, dtype=dtype)


def textured(rows, cols, bands=2, seed=0, low=100, high=3000):
    rng = np.random.default_rng(seed)
    base = rng.integers(low, high, (bands, rows, cols)).astype(np.float64)
    yy, xx = np.mgrid[0:rows, 0:cols]
    return np.round(base * (1 + 0.3 * np.sin(xx / 17.0) * np.cos(yy / 13.0)))


def numpy_block_sums(image, geotransform, bounds, rows, cols, used):
    """Sums and counts (bands, rows, cols) of the pixels ``used`` by block of their centre."""
    x, y = pixel_centres(geotransform, image.shape[1], image.shape[2])
    minx, miny, maxx, maxy = bounds
    block_r = np.clip(np.floor((maxy - y) / (maxy - miny) * rows), 0, rows - 1).astype(int)
    block_c = np.clip(np.floor((x - minx) / (maxx - minx) * cols), 0, cols - 1).astype(int)
    sums = np.zeros((image.shape[0], rows, cols))
    counts = np.zeros((image.shape[0], rows, cols))
    for band in range(image.shape[0]):
        keep = used[band]
        np.add.at(sums[band], (block_r[keep], block_c[keep]), image[band][keep])
        np.add.at(counts[band], (block_r[keep], block_c[keep]), 1)
    return sums, counts


@pytest.mark.parametrize("with_mask", [False, True])
def test_block_means_and_maps_match_numpy(tmp_path, with_mask):
    world = textured(70, 110, seed=5)
    a, b = world[:, :60, :70].copy(), world[:, 10:, 40:].copy()
    a[0, :25, :22] = -9999  # blocks of band 1 left with only a few valid pixels
    a[0, 15, 12:15] = 777  # block (1, 1): 3 valid pixels
    b[1, 30:, 50:] = -9999
    paths = [synthetic(tmp_path, "a", a), synthetic(tmp_path, "b", b, row0=10, col0=40)]
    bounds = (GT[0], GT[3] - 700.0, GT[0] + 1100.0, GT[3])
    triangle = (f"POLYGON(({GT[0] + 33.3} {GT[3] - 21.7}, {GT[0] + 1020.9} {GT[3] - 90.1}, "
                f"{GT[0] + 410.4} {GT[3] - 680.3}, {GT[0] + 33.3} {GT[3] - 21.7}))")
    options = {}
    if with_mask:
        options = dict(vector_mask=write_polygons(tmp_path / "m.gpkg", [(triangle, "x")],
                                                  utm_wkt()), mask_mode="exclude")
    threshold = 0.2  # a 10 x 10-pixel block needs 20 valid pixels
    result = local_block_adjustment(paths, tmp_path / "out", block_rows=7, block_cols=11,
                                    valid_threshold=threshold, save_block_maps=tmp_path / "maps",
                                    **options)
    assert (result.grid.rows, result.grid.cols) == (7, 11)
    assert result.grid.bounds == pytest.approx(bounds)
    locals_ = []
    for name, image, gt in (("a", a, GT), ("b", b, shifted(GT, 10, 40))):
        used = image != -9999
        if with_mask:
            x, y = pixel_centres(gt, image.shape[1], image.shape[2])
            used &= ~shapely.contains_xy(shapely.from_wkt(triangle), x, y)[None]
        sums, counts = numpy_block_sums(image, gt, bounds, 7, 11, used)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(counts >= max(threshold * 100, 1e-12), sums / counts, np.nan)
        np.testing.assert_allclose(result.local_maps[name], expected, rtol=1e-12)
        if name == "a":  # the threshold empties blocks that do have valid pixels
            assert ((counts > 0) & (counts < threshold * 100)).any()
        locals_.append(expected)
        saved = gdal.Open(str(tmp_path / "maps" / f"{name}_local_block_map.tif"))
        np.testing.assert_allclose(saved.ReadAsArray(), expected.astype(np.float32))
    stack = np.stack(locals_)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected_reference = np.nanmean(stack, axis=0)
    np.testing.assert_allclose(result.reference_map, expected_reference, rtol=1e-12)
    reference = gdal.Open(str(tmp_path / "maps" / "reference_block_map.tif"))
    assert (reference.RasterXSize, reference.RasterYSize, reference.RasterCount) == (11, 7, 2)
    assert reference.GetGeoTransform() == pytest.approx((bounds[0], 1100.0 / 11, 0.0, bounds[3],
                                                         0.0, -700.0 / 7))
    band = reference.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Float32 and np.isnan(band.GetNoDataValue())


def test_interpolation_between_block_centres_against_a_hand_case(tmp_path):
    """A constant image (100) and a hand-made 2 x 3 reference map over its extent:
    with the linear method each output pixel is the reference interpolated at
    the pixel's centre, empty blocks weighted out."""
    image = synthetic(tmp_path, "flat", np.full((1, 4, 6), 100.0), nodata=-1,
                      dtype=np.float32)
    reference = np.array([[[100.0, 200.0, np.nan], [300.0, 400.0, 500.0]]], np.float32)
    path = str(tmp_path / "reference.tif")
    dataset = gdal.GetDriverByName("GTiff").Create(path, 3, 2, 1, gdal.GDT_Float32)
    dataset.SetGeoTransform((GT[0], 20.0, 0.0, GT[3], 0.0, -20.0))
    dataset.SetProjection(utm_wkt())
    dataset.GetRasterBand(1).SetNoDataValue(float("nan"))
    dataset.GetRasterBand(1).WriteArray(reference[0])
    dataset = None
    result = local_block_adjustment([image], tmp_path / "out", method="linear",
                                    load_reference_map=path)
    out = read(result.outputs[0])[0]
    # pixel (row, col): fractional block index clip((r + 0.5) / 2 - 0.5), clip((c + 0.5) / 2 - 0.5)
    assert out[0, 0] == pytest.approx(100.0)
    assert out[1, 1] == pytest.approx(0.5625 * 100 + 0.1875 * 200 + 0.1875 * 300 + 0.0625 * 400)
    assert out[0, 4] == pytest.approx(200.0)  # the NaN block beside it is weighted out
    assert out[1, 4] == pytest.approx((0.1875 * 200 + 0.0625 * 400 + 0.1875 * 500) / 0.4375)
    assert out[3, 5] == pytest.approx(500.0)
    assert out[0, 5] == pytest.approx(100.0)  # only the empty block: the pixel is kept
    # (2, 2): row fraction 0.75, column fraction 0.75
    assert out[2, 2] == pytest.approx(0.0625 * 100 + 0.1875 * 200 + 0.1875 * 300 + 0.5625 * 400)


def test_block_count_formula():
    landsat = (0.0, 0.0, 384 * 30.0, 239 * 30.0)
    assert grid_from_target(landsat, 5, 100) == (18, 27)
    assert grid_from_target((0, 0, 1000, 1000), 2, 50) == (10, 10)
    assert grid_from_target((0, 0, 100, 4000), 1, 10) == (10, 1)
    rows, cols = grid_from_target((0, 0, 3000, 1000), 3, 7)
    assert rows * cols <= 21 and cols > rows


def test_landsat_series_gets_the_documented_18_by_27_grid(tmp_path):
    folder = shared_data("landsat")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
    result = local_block_adjustment(paths, tmp_path / "out", threads=2)
    assert (result.grid.rows, result.grid.cols) == (18, 27)
    for path, output in zip(paths, result.outputs, strict=True):
        source, corrected = read(path), read(output)
        assert np.array_equal(source == 0, corrected == 0)  # band 1's zeros stay nodata
        assert np.isfinite(corrected).all()


def interpolate(block_map, grid_bounds, rows, cols, geotransform, shape):
    """Independent numpy version of the documented interpolation at pixel centres."""
    x, y = pixel_centres(geotransform, *shape)
    minx, miny, maxx, maxy = grid_bounds
    fr = np.clip((maxy - y) / (maxy - miny) * rows - 0.5, 0, rows - 1)
    fc = np.clip((x - minx) / (maxx - minx) * cols - 0.5, 0, cols - 1)
    r0, c0 = np.floor(fr).astype(int), np.floor(fc).astype(int)
    r1, c1 = np.minimum(r0 + 1, rows - 1), np.minimum(c0 + 1, cols - 1)
    dr, dc = fr - r0, fc - c0
    num = np.zeros(shape)
    den = np.zeros(shape)
    for rr, cc, w in ((r0, c0, (1 - dr) * (1 - dc)), (r0, c1, (1 - dr) * dc),
                      (r1, c0, dr * (1 - dc)), (r1, c1, dr * dc)):
        v = block_map[rr, cc]
        ok = ~np.isnan(v) & (w > 0)
        num += np.where(ok, w * np.nan_to_num(v), 0)
        den += np.where(ok, w, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def negative_pair(tmp_path):
    world = textured(80, 120, seed=8, low=0, high=900) - 300  # values <= 0 occur
    a, b = world[:, :, :80], world[:, :, 40:] * 0.8 + 40
    return [synthetic(tmp_path, "neg_a", a), synthetic(tmp_path, "neg_b", b, col0=40)], (a, b)


def test_values_at_or_below_zero_use_one_offset_per_image_and_band(tmp_path):
    paths, _ = negative_pair(tmp_path)
    result = local_block_adjustment(paths, tmp_path / "out", blocks=20, alpha=1.1,
                                    output_dtype="float32")
    for path, output, name in zip(paths, result.outputs, result.names, strict=True):
        image, corrected = read(path), read(output)
        gt = gdal.Open(path).GetGeoTransform()
        grid = result.grid
        valid = image != -9999
        assert np.isfinite(corrected).all()
        for band in range(2):
            local = result.local_maps[name][band]
            ref = result.reference_map[band]
            lowest = min(image[band][valid[band]].min(), np.nanmin(local), np.nanmin(ref))
            assert lowest <= 0
            offset = 1 - lowest
            assert result.offsets[name][band] == offset
            m_ref = interpolate(ref, grid.bounds, grid.rows, grid.cols, gt, image.shape[1:])
            m_loc = interpolate(local, grid.bounds, grid.rows, grid.cols, gt, image.shape[1:])
            gamma = np.log(m_ref + offset) / np.log(m_loc + offset)
            expected = 1.1 * (image[band] + offset) ** gamma - offset
            keep = valid[band] & np.isfinite(expected)
            np.testing.assert_allclose(corrected[band][keep], expected[keep], rtol=2e-6,
                                       atol=2e-3)


def test_results_do_not_depend_on_the_window_size(tmp_path):
    paths, _ = negative_pair(tmp_path)
    runs = [local_block_adjustment(paths, tmp_path / f"out_{size}_{threads}", blocks=30,
                                   window_size=size, threads=threads)
            for size, threads in ((16, 1), (64, 2), (None, 3))]
    assert any(o > 0 for offsets in runs[0].offsets.values() for o in offsets)
    for other in runs[1:]:
        assert other.offsets == runs[0].offsets
        for first, second in zip(runs[0].outputs, other.outputs, strict=True):
            np.testing.assert_array_equal(read(first), read(second))


def test_block_maps_round_trip_and_a_new_image_is_brought_to_the_reference(tmp_path):
    paths, (a, _) = negative_pair(tmp_path)
    saved = local_block_adjustment(paths, tmp_path / "first", blocks=25,
                                   save_block_maps=tmp_path / "maps")
    reference = str(tmp_path / "maps" / "reference_block_map.tif")
    loaded = local_block_adjustment(paths, tmp_path / "second", load_reference_map=reference)
    assert (loaded.grid.rows, loaded.grid.cols) == (saved.grid.rows, saved.grid.cols)
    for first, second in zip(saved.outputs, loaded.outputs, strict=True):
        np.testing.assert_array_equal(read(first), read(second))
    twin = synthetic(tmp_path, "twin_of_a", a)  # a new image, same pixels as neg_a
    alone = local_block_adjustment([twin], tmp_path / "alone", load_reference_map=reference)
    np.testing.assert_array_equal(read(alone.outputs[0]), read(saved.outputs[0]))


def test_grid_from_the_coefficient_of_variation(tmp_path):
    paths, (a, b) = negative_pair(tmp_path)
    values = np.concatenate([a[0][a[0] != -9999], np.round(b[0][b[0] != -9999])])
    variation = values.std() / abs(values.mean())
    expected = max(1, round(10 * variation / (45 / 125)))
    result = local_block_adjustment(paths, tmp_path / "out", blocks_from_variation=True)
    assert (result.grid.rows, result.grid.cols) == (expected, expected)
    assert expected != 10  # spectralmatch always gave 10 x 10


def test_every_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    paths, _ = negative_pair(tmp_path)
    local_block_adjustment(paths, tmp_path / "ok", blocks=10, save_block_maps=tmp_path / "maps")
    reference = str(tmp_path / "maps" / "reference_block_map.tif")
    far = synthetic(tmp_path, "far", textured(20, 20), row0=5000)
    other_crs = synthetic(tmp_path, "other_crs", textured(20, 20), wkt=utm_wkt(32634))
    three = synthetic(tmp_path, "three", textured(20, 20, bands=3))
    other_nodata = synthetic(tmp_path, "other_nodata", textured(20, 20), nodata=5)
    (tmp_path / "broken.tif").write_text("not a raster")
    three_band_map = str(tmp_path / "three_map.tif")
    write(three_band_map, np.ones((3, 2, 2)), GT, utm_wkt(), nodata=None, dtype=np.float32)
    other_crs_map = str(tmp_path / "crs_map.tif")
    write(other_crs_map, np.ones((2, 20, 20)), GT, utm_wkt(32634), nodata=None,
          dtype=np.float32)
    out = tmp_path / "out"
    cases = [
        ("At least 2", lambda: local_block_adjustment(paths[:1], out)),
        ("overlap", lambda: local_block_adjustment([paths[0], far], out)),
        ("coordinate reference systems", lambda: local_block_adjustment([paths[0], other_crs],
                                                                        out)),
        ("band(s)", lambda: local_block_adjustment([paths[0], three], out)),
        ("different nodata values", lambda: local_block_adjustment([paths[0], other_nodata],
                                                                   out)),
        ("Cannot open raster", lambda: local_block_adjustment(
            [paths[0], tmp_path / "broken.tif"], out)),
        ("would destroy an input", lambda: local_block_adjustment(
            [paths[0], synthetic(tmp_path, "neg_a_Local", textured(80, 80))], tmp_path)),
        ("both block rows and block columns", lambda: local_block_adjustment(
            paths, out, block_rows=3)),
        ("at least 1 row", lambda: local_block_adjustment(paths, out, block_rows=0,
                                                          block_cols=4)),
        ("at least 1", lambda: local_block_adjustment(paths, out, blocks=0)),
        ("Alpha", lambda: local_block_adjustment(paths, out, alpha=0)),
        ("threshold", lambda: local_block_adjustment(paths, out, valid_threshold=1.5)),
        ("Unknown correction method", lambda: local_block_adjustment(paths, out,
                                                                     method="cubic")),
        ("does not cover", lambda: local_block_adjustment([far], out,
                                                          load_reference_map=reference)),
        ("band(s)", lambda: local_block_adjustment(paths, out,
                                                   load_reference_map=three_band_map)),
        ("coordinate reference systems", lambda: local_block_adjustment(
            paths, out, load_reference_map=other_crs_map)),
        ("not found", lambda: local_block_adjustment(paths, out,
                                                     load_reference_map=tmp_path / "no.tif")),
    ]
    for expected, call in cases:
        with pytest.raises(TesseraError) as caught:
            call()
        assert expected in str(caught.value), (expected, str(caught.value))
        assert not out.exists() or not [f for f in os.listdir(out) if f.endswith(".tif")], \
            expected


def test_algorithm_through_processing_after_global_regression(run_algorithm, tmp_path):
    paths, _ = negative_pair(tmp_path)
    first = run_algorithm("globalregression", {"INPUTS": paths,
                                               "OUTPUT_FOLDER": str(tmp_path / "global")})
    results = run_algorithm("localblockadjustment", {
        "INPUTS": first["OUTPUTS"], "OUTPUT_FOLDER": str(tmp_path / "local"), "BLOCKS": 30,
        "METHOD": "gamma", "SAVE_BLOCK_MAPS": str(tmp_path / "maps"),
        "PROFILE_PLOT": str(tmp_path / "local.png")})
    assert sorted(os.path.basename(p) for p in results["OUTPUTS"]) == [
        "neg_a_Global_Local.tif", "neg_b_Global_Local.tif"]
    assert len(results["BLOCK_MAPS"]) == 3 and os.path.exists(results["PROFILE_PLOT"])
    assert results["GRID_ROWS"] * results["GRID_COLS"] <= 60


def test_algorithm_through_qgis_process(qgis_process, tmp_path):
    paths, _ = negative_pair(tmp_path)
    code, result, output = qgis_process(
        "run", "tessera:localblockadjustment", "--", *[f"INPUTS={p}" for p in paths],
        f"OUTPUT_FOLDER={tmp_path / 'out'}", "BLOCK_ROWS=4", "BLOCK_COLS=6", "METHOD=linear",
        "COG=true")
    assert code == 0, output
    assert (result["results"]["GRID_ROWS"], result["results"]["GRID_COLS"]) == (4, 6)
    for path in result["results"]["OUTPUTS"]:
        assert gdal.Open(path).GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    code, _, output = qgis_process("run", "tessera:localblockadjustment", "--",
                                   *[f"INPUTS={p}" for p in paths],
                                   f"OUTPUT_FOLDER={tmp_path / 'out2'}", "BLOCK_ROWS=3")
    assert code != 0 and "both block rows and block columns" in output
    assert "Traceback" not in output


def test_cancel_leaves_no_output(tmp_path):
    from tessera.engine import CancelledError

    paths, _ = negative_pair(tmp_path)
    messages = []
    with pytest.raises(CancelledError):
        local_block_adjustment(paths, tmp_path / "out", blocks=10, window_size=8, threads=2,
                               progress=lambda f, m: messages.append(m),
                               cancelled=lambda: "Applying the local correction" in messages)
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tif")]


@pytest.mark.parametrize("dtype, nodata, bound", [
    (np.uint16, 0, None), (np.int16, -9999, None), (np.uint8, 0, None),
    (np.uint16, 0, 0.3), (np.int16, -9999, 0.3)])
def test_vectorized_gamma_stores_what_the_c_library_path_stores(dtype, nodata, bound):
    """The vectorized gamma path (numpy's log and power, values near a rounding edge
    recomputed with the C library) stores the same pixels and sums as the exact kernel;
    a bound of 0.3 sends most values through its C library fallback."""
    from tessera.engine.normalization import kernels
    from tessera.engine.normalization.corrected_output import output_range

    rng = np.random.default_rng(23)
    info = np.iinfo(dtype)
    bands, rows, cols = 3, 60, 500
    tile = rng.integers(max(info.min, -500), min(info.max, 6000), (bands, rows, cols))
    tile = tile.astype(dtype)
    tile[:, :5, :40] = nodata
    reference = rng.uniform(0.5, 4000.0, (bands, 7, 9))
    reference[0, :, 3:5] = np.nan  # no block with a value: zero weights, mean undefined
    local = reference * rng.uniform(0.8, 1.25, reference.shape)
    local[1, 4, 4] = np.nan
    local[2, 1, 1] = 1.0  # ln(1) = 0
    local[0, 5, 5] = 1.0001  # ln near 0: huge exponents, powers overflowing to inf
    row_frac = np.linspace(0, 6, rows)
    col_frac = np.linspace(0, 8, cols)
    row0, col0 = np.floor(row_frac).astype(np.int64), np.floor(col_frac).astype(np.int64)
    row1, col1 = np.minimum(row0 + 1, 6), np.minimum(col0 + 1, 8)
    store = output_range(dtype, nodata).store
    stored = []
    for fast in (False, True):
        out, totals = np.empty(tile.shape, dtype), np.zeros((4, bands))
        arguments = (tile, float(nodata), True, reference, local, row0, row1, row_frac - row0,
                     col0, col1, col_frac - col0, True, 1.3, np.array([0.0, 1.0, 501.0]),
                     out, store, *totals)
        if not fast:
            kernels.exact_local_correction(*arguments)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy says nothing of the overflows
                kernels.local_correction(*arguments, bound=bound or kernels.GAMMA_BOUND)
        stored.append((out, totals))
    assert np.array_equal(stored[0][0], stored[1][0])
    assert np.array_equal(stored[0][1], stored[1][1])
