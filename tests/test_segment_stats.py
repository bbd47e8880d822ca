"""Per-segment statistics (engine) against an independent numpy reference."""

import os

import numpy as np
import pytest
from conftest import shared_data
from osgeo import gdal
from raster_files import GEOTRANSFORM, add_histogram, blocky_segments, read_rat, write_raster
from segment_reference import assert_columns_match, reference_stats

from tessera.engine import CancelledError, TesseraError, segment_stats
from tessera.engine.statistics.catalogue import CLASS_STATISTICS, STATISTICS

ALL = [s for s in STATISTICS if s not in CLASS_STATISTICS]  # frac: integer images only
PERCENTILES = (0, 2.5, 25, 33.3, 50, 75, 99.9, 100)


def _image(dtype, shape, seed, nodata=None, nan_share=0.0, low=0, high=400):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        data = rng.normal(100, 30, shape).astype(dtype)
        if nan_share:
            data[rng.random(shape) < nan_share] = np.nan
    else:
        data = rng.integers(low, high, shape).astype(dtype)
    if nodata is not None:
        data[rng.random(shape) < 0.05] = nodata
    return data


@pytest.mark.parametrize("dtype,nodata", [
    ("uint8", 0), ("int16", -32768), ("uint16", None), ("int32", -1), ("uint32", 7),
    ("float32", -9999.0), ("float64", None),
])
def test_every_statistic_matches_numpy(tmp_path, dtype, nodata):
    seg = blocky_segments(97, 113, 9, 7, seed=1)
    image = _image(dtype, (2, 97, 113), seed=2, nodata=nodata, nan_share=0.02)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=nodata)
    result = segment_stats(seg_path, image_path, statistics=ALL, percentiles=PERCENTILES,
                           window_size=32)
    rat = read_rat(seg_path)
    assert result.columns == list(rat)
    for band in (1, 2):
        expected = reference_stats(seg, image[band - 1], nodata, percentiles=PERCENTILES)
        assert_columns_match(rat, expected, band)
    assert result.segment_count == len(np.unique(seg))


@pytest.mark.parametrize("dtype,nodata", [("uint8", 255), ("int8", -128), ("uint16", None),
                                          ("int16", 0)])
def test_small_integers_over_their_whole_range(tmp_path, dtype, nodata):
    """8- and 16-bit values are counted: segments spread over the whole type (few values
    far apart) and segments packed at either end of it, with every value repeated."""
    info = np.iinfo(dtype)
    seg = blocky_segments(60, 90, 6, 9, seed=11)
    rng = np.random.default_rng(12)
    wide = rng.integers(info.min, info.max, seg.shape, endpoint=True)
    top = info.max - rng.integers(0, 12, seg.shape)
    bottom = info.min + rng.integers(0, 12, seg.shape)
    image = np.where(seg % 3 == 0, wide, np.where(seg % 3 == 1, top, bottom)).astype(dtype)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=nodata)
    segment_stats(seg_path, image_path, statistics=ALL, percentiles=PERCENTILES)
    expected = reference_stats(seg, image, nodata, percentiles=PERCENTILES)
    assert_columns_match(read_rat(seg_path), expected, 1, rtol=1e-12)


@pytest.mark.parametrize("statistics", [["mode"], ["variety"], ["minority"], ["median"],
                                        ["mode", "variety", "median"], ["mode", "median"]])
@pytest.mark.parametrize("dtype,nodata,low,high", [("uint8", 3, 0, 40),
                                                   ("int16", -5, -300, 300)])
def test_each_counting_need_alone(tmp_path, statistics, dtype, nodata, low, high):
    """8- and 16-bit values are counted by a loop that tracks only what is asked (the
    mode, the variety, or neither); each subset against numpy, with repeated values."""
    seg = blocky_segments(60, 90, 6, 9, seed=13)
    image = _image(dtype, (2, 60, 90), seed=14, nodata=nodata, low=low, high=high)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=nodata)
    segment_stats(seg_path, image_path, statistics=statistics, percentiles=(25, 75))
    rat = read_rat(seg_path)
    assert sorted(rat) == sorted(f"b{b}_{s}" for b in (1, 2)
                                 for s in [*statistics, "p25", "p75"])
    for band in (1, 2):
        expected = reference_stats(seg, image[band - 1], nodata, percentiles=(25, 75))
        assert_columns_match(rat, expected, band)


def test_linear_percentiles_match_numpy(tmp_path):
    seg = blocky_segments(64, 64, 8, 5, seed=4)
    image = _image("float32", (1, 64, 64), seed=5, nan_share=0.1)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    segment_stats(seg_path, image_path, statistics=["median"], percentiles=PERCENTILES,
                  percentile_method="linear", window_size=20)
    rat = read_rat(seg_path)
    expected = reference_stats(seg, image[0], percentiles=PERCENTILES, method="linear")
    assert_columns_match(rat, expected, 1, rtol=1e-6)


@pytest.mark.parametrize("method", ["inverted_cdf", "linear"])
def test_percentile_edge_cases_on_even_and_odd_counts(tmp_path, method):
    # Segment 1: 4 pixels (even), 2: 5 pixels (odd), 3: 1 pixel, 4: 2 equal values.
    seg = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 4, 4]], np.uint16)
    image = np.array([[10, 40, 20, 30, 5, 1, 4, 2, 3, 9, 6, 6]], np.int16)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    image_path = write_raster(tmp_path / "image.tif", image)
    fractions = (0, 1, 12.5, 25, 37.5, 49.999, 50, 50.001, 62.5, 75, 87.5, 99, 100)
    segment_stats(seg_path, image_path, statistics=["median"], percentiles=fractions,
                  percentile_method=method)
    rat = read_rat(seg_path)
    expected = reference_stats(seg, image[0], percentiles=fractions, method=method)
    assert_columns_match(rat, expected, 1, rtol=1e-12)
    if method == "inverted_cdf":  # an actual pixel value; p = 0 is the minimum
        assert rat["b1_p0"][1] == 10 and rat["b1_p100"][1] == 40 and rat["b1_median"][1] == 20
        assert rat["b1_p25"].dtype.kind == "i"


def test_mode_and_minority_ties_go_to_the_smallest_value(tmp_path):
    seg = np.array([[1, 1, 1, 1, 1, 1]], np.uint8)
    image = np.array([[7, 3, 7, 3, 9, 5]], np.uint16)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    segment_stats(seg_path, write_raster(tmp_path / "image.tif", image),
                  statistics=["mode", "minority", "variety"])
    rat = read_rat(seg_path)
    assert (rat["b1_mode"][1], rat["b1_minority"][1], rat["b1_variety"][1]) == (3, 5, 4)


def test_segments_without_valid_pixels_get_the_missing_value(tmp_path):
    seg = np.array([[1, 1, 2, 2], [3, 3, 0, 0]], np.uint8)
    image = np.array([[5, 6, -1, -1], [np.nan, np.nan, 4, 4]], np.float32)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=-1)
    segment_stats(seg_path, image_path, statistics=["pixcount", "mean", "min", "median"],
                  missing_value=np.nan)
    rat = read_rat(seg_path)
    assert rat["b1_pixcount"].tolist() == [0, 2, 0, 0]
    assert rat["b1_mean"][1] == 5.5
    for column in ("b1_mean", "b1_min", "b1_median"):
        assert np.isnan(rat[column][2]) and np.isnan(rat[column][3])
        assert rat[column][0] == 0  # the null row of a new column


def test_nan_missing_value_is_refused_for_integer_columns(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", np.ones((4, 4), np.uint8))
    image_path = write_raster(tmp_path / "image.tif", np.ones((4, 4), np.uint16))
    with pytest.raises(TesseraError, match="missing value"):
        segment_stats(seg_path, image_path, statistics=["min"], missing_value=np.nan)
    assert read_rat(seg_path) == {}


def test_sparse_random_order_uint32_ids_and_many_tiles(tmp_path):
    rng = np.random.default_rng(9)
    base = blocky_segments(150, 170, 11, 13, seed=9)
    sparse_ids = np.sort(rng.choice(3_000_000_000, base.max() + 1, replace=False)).astype(
        np.uint64)
    seg = sparse_ids[base] % 4_000_000  # large, sparse, random-order ids
    seg = seg.astype(np.uint32)
    image = _image("uint16", (150, 170), seed=10, high=60000)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    image_path = write_raster(tmp_path / "image.tif", image)
    result = segment_stats(seg_path, image_path, statistics=ALL, percentiles=(10, 90),
                           window_size=17)
    rat = read_rat(seg_path)
    assert result.row_count == seg.max() + 1 == len(rat["b1_mean"])
    expected = reference_stats(seg, image, percentiles=(10, 90))
    assert_columns_match(rat, expected, 1)
    absent = np.setdiff1d(np.arange(1, seg.max() + 1), np.unique(seg))  # the results table
    for name, values in rat.items():  # is not filled beforehand: every absent row is given
        assert (values[absent] == (0 if name == "b1_pixcount" else -9999)).all(), name


def test_segments_crossing_many_tiles_and_one_spanning_everything(tmp_path):
    seg = np.ones((300, 200), np.uint16)
    seg[100:140, 30:170] = 2  # crosses tile borders both ways
    seg[::7, ::5] = 3         # scattered over every tile
    image = _image("int16", (300, 200), seed=11, low=-500, high=500)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    segment_stats(seg_path, image_path, statistics=ALL, percentiles=(5, 95), window_size=16)
    rat = read_rat(seg_path)
    assert_columns_match(rat, reference_stats(seg, image, percentiles=(5, 95)), 1)


def test_signed_segment_raster_with_nodata_null_id(tmp_path):
    seg = blocky_segments(40, 40, 5, 5, seed=12, dtype=np.int16, first_id=0)
    seg[:5, :] = -1
    image = _image("uint16", (40, 40), seed=13)
    seg_path = write_raster(tmp_path / "seg.img", seg, nodata=-1, driver="HFA")
    image_path = write_raster(tmp_path / "image.tif", image)
    segment_stats(seg_path, image_path, statistics=["pixcount", "mean"], window_size=16)
    rat = read_rat(seg_path)
    expected = reference_stats(seg, image, null_id=-1)
    assert 0 in expected  # id 0 is a real segment when the null id is -1
    assert_columns_match(rat, expected, 1)


@pytest.mark.parametrize("histogram", [True, False])
def test_with_and_without_histogram(tmp_path, histogram):
    seg = blocky_segments(80, 90, 6, 9, seed=14)
    image = _image("uint16", (80, 90), seed=15)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    if histogram:
        add_histogram(seg_path)
    image_path = write_raster(tmp_path / "image.tif", image)
    result = segment_stats(seg_path, image_path, statistics=["pixcount", "median"],
                           window_size=25)
    assert ("count" in result.timings) is not histogram
    rat = read_rat(seg_path)
    assert ("Histogram" in rat) is histogram
    assert_columns_match(rat, reference_stats(seg, image), 1)


@pytest.mark.parametrize("change", [+1, -1])
def test_wrong_histogram_is_an_error_before_anything_is_written(tmp_path, change):
    seg = blocky_segments(40, 40, 5, 5, seed=16)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    counts = add_histogram(seg_path)
    dataset = gdal.Open(seg_path, gdal.GA_Update)
    rat = dataset.GetRasterBand(1).GetDefaultRAT()
    victim = int(seg[20, 20])
    counts[victim] += change
    rat.WriteArray(counts.astype(np.float64), 0)
    rat = dataset = None
    image_path = write_raster(tmp_path / "image.tif", _image("uint16", (40, 40), seed=17))
    with pytest.raises(TesseraError, match=f"egment {victim}.*Histogram|Histogram.*{victim}"):
        segment_stats(seg_path, image_path, statistics=["mean"], window_size=8)
    assert list(read_rat(seg_path)) == ["Histogram"]


@pytest.mark.parametrize("target, interleave", [("stats.img", "PIXEL"), ("stats.tif", "BAND")])
def test_separate_gdal_rat_file(tmp_path, target, interleave):
    seg = blocky_segments(50, 60, 7, 6, seed=18)
    image = _image("float32", (3, 50, 60), seed=19, nan_share=0.05)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, options=[f"INTERLEAVE={interleave}"])
    assert gdal.Open(image_path).GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") == interleave
    out = str(tmp_path / target)
    result = segment_stats(seg_path, image_path, bands=[3, 1], statistics=["mean", "mode"],
                           output_rat=out)
    assert result.columns == ["b3_mean", "b3_mode", "b1_mean", "b1_mode"]
    assert read_rat(seg_path) == {}
    rat = read_rat(out)
    for band in (1, 3):
        assert_columns_match(rat, reference_stats(seg, image[band - 1]), band)
    if target.endswith(".tif"):
        assert os.path.exists(out + ".aux.xml")


def test_existing_columns_need_overwrite_and_a_compatible_type(tmp_path):
    seg = blocky_segments(30, 30, 5, 5, seed=20)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    first = _image("uint16", (30, 30), seed=21)
    second = _image("uint16", (30, 30), seed=22)
    segment_stats(seg_path, write_raster(tmp_path / "a.tif", first), statistics=["mean", "max"])
    second_path = write_raster(tmp_path / "b.tif", second)
    with pytest.raises(TesseraError, match="already has the column.*b1_mean.*b1_max"):
        segment_stats(seg_path, second_path, statistics=["mean", "max"])
    assert_columns_match(read_rat(seg_path), reference_stats(seg, first), 1)
    segment_stats(seg_path, second_path, statistics=["mean", "max"], overwrite=True)
    assert_columns_match(read_rat(seg_path), reference_stats(seg, second), 1)
    float_path = write_raster(tmp_path / "c.tif", second.astype(np.float32))
    with pytest.raises(TesseraError, match="another type.*b1_max"):
        segment_stats(seg_path, float_path, statistics=["max"], overwrite=True)


def test_null_row_keeps_its_previous_content(tmp_path):
    seg = blocky_segments(20, 20, 4, 4, seed=23, first_id=0)
    seg_path = write_raster(tmp_path / "seg.img", seg, driver="HFA")
    dataset = gdal.Open(seg_path, gdal.GA_Update)
    rat = dataset.GetRasterBand(1).GetDefaultRAT()
    rat.SetRowCount(int(seg.max()) + 1)
    rat.CreateColumn("b1_mean", gdal.GFT_Real, gdal.GFU_Generic)
    rat.WriteArray(np.full(int(seg.max()) + 1, 123.5), 0)
    rat = dataset = None
    image_path = write_raster(tmp_path / "image.tif", _image("uint16", (20, 20), seed=24))
    segment_stats(seg_path, image_path, statistics=["mean"], overwrite=True)
    assert read_rat(seg_path)["b1_mean"][0] == 123.5
    assert read_rat(seg_path)["b1_mean"][1] != 123.5


def test_column_prefix_and_explicit_names(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", blocky_segments(20, 20, 4, 4))
    image_path = write_raster(tmp_path / "image.tif", _image("uint16", (2, 20, 20), seed=25))
    result = segment_stats(seg_path, image_path, statistics=["mean"], percentiles=[2.5],
                           column_prefix="s_", column_names={"b2_mean": "Band2_Mean"})
    assert result.columns == ["s_b1_mean", "s_b1_p2.5", "Band2_Mean", "s_b2_p2.5"]
    assert list(read_rat(seg_path)) == result.columns


def test_output_table_has_one_row_per_segment(tmp_path):
    seg = blocky_segments(30, 30, 6, 6, seed=26)
    image = _image("uint16", (30, 30), seed=27)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    table = tmp_path / "stats.csv"
    segment_stats(seg_path, write_raster(tmp_path / "image.tif", image),
                  statistics=["pixcount", "mean"], output_table=str(table))
    lines = table.read_text().splitlines()
    assert lines[0] == "id,b1_pixcount,b1_mean"
    expected = reference_stats(seg, image)
    assert len(lines) - 1 == len(expected)
    for line in lines[1:]:
        sid, count, mean = line.split(",")
        assert int(count) == expected[int(sid)]["pixcount"]
        assert float(mean) == pytest.approx(expected[int(sid)]["mean"], rel=1e-15)


def test_cancel_mid_run_leaves_the_rat_as_it_was(tmp_path):
    seg = blocky_segments(200, 200, 10, 10, seed=28)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", _image("uint16", (200, 200), seed=29))
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 5

    fractions = []
    with pytest.raises(CancelledError):
        segment_stats(seg_path, image_path, statistics=["mean"], window_size=20,
                      cancelled=cancelled, progress=lambda f, m: fractions.append(f))
    assert read_rat(seg_path) == {} and not os.path.exists(seg_path + ".aux.xml")
    assert fractions and max(fractions) < 0.95


@pytest.mark.parametrize("problem,match", [
    ("size", "100 x 80 pixels.*same grid"),
    ("geotransform", "different geotransforms"),
    ("crs", "different coordinate reference systems"),
])
def test_misaligned_inputs_are_refused(tmp_path, problem, match):
    seg = blocky_segments(80, 100, 5, 5)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    kwargs = {}
    shape = (80, 100)
    if problem == "size":
        shape = (81, 100)
    elif problem == "geotransform":
        kwargs["geotransform"] = (GEOTRANSFORM[0] + 5, *GEOTRANSFORM[1:])
    else:
        from raster_files import utm_wkt

        kwargs["crs_wkt"] = utm_wkt(34)
    image_path = write_raster(tmp_path / "image.tif", np.ones(shape, np.uint16), **kwargs)
    with pytest.raises(TesseraError, match=match):
        segment_stats(seg_path, image_path, statistics=["mean"])
    assert read_rat(seg_path) == {}


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
    seg_path = write_raster(tmp_path / "seg.tif", np.ones((4, 4), np.uint8))
    float_seg = write_raster(tmp_path / "fseg.tif", np.ones((4, 4), np.float32))
    image_path = write_raster(tmp_path / "image.tif", np.ones((4, 4), np.uint16))
    cases = [
        (dict(segments=str(tmp_path / "missing.tif")), "Raster not found: .*missing.tif"),
        (dict(segments=float_seg), "fseg.tif holds float32.*integers"),
        (dict(bands=[2]), "image.tif has 1 band.*band 2"),
        (dict(statistics=["mean", "average"]), "Unknown statistic.*average"),
        (dict(percentiles=[101]), "Percentile 101 is outside 0..100"),
        (dict(percentiles="25,x"), "Percentile 'x' is not a number"),
        (dict(percentile_method="nearest"), "Unknown percentile method 'nearest'"),
        (dict(output_rat=str(tmp_path / "out.csv")), "format.*out.csv"),
        (dict(output_rat=str(tmp_path / "no" / "out.img")), "not writable|does not exist"),
    ]
    for kwargs, match in cases:
        arguments = dict(segments=seg_path, image=image_path, statistics=["mean"])
        arguments.update(kwargs)
        with pytest.raises(TesseraError, match=match):
            segment_stats(**arguments)
    assert read_rat(seg_path) == {}


def test_open_gdal_datasets_are_accepted(tmp_path):
    seg = blocky_segments(30, 40, 5, 5, seed=30)
    image = _image("uint16", (30, 40), seed=31)
    seg_ds = gdal.GetDriverByName("MEM").Create("", 40, 30, 1, gdal.GDT_UInt32)
    seg_ds.SetGeoTransform(GEOTRANSFORM)
    seg_ds.GetRasterBand(1).WriteArray(seg)
    image_ds = gdal.Open(write_raster(tmp_path / "image.tif", image))
    image_ds.SetGeoTransform(GEOTRANSFORM)
    seg_ds.SetProjection(image_ds.GetProjection())
    segment_stats(seg_ds, image_ds, statistics=["mean"], output_rat=str(tmp_path / "r.img"))
    assert_columns_match(read_rat(tmp_path / "r.img"), reference_stats(seg, image), 1)


def test_real_worldview_scene_segmented_by_quantized_values(tmp_path):
    path = shared_data("worldview", "Worldview_2016-09-30.tif")
    scene = gdal.Open(path)
    data = scene.ReadAsArray()
    nodata = scene.GetRasterBand(1).GetNoDataValue()
    rows, cols = data.shape[1:]
    # Segments: 8 brightness classes of band 7 within a 24-pixel grid.
    valid = data[6][data[6] != nodata]
    classes = np.digitize(data[6], np.percentile(valid, np.arange(1, 8) * 12.5))
    grid = (np.arange(rows)[:, None] // 24) * (cols // 24 + 1) + np.arange(cols)[None, :] // 24
    seg = (grid * 8 + classes + 1).astype(np.uint32)
    seg_path = write_raster(tmp_path / "seg.tif", seg, geotransform=scene.GetGeoTransform(),
                            crs_wkt=scene.GetProjection())
    segment_stats(seg_path, path, bands=[2, 5, 8], statistics=ALL, percentiles=(10, 90),
                  window_size=100)
    rat = read_rat(seg_path)
    for band in (2, 5, 8):
        expected = reference_stats(seg, data[band - 1], nodata, percentiles=(10, 90))
        assert_columns_match(rat, expected, band)


def test_large_result_tables_go_to_a_temporary_file(tmp_path, monkeypatch):
    from tessera.engine.rat import output as rat_output

    monkeypatch.setattr(rat_output, "MEMORY_BUDGET", 1024)
    # columns gathered for writing two at a time, in blocks of 50 rows
    monkeypatch.setattr(rat_output, "GATHER_BYTES", 5000)
    monkeypatch.setattr(rat_output, "GATHER_ROWS", 50)
    seg = blocky_segments(60, 60, 4, 4, seed=32)
    image = _image("uint16", (60, 60), seed=33)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    segment_stats(seg_path, write_raster(tmp_path / "image.tif", image), statistics=ALL,
                  window_size=16)
    assert_columns_match(read_rat(seg_path), reference_stats(seg, image), 1)


def test_windows_follow_the_blocks_of_both_rasters(tmp_path):
    from tessera.engine.io.raster_io import open_raster, plan_windows

    tiles = ["TILED=YES", "BLOCKXSIZE={0}", "BLOCKYSIZE={0}"]
    seg = write_raster(tmp_path / "seg.tif", np.ones((1000, 1200), np.uint32),
                       options=[o.format(64) for o in tiles])
    image = write_raster(tmp_path / "img.tif", np.ones((1000, 1200), np.uint16),
                         options=[o.format(256) for o in tiles])
    seg_ds, img_ds = open_raster(seg), open_raster(image)
    alone = plan_windows(seg_ds, 1, target_pixels=200_000)
    assert {w.ysize for w in alone[:-1]} == {128}  # two 64-row blocks of the segments
    both = plan_windows(seg_ds, 1, target_pixels=200_000, also=[(img_ds, 1)])
    # 256-row strips: no image tile is cut by a window edge (it would be decoded twice)
    assert all(w.yoff % 256 == 0 and w.xsize == 1200 for w in both)
    assert sum(w.ysize for w in both) == 1000


def test_signed_bytes_are_written_and_read_as_int8(tmp_path):
    """GDAL 3.6 stores int8 as Byte marked PIXELTYPE=SIGNEDBYTE and reads it unsigned:
    Tessera writes the mark and reads the values signed, in any interleave and type."""
    from tessera.engine.io.raster_io import Window, band_dtype, open_raster, read_window

    image = np.random.default_rng(40).integers(-128, 128, (3, 20, 30)).astype(np.int8)
    path = write_raster(tmp_path / "signed.tif", image)
    dataset = open_raster(path)
    band = dataset.GetRasterBand(2)
    assert band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE"
    assert band_dtype(band) == np.int8
    window = Window(5, 3, 20, 10)
    wanted = image[[2, 0], 3:13, 5:25]
    for dtype, interleave in ((None, "band"), (None, "pixel"), (np.float32, "pixel")):
        got = read_window(dataset, [3, 1], window, dtype, interleave)
        assert got.dtype == (dtype or np.int8)
        assert np.array_equal(got, wanted)
