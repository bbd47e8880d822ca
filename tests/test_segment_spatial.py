"""Per-segment spatial statistics (engine): hand-computed shapes, numpy references,
targets, memory bound, errors."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import PLUGINS_DIR
from raster_files import (
    GEOTRANSFORM,
    blocky_segments,
    read_rat,
    speckled_segments,
    write_raster,
)
from spatial_reference import (
    assert_rat_matches,
    diagonal_rms_reference,
    lag_columns,
    shape_reference,
    variogram_reference,
)

from tessera.engine import CancelledError, TesseraError, segment_spatial_stats

SHAPES = ["centroid", "bbox", "area", "perimeter", "edgepixels"]
ALL = SHAPES + ["variogram", "diagonalrms"]
X0, Y0 = GEOTRANSFORM[0], GEOTRANSFORM[3]   # 10 m pixels, north up


def hand_raster():
    """12 x 14 pixels, null 0 around:

    1: 3x3 square, rows 1-3, cols 1-3;
    2: thick L: rows 1-5 x cols 6-8 plus rows 3-5 x cols 9-11 (24 pixels);
    3: 5x5 ring, rows 7-11 x cols 1-5 (touching the bottom border) around
    4: the one pixel (9, 3);
    5: one pixel in the top-right corner (0, 13).
    """
    seg = np.zeros((12, 14), np.uint8)
    seg[1:4, 1:4] = 1
    seg[1:6, 6:9] = 2
    seg[3:6, 9:12] = 2
    seg[7:12, 1:6] = 3
    seg[9, 3] = 4
    seg[0, 13] = 5
    return seg


# Worked by hand (see hand_raster); x = X0 + 10 * (col + 0.5), y = Y0 - 10 * (row + 0.5).
HAND = {
    1: dict(centroid_x=X0 + 25, centroid_y=Y0 - 25, xmin=X0 + 10, xmax=X0 + 40,
            ymin=Y0 - 40, ymax=Y0 - 10, area=900, perimeter=120),
    # L: mean col (15*7 + 9*10)/24 = 8.125, mean row (15*3 + 9*4)/24 = 3.375;
    # outline 2 * (6 + 5) = 22 sides.
    2: dict(centroid_x=X0 + 86.25, centroid_y=Y0 - 38.75, xmin=X0 + 60, xmax=X0 + 120,
            ymin=Y0 - 60, ymax=Y0 - 10, area=2400, perimeter=220),
    # ring: centre pixel (9, 3); 20 outer + 4 inner sides.
    3: dict(centroid_x=X0 + 35, centroid_y=Y0 - 95, xmin=X0 + 10, xmax=X0 + 60,
            ymin=Y0 - 120, ymax=Y0 - 70, area=2400, perimeter=240),
    4: dict(centroid_x=X0 + 35, centroid_y=Y0 - 95, xmin=X0 + 30, xmax=X0 + 40,
            ymin=Y0 - 100, ymax=Y0 - 90, area=100, perimeter=40),
    5: dict(centroid_x=X0 + 135, centroid_y=Y0 - 5, xmin=X0 + 130, xmax=X0 + 140,
            ymin=Y0 - 10, ymax=Y0, area=100, perimeter=40),
}
# Edge pixels. Square: the 8 around its centre. L: 4-connected, the 7 pixels (2,7),
# (3,7), (4,7), (3,8), (4,8), (4,9), (4,10) are interior; 8-connected, (3,8) sees the
# concave corner (2,9) diagonally, so 6 are interior. Ring: 16 outer pixels, plus the 4
# side neighbours of the hole (4-connected) or all 8 around it (8-connected).
EDGES = {4: {1: 8, 2: 24 - 7, 3: 16 + 4, 4: 1, 5: 1}, 8: {1: 8, 2: 24 - 6, 3: 16 + 8, 4: 1, 5: 1}}


@pytest.mark.parametrize("window_size", [3, 4, 5, None])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_hand_computed_shapes_across_tile_borders(tmp_path, window_size, connectivity):
    seg = hand_raster()
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    result = segment_spatial_stats(seg_path, statistics=SHAPES, connectivity=connectivity,
                                   window_size=window_size)
    assert result.columns == ["centroid_x", "centroid_y", "xmin", "ymin", "xmax", "ymax",
                              "area", "perimeter", "edge_pixels"]
    assert result.segment_count == 5 and result.row_count == 6
    rat = read_rat(seg_path)
    assert_rat_matches(rat, HAND, rtol=1e-12)
    assert [int(rat["edge_pixels"][sid]) for sid in range(1, 6)] == [
        EDGES[connectivity][sid] for sid in range(1, 6)]
    assert rat["edge_pixels"].dtype.kind == "i"
    # the independent whole-raster reference agrees with the hand values
    assert_rat_matches(rat, shape_reference(seg, GEOTRANSFORM, connectivity=connectivity))


def test_hand_computed_variograms(tmp_path):
    seg = np.zeros((6, 8), np.uint8)
    seg[1, 1:4] = 1          # values 1, 3, 7 in a row
    seg[3:5, 1:3] = 2        # values [[1, 2], [4, 8]]
    seg[3:5, 5:7] = 3        # values [[5, nodata], [6, 9]]
    image = np.zeros((6, 8), np.int16)
    image[1, 1:4] = [1, 3, 7]
    image[3:5, 1:3] = [[1, 2], [4, 8]]
    image[3:5, 5:7] = [[5, -1], [6, 9]]
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=-1)
    segment_spatial_stats(seg_path, image_path, statistics=["variogram", "diagonalrms"],
                          max_lag=2, window_size=2)
    rat = read_rat(seg_path)
    # 1: lag 1 pairs (1,3), (3,7): (4 + 16) / (2 * 2); lag 2 pair (1,7): 36 / 2.
    # 2: lag 1 (distances 1 and sqrt 2): 1 + 16 + 9 + 36 + 49 + 4 = 115 over 6 pairs;
    #    diagonal RMS: only the down-right pair (1, 8).
    # 3: pixel (3, 6) is nodata: pairs (5,6), (6,9) at 1 and (5,9) at sqrt 2.
    expected = {
        1: {"gamma_1": 5.0, "gamma_2": 18.0, "drms_1": None, "drms_2": None},
        2: {"gamma_1": 115 / 12, "gamma_2": None, "drms_1": 7.0, "drms_2": None},
        3: {"gamma_1": (1 + 9 + 16) / 6, "gamma_2": None, "drms_1": 4.0, "drms_2": None},
    }
    assert_rat_matches(rat, expected, rtol=1e-12)


def _irregular_segments(rows, cols, seed):
    """Ragged blocks with scattered specks: concave, holed and split segments."""
    return speckled_segments(rows, cols, 9, 0.04, seed)


@pytest.mark.parametrize("dtype,nodata", [("uint16", 0), ("float32", -9999.0), ("int32", None)])
def test_all_statistics_match_the_references(tmp_path, dtype, nodata):
    rows, cols = 61, 75
    seg = _irregular_segments(rows, cols, seed=3)
    rng = np.random.default_rng(4)
    image = rng.integers(1, 1000, (rows, cols)).astype(dtype)
    if nodata is not None:
        image[rng.random((rows, cols)) < 0.05] = nodata
    if image.dtype.kind == "f":
        image[rng.random((rows, cols)) < 0.03] = np.nan
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=nodata)
    segment_spatial_stats(seg_path, image_path, statistics=ALL, max_lag=3, window_size=16,
                          connectivity=4)
    rat = read_rat(seg_path)
    assert_rat_matches(rat, shape_reference(seg, GEOTRANSFORM, connectivity=4))
    gamma = variogram_reference(seg, image, GEOTRANSFORM, 3, nodata)
    assert_rat_matches(rat, lag_columns(gamma, "gamma"))
    drms = diagonal_rms_reference(seg, image, 3, nodata)
    assert_rat_matches(rat, lag_columns(drms, "drms"))
    assert any(v is None for values in drms.values() for v in values)  # missing lags seen


def test_non_square_and_rotated_pixels(tmp_path):
    seg = _irregular_segments(30, 34, seed=5)
    image = np.random.default_rng(6).normal(50, 10, (30, 34)).astype(np.float64)
    for gt in [(1000.0, 10.0, 0.0, 2000.0, 0.0, -25.0), (1000.0, 8.0, 3.0, 2000.0, 2.0, -9.0)]:
        seg_path = write_raster(tmp_path / f"seg{gt[2]}.tif", seg, geotransform=gt)
        image_path = write_raster(tmp_path / f"image{gt[2]}.tif", image, geotransform=gt)
        segment_spatial_stats(seg_path, image_path, statistics=["variogram", *SHAPES],
                              max_lag=4, window_size=8)
        rat = read_rat(seg_path)
        assert_rat_matches(rat, shape_reference(seg, gt))
        assert_rat_matches(rat, lag_columns(variogram_reference(seg, image, gt, 4), "gamma"))


def test_sparse_ids_and_signed_segments_with_a_nodata_null_id(tmp_path):
    seg = blocky_segments(40, 44, 6, 5, seed=7, dtype=np.int32, first_id=0) * 1000
    seg[:6] = -1
    seg[20:26, 7:12] = 0
    seg_path = write_raster(tmp_path / "seg.img", seg, nodata=-1, driver="HFA")
    result = segment_spatial_stats(seg_path, statistics=["area", "centroid", "edgepixels"],
                                   window_size=13, missing_value=np.nan)
    rat = read_rat(seg_path)
    assert result.row_count == seg.max() + 1 == len(rat["area"])
    expected = shape_reference(seg, GEOTRANSFORM, null_id=-1)
    assert 0 in expected  # id 0 is a real segment when the null id is -1
    assert_rat_matches(rat, expected, columns={"area", "centroid_x", "centroid_y",
                                                "edge_pixels"})
    absent = np.setdiff1d(np.arange(seg.max() + 1), np.unique(seg))
    assert np.isnan(rat["centroid_x"][absent]).all()
    assert (rat["area"][absent] == 0).all() and (rat["edge_pixels"][absent] == 0).all()


@pytest.mark.parametrize("target", ["spatial.img", "spatial.tif"])
def test_separate_gdal_rat_file_and_csv_table(tmp_path, target):
    seg = blocky_segments(30, 40, 6, 8, seed=8)
    image = np.random.default_rng(9).integers(0, 100, (30, 40)).astype(np.uint8)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    out = str(tmp_path / target)
    table = tmp_path / "spatial.csv"
    segment_spatial_stats(seg_path, image_path, statistics=["area", "variogram"], max_lag=2,
                          output_rat=out, output_table=str(table))
    assert read_rat(seg_path) == {}
    rat = read_rat(out)
    assert list(rat) == ["area", "gamma_1", "gamma_2"]
    assert_rat_matches(rat, shape_reference(seg, GEOTRANSFORM), columns={"area"})
    assert_rat_matches(rat, lag_columns(variogram_reference(seg, image, GEOTRANSFORM, 2),
                                        "gamma"))
    lines = table.read_text().splitlines()
    assert lines[0] == "id,area,gamma_1,gamma_2"
    assert len(lines) == 1 + len(np.unique(seg))


def test_zarr_rat_store_target(tmp_path):
    from tessera.engine.rat.tables import open_rat

    seg = _irregular_segments(36, 40, seed=11)
    image = np.random.default_rng(12).normal(0, 5, (36, 40)).astype(np.float32)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    store = str(tmp_path / "spatial.zarr")
    segment_spatial_stats(seg_path, image_path, statistics=["centroid", "edgepixels",
                                                            "variogram"],
                          max_lag=2, output_rat=store, window_size=12)
    assert read_rat(seg_path) == {}
    with open_rat(store) as rat:
        assert rat.column_kind("edge_pixels") == "integer"
        columns = {name: rat.read(name) for name in rat.column_names()}
    assert list(columns) == ["centroid_x", "centroid_y", "edge_pixels", "gamma_1", "gamma_2"]
    assert_rat_matches(columns, shape_reference(seg, GEOTRANSFORM),
                       columns={"centroid_x", "centroid_y", "edge_pixels"})
    assert_rat_matches(columns, lag_columns(variogram_reference(seg, image, GEOTRANSFORM, 2),
                                            "gamma"), rtol=1e-6)


def test_existing_columns_need_overwrite(tmp_path):
    seg = blocky_segments(20, 20, 5, 4, seed=10)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    segment_spatial_stats(seg_path, statistics=["area", "edgepixels"])
    with pytest.raises(TesseraError, match="already has the column.*area.*edge_pixels"):
        segment_spatial_stats(seg_path, statistics=["area", "edgepixels"], connectivity=4)
    segment_spatial_stats(seg_path, statistics=["area", "edgepixels"], connectivity=4,
                          overwrite=True)
    assert_rat_matches(read_rat(seg_path), shape_reference(seg, GEOTRANSFORM, connectivity=4),
                       columns={"area", "edge_pixels"})


def test_column_prefix(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", blocky_segments(10, 10, 5, 5))
    result = segment_spatial_stats(seg_path, statistics=["bbox", "area"], column_prefix="s_")
    assert result.columns == ["s_xmin", "s_ymin", "s_xmax", "s_ymax", "s_area"]
    assert list(read_rat(seg_path)) == result.columns


def test_cancel_leaves_the_rat_as_it_was(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", blocky_segments(100, 100, 10, 10))
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 4

    fractions = []
    with pytest.raises(CancelledError):
        segment_spatial_stats(seg_path, statistics=["area"], window_size=10,
                              cancelled=cancelled, progress=lambda f, m: fractions.append(f))
    assert read_rat(seg_path) == {} and not os.path.exists(seg_path + ".aux.xml")
    assert fractions and max(fractions) < 0.95


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", np.ones((4, 4), np.uint8))
    float_seg = write_raster(tmp_path / "fseg.tif", np.ones((4, 4), np.float32))
    negative = write_raster(tmp_path / "neg.tif", np.full((4, 4), -3, np.int16))
    image_path = write_raster(tmp_path / "image.tif", np.ones((4, 4), np.uint16))
    shifted = write_raster(tmp_path / "shifted.tif", np.ones((4, 4), np.uint16),
                           geotransform=(GEOTRANSFORM[0] + 5, *GEOTRANSFORM[1:]))
    cases = [
        (dict(segments=str(tmp_path / "missing.tif")), "Raster not found: .*missing.tif"),
        (dict(segments=float_seg), "fseg.tif holds float32.*integers"),
        (dict(segments=negative), "neg.tif holds the negative id -3"),
        (dict(statistics=["area", "roundness"]), "Unknown spatial statistic.*roundness"),
        (dict(statistics=[]), "at least one"),
        (dict(connectivity=6), "Connectivity must be 4 or 8"),
        (dict(connectivity="eight"), "Connectivity must be 4 or 8, not eight"),
        (dict(statistics=["variogram"], max_lag=2.5), "maximum lag.*not 2.5"),
        (dict(statistics=["variogram"], max_lag=0), "maximum lag.*1..64"),
        (dict(statistics=["variogram"], image=None), "give an image"),
        (dict(band=2), "image.tif has 1 band.*band 2"),
        (dict(image=shifted), "different geotransforms"),
        (dict(output_rat=str(tmp_path / "out.csv")), "format.*out.csv"),
    ]
    for kwargs, match in cases:
        arguments = dict(segments=seg_path, image=image_path, statistics=["area", "variogram"])
        arguments.update(kwargs)
        with pytest.raises(TesseraError, match=match):
            segment_spatial_stats(**arguments)
    assert read_rat(seg_path) == {}


MEMORY_SCRIPT = textwrap.dedent("""
    import sys, tracemalloc
    sys.path.insert(0, {plugins!r})
    from tessera.engine import segment_spatial_stats
    everything = ["centroid", "bbox", "area", "perimeter", "edgepixels", "variogram",
                  "diagonalrms"]
    # compile (or load from numba's cache) first: the compiler's allocations are not the pass's
    segment_spatial_stats({tiny_seg!r}, {tiny_image!r}, statistics=everything, max_lag=3)
    tracemalloc.start()
    result = segment_spatial_stats({seg!r}, {image!r}, statistics=everything, max_lag=3,
                                   window_size=128, output_rat={out!r}, read_threads=1)
    print(tracemalloc.get_traced_memory()[1], result.segment_count)
""")


def test_one_segment_over_the_whole_raster_stays_in_bounded_memory(tmp_path):
    """A single segment of 1600 x 2000 pixels read in 128-pixel tiles: its values alone
    (float64, as the variograms read them) would take 25.6 MB; the streamed pass keeps a
    few tiles and a few numbers for the segment."""
    rows, cols = 1600, 2000
    seg = np.ones((rows, cols), np.uint8)
    image = (np.add.outer(np.arange(rows) * 3, np.arange(cols)) % 251).astype(np.uint8)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    out = str(tmp_path / "rat.img")
    tiny_seg = write_raster(tmp_path / "tiny_seg.tif", seg[:8, :8])
    tiny_image = write_raster(tmp_path / "tiny_image.tif", image[:8, :8])
    script = MEMORY_SCRIPT.format(plugins=PLUGINS_DIR, seg=seg_path, image=image_path, out=out,
                                  tiny_seg=tiny_seg, tiny_image=tiny_image)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    peak, segments = map(int, done.stdout.split())
    assert segments == 1
    segment_values = rows * cols * 8
    assert peak < segment_values / 10, (peak, segment_values)
    rat = read_rat(out)
    width, height = cols * 10.0, rows * 10.0
    assert rat["area"][1] == width * height
    assert rat["perimeter"][1] == 2 * (width + height)
    assert rat["edge_pixels"][1] == 2 * (rows + cols) - 4
    assert (rat["xmin"][1], rat["xmax"][1]) == (X0, X0 + width)
    assert (rat["ymin"][1], rat["ymax"][1]) == (Y0 - height, Y0)
    assert rat["centroid_x"][1] == pytest.approx(X0 + width / 2, abs=1e-6)
    assert rat["centroid_y"][1] == pytest.approx(Y0 - height / 2, abs=1e-6)
    # lag 1 by shifted arrays: horizontal, vertical and both diagonal neighbours
    v = image.astype(np.float64)
    pairs = [(v[:, 1:] - v[:, :-1]), (v[1:] - v[:-1]), (v[1:, 1:] - v[:-1, :-1]),
             (v[1:, :-1] - v[:-1, 1:])]
    gamma_1 = sum((d ** 2).sum() for d in pairs) / (2 * sum(d.size for d in pairs))
    assert rat["gamma_1"][1] == pytest.approx(gamma_1, rel=1e-12)
    assert rat["drms_1"][1] == pytest.approx(np.sqrt((pairs[2] ** 2).mean()), rel=1e-12)


def test_real_worldview_scene_segmented_by_quantized_values(tmp_path):
    from conftest import shared_data
    from osgeo import gdal

    path = shared_data("worldview", "Worldview_2016-09-30.tif")
    scene = gdal.Open(path)
    band5 = scene.GetRasterBand(5).ReadAsArray()
    nodata = scene.GetRasterBand(5).GetNoDataValue()
    rows, cols = band5.shape
    # Segments: 4 brightness classes of band 5 within a 12-pixel grid (split, ragged shapes).
    valid = band5[band5 != nodata]
    classes = np.digitize(band5, np.percentile(valid, [25, 50, 75]))
    grid = (np.arange(rows)[:, None] // 12) * (cols // 12 + 1) + np.arange(cols)[None, :] // 12
    seg = (grid * 4 + classes + 1).astype(np.uint32)
    keep = np.zeros(seg.shape, bool)  # segments in the top-left 160 x 160 pixels (raster
    keep[:160, :160] = True          # borders, 333 nodata pixels); null id 0 elsewhere
    seg[~keep] = 0
    gt = scene.GetGeoTransform()
    seg_path = write_raster(tmp_path / "seg.tif", seg, geotransform=gt,
                            crs_wkt=scene.GetProjection())
    segment_spatial_stats(seg_path, path, band=5, statistics=ALL, max_lag=2, window_size=100)
    rat = read_rat(seg_path)
    assert_rat_matches(rat, shape_reference(seg, gt))
    assert_rat_matches(rat, lag_columns(variogram_reference(seg, band5, gt, 2, nodata), "gamma"))
    assert_rat_matches(rat, lag_columns(diagonal_rms_reference(seg, band5, 2, nodata), "drms"))
    assert (band5[keep] == nodata).sum() == 333
