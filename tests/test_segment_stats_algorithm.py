"""tessera:segmentstats as Processing users call it."""

import numpy as np
import pytest
from raster_files import blocky_segments, read_rat, write_raster
from segment_reference import assert_columns_match, reference_stats


@pytest.fixture
def rasters(tmp_path):
    seg = blocky_segments(50, 70, 6, 7, seed=40)
    seg2 = np.stack([seg, blocky_segments(50, 70, 5, 5, seed=41)])
    image = np.random.default_rng(42).integers(0, 300, (3, 50, 70)).astype(np.int16)
    return {
        "seg": seg, "seg2": seg2, "image": image,
        "seg_path": write_raster(tmp_path / "seg.tif", seg),
        "seg2_path": write_raster(tmp_path / "seg2.img", seg2, driver="HFA"),
        "image_path": write_raster(tmp_path / "image.tif", image, nodata=0),
    }


def test_parameters_reach_the_engine(run_algorithm, rasters, tmp_path):
    out = str(tmp_path / "stats.img")
    table = str(tmp_path / "stats.csv")
    results = run_algorithm("segmentstats", {
        "SEGMENTS": rasters["seg2_path"], "SEGMENT_BAND": 2, "IMAGE": rasters["image_path"],
        "BANDS": [3, 1], "STATISTICS": ["pixcount", "median", "variety"],
        "PERCENTILES": "10, 90", "PERCENTILE_METHOD": "linear", "MISSING_VALUE": -1,
        "OUTPUT_RAT": out, "OUTPUT_TABLE": table})
    seg = rasters["seg2"][1]
    assert results["RAT"] == out
    assert results["OUTPUT_TABLE"] == table
    assert results["COLUMNS"].split(",") == [
        "b3_pixcount", "b3_median", "b3_variety", "b3_p10", "b3_p90",
        "b1_pixcount", "b1_median", "b1_variety", "b1_p10", "b1_p90"]
    assert results["SEGMENT_COUNT"] == len(np.unique(seg))
    rat = read_rat(out)
    for band in (1, 3):
        expected = reference_stats(seg, rasters["image"][band - 1], nodata=0,
                                   percentiles=(10, 90), method="linear")
        assert_columns_match(rat, expected, band, missing=-1, rtol=1e-12)
    assert len(open(table).read().splitlines()) == len(np.unique(seg)) + 1


def test_default_statistics_and_all_bands(run_algorithm, rasters):
    results = run_algorithm("segmentstats", {"SEGMENTS": rasters["seg_path"],
                                             "IMAGE": rasters["image_path"]})
    columns = results["COLUMNS"].split(",")
    assert columns[:5] == ["b1_pixcount", "b1_min", "b1_max", "b1_mean", "b1_stddev"]
    assert len(columns) == 15
    rat = read_rat(rasters["seg_path"])
    for band in (1, 2, 3):
        assert_columns_match(rat, reference_stats(rasters["seg"], rasters["image"][band - 1],
                                                  nodata=0), band)


def test_user_errors_are_processing_exceptions_naming_the_problem(run_algorithm, rasters,
                                                                   tmp_path):
    from qgis.core import QgsProcessingException

    base = {"SEGMENTS": rasters["seg_path"], "IMAGE": rasters["image_path"],
            "STATISTICS": ["mean"]}
    run_algorithm("segmentstats", base)
    with pytest.raises(QgsProcessingException, match="already has the column.*b1_mean"):
        run_algorithm("segmentstats", base)
    with pytest.raises(QgsProcessingException, match="Percentile 250 is outside"):
        run_algorithm("segmentstats", dict(base, PERCENTILES="250", OVERWRITE=True))
    other = write_raster(tmp_path / "other.tif", np.ones((50, 71), np.uint8))
    with pytest.raises(QgsProcessingException, match="other.tif.*same grid"):
        run_algorithm("segmentstats", dict(base, IMAGE=other, OVERWRITE=True))
