"""Overlapping scenes for the normalization tests: windows of the real
WorldView scene (optionally distorted), small synthetic images, polygon
masks, and numpy references (pixel centres, overlap differences)."""

import numpy as np
from osgeo import gdal, ogr, osr

from tessera.engine.io.raster_io import write_array

WORLDVIEW_NODATA = -9999


def read_scene(path):
    """(array (bands, rows, cols) float64, geotransform, CRS WKT) of a whole raster."""
    dataset = gdal.Open(str(path))
    return (dataset.ReadAsArray().astype(np.float64), dataset.GetGeoTransform(),
            dataset.GetProjection())


def shifted(geotransform, row0, col0):
    x0, px, _, y0, _, py = geotransform
    return (x0 + col0 * px, px, 0.0, y0 + row0 * py, 0.0, py)


def cut_windows(scene, corners, size):
    """[(array, geotransform)] of ``size`` x ``size`` windows at (row, col) corners."""
    data, geotransform, _ = scene
    return [(data[:, r:r + size, c:c + size].copy(), shifted(geotransform, r, c))
            for r, c in corners]


def distort(array, gains, offsets, nodata=WORLDVIEW_NODATA, field=None):
    """``gain * x + offset`` per band (times a per-pixel ``field``) keeping nodata."""
    invalid = array == nodata
    out = array * np.asarray(gains, float)[:, None, None] + np.asarray(offsets, float)[:, None,
                                                                                        None]
    if field is not None:
        out = out * field[None]
    out[invalid] = nodata
    return out


def write(path, array, geotransform, wkt, nodata=WORLDVIEW_NODATA, dtype=np.int16):
    out = np.round(array) if np.dtype(dtype).kind in "iu" else array
    return write_array(str(path), out.astype(dtype), geotransform, wkt, nodata)


def read(path):
    """All bands of a raster as float64 (bands, rows, cols)."""
    array = gdal.Open(str(path)).ReadAsArray().astype(np.float64)
    return array[np.newaxis] if array.ndim == 2 else array


def utm_wkt(epsg=32633):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def write_polygons(path, features, wkt, field="image"):
    """A GeoPackage of polygons: ``features`` is [(WKT geometry, field value)]."""
    driver = ogr.GetDriverByName("GPKG")
    source = driver.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    layer = source.CreateLayer("mask", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for geometry, value in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(field, value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(geometry))
        layer.CreateFeature(feature)
    source = None
    return str(path)


def pixel_centres(geotransform, rows, cols):
    """(x, y) arrays (rows, cols) of pixel centres."""
    x0, px, _, y0, _, py = geotransform
    cols_i, rows_i = np.meshgrid(np.arange(cols), np.arange(rows))
    return x0 + (cols_i + 0.5) * px, y0 + (rows_i + 0.5) * py


def population_stats(values):
    values = np.asarray(values, np.float64)
    return values.mean(), values.std(), values.size


def overlap_difference(first, first_gt, second, second_gt, nodata):
    """Mean |first - second| over co-located valid pixels (grids lining up)."""
    dc = round((second_gt[0] - first_gt[0]) / first_gt[1])
    dr = round((second_gt[3] - first_gt[3]) / first_gt[5])
    rows = min(first.shape[1], dr + second.shape[1]) - max(0, dr)
    cols = min(first.shape[2], dc + second.shape[2]) - max(0, dc)
    a = first[:, max(0, dr):max(0, dr) + rows, max(0, dc):max(0, dc) + cols]
    b = second[:, max(0, -dr):max(0, -dr) + rows, max(0, -dc):max(0, -dc) + cols]
    valid = (a != nodata) & (b != nodata)
    return float(np.abs(a - b)[valid].mean())
