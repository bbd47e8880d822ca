"""tessera:segmentpolygons and its engine: one feature per segment, whose area is its pixel
count times the pixel area (numpy), whose fields are its RAT row, and which rasterizes (GDAL)
back to exactly its pixels, also when the segment crosses polygonized windows."""

import numpy as np
import pytest
from osgeo import gdal, ogr
from raster_files import GEOTRANSFORM, read_rat, speckled_segments, utm_wkt, write_raster
from rat_fixtures import write_gdal_rat, write_zarr_store

from tessera.engine.errors import TesseraError
from tessera.engine.segments.polygons import segment_polygons

PIXEL_AREA = abs(GEOTRANSFORM[1] * GEOTRANSFORM[5])


def features(path, layer=None):
    source = ogr.Open(str(path))
    layer = source.GetLayer(layer or 0)
    rows = {}
    for feature in layer:
        items = feature.items()
        sid = items.pop("segment_id")
        assert sid not in rows, f"segment {sid} has two features"
        rows[sid] = (feature.GetGeometryRef().Clone(), items)
    return rows, layer.GetSpatialRef()


def rasterized(path, shape):
    """The output polygons burnt back onto the segment grid (segment_id, 0 elsewhere)."""
    target = gdal.GetDriverByName("MEM").Create("", shape[1], shape[0], 1, gdal.GDT_UInt32)
    target.SetGeoTransform(GEOTRANSFORM)
    source = ogr.Open(str(path))
    gdal.RasterizeLayer(target, [1], source.GetLayer(0), options=["ATTRIBUTE=segment_id"])
    return target.ReadAsArray()


def crossing_ids(seg, window):
    """Ids with pixels on both sides of a window edge."""
    rows = np.arange(window, seg.shape[0], window)
    cols = np.arange(window, seg.shape[1], window)
    across = set(np.intersect1d(seg[rows - 1].ravel(), seg[rows].ravel()).tolist())
    across |= set(np.intersect1d(seg[:, cols - 1].ravel(), seg[:, cols].ravel()).tolist())
    return across - {0}


@pytest.mark.parametrize("source", ["own", "zarr"])
def test_one_feature_per_segment_with_its_area_fields_and_pixels(source, tmp_path):
    seg = speckled_segments(70, 90, 9, 0.01, seed=7).astype(np.uint32)
    seg_path = write_raster(tmp_path / "segments.tif", seg, nodata=0)
    count = int(seg.max()) + 1
    rng = np.random.default_rng(1)
    columns = {"klass": rng.integers(0, 9, count).astype(np.int32),
               "b1_mean": rng.normal(50, 9, count)}
    columns["b1_mean"][3] = np.nan
    rat = None
    if source == "own":
        write_gdal_rat(seg_path, columns)
        columns = read_rat(seg_path)  # as GDAL reads the .aux.xml back
    else:
        rat = write_zarr_store(tmp_path / "stats.zarr", columns)
    result = segment_polygons(seg_path, tmp_path / "polygons.gpkg", ["b1_mean", "klass"],
                              rat=rat, window_size=16)
    rows, srs = features(tmp_path / "polygons.gpkg")
    ids = np.unique(seg[seg != 0])
    assert sorted(rows) == ids.tolist() and result.feature_count == len(ids)
    assert result.fields == ["segment_id", "b1_mean", "klass"]
    assert srs is not None and srs.IsSame(_srs())
    pixels = np.bincount(seg.ravel())
    assert crossing_ids(seg, 16)  # the case has segments split across windows
    for sid, (geometry, items) in rows.items():
        assert geometry.GetGeometryType() == ogr.wkbMultiPolygon and geometry.IsValid()
        assert geometry.GetArea() == pytest.approx(pixels[sid] * PIXEL_AREA, rel=1e-12)
        assert items["klass"] == columns["klass"][sid]
        mean = columns["b1_mean"][sid]
        assert items["b1_mean"] is None if np.isnan(mean) else items["b1_mean"] == mean
    np.testing.assert_array_equal(rasterized(tmp_path / "polygons.gpkg", seg.shape), seg)


def _srs():
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromWkt(utm_wkt())
    return srs


def test_without_a_rat_only_the_id_and_a_histogram_is_used(tmp_path):
    seg = speckled_segments(40, 50, 7, 0.02, seed=3).astype(np.uint16)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    from raster_files import add_histogram

    add_histogram(seg_path)
    result = segment_polygons(seg_path, tmp_path / "p.gpkg", window_size=8)
    rows, _ = features(tmp_path / "p.gpkg")
    assert result.fields == ["segment_id"]
    assert sorted(rows) == np.unique(seg[seg != 0]).tolist()
    np.testing.assert_array_equal(rasterized(tmp_path / "p.gpkg", seg.shape), seg)


def test_user_mistakes_are_explained(tmp_path):
    seg = speckled_segments(20, 20, 5, 0.0, seed=1).astype(np.uint32)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    with pytest.raises(TesseraError, match="GeoPackage"):
        segment_polygons(seg_path, tmp_path / "p.shp")
    with pytest.raises(TesseraError, match="no raster attribute table"):
        segment_polygons(seg_path, tmp_path / "p.gpkg", ["b1_mean"])
    write_raster(tmp_path / "float.tif", seg.astype(np.float32))
    with pytest.raises(TesseraError, match="must be integers"):
        segment_polygons(tmp_path / "float.tif", tmp_path / "p.gpkg")
    with pytest.raises(TesseraError, match="destroy an input"):
        segment_polygons(seg_path, tmp_path / "p.gpkg", rat=str(tmp_path / "p.gpkg"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.tif", "segments.tif"]
    segment_polygons(seg_path, tmp_path / "p.gpkg")
    with pytest.raises(TesseraError, match="p.gpkg already exists"):
        segment_polygons(seg_path, tmp_path / "p.gpkg")
    segment_polygons(seg_path, tmp_path / "p.gpkg", overwrite=True)


def test_algorithm_writes_a_sink_with_the_rat_fields(run_algorithm, tmp_path):
    seg = speckled_segments(50, 60, 8, 0.01, seed=11).astype(np.uint32)
    seg_path = write_raster(tmp_path / "segments.tif", seg, nodata=0)
    columns = {"area_m2": np.bincount(seg.ravel()).astype(np.float64) * PIXEL_AREA}
    write_zarr_store(tmp_path / "s.zarr", columns)
    result = run_algorithm("segmentpolygons", {
        "SEGMENTS": seg_path, "RAT": str(tmp_path / "s.zarr"), "COLUMNS": "area_m2",
        "OUTPUT": str(tmp_path / "out.gpkg")})
    assert result["FEATURE_COUNT"] == len(np.unique(seg[seg != 0]))
    rows, _ = features(result["OUTPUT"].split("|")[0])
    for sid, (geometry, items) in rows.items():
        assert geometry.GetArea() == pytest.approx(items["area_m2"], rel=1e-12)
        assert items["area_m2"] == columns["area_m2"][sid]


def test_a_histogram_that_disagrees_with_the_raster_is_an_error(tmp_path):
    from raster_files import add_histogram, blocky_segments

    seg = blocky_segments(20, 20, 5, 5, seed=2)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    add_histogram(seg_path)
    dataset = gdal.Open(seg_path, gdal.GA_Update)  # one pixel changes after the histogram
    dataset.GetRasterBand(1).WriteArray(np.array([[seg[0, 0]]], np.uint32), 19, 19)
    dataset = None
    with pytest.raises(TesseraError, match=f"Segment {seg[0, 0]} .*more pixels than its "
                                           "histogram.*delete that column"):
        segment_polygons(seg_path, tmp_path / "p.gpkg", window_size=8)
    assert not (tmp_path / "p.gpkg").exists()


def test_algorithm_refuses_an_existing_output_unless_overwrite(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException

    seg = speckled_segments(20, 30, 6, 0.0, seed=4).astype(np.uint32)
    seg_path = write_raster(tmp_path / "segments.tif", seg, nodata=0)
    (tmp_path / "out.gpkg").write_bytes(b"keep me")
    parameters = {"SEGMENTS": seg_path, "OUTPUT": str(tmp_path / "out.gpkg")}
    with pytest.raises(QgsProcessingException, match="out.gpkg"):
        run_algorithm("segmentpolygons", parameters)
    assert (tmp_path / "out.gpkg").read_bytes() == b"keep me"
    result = run_algorithm("segmentpolygons", {**parameters, "OVERWRITE": True})
    assert result["FEATURE_COUNT"] == len(np.unique(seg[seg != 0]))
