"""tessera:rattoraster and its engine: every pixel holds its segment's RAT value, checked
against numpy indexing of the columns written with GDAL/zarr directly."""

import numpy as np
import pytest
from osgeo import gdal
from raster_files import GEOTRANSFORM, read_rat, write_raster
from rat_fixtures import segment_case, write_gdal_rat, write_rat_file, write_zarr_store

from tessera.engine.errors import TesseraError
from tessera.engine.rat.to_raster import rat_to_raster

MISSING = -9999


def expected(seg, values, missing=MISSING, nodata=MISSING):
    """Per pixel: the column value of its id; nodata for id 0, ids past the end, the
    missing value and NaN."""
    values = np.asarray(values, np.float64)
    inside = seg < len(values)
    out = np.full(seg.shape, float(nodata))
    out[inside] = values[seg[inside]]
    out[(seg == 0) | np.isnan(out) | (out == missing)] = nodata
    return out


def read_bands(path):
    dataset = gdal.Open(str(path))
    cube = dataset.ReadAsArray()
    cube = cube[np.newaxis] if cube.ndim == 2 else cube
    bands = [dataset.GetRasterBand(b + 1) for b in range(dataset.RasterCount)]
    return dataset, cube, bands


@pytest.fixture(params=["own", "gdal_file", "zarr"])
def rat_case(request, tmp_path):
    seg, columns = segment_case()
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    if request.param == "own":  # a GeoTIFF's .aux.xml keeps reals as text: compare to
        write_gdal_rat(seg_path, columns)  # what GDAL reads back
        return seg, read_rat(seg_path), seg_path, None
    if request.param == "gdal_file":
        write_rat_file(tmp_path / "rat_only.img", columns)
        return seg, columns, seg_path, str(tmp_path / "rat_only.img")
    return seg, columns, seg_path, write_zarr_store(tmp_path / "stats.zarr", columns)


def test_every_pixel_holds_its_segments_values_from_every_rat_source(rat_case, tmp_path):
    seg, columns, seg_path, rat = rat_case
    output = tmp_path / "out" / "values.tif"
    output.parent.mkdir()
    result = rat_to_raster(seg_path, output, ["klass", "b1_mean"], rat=rat, window_size=16)
    dataset, cube, bands = read_bands(output)
    assert result.dtype == "float64" and dataset.GetRasterBand(1).DataType == gdal.GDT_Float64
    assert [b.GetDescription() for b in bands] == ["klass", "b1_mean"]
    assert all(b.GetNoDataValue() == MISSING for b in bands)
    assert dataset.GetGeoTransform() == GEOTRANSFORM
    np.testing.assert_array_equal(cube[0], expected(seg, columns["klass"]))
    np.testing.assert_array_equal(cube[1], expected(seg, columns["b1_mean"]))
    structure = dataset.GetMetadata("IMAGE_STRUCTURE")
    assert structure.get("COMPRESSION") in ("ZSTD", "DEFLATE")
    assert bands[0].GetBlockSize() == [256, 256]  # tiled
    real = columns["b1_mean"]
    valid = real[1:][~np.isnan(real[1:]) & (real[1:] != MISSING)]
    assert result.ranges["b1_mean"] == (valid.min(), valid.max())
    assert sorted(p.name for p in output.parent.iterdir()) == ["values.tif"]  # no leftovers


def test_integer_columns_give_an_int32_raster(tmp_path):
    seg, columns = segment_case(seed=9)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    write_gdal_rat(seg_path, columns)
    columns = read_rat(seg_path)
    result = rat_to_raster(seg_path, tmp_path / "klass.tif", "klass")
    dataset, cube, _ = read_bands(tmp_path / "klass.tif")
    assert result.dtype == "int32" and dataset.GetRasterBand(1).DataType == gdal.GDT_Int32
    np.testing.assert_array_equal(cube[0], expected(seg, columns["klass"]))


def test_float32_and_another_missing_value(tmp_path):
    seg, columns = segment_case(seed=2)
    seg_path = write_raster(tmp_path / "segments.tif", seg, nodata=0)
    write_zarr_store(tmp_path / "s.zarr", columns)
    rat_to_raster(seg_path, tmp_path / "f.tif", "b1_mean", rat=str(tmp_path / "s.zarr"),
                  data_type="float32", missing_value=-1)
    dataset, cube, bands = read_bands(tmp_path / "f.tif")
    assert bands[0].DataType == gdal.GDT_Float32 and bands[0].GetNoDataValue() == -1
    want = expected(seg, columns["b1_mean"], missing=-1, nodata=-1).astype(np.float32)
    assert (want == MISSING).any()  # -9999 is not the missing value now: kept as a value
    np.testing.assert_array_equal(cube[0], want)


def test_user_mistakes_are_explained(tmp_path):
    seg, columns = segment_case()
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    with pytest.raises(TesseraError, match="no raster attribute table"):
        rat_to_raster(seg_path, tmp_path / "a.tif", "klass")
    write_gdal_rat(seg_path, columns)
    with pytest.raises(TesseraError, match="no column.*nope"):
        rat_to_raster(seg_path, tmp_path / "a.tif", "nope")
    with pytest.raises(TesseraError, match="destroy an input"):
        rat_to_raster(seg_path, seg_path, "klass")
    with pytest.raises(TesseraError, match="must be a GeoTIFF"):
        rat_to_raster(seg_path, tmp_path / "a.img", "klass")
    with pytest.raises(TesseraError, match="missing value 0.5"):
        rat_to_raster(seg_path, tmp_path / "a.tif", "klass", missing_value=0.5)
    assert not (tmp_path / "a.tif").exists()
    rat_to_raster(seg_path, tmp_path / "a.tif", "klass")
    with pytest.raises(TesseraError, match="a.tif already exists"):
        rat_to_raster(seg_path, tmp_path / "a.tif", "klass")
    rat_to_raster(seg_path, tmp_path / "a.tif", "klass", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "segments.tif",
                                                         "segments.tif.aux.xml"]


def test_algorithm_writes_and_returns_the_raster(run_algorithm, tmp_path):
    seg, columns = segment_case(seed=4)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    write_zarr_store(tmp_path / "stats.zarr", columns)
    result = run_algorithm("rattoraster", {
        "SEGMENTS": seg_path, "RAT": str(tmp_path / "stats.zarr"),
        "COLUMNS": "b1_mean,klass", "OUTPUT": str(tmp_path / "out.tif")})
    assert result["OUTPUT"] == str(tmp_path / "out.tif")
    assert result["COLUMNS"] == "b1_mean,klass"
    _, cube, _ = read_bands(tmp_path / "out.tif")
    np.testing.assert_array_equal(cube[0], expected(seg, columns["b1_mean"]))
    np.testing.assert_array_equal(cube[1], expected(seg, columns["klass"]))


def test_algorithm_refuses_an_existing_output_unless_overwrite(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException

    seg, columns = segment_case(seed=6)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    write_gdal_rat(seg_path, columns)
    (tmp_path / "out.tif").write_bytes(b"keep me")
    parameters = {"SEGMENTS": seg_path, "COLUMNS": "klass", "OUTPUT": str(tmp_path / "out.tif")}
    with pytest.raises(QgsProcessingException, match="out.tif"):
        run_algorithm("rattoraster", parameters)
    assert (tmp_path / "out.tif").read_bytes() == b"keep me"
    run_algorithm("rattoraster", {**parameters, "OVERWRITE": True})
    _, cube, _ = read_bands(tmp_path / "out.tif")
    np.testing.assert_array_equal(cube[0], expected(seg, read_rat(seg_path)["klass"]))
