"""tessera:segmentspatialstats through processing.run and qgis_process.bin."""

import hashlib
import os

import numpy as np
import pytest
from raster_files import GEOTRANSFORM, blocky_segments, read_rat, write_raster
from spatial_reference import (
    assert_rat_matches,
    lag_columns,
    shape_reference,
    variogram_reference,
)


def _case(tmp_path, driver="GTiff", name="segments.tif"):
    import sample_data

    seg = sample_data.segmentation(50, 64, 8, seed=2)
    image = np.random.default_rng(3).integers(1, 400, (50, 64)).astype(np.uint16)
    image[::9, ::4] = 0
    seg_path = write_raster(tmp_path / name, seg, driver=driver)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=0)
    return seg, image, seg_path, image_path


def test_provider_offers_the_algorithm(tessera_provider):
    algorithm = tessera_provider.algorithm("segmentspatialstats")
    assert algorithm is not None and algorithm.group() == "Segments"
    names = [p.name() for p in algorithm.parameterDefinitions()]
    for name in ("SEGMENTS", "IMAGE", "BAND", "STATISTICS", "MAX_LAG", "CONNECTIVITY",
                 "OUTPUT_RAT", "OVERWRITE"):
        assert name in names


def test_through_processing_run_into_the_segment_files_own_rat(run_algorithm, tmp_path):
    seg, image, seg_path, image_path = _case(tmp_path)
    results = run_algorithm("segmentspatialstats", {
        "SEGMENTS": seg_path, "IMAGE": image_path, "BAND": 1,
        "STATISTICS": ["centroid", "perimeter", "edgepixels", "variogram"],
        "MAX_LAG": 2, "CONNECTIVITY": "4"})
    assert results["COLUMNS"] == ("centroid_x,centroid_y,perimeter,edge_pixels,gamma_1,"
                                  "gamma_2")
    assert results["SEGMENT_COUNT"] == len(np.unique(seg))
    rat = read_rat(seg_path)
    assert_rat_matches(rat, shape_reference(seg, GEOTRANSFORM, connectivity=4),
                       columns={"centroid_x", "centroid_y", "perimeter", "edge_pixels"})
    assert_rat_matches(rat, lag_columns(
        variogram_reference(seg, image, GEOTRANSFORM, 2, nodata=0), "gamma"))


def test_qgis_process_without_image_into_a_separate_rat(qgis_process, tmp_path):
    seg = blocky_segments(40, 30, 7, 6, seed=4)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    out = tmp_path / "spatial.img"
    code, result, output = qgis_process(
        "run", "tessera:segmentspatialstats", "--", f"SEGMENTS={seg_path}",
        "STATISTICS=bbox,area,edgepixels", "CONNECTIVITY=4", f"OUTPUT_RAT={out}")
    assert code == 0, output
    assert result["results"]["COLUMNS"] == "xmin,ymin,xmax,ymax,area,edge_pixels"
    assert result["results"]["SEGMENT_COUNT"] == len(np.unique(seg))
    assert read_rat(seg_path) == {}
    assert_rat_matches(read_rat(out), shape_reference(seg, GEOTRANSFORM, connectivity=4),
                       columns={"xmin", "ymin", "xmax", "ymax", "area", "edge_pixels"})


def test_qgis_process_reports_a_variogram_without_image_clearly(qgis_process, tmp_path):
    seg_path = write_raster(tmp_path / "segments.tif", blocky_segments(10, 10, 5, 5))
    code, _, output = qgis_process("run", "tessera:segmentspatialstats", "--",
                                   f"SEGMENTS={seg_path}", "STATISTICS=variogram")
    assert code != 0
    assert "give an image" in output and "Traceback" not in output
    assert read_rat(seg_path) == {}


def test_defaults_need_only_the_segments(run_algorithm, tmp_path):
    seg, _, seg_path, _ = _case(tmp_path, driver="HFA", name="segments.img")
    results = run_algorithm("segmentspatialstats", {"SEGMENTS": seg_path,
                                                    "STATISTICS": ["edgepixels", "area"]})
    assert results["COLUMNS"] == "area,edge_pixels"
    assert_rat_matches(read_rat(seg_path), shape_reference(seg, GEOTRANSFORM, connectivity=8),
                       columns={"area", "edge_pixels"})
    results = run_algorithm("segmentspatialstats", {"SEGMENTS": seg_path, "OVERWRITE": True})
    assert results["COLUMNS"] == "centroid_x,centroid_y,area,perimeter"
    assert_rat_matches(read_rat(seg_path), shape_reference(seg, GEOTRANSFORM),
                       columns={"centroid_x", "centroid_y", "perimeter"})


def test_a_non_integer_maximum_lag_is_refused_not_rounded(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException

    seg, image, seg_path, image_path = _case(tmp_path)
    before = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (seg_path,
                                                                            image_path)}
    with pytest.raises(QgsProcessingException) as caught:
        run_algorithm("segmentspatialstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                              "STATISTICS": ["variogram"], "MAX_LAG": 2.5})
    assert "maximum lag must be a whole number" in str(caught.value)
    assert "not 2.5" in str(caught.value)
    assert read_rat(seg_path) == {} and not os.path.exists(seg_path + ".aux.xml")
    assert before == {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in before}
