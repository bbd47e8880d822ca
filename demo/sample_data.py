"""Small deterministic sample data for the demo (written under demo/output).

Everything is generated from fixed seeds, so two runs give the same files:
a segmentation raster with its image, polygons over the image, and
overlapping scenes of one synthetic landscape with different radiometry.
"""

import os

import numpy as np
from osgeo import ogr, osr

from tessera.engine.io.raster_io import write_array

CRS_EPSG = 32633
ORIGIN = (400000.0, 5600000.0)
PIXEL = 10.0


def crs_wkt():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(CRS_EPSG)
    return srs.ExportToWkt()


def geotransform(col0=0, row0=0):
    return (ORIGIN[0] + col0 * PIXEL, PIXEL, 0.0, ORIGIN[1] - row0 * PIXEL, 0.0, -PIXEL)


def landscape(rows, cols, bands, seed=1):
    """A smooth multi-band field with texture, as uint16 reflectance-like values."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / max(rows, cols)
    layers = []
    for band in range(bands):
        field = (np.sin(6 * x + band) + np.cos(5 * y - 0.5 * band) + 2.5) * 900
        layers.append(field + rng.normal(0, 40, (rows, cols)))
    return np.clip(np.stack(layers), 1, 65535).astype(np.uint16)


def segmentation(rows, cols, block, seed=2):
    """Blocky segments with ragged edges (uint32), numbered in random order from 1."""
    rng = np.random.default_rng(seed)
    wander_r = np.cumsum(rng.integers(-1, 2, cols)) % block  # row edges drift along columns
    wander_c = np.cumsum(rng.integers(-1, 2, rows)) % block
    grid_r = (np.arange(rows)[:, None] + wander_r[None, :]) // block
    grid_c = (np.arange(cols)[None, :] + wander_c[:, None]) // block
    _, dense = np.unique(grid_r * (cols // block + 2) + grid_c, return_inverse=True)
    ids = rng.permutation(dense.max() + 1) + 1
    return ids[dense.reshape(rows, cols)].astype(np.uint32)


def polygons(path, count=12, seed=3, extent=600):
    """A GeoPackage of squares, a triangle with a hole, and overlapping discs."""
    rng = np.random.default_rng(seed)
    driver = ogr.GetDriverByName("GPKG")
    if os.path.exists(path):
        driver.DeleteDataSource(path)
    source = driver.CreateDataSource(path)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(CRS_EPSG)
    layer = source.CreateLayer("zones", srs, ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    x0, y0 = ORIGIN
    size = extent * PIXEL
    for index in range(count):
        cx = x0 + rng.uniform(0.1, 0.9) * size
        cy = y0 - rng.uniform(0.1, 0.9) * size
        radius = rng.uniform(0.03, 0.12) * size
        geometry = ogr.CreateGeometryFromWkt(f"POINT ({cx} {cy})").Buffer(radius, 16)
        if index % 4 == 0:  # a hole
            geometry = geometry.Difference(
                ogr.CreateGeometryFromWkt(f"POINT ({cx} {cy})").Buffer(radius / 3, 8))
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", f"zone {index + 1}")
        feature.SetGeometry(ogr.ForceToMultiPolygon(geometry))
        layer.CreateFeature(feature)
    source = None
    return path


def overlapping_scenes(folder, rows=300, cols=300, bands=3, seed=4):
    """Three scenes cut from one landscape with different gains and offsets."""
    world = landscape(rows + 150, cols + 150, bands, seed).astype(np.float64)
    gains = [(1.0, 1.0, 1.0), (1.15, 0.9, 1.05), (0.85, 1.1, 0.95)]
    offsets = [(0, 0, 0), (40, -30, 15), (-25, 20, 60)]
    corners = [(0, 0), (0, 150), (150, 75)]
    paths = []
    for index, (row0, col0) in enumerate(corners):
        cut = world[:bands, row0:row0 + rows, col0:col0 + cols]
        gain = np.array(gains[index][:bands])[:, None, None]
        offset = np.array(offsets[index][:bands])[:, None, None]
        scene = np.clip(np.round(cut * gain + offset), 1, 65535).astype(np.uint16)
        path = os.path.join(folder, f"scene_{index + 1}.tif")
        write_array(path, scene, geotransform(col0, row0), crs_wkt(), nodata=0)
        paths.append(path)
    return paths


def generate(folder):
    """Write every sample file into ``folder``; returns their paths by name."""
    os.makedirs(folder, exist_ok=True)
    rows = cols = 600
    image = landscape(rows, cols, 4)
    segments = segmentation(rows, cols, 12)
    files = {
        "image": write_array(os.path.join(folder, "image.tif"), image, geotransform(),
                             crs_wkt(), nodata=0),
        "segments": write_array(os.path.join(folder, "segments.tif"), segments,
                                geotransform(), crs_wkt()),
        "segments_img": write_array(os.path.join(folder, "segments.img"), segments,
                                    geotransform(), crs_wkt(), driver="HFA"),
        "polygons": polygons(os.path.join(folder, "zones.gpkg")),
    }
    for index, path in enumerate(overlapping_scenes(folder), start=1):
        files[f"scene_{index}"] = path
    return files
