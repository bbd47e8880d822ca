"""Zonal statistics: coverage fractions against shapely, every statistic against an
independent numpy reference, all_touched and fraction against exactextract, the
centre rule against QGIS's native:zonalstatisticsfb, and the Processing algorithm."""

import csv

import numpy as np
import pytest
import shapely
import zonal_cases as cases
from osgeo import ogr, osr

from tessera.engine import TesseraError, zonal_stats
from tessera.engine.errors import CancelledError

ALL_STATISTICS = ["pixcount", "min", "max", "sum", "mean", "stddev", "variance", "range",
                  "median", "mode", "minority", "variety"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zonal")
    data = cases.image()
    polygons = cases.polygons()
    return {
        "image": cases.write_image(folder / "image.tif", data),
        "layer": cases.write_polygons(folder / "zones.gpkg", polygons),
        "data": data,
        "polygons": polygons,
        "folder": folder,
    }


def valid_pixels(data, band, nodata=-1.0):
    values = data[band - 1].astype(np.float64)
    return ~np.isnan(values) & (values != nodata), values


def assert_matches(result, index, name, expected, rtol=1e-12, scale=100.0):
    value = result.column(name)[index]
    if expected is None:
        assert np.isnan(value), (name, index, value)
        return
    assert abs(value - expected) <= rtol * max(abs(expected), scale), (name, index, value,
                                                                       expected)


def test_coverage_fractions_equal_shapely_intersection_areas():
    from osgeo import gdal

    from tessera.engine.io.polygon_source import read_polygons
    from tessera.engine.zonal.polygon_raster import ALL_TOUCHED, FRACTION, SNAP, coverage_grid

    raster = gdal.GetDriverByName("MEM").Create("", cases.COLS, cases.ROWS)
    raster.SetGeoTransform(cases.GEOTRANSFORM)
    polygons = cases.polygons(seed=3)
    shapes = read_polygons([(i, g.wkb) for i, (_, g) in enumerate(polygons)], None, raster)
    checked = 0
    for index, (name, geometry) in enumerate(polygons):
        exact = cases.coverage_fractions(geometry)
        args = (index, shapes.xs, shapes.ys, shapes.ring_start, shapes.ring_sign,
                shapes.poly_ring, 0, 0, cases.ROWS, cases.COLS)
        fraction = coverage_grid(*args, FRACTION)
        touched = coverage_grid(*args, ALL_TOUCHED)
        # float32 weights, snapped within SNAP of 0 and 1
        assert np.abs(fraction - exact).max() <= 6e-8, name
        clear = (exact > 2 * SNAP) | (exact == 0)
        assert np.array_equal(touched[clear] > 0, exact[clear] > 0), name
        checked += int((exact > 0).sum())
    assert checked > 5000


def test_centre_rule_matches_a_point_in_polygon_reference(scene):
    result = zonal_stats(scene["layer"], scene["image"], statistics=ALL_STATISTICS,
                         bands=[1, 2], percentiles=[0, 10, 62.5, 100], window_size=32)
    assert result.feature_count == len(scene["polygons"])
    assert result.names[:3] == ["_b1_pixcount", "_b1_min", "_b1_max"]
    assert "_b2_p62.5" in result.names
    masks = cases.centre_masks(scene["polygons"])
    empty = 0
    for index, mask in enumerate(masks):
        for band in (1, 2):
            valid, values = valid_pixels(scene["data"], band)
            expected = cases.reference_stats(values[mask & valid], percentiles=(0, 10, 62.5, 100))
            for stat in ALL_STATISTICS + ["p0", "p10", "p62.5", "p100"]:
                assert_matches(result, index, f"_b{band}_{stat}", expected.get(stat))
        empty += int(not mask.any())
    assert empty >= 2  # the polygon outside and a sub-pixel one: pixcount 0, NaN elsewhere


def test_polygons_are_read_without_asking_geos_for_m_values(scene, monkeypatch):
    """Inside QGIS an older GEOS loaded first (Debian's 3.11) makes shapely's has_m raise
    GEOSException (seen in the desktop test's engine preparation): reading polygons never
    asks for M values, and the statistics are those of a run where has_m works."""
    expected = zonal_stats(scene["layer"], scene["image"], statistics=["pixcount", "mean"])

    def no_has_m(*args, **kwargs):
        raise shapely.errors.GEOSException("GEOSHasM needs GEOS 3.12")

    monkeypatch.setattr(shapely, "has_m", no_has_m)
    result = zonal_stats(scene["layer"], scene["image"], statistics=["pixcount", "mean"])
    assert result.names == expected.names
    for name in expected.names:
        assert np.array_equal(result.column(name), expected.column(name), equal_nan=True), name


def test_linear_percentiles_and_integer_images(tmp_path, scene):
    data = np.nan_to_num(scene["data"], nan=-1.0).astype(np.int16)
    path = cases.write_image(tmp_path / "int.tif", data)
    result = zonal_stats(scene["layer"], path, statistics=["pixcount", "median", "mode"],
                         bands=[2], percentiles="25,75", percentile_method="linear",
                         column_prefix="z_")
    assert result.names == ["z_pixcount", "z_median", "z_mode", "z_p25", "z_p75"]
    assert dict(result.columns)["z_mode"] == "integer"
    for index, mask in enumerate(cases.centre_masks(scene["polygons"])):
        values = data[1][mask & (data[1] != -1)].astype(np.float64)
        expected = cases.reference_stats(values, percentiles=(25, 75), method="linear")
        for stat in ("pixcount", "median", "mode", "p25", "p75"):
            assert_matches(result, index, f"z_{stat}", expected.get(stat))


def test_fraction_and_all_touched_match_a_shapely_reference(scene):
    stats = ALL_STATISTICS
    fraction = zonal_stats(scene["layer"], scene["image"], statistics=stats, bands=[1, 2],
                           percentiles=[25, 90], pixel_rule="fraction", window_size=40)
    touched = zonal_stats(scene["layer"], scene["image"], statistics=stats, bands=[1, 2],
                          percentiles=[25, 90], pixel_rule="all_touched", window_size=40)
    assert dict(fraction.columns)["_b1_pixcount"] == "real"
    for index, (name, geometry) in enumerate(scene["polygons"]):
        exact = cases.coverage_fractions(geometry)
        weights = exact.astype(np.float32).astype(np.float64)  # as exactextract stores them
        weights[exact > 1 - 1e-9] = 1.0
        assert ((exact == 0) | (exact > 1e-8)).all(), name  # no cell near the snapping limit
        for band in (1, 2):
            valid, values = valid_pixels(scene["data"], band)
            expected = cases.reference_stats(values[valid], weights[valid], percentiles=(25, 90))
            touched_expected = cases.reference_stats(values[valid & (exact > 0)],
                                                     percentiles=(25, 90))
            for stat in stats + ["p25", "p90"]:
                tolerance = 1e-6 if stat in ("pixcount", "sum", "mean") else 1e-5
                if stat in ("mode", "minority"):
                    tolerance = 0  # values with summed weights a float32 ulp apart
                    if band == 1:
                        continue
                assert_matches(fraction, index, f"_b{band}_{stat}", expected.get(stat),
                               rtol=tolerance)
                assert_matches(touched, index, f"_b{band}_{stat}", touched_expected.get(stat))


def exactextract_stats(raster, layer, operations):
    from exactextract import exact_extract

    features = exact_extract(raster, layer, operations, include_cols=["name"])
    return [f["properties"] for f in features]


def test_fractions_of_holes_and_parts_are_exactextracts_to_the_bit(scene):
    # exactextract rounds each ring's coverage to float32 and combines rings in float32;
    # rounding the combined coverage once instead differs by one float32 unit on cells
    # cut by two rings (about 1e-10 on the covered area here)
    theirs = exactextract_stats(scene["image"], scene["layer"], ["count"])
    ours = zonal_stats(scene["layer"], scene["image"], statistics=["pixcount"],
                       pixel_rule="fraction")
    several_rings = [index for index, (_, geometry) in enumerate(scene["polygons"])
                     if hasattr(geometry, "geoms") or getattr(geometry, "interiors", ())]
    assert len(several_rings) >= 2
    for index in several_rings:
        assert ours.column("_pixcount")[index] == theirs[index]["band_1_count"], index


@pytest.mark.parametrize("rule", ["fraction", "all_touched"])
def test_fraction_and_all_touched_equal_exactextract(scene, rule):
    names = ["count", "sum", "mean", "stdev", "variance", "min", "max", "median",
             "quantile(q=0.25)", "variety"]
    operations = names if rule == "fraction" else [
        f"{n[:-1]},coverage_weight=none)" if "(" in n else f"{n}(coverage_weight=none)"
        for n in names]
    theirs = exactextract_stats(scene["image"], scene["layer"], operations)
    ours = zonal_stats(scene["layer"], scene["image"],
                       statistics=["pixcount", "sum", "mean", "stddev", "variance", "min", "max",
                                   "median", "variety"], percentiles=[25], pixel_rule=rule,
                       percentile_method="linear", window_size=48)
    mine = ["_pixcount", "_sum", "_mean", "_stddev", "_variance", "_min", "_max", "_median",
            "_p25", "_variety"]
    compared = 0
    for index, (name, _) in enumerate(scene["polygons"]):
        rtol = 1e-9
        props = theirs[index]
        assert props["name"] == name
        for ours_name, their_name in zip(mine, names, strict=True):
            key = "band_1_" + ("quantile_25" if "quantile" in their_name else their_name)
            expected = props[key]
            if not props["band_1_count"]:  # exactextract: sum 0, variety 0, others NaN
                expected = 0.0 if ours_name == "_pixcount" else None
            # exactextract returns quantiles in the raster's type (float32 here)
            tolerance = max(rtol, 1.2e-7) if ours_name in ("_median", "_p25") else rtol
            assert_matches(ours, index, ours_name, expected, rtol=tolerance, scale=1.0)
            compared += 1
    assert compared > 200


def test_polygons_in_another_crs_are_transformed(tmp_path, scene):
    utm = osr.SpatialReference()
    utm.ImportFromWkt(cases.utm_wkt())
    geographic = osr.SpatialReference()
    geographic.ImportFromEPSG(4326)
    for srs in (utm, geographic):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    forward = osr.CoordinateTransformation(utm, geographic)

    def to_degrees(coords):
        return np.array(forward.TransformPoints(coords))[:, :2]

    layer = cases.write_polygons(tmp_path / "degrees.gpkg", scene["polygons"], geographic,
                                 to_degrees)
    messages = []
    result = zonal_stats(layer, scene["image"], statistics=["pixcount", "mean"],
                         pixel_rule="fraction", progress=lambda f, m="": messages.append(m))
    assert any("transformed" in m for m in result.notes)
    assert any("transformed" in m for m in messages)
    # the reference: the same polygons brought back to UTM by the test itself
    back = osr.CoordinateTransformation(geographic, utm)
    source = ogr.Open(layer)
    geometries = [shapely.from_wkb(bytes(f.GetGeometryRef().ExportToWkb()))
                  for f in source.GetLayer()]
    source = None
    returned = [("x", shapely.transform(g, lambda c: np.array(back.TransformPoints(c))[:, :2]))
                for g in geometries]
    valid, values = valid_pixels(scene["data"], 1)
    for index, (_, geometry) in enumerate(returned):
        exact = cases.coverage_fractions(geometry)
        expected = cases.reference_stats(values[valid], exact[valid].astype(np.float32))
        assert_matches(result, index, "_pixcount", expected["pixcount"], rtol=1e-6)
        assert_matches(result, index, "_mean", expected.get("mean"), rtol=1e-6)


def test_invalid_empty_and_odd_geometries_never_crash(tmp_path, scene):
    bowtie = shapely.Polygon([(0, 0), (403.3, 398.1), (401.7, 2.9), (1.3, 397.7), (0, 0)])
    bowtie = shapely.affinity.translate(bowtie, cases.X0 + 100, cases.Y0 - 500)
    features = [(10, bowtie.wkb), (11, None), (12, shapely.Point(cases.X0 + 5, cases.Y0 - 5).wkb),
                (13, shapely.from_wkt("POLYGON EMPTY").wkb), (14, b"not wkb"),
                (15, shapely.box(cases.X0 + 10, cases.Y0 - 50, cases.X0 + 60, cases.Y0 - 10))]
    table = tmp_path / "table.csv"
    result = zonal_stats(features, scene["image"], statistics=["pixcount", "mean"],
                         polygons_crs=cases.utm_wkt(), output_table=table)
    assert list(result.fids) == [10, 11, 12, 13, 14, 15]
    notes = " ".join(result.notes)
    assert "repaired" in notes and "no polygon" in notes and "empty" in notes
    counts = result.column("_pixcount")
    valid, values = valid_pixels(scene["data"], 1)
    assert counts[5] == valid[1:5, 1:6].sum()  # the box covers rows 1-4, columns 1-5
    assert list(counts[1:5]) == [0, 0, 0, 0]
    assert np.isnan(result.column("_mean")[1:5]).all()
    xs, ys = cases.pixel_centres()
    repaired = shapely.make_valid(bowtie)
    mask = shapely.contains_xy(repaired, xs, ys) & valid
    assert counts[0] == mask.sum()
    assert result.column("_mean")[0] == pytest.approx(values[mask].mean(), rel=1e-12)
    with open(table, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["fid", "_pixcount", "_mean"]
    assert rows[2] == ["11", "0", ""]
    assert float(rows[1][2]) == pytest.approx(values[mask].mean(), rel=1e-12)


def test_bad_input_is_a_clear_error(tmp_path, scene):
    with pytest.raises(TesseraError, match="pixel rule"):
        zonal_stats(scene["layer"], scene["image"], pixel_rule="nearest")
    with pytest.raises(TesseraError, match="band 3 does not exist"):
        zonal_stats(scene["layer"], scene["image"], bands=[3])
    with pytest.raises(TesseraError, match="not found"):
        zonal_stats(tmp_path / "missing.gpkg", scene["image"])
    with pytest.raises(CancelledError):
        zonal_stats(scene["layer"], scene["image"], cancelled=lambda: True)


def test_spilled_vertices_and_tiny_tiles_give_the_same_results(monkeypatch, scene):
    from tessera.engine.io import polygon_source

    reference = zonal_stats(scene["layer"], scene["image"], statistics=ALL_STATISTICS,
                            pixel_rule="fraction")
    monkeypatch.setattr(polygon_source, "SPILL_BYTES", 64)
    monkeypatch.setattr(polygon_source, "CHUNK_FEATURES", 3)
    spilled = zonal_stats(scene["layer"], scene["image"], statistics=ALL_STATISTICS,
                          pixel_rule="fraction", window_size=16)
    assert np.allclose(spilled.values, reference.values, rtol=1e-12, atol=1e-9, equal_nan=True)


def qgis_layer_values(path, fields):
    source = ogr.Open(str(path))
    rows = [[feature.GetField(f) for f in fields] for feature in source.GetLayer()]
    source = None
    return rows


def test_algorithm_agrees_with_qgis_native_zonal_statistics(run_algorithm, scene, tmp_path):
    import processing

    ours = tmp_path / "ours.gpkg"
    table = tmp_path / "ours.csv"
    results = run_algorithm("zonalstats", {
        "INPUT": scene["layer"], "RASTER": scene["image"], "BANDS": [1],
        "STATISTICS": ["pixcount", "mean", "median"], "OUTPUT": str(ours),
        "OUTPUT_TABLE": str(table)})
    assert results["FEATURE_COUNT"] == len(scene["polygons"])
    theirs = tmp_path / "native.gpkg"
    processing.run("native:zonalstatisticsfb", {
        "INPUT": scene["layer"], "INPUT_RASTER": scene["image"], "RASTER_BAND": 1,
        "COLUMN_PREFIX": "q_", "STATISTICS": [0, 2], "OUTPUT": str(theirs)})
    mine = qgis_layer_values(ours, ["name", "area", "_pixcount", "_mean", "_median"])
    native = qgis_layer_values(theirs, ["name", "q_count", "q_mean"])
    assert [row[0] for row in mine] == [name for name, _ in scene["polygons"]]
    compared = 0
    for (name, area, count, mean, _), (_, q_count, q_mean) in zip(mine, native, strict=True):
        assert area > 0
        if count >= 2:  # with at most one centre QGIS switches to fractional weights
            assert count == q_count, name
            assert mean == pytest.approx(q_mean, rel=1e-9), name
            compared += 1
        elif count == 0:
            assert mean is None
    assert compared >= len(scene["polygons"]) - 4
    with open(table, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [float(r["_pixcount"]) for r in rows] == [row[2] for row in mine]


def test_qgis_process_runs_zonalstats_on_several_bands(qgis_process, scene, tmp_path):
    output = tmp_path / "zones_out.gpkg"
    code, result, text = qgis_process(
        "run", "tessera:zonalstats", "--", f"INPUT={scene['layer']}",
        f"RASTER={scene['image']}", "BANDS=1", "BANDS=2", "STATISTICS=pixcount,mean",
        "PERCENTILES=90", "PIXEL_RULE=fraction", "COLUMN_PREFIX=z_", f"OUTPUT={output}")
    assert code == 0, text
    assert result["results"]["FEATURE_COUNT"] == len(scene["polygons"])
    rows = qgis_layer_values(output, ["z_b1_pixcount", "z_b2_mean", "z_b2_p90"])
    reference = zonal_stats(scene["layer"], scene["image"], statistics=["pixcount", "mean"],
                            bands=[1, 2], percentiles=[90], pixel_rule="fraction",
                            column_prefix="z_")
    for index, row in enumerate(rows):
        assert row[0] == pytest.approx(reference.column("z_b1_pixcount")[index], rel=1e-12)
        expected = reference.column("z_b2_mean")[index]
        assert (row[1] is None) if np.isnan(expected) else row[1] == pytest.approx(expected)
