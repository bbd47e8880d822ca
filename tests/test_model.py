"""The bundled model resources/models/normalize_and_summarize.model3, run by
``qgis_process.bin run <model>``: global regression → local block adjustment →
virtual mosaic → zonal statistics, checked against numpy on the outputs; the
same model as ``tessera:normalize_and_summarize`` through ``processing.run``."""

import os

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from raster_files import utm_wkt, write_raster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPO, "resources", "models", "normalize_and_summarize.model3")
X0, Y0, PIXEL = 500000.0, 6000000.0, 10.0
NODATA = -9999


def scene(rows, cols, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    world = 1000 + 400 * np.sin(xx / 11.0) * np.cos(yy / 7.0) + rng.normal(0, 30, (rows, cols))
    return np.stack([world, world * 0.5 + 200]).astype(np.float32)


def write_polygons(path, boxes):
    """Pixel-aligned rectangles (row0, row1, col0, col1) as a GeoPackage."""
    srs = osr.SpatialReference()
    srs.ImportFromWkt(utm_wkt())
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("zones", srs, ogr.wkbPolygon)
    for row0, row1, col0, col1 in boxes:
        x0, x1 = X0 + col0 * PIXEL, X0 + col1 * PIXEL
        y0, y1 = Y0 - row0 * PIXEL, Y0 - row1 * PIXEL
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
        layer.CreateFeature(feature)
    source = None


def band_one(path):
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray().astype(np.float64)


def overlap_difference(path_a, path_b, cols_a, col0_b):
    a, b = band_one(path_a)[:, col0_b:cols_a], band_one(path_b)[:, :cols_a - col0_b]
    valid = (a != NODATA) & (b != NODATA)
    return float(np.abs(a - b)[valid].mean())


def run_model_file(qgis_process, parameters):
    arguments = [f"{name}={v}" for name, value in parameters.items()
                 for v in (value if isinstance(value, list) else [value])]
    code, _, output = qgis_process("run", MODEL, "--", *arguments)
    assert code == 0, output
    assert "Traceback" not in output


def run_provider_model(run_algorithm, parameters):
    run_algorithm("normalize_and_summarize", parameters)


@pytest.mark.parametrize("runner", ["qgis_process_file", "provider"])
def test_model_normalizes_and_summarizes(runner, qgis_process, run_algorithm, tmp_path):
    world = scene(60, 100, seed=3)
    a, b = world[:, :, :60], world[:, :, 40:].copy()
    gradient = 1 + 0.4 * np.linspace(0, 1, b.shape[2])[None, None, :]
    b = (b * gradient + 50).astype(np.float32)  # a brightness ramp across the second scene
    b[:, :5, -7:] = NODATA
    path_a, path_b = tmp_path / "scene_a.tif", tmp_path / "scene_b.tif"
    write_raster(path_a, a, nodata=NODATA)
    write_raster(path_b, b, nodata=NODATA, geotransform=(X0 + 40 * PIXEL, PIXEL, 0, Y0, 0, -PIXEL))
    boxes = [(0, 20, 0, 30), (10, 50, 45, 58), (30, 60, 70, 100), (0, 12, 85, 100)]
    write_polygons(tmp_path / "zones.gpkg", boxes)
    folder, zones = tmp_path / "normalized", tmp_path / "zones_out.gpkg"

    parameters = {"INPUTS": [str(path_a), str(path_b)], "POLYGONS": str(tmp_path / "zones.gpkg"),
                  "BLOCKS": 6, "local:NORMALIZED": str(folder), "zonal:ZONES": str(zones)}
    if runner == "provider":
        run_provider_model(run_algorithm, parameters)
    else:
        run_model_file(qgis_process, parameters)
    outputs = [folder / "scene_a_Global_Local.tif", folder / "scene_b_Global_Local.tif"]
    assert all(path.exists() for path in outputs), sorted(os.listdir(folder))
    before = overlap_difference(path_a, path_b, 60, 40)
    after = overlap_difference(*outputs, 60, 40)
    assert after < 0.3 * before, (before, after)

    gdal.BuildVRT(str(tmp_path / "reference.vrt"), [str(p) for p in outputs]).FlushCache()
    values = band_one(tmp_path / "reference.vrt")
    source = ogr.Open(str(zones))
    features = sorted(source.GetLayer(), key=lambda f: f.GetFID())
    assert len(features) == len(boxes)
    for feature, (row0, row1, col0, col1) in zip(features, boxes, strict=True):
        window = values[row0:row1, col0:col1]
        valid = window[window != NODATA]
        assert feature.GetField("_pixcount") == valid.size
        assert np.isclose(feature.GetField("_mean"), valid.mean(), rtol=1e-9)
        assert np.isclose(feature.GetField("_stddev"), valid.std(), rtol=1e-7)
        assert feature.GetField("_min") == valid.min() and feature.GetField("_max") == valid.max()
        assert feature.GetField("_median") == np.percentile(valid, 50, method="inverted_cdf")


def test_a_second_run_into_the_same_folder_needs_overwrite(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class Errors(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []

        def reportError(self, error, fatal_error=False):  # noqa: N802 (QGIS API)
            self.errors.append(error)

    world = scene(40, 70, seed=4)
    path_a, path_b = tmp_path / "a.tif", tmp_path / "b.tif"
    write_raster(path_a, world[:, :, :40], nodata=NODATA)
    write_raster(path_b, world[:, :, 30:].copy(), nodata=NODATA,
                 geotransform=(X0 + 30 * PIXEL, PIXEL, 0, Y0, 0, -PIXEL))
    write_polygons(tmp_path / "zones.gpkg", [(0, 20, 0, 30)])
    parameters = {"INPUTS": [str(path_a), str(path_b)], "POLYGONS": str(tmp_path / "zones.gpkg"),
                  "BLOCKS": 4, "local:NORMALIZED": str(tmp_path / "normalized"),
                  "zonal:ZONES": str(tmp_path / "zones_out.gpkg")}
    run_provider_model(run_algorithm, parameters)
    feedback = Errors()
    with pytest.raises(QgsProcessingException):
        run_algorithm("normalize_and_summarize", parameters, feedback=feedback)
    assert any("a_Global_Local.tif already exists: choose to overwrite it" in error
               for error in feedback.errors), feedback.errors
    run_provider_model(run_algorithm, {**parameters, "OVERWRITE": True})
    written = [name for name in os.listdir(tmp_path / "normalized") if "tessera" in name]
    assert not written  # no temporary or lock file left
