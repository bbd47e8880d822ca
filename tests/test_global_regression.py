"""Global regression: known answers on the real WorldView scene, the least-squares
system against hand-built cases, statistics against numpy, save/load, masks,
nodata and clamping, COG, every bad input of the contract, and the algorithm
through Processing and qgis_process."""

import json
import os

import numpy as np
import pytest
import shapely
from conftest import shared_data
from normalization_scenes import (
    WORLDVIEW_NODATA,
    cut_windows,
    distort,
    pixel_centres,
    population_stats,
    read,
    read_scene,
    shifted,
    utm_wkt,
    write,
    write_polygons,
)
from osgeo import gdal

from tessera.engine import CancelledError, TesseraError, global_regression
from tessera.engine.normalization.overlap_statistics import Moments
from tessera.engine.normalization.regression_model import build_system, solve_global_model

GT = (500000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)
GAINS_1 = (1.1, 0.9, 1.2, 1.05, 0.95, 1.15, 0.85, 1.0)
OFFSETS_1 = (20, -10, 5, 0, 30, -20, 15, 10)
GAINS_2 = (0.9, 1.08, 0.8, 1.0, 1.1, 0.92, 1.2, 0.95)
OFFSETS_2 = (-15, 12, 40, -25, 0, 8, -30, 22)


def worldview_case(tmp_path, corners=((0, 0), (0, 190), (190, 95)), size=260):
    """Three overlapping windows of the real scene; the last two distorted and
    stored as float32 (no quantization), the first untouched (int16)."""
    scene = read_scene(shared_data("worldview", "Worldview_2016-09-30.tif"))
    windows = cut_windows(scene, corners, size)
    wkt = scene[2]
    paths = [write(tmp_path / "wv_a.tif", windows[0][0], windows[0][1], wkt)]
    for name, (array, gt), gains, offsets in (("wv_b", windows[1], GAINS_1, OFFSETS_1),
                                              ("wv_c", windows[2], GAINS_2, OFFSETS_2)):
        paths.append(write(tmp_path / f"{name}.tif", distort(array, gains, offsets), gt, wkt,
                           dtype=np.float32))
    return paths, windows


def test_known_distortion_is_recovered_with_one_model_image(tmp_path):
    paths, windows = worldview_case(tmp_path)
    result = global_regression(paths, tmp_path / "out", model_images=["wv_a"],
                               output_dtype="int16", threads=2)
    assert result.model_images == ["wv_a"]
    for name, gains, offsets in (("wv_b", GAINS_1, OFFSETS_1), ("wv_c", GAINS_2, OFFSETS_2)):
        for band, (gain, offset) in enumerate(zip(gains, offsets, strict=True)):
            got = result.adjustments[name][band]
            assert got["scale"] == pytest.approx(1 / gain, rel=1e-3)
            expected_offset = -offset / gain
            assert abs(got["offset"] - expected_offset) <= 1e-3 * max(abs(expected_offset), 1.0)
    for band in range(8):
        assert result.adjustments["wv_a"][band] == pytest.approx({"scale": 1.0, "offset": 0.0},
                                                                 abs=1e-9)
    for path, (original, _) in zip(result.outputs, windows, strict=True):
        corrected = read(path)
        valid = original != WORLDVIEW_NODATA
        assert np.all(corrected[~valid] == WORLDVIEW_NODATA)
        assert np.abs(corrected[valid] - original[valid]).max() <= 1
        assert gdal.Open(path).GetRasterBand(1).DataType == gdal.GDT_Int16


def test_second_image_is_read_on_the_first_grid_when_grids_differ(tmp_path):
    """The second image has pixels half the size (each original pixel split in
    2 x 2): on the first image's grid its bilinear values are the originals."""
    scene = read_scene(shared_data("worldview", "Worldview_2016-09-30.tif"))
    (a, gt_a), (b, gt_b) = cut_windows(scene, ((0, 0), (100, 120)), 200)
    fine = np.repeat(np.repeat(distort(b, GAINS_1, OFFSETS_1), 2, axis=1), 2, axis=2)
    fine_gt = (gt_b[0], gt_b[1] / 2, 0.0, gt_b[3], 0.0, gt_b[5] / 2)
    paths = [write(tmp_path / "a_coarse.tif", a, gt_a, scene[2]),
             write(tmp_path / "b_fine.tif", fine, fine_gt, scene[2], dtype=np.float32)]
    result = global_regression(paths, tmp_path / "out", model_images=["a_coarse"], threads=2)
    stats_a, stats_b = result.overlap_stats[("a_coarse", "b_fine")]
    first = a[:, 100:, 120:]
    second = distort(b[:, :100, :80], GAINS_1, OFFSETS_1)
    for band in range(8):
        valid = (first[band] != WORLDVIEW_NODATA) & (second[band] != WORLDVIEW_NODATA)
        mean, std, size = population_stats(second[band][valid])
        assert stats_b.counts[band] == size
        assert stats_b.means[band] == pytest.approx(mean, rel=1e-6)
        assert stats_b.stds[band] == pytest.approx(std, rel=1e-6)
        assert result.adjustments["b_fine"][band]["scale"] == pytest.approx(1 / GAINS_1[band],
                                                                            rel=1e-3)
    assert stats_a.counts[0] == stats_b.counts[0]


def synthetic(tmp_path, name, array, row0=0, col0=0, nodata=0, dtype=np.uint16, wkt=None):
    return write(tmp_path / f"{name}.tif", array, shifted(GT, row0, col0), wkt or utm_wkt(),
                 nodata=nodata, dtype=dtype)


def textured(rows, cols, bands=2, seed=0, low=100, high=3000):
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, (bands, rows, cols)).astype(np.float64)


def test_statistics_are_exact_with_per_band_validity(tmp_path):
    world = textured(90, 120, bands=3, seed=4)
    a, b = world[:, :, :80].copy(), world[:, :, 40:].copy()
    a[0, :10, :] = 0  # nodata in band 1 only
    b[2, 50:, :] = 0  # nodata in band 3 only
    b[1] = np.round(b[1] * 1.3 + 50)
    paths = [synthetic(tmp_path, "a", a), synthetic(tmp_path, "b", b, col0=40)]
    result = global_regression(paths, tmp_path / "out", threads=3, window_size=32)
    overlap_a, overlap_b = a[:, :, 40:], b[:, :, :40]
    stats_a, stats_b = result.overlap_stats[("a", "b")]
    for band in range(3):
        valid = (overlap_a[band] != 0) & (overlap_b[band] != 0)
        for stats, values in ((stats_a, overlap_a[band][valid]), (stats_b, overlap_b[band][valid])):
            mean, std, size = population_stats(values)
            assert stats.counts[band] == size
            assert stats.means[band] == pytest.approx(mean, rel=1e-12)
            assert stats.stds[band] == pytest.approx(std, rel=1e-12)
        for name, image in (("a", a), ("b", b)):
            mean, std, size = population_stats(image[band][image[band] != 0])
            whole = result.whole_stats[name]
            assert (whole.counts[band], whole.means[band]) == (size, pytest.approx(mean))
            assert whole.stds[band] == pytest.approx(std, rel=1e-12)


def moments(means, stds, sizes):
    return Moments.from_values(means, stds, sizes)


def test_least_squares_system_against_a_hand_built_case():
    names = ["a", "b", "c"]
    whole = {"a": moments([100.0], [20.0], [1000]), "b": moments([120.0], [25.0], [900]),
             "c": moments([90.0], [15.0], [800])}
    overlaps = {("a", "b"): (moments([101.0], [19.0], [300]), moments([125.0], [24.0], [300])),
                ("b", "c"): (moments([118.0], [26.0], [200]), moments([95.0], [16.0], [200])),
                ("a", "c"): (moments([99.0], [21.0], [100]), moments([88.0], [14.0], [100]))}
    model = ["a", "b"]  # c is matched to them without anchoring
    for weighted in (True, False):
        w_ab, w_bc, w_ac = (300.0, 200.0, 100.0) if weighted else (1.0, 1.0, 1.0)
        p = (w_ab + w_bc + w_ac) / (2 * 3)
        f_mean, f_std = 1.5, 0.5
        hand = np.array([
            [w_ab * f_mean * 101, w_ab * f_mean, -w_ab * f_mean * 125, -w_ab * f_mean, 0, 0],
            [w_ab * f_std * 19, 0, -w_ab * f_std * 24, 0, 0, 0],
            [0, 0, w_bc * f_mean * 118, w_bc * f_mean, -w_bc * f_mean * 95, -w_bc * f_mean],
            [0, 0, w_bc * f_std * 26, 0, -w_bc * f_std * 16, 0],
            [w_ac * f_mean * 99, w_ac * f_mean, 0, 0, -w_ac * f_mean * 88, -w_ac * f_mean],
            [w_ac * f_std * 21, 0, 0, 0, -w_ac * f_std * 14, 0],
            [p * 100, p, 0, 0, 0, 0],
            [p * 20, 0, 0, 0, 0, 0],
            [0, 0, p * 120, p, 0, 0],
            [0, 0, p * 25, 0, 0, 0],
        ])
        target = np.array([0, 0, 0, 0, 0, 0, p * 100, p * 20, p * 120, p * 25])
        matrix, rhs = build_system(names, model, whole, overlaps, 0, f_mean, f_std, weighted)
        order = np.lexsort(np.column_stack([matrix, rhs]).T)
        hand_order = np.lexsort(np.column_stack([hand, target]).T)
        np.testing.assert_allclose(matrix[order], hand[hand_order], rtol=1e-12)
        np.testing.assert_allclose(rhs[order], target[hand_order], rtol=1e-12)
        expected = np.linalg.lstsq(hand, target, rcond=None)[0]
        model_solution = solve_global_model(names, model, whole, overlaps, 1, f_mean, f_std,
                                            weighted)
        np.testing.assert_allclose(model_solution.scales[:, 0], expected[0::2], rtol=1e-9)
        np.testing.assert_allclose(model_solution.offsets[:, 0], expected[1::2], rtol=1e-9,
                                   atol=1e-9)
        assert model_solution.unconstrained == []


def test_single_model_image_gives_the_closed_form_and_isolated_images_stay():
    whole = {"a": moments([100.0], [20.0], [1000]), "b": moments([130.0], [30.0], [900]),
             "c": moments([50.0], [5.0], [100]), "d": moments([60.0], [6.0], [100])}
    overlaps = {("a", "b"): (moments([104.0], [22.0], [400]), moments([140.0], [33.0], [400])),
                ("c", "d"): (moments([52.0], [5.5], [50]), moments([61.0], [6.5], [50]))}
    solution = solve_global_model(["a", "b", "c", "d"], ["a"], whole, overlaps, 1)
    scale_b = 22.0 / 33.0
    assert solution.adjustment("a", 0) == pytest.approx({"scale": 1.0, "offset": 0.0}, abs=1e-9)
    assert solution.adjustment("b", 0) == pytest.approx(
        {"scale": scale_b, "offset": 104.0 - scale_b * 140.0}, rel=1e-9)
    # c and d overlap each other but no model image: kept unchanged, and reported
    assert solution.adjustment("c", 0) == {"scale": 1.0, "offset": 0.0}
    assert solution.adjustment("d", 0) == {"scale": 1.0, "offset": 0.0}
    assert solution.unconstrained == ["c", "d"]


def three_synthetic(tmp_path, names=("s1", "s2", "s3")):
    world = textured(100, 160, bands=2, seed=9)
    specs = [(0, 0, (1.0, 1.0), (0, 0)), (0, 50, (1.2, 0.8), (40, -20)),
             (30, 100, (0.9, 1.1), (-30, 60))]
    paths = []
    for name, (r0, c0, gains, offsets) in zip(names, specs, strict=True):
        array = distort(world[:, r0:r0 + 70, c0:c0 + 60], gains, offsets, nodata=0)
        paths.append(synthetic(tmp_path, name, array, r0, c0))
    return paths


def test_save_then_load_gives_identical_outputs(tmp_path):
    paths = three_synthetic(tmp_path)
    saved = global_regression(paths, tmp_path / "first", save_adjustments=tmp_path / "adj.json")
    document = json.loads((tmp_path / "adj.json").read_text())
    assert sorted(document) == ["s1", "s2", "s3"]
    assert set(document["s2"]) == {"adjustments", "whole_stats", "overlap_stats", "fingerprint"}
    assert set(document["s2"]["adjustments"]["band_1"]) == {"scale", "offset"}
    assert set(document["s2"]["whole_stats"]["band_0"]) == {"mean", "std", "size"}
    assert sorted(document["s2"]["overlap_stats"]) == ["s1", "s3"]
    assert document["s1"]["overlap_stats"]["s2"]["band_0"]["size"] == saved.overlap_stats[
        ("s1", "s2")][0].counts[0]
    loaded = global_regression(paths, tmp_path / "second", load_adjustments=tmp_path / "adj.json")
    assert loaded.loaded == ["s1", "s2", "s3"]
    assert loaded.adjustments == saved.adjustments
    for first, second in zip(saved.outputs, loaded.outputs, strict=True):
        np.testing.assert_array_equal(read(first), read(second))


def test_a_new_image_joins_with_the_loaded_statistics(tmp_path):
    paths = three_synthetic(tmp_path)
    global_regression(paths[:2], tmp_path / "two", save_adjustments=tmp_path / "two.json")
    fresh = global_regression(paths, tmp_path / "fresh")
    joined = global_regression(paths, tmp_path / "joined", load_adjustments=tmp_path / "two.json")
    assert joined.loaded == ["s1", "s2"]
    for name in ("s1", "s2", "s3"):
        for got, want in zip(joined.adjustments[name], fresh.adjustments[name], strict=True):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    # the loaded statistics are really used: change one and the solution follows
    document = json.loads((tmp_path / "two.json").read_text())
    document["s1"]["whole_stats"]["band_0"]["mean"] += 100.0
    (tmp_path / "edited.json").write_text(json.dumps(document))
    edited = global_regression(paths, tmp_path / "edited",
                               load_adjustments=tmp_path / "edited.json")
    assert edited.adjustments["s1"][0]["offset"] != pytest.approx(
        fresh.adjustments["s1"][0]["offset"], abs=1.0)
    assert edited.adjustments["s1"][1] == pytest.approx(fresh.adjustments["s1"][1], rel=1e-9)


@pytest.mark.parametrize("mode", ["include", "exclude"])
def test_vector_mask_limits_the_statistics(tmp_path, mode):
    world = textured(80, 120, bands=2, seed=11)
    a, b = world[:, :, :80], np.round(world[:, :, 40:] * 1.1 + 5)
    paths = [synthetic(tmp_path, "img_a", a), synthetic(tmp_path, "img_b", b, col0=40)]
    x0, y0 = GT[0], GT[3]
    # vertices off the pixel-centre lattice, so no centre lies on an edge
    triangle_a = f"POLYGON(({x0 + 13.3} {y0 - 17.1}, {x0 + 760.7} {y0 - 40.3}, " \
                 f"{x0 + 300.9} {y0 - 700.6}, {x0 + 13.3} {y0 - 17.1}))"
    triangle_b = f"POLYGON(({x0 + 420.2} {y0 - 5.7}, {x0 + 1150.4} {y0 - 300.3}, " \
                 f"{x0 + 500.1} {y0 - 790.9}, {x0 + 420.2} {y0 - 5.7}))"
    mask = write_polygons(tmp_path / "mask.gpkg", [(triangle_a, "zone of img_a"),
                                                   (triangle_b, "img_b zone")], utm_wkt())
    result = global_regression(paths, tmp_path / "out", vector_mask=mask, mask_mode=mode,
                               mask_field="image")
    for name, image, col0, polygon in (("img_a", a, 0, triangle_a), ("img_b", b, 40, triangle_b)):
        x, y = pixel_centres(shifted(GT, 0, col0), image.shape[1], image.shape[2])
        inside = shapely.contains_xy(shapely.from_wkt(polygon), x, y)
        used = inside if mode == "include" else ~inside
        mean, std, size = population_stats(image[0][used])
        whole = result.whole_stats[name]
        assert whole.counts[0] == size
        assert whole.means[0] == pytest.approx(mean, rel=1e-12)
        assert whole.stds[0] == pytest.approx(std, rel=1e-12)
    # overlap pixels: inside (or outside) both images' own polygons
    x, y = pixel_centres(shifted(GT, 0, 40), 80, 40)
    in_a = shapely.contains_xy(shapely.from_wkt(triangle_a), x, y)
    in_b = shapely.contains_xy(shapely.from_wkt(triangle_b), x, y)
    used = (in_a & in_b) if mode == "include" else (~in_a & ~in_b)
    stats_a, stats_b = result.overlap_stats[("img_a", "img_b")]
    assert stats_a.counts[1] == used.sum()
    assert stats_b.means[1] == pytest.approx(b[1, :, :40][used].mean(), rel=1e-12)
    # the correction still applies to every pixel
    scale = result.adjustments["img_b"][0]["scale"]
    offset = result.adjustments["img_b"][0]["offset"]
    np.testing.assert_array_equal(read(result.outputs[1])[0],
                                  np.clip(np.rint(b[0] * scale + offset), 1, 65535))


def test_nodata_is_kept_and_results_are_clamped_not_wrapped(tmp_path):
    world = textured(60, 100, bands=1, seed=3, low=300, high=2000)
    a = world[:, :, :60].copy()
    b = world[:, :, 40:] + 250  # b's own pixels outside the overlap include low values
    b[0, :, 30:] = np.linspace(5, 400, 30)[None, :]  # become negative after -250
    b[0, 5:9, :] = 0  # nodata
    paths = [synthetic(tmp_path, "a", a), synthetic(tmp_path, "b", b, col0=40)]
    result = global_regression(paths, tmp_path / "out", model_images=["a"])
    assert result.adjustments["b"][0]["offset"] == pytest.approx(-250, abs=1e-6)
    out = read(result.outputs[1])[0]
    assert np.all(out[5:9] == 0)  # nodata stays nodata
    valid = b[0] != 0
    expected = np.clip(np.rint(b[0] - 250), 0, 65535)
    expected[expected == 0] = 1  # a valid pixel never becomes nodata
    np.testing.assert_array_equal(out[valid], expected[valid])
    assert out[valid].min() == 1 and out.max() < 2500  # clamped, not wrapped to ~65000


def test_store_output_rounds_clamps_and_steps_off_nodata():
    from tessera.engine.normalization.corrected_output import output_range
    from tessera.engine.normalization.kernels import store_output

    def store(values, valid, dtype, nodata):
        r = output_range(dtype, nodata)
        values = np.array(values, np.float64).reshape(1, 1, -1)
        flags = np.array(valid, np.uint8).reshape(1, 1, -1)
        out = np.empty(values.shape, dtype)
        sums, counts, clamped = np.zeros(1), np.zeros(1), np.zeros(1)
        store_output(values, flags, out, r.lo, r.hi, r.is_int, r.nodata, r.has_nodata,
                     r.nodata_up, r.nodata_down, sums, counts, clamped)
        return out.ravel().tolist(), counts[0], clamped[0]

    got, count, clamped = store([-5, 0.4, 0.6, 70000, 2.5, 3.5, 7], [1, 1, 1, 1, 1, 1, 0],
                                np.uint16, 0)
    assert got == [1, 1, 1, 65535, 2, 4, 0] and count == 6 and clamped == 2
    got, _, clamped = store([-9999.2, -9998.8, -40000, 40000], [1, 1, 1, 1], np.int16, -9999)
    assert got == [-10000, -9998, -32768, 32767] and clamped == 2
    got, _, clamped = store([-9999.0, 1e39, 2.25], [1, 1, 1], np.float32, -9999)
    assert clamped == 1
    assert got[0] != -9999 and got[0] == pytest.approx(-9999, abs=1e-2)
    assert got[1] == pytest.approx(np.finfo(np.float32).max) and got[2] == 2.25


@pytest.mark.parametrize("dtype, out_dtype, nodata", [
    (np.uint16, np.uint16, 0), (np.int16, np.int16, -9999), (np.uint16, np.uint8, 0),
    (np.uint8, np.int16, None)])
def test_vectorized_linear_correction_stores_what_the_exact_kernel_stores(dtype, out_dtype,
                                                                          nodata):
    """Small integers in and out take the vectorized kernel (integer sums): the same
    pixels and sums as the value-by-value kernel, with clamping, results landing on
    nodata and a NaN scale."""
    from tessera.engine.normalization import kernels
    from tessera.engine.normalization.corrected_output import output_range

    rng = np.random.default_rng(23)
    info = np.iinfo(dtype)
    tile = rng.integers(info.min, info.max, (5, 40, 300), endpoint=True).astype(dtype)
    if nodata is not None:
        tile[:, :4, :30] = nodata
    scale = np.array([1.0, 1.37, 0.5, 200.0, np.nan])
    offset = np.array([-1.0, -260.3, 0.5, 1e4, 0.0])  # band 1: value 1 lands on nodata 0
    store = output_range(out_dtype, nodata).store
    assert kernels.small_integers(tile, np.empty(1, out_dtype))
    stored = []
    for kernel in (kernels.exact_linear_correction, kernels.linear_correction):
        out, totals = np.empty(tile.shape, out_dtype), np.zeros((4, 5))
        kernel(tile, 0.0 if nodata is None else float(nodata), nodata is not None, scale,
               offset, out, store, *totals)
        stored.append((out, totals))
    assert np.array_equal(stored[0][0], stored[1][0])
    assert np.array_equal(stored[0][1], stored[1][1])
    assert stored[0][1][3].sum() > 0  # some values were clamped


def test_cog_and_float_outputs(tmp_path):
    paths = three_synthetic(tmp_path)
    result = global_regression(paths, tmp_path / "out", output_dtype="float32", cog=True,
                               threads=2)
    for path, source in zip(result.outputs, paths, strict=True):
        dataset = gdal.Open(path)
        assert dataset.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
        assert dataset.GetRasterBand(1).DataType == gdal.GDT_Float32
        assert dataset.GetRasterBand(1).GetNoDataValue() == 0
        assert dataset.GetGeoTransform() == gdal.Open(source).GetGeoTransform()
        original = read(source)
        name = os.path.basename(source)[:-4]
        for band in range(2):
            a = result.adjustments[name][band]
            valid = original[band] != 0
            np.testing.assert_allclose(read(path)[band][valid],
                                       original[band][valid] * a["scale"] + a["offset"],
                                       rtol=1e-6)
    assert not [f for f in os.listdir(tmp_path / "out") if "partial" in f]


def test_parallel_and_serial_runs_write_the_same_pixels(tmp_path):
    paths = three_synthetic(tmp_path)
    serial = global_regression(paths, tmp_path / "serial", threads=1, window_size=16)
    parallel = global_regression(paths, tmp_path / "parallel", threads=3, window_size=32)
    for a, b in zip(serial.outputs, parallel.outputs, strict=True):
        np.testing.assert_array_equal(read(a), read(b))


def test_profile_plot_is_a_png(tmp_path):
    paths = three_synthetic(tmp_path)
    result = global_regression(paths, tmp_path / "out", profile_plot=tmp_path / "profile.png")
    with open(result.profile_plot, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    for name in result.names:  # after = a·mean + b (no clamping happened here)
        for band, after in enumerate(result.means_after[name]):
            a = result.adjustments[name][band]
            assert after == pytest.approx(a["scale"] * result.means_before[name][band]
                                          + a["offset"], rel=1e-3)


def test_cancel_leaves_no_output(tmp_path):
    paths = three_synthetic(tmp_path)
    calls = []
    with pytest.raises(CancelledError):
        global_regression(paths, tmp_path / "out", progress=lambda f, m: calls.append(m),
                          cancelled=lambda: "Applying the adjustments" in calls, threads=2,
                          window_size=8)
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tif")]


def bad_cases(tmp_path):
    """(description, call) pairs, each a contract error."""
    paths = three_synthetic(tmp_path)
    far = synthetic(tmp_path, "far", textured(20, 20), row0=5000)
    other_crs = synthetic(tmp_path, "other_crs", textured(20, 20), wkt=utm_wkt(32634))
    three_bands = synthetic(tmp_path, "three", textured(20, 20, bands=3))
    other_nodata = synthetic(tmp_path, "other_nodata", textured(20, 20), nodata=7)
    floats = [write_without_nodata(tmp_path / f"float{i}.tif", textured(20, 20), np.float32,
                                   col0=5 * i) for i in (1, 2)]
    int_no_nodata = write_without_nodata(tmp_path / "int.tif", textured(20, 20), np.uint16)
    (tmp_path / "broken.tif").write_text("not a raster")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bands.json").write_text(json.dumps(
        {"s1": {"whole_stats": {"band_0": {"mean": 1, "std": 1, "size": 3}}}}))
    mask = write_polygons(tmp_path / "m.gpkg", [("POLYGON((0 0,1 0,1 1,0 0))", "x")], utm_wkt())
    int16 = synthetic(tmp_path, "int16", textured(20, 20), nodata=-9999, dtype=np.int16)
    int16_b = synthetic(tmp_path, "int16_b", textured(20, 20), col0=5, nodata=-9999,
                        dtype=np.int16)
    os.makedirs(tmp_path / "dup")
    duplicate = synthetic(tmp_path / "dup", "s1", textured(20, 20))
    out = tmp_path / "out"
    return [
        ("At least 2", lambda: global_regression(paths[:1], out)),
        ("overlap", lambda: global_regression([paths[0], far], out)),
        ("coordinate reference systems", lambda: global_regression([paths[0], other_crs], out)),
        ("band(s)", lambda: global_regression([paths[0], three_bands], out)),
        ("different nodata values", lambda: global_regression([paths[0], other_nodata], out)),
        ("different nodata values", lambda: global_regression([paths[0], int_no_nodata], out)),
        ("a nodata value is needed", lambda: global_regression(floats, out,
                                                               output_dtype="uint16")),
        ("Cannot open raster", lambda: global_regression([paths[0], tmp_path / "broken.tif"],
                                                         out)),
        ("not found", lambda: global_regression([paths[0], tmp_path / "missing.tif"], out)),
        ("would destroy an input", lambda: global_regression(
            [paths[0], paths[1], synthetic(tmp_path, "s1_Global", textured(20, 20))],
            tmp_path)),
        ("same base name", lambda: global_regression([paths[0], duplicate], out)),
        ("not among the input images", lambda: global_regression(paths, out,
                                                                 model_images=["nope"])),
        ("no model image", lambda: global_regression(paths, out, model_images=paths,
                                                     model_mode="exclude")),
        ("Unknown model image mode", lambda: global_regression(paths, out, model_mode="some")),
        (">= 0", lambda: global_regression(paths, out, mean_factor=-1)),
        ("Cannot read the adjustments file", lambda: global_regression(
            paths, out, load_adjustments=tmp_path / "bad.json")),
        ("does not exist", lambda: global_regression(paths, out,
                                                     load_adjustments=tmp_path / "none.json")),
        ("band(s)", lambda: global_regression(paths, out,
                                              load_adjustments=tmp_path / "bands.json")),
        ("no field", lambda: global_regression(paths, out, vector_mask=mask, mask_field="nope")),
        ("Cannot open the vector mask", lambda: global_regression(
            paths, out, vector_mask=tmp_path / "broken.tif")),
        ("Unknown mask mode", lambda: global_regression(paths, out, vector_mask=mask,
                                                        mask_mode="maybe")),
        ("Unknown output data type", lambda: global_regression(paths, out, output_dtype="int8")),
        ("cannot be stored as uint8", lambda: global_regression([int16, int16_b], out,
                                                               output_dtype="uint8")),
        ("would destroy an input", lambda: global_regression(
            paths, out, save_adjustments=paths[0])),
    ]


def write_without_nodata(path, array, dtype, col0=0):
    from tessera.engine.io.raster_io import write_array

    return write_array(str(path), array.astype(dtype), shifted(GT, 0, col0), utm_wkt())


def test_every_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    for expected, call in bad_cases(tmp_path):
        with pytest.raises(TesseraError) as caught:
            call()
        assert expected in str(caught.value), (expected, str(caught.value))
        out = tmp_path / "out"
        assert not out.exists() or not [f for f in os.listdir(out) if f.endswith(".tif")], \
            expected


def test_algorithm_through_processing(run_algorithm, tmp_path):
    paths = three_synthetic(tmp_path)
    results = run_algorithm("globalregression", {
        "INPUTS": paths, "OUTPUT_FOLDER": str(tmp_path / "out"), "MODEL_IMAGES": [paths[0]],
        "MODEL_MODE": "include", "SAVE_ADJUSTMENTS": str(tmp_path / "adj.json"),
        "PROFILE_PLOT": str(tmp_path / "plot.png"), "OUTPUT_DTYPE": "input", "COG": False})
    assert sorted(results["OUTPUTS"]) == sorted(str(tmp_path / "out" / f"s{i}_Global.tif")
                                                for i in (1, 2, 3))
    adjustments = json.loads(results["ADJUSTMENTS"])
    assert adjustments["s1"]["band_0"] == pytest.approx({"scale": 1.0, "offset": 0.0}, abs=1e-9)
    saved = json.loads((tmp_path / "adj.json").read_text())
    assert saved["s2"]["adjustments"] == adjustments["s2"]
    assert os.path.exists(results["PROFILE_PLOT"])


def test_algorithm_through_qgis_process(qgis_process, tmp_path):
    paths = three_synthetic(tmp_path)
    code, result, output = qgis_process(
        "run", "tessera:globalregression", "--", *[f"INPUTS={p}" for p in paths],
        f"OUTPUT_FOLDER={tmp_path / 'out'}", f"MODEL_IMAGES={paths[1]}", "MODEL_MODE=exclude",
        "OUTPUT_DTYPE=float32", "COG=true")
    assert code == 0, output
    assert len(result["results"]["OUTPUTS"]) == 3
    adjustments = json.loads(result["results"]["ADJUSTMENTS"])
    assert set(adjustments) == {"s1", "s2", "s3"}
    code, _, output = qgis_process("run", "tessera:globalregression", "--", f"INPUTS={paths[0]}",
                                   f"OUTPUT_FOLDER={tmp_path / 'out2'}")
    assert code != 0 and "At least 2 input images" in output and "Traceback" not in output
