"""Generated rasters and polygon layers for the zonal statistics tests, and an
independent numpy/shapely reference of the statistics."""

import numpy as np
import shapely
from osgeo import ogr, osr
from raster_files import GEOTRANSFORM, utm_wkt, write_raster

ROWS, COLS = 90, 130
X0, PIXEL, Y0 = GEOTRANSFORM[0], GEOTRANSFORM[1], GEOTRANSFORM[3]


def star(rng, cx, cy, radius, vertices):
    """An irregular star-shaped polygon around (cx, cy)."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radii = radius * rng.uniform(0.45, 1.0, vertices)
    return shapely.Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def polygons(seed=7):
    """(name, shapely geometry in the raster CRS) covering every case the contract lists."""
    rng = np.random.default_rng(seed)
    width, height = COLS * PIXEL, ROWS * PIXEL

    def point(fx, fy):
        return X0 + fx * width, Y0 - fy * height

    cases = []
    for index in range(14):
        cx, cy = point(rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95))
        cases.append((f"star {index}", star(rng, cx, cy, rng.uniform(15, 220), 9)))
    x, y = point(0.3, 0.4)
    cases.append(("square", shapely.box(x + 3.3, y + 1.7, x + 187.1, y + 185.5)))
    cases.append(("triangle", shapely.Polygon([(x - 200.2, y - 50.3), (x + 96.6, y + 230.9),
                                               (x + 150.4, y - 143.8)])))
    x, y = point(0.6, 0.55)
    holed = star(rng, x, y, 260, 14).difference(shapely.Point(x, y).buffer(90))
    holed = holed.difference(shapely.box(x + 120.5, y - 30.2, x + 160.7, y + 20.1))
    cases.append(("holes", holed))
    x, y = point(0.2, 0.75)
    cases.append(("multipart", shapely.MultiPolygon([
        star(rng, x, y, 80, 7), star(rng, x + 400, y + 50, 60, 6),
        shapely.Point(x + 200, y - 150).buffer(40).difference(shapely.Point(x + 205, y - 150)
                                                              .buffer(15))])))
    x, y = point(0.5, 0.5)
    cases.append(("big disc", shapely.Point(x, y).buffer(420, 24)))  # overlaps many others
    cases.append(("overlapping disc", shapely.Point(x + 150, y + 60).buffer(300, 24)))
    x, y = point(0.71, 0.33)
    cases.append(("sub-pixel", shapely.box(x + 1.2, y + 1.1, x + 4.3, y + 3.9)))
    cases.append(("sub-pixel on a centre", shapely.box(x + 2.5, y + 2.5, x + 7.5, y + 8.5)))
    cases.append(("thin sliver", shapely.Polygon([(x - 300, y), (x + 300, y + 2.5),
                                                  (x + 300, y + 4.1)])))
    cases.append(("outside", shapely.box(X0 - 500, Y0 + 100, X0 - 100, Y0 + 400)))
    cases.append(("partly outside", star(rng, X0 + width - 30, Y0 - height + 40, 200, 10)))
    cases.append(("on the edge", shapely.box(X0 - 55.5, Y0 - 300.3, X0 + 85.2, Y0 - 201.1)))
    return cases


def write_polygons(path, cases, srs=None, transform=None, layer_name="zones"):
    """Write (name, geometry) cases to a GeoPackage; ``transform`` maps coordinates."""
    driver = ogr.GetDriverByName("GPKG")
    source = driver.CreateDataSource(str(path))
    if srs is None:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(utm_wkt())
    layer = source.CreateLayer(layer_name, srs, ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("area", ogr.OFTReal))
    for name, geometry in cases:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetField("area", float(geometry.area))
        if transform is not None:
            geometry = shapely.transform(geometry, transform)
        if geometry is not None:
            feature.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkb(geometry.wkb)))
        layer.CreateFeature(feature)
    source = None
    return str(path)


def image(seed=11, dtype=np.float32, nodata=-1.0):
    """Two bands: float values with NaN and nodata holes, and small integers (ties)."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(0, 100, (ROWS, COLS)).astype(dtype)
    first[rng.random((ROWS, COLS)) < 0.03] = np.nan
    first[rng.random((ROWS, COLS)) < 0.03] = nodata
    second = rng.integers(0, 12, (ROWS, COLS)).astype(dtype)
    second[5:9, 40:70] = nodata
    return np.stack([first, second])


def write_image(path, data, nodata=-1.0):
    return write_raster(path, data, nodata=nodata)


def pixel_centres(rows=ROWS, cols=COLS):
    cols, rows = np.meshgrid(np.arange(cols), np.arange(rows))
    return X0 + (cols + 0.5) * PIXEL, Y0 - (rows + 0.5) * PIXEL


def centre_masks(cases):
    """Pixels whose centre is inside each polygon: shapely's point-in-polygon test."""
    xs, ys = pixel_centres()
    return [shapely.contains_xy(geometry, xs, ys) for _, geometry in cases]


def coverage_fractions(geometry, rows=ROWS, cols=COLS):
    """Exact covered fraction of every pixel: shapely intersection areas."""
    out = np.zeros((rows, cols))
    minx, miny, maxx, maxy = geometry.bounds
    c0 = max(0, int(np.floor((minx - X0) / PIXEL)))
    c1 = min(cols, int(np.ceil((maxx - X0) / PIXEL)))
    r0 = max(0, int(np.floor((Y0 - maxy) / PIXEL)))
    r1 = min(rows, int(np.ceil((Y0 - miny) / PIXEL)))
    for r in range(r0, r1):
        for c in range(c0, c1):
            cell = shapely.box(X0 + c * PIXEL, Y0 - (r + 1) * PIXEL, X0 + (c + 1) * PIXEL,
                               Y0 - r * PIXEL)
            out[r, c] = geometry.intersection(cell).area / PIXEL ** 2
    return out


def reference_stats(values, weights=None, percentiles=(), method="inverted_cdf"):
    """Statistics of valid ``values`` (1-D), optionally weighted (definitions of
    weighted_kernels' docstring), computed with plain numpy."""
    if weights is None:
        weights = np.ones(values.shape)
    keep = weights > 0
    values, weights = values[keep].astype(np.float64), weights[keep].astype(np.float64)
    out = {"pixcount": weights.sum()}
    if not values.size:
        return out
    unique, inverse = np.unique(values, return_inverse=True)
    summed = np.bincount(inverse, weights)
    mean = np.sum(weights * values) / weights.sum()
    variance = np.sum(weights * (values - mean) ** 2) / weights.sum()
    out.update(min=values.min(), max=values.max(), sum=np.sum(weights * values), mean=mean,
               variance=variance, stddev=np.sqrt(variance), range=values.max() - values.min(),
               variety=len(unique), mode=unique[np.argmax(summed)],
               minority=unique[np.argmin(summed)])
    weighted = not np.all(weights == 1)
    for p in [50, *percentiles]:
        if weighted:
            value = weighted_quantile(unique, summed, p / 100)
        else:
            value = np.percentile(values, p, method=method)
        out["median" if p == 50 else f"p{p:g}"] = value
    return out


def weighted_quantile(values, weights, q):
    """exactextract's weighted quantile (type 7 generalised), written from its docs, of
    ``values`` (distinct, ascending) with their summed ``weights``: every sum taken in
    ascending order of value (np.cumsum goes one by one) and ``s`` walked in that order,
    as the kernels do, so their values to the bit."""
    n = len(values)
    if n == 1:
        return values[0]
    cumulative = np.cumsum(weights)
    s = np.arange(n) * weights + (n - 1.0) * np.concatenate([[0.0], cumulative[:-1]])
    target = q * (cumulative[-1] * (n - 1.0))
    above = np.flatnonzero(s > target)
    if not above.size:
        return values[-1]
    right = above[0]
    if right == 0:
        return values[0]
    left = right - 1
    with np.errstate(invalid="ignore"):  # an infinite value: NaN, as the kernels
        return values[left] + (target - s[left]) * (values[right] - values[left]) / (
            s[right] - s[left])
