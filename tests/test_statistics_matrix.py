"""Every statistic of the catalogue, alone and all together, per segment and per polygon
(centre, all_touched, fraction), for every image type (with nodata and NaN), on 1 and 3
bands, against the independent reference of ``statistic_reference.py``.

Small rasters (30 x 40): the whole matrix is fast. Asking each statistic alone gives
the kernels only that statistic's needs (the bug of issue 20: mode, minority and
variety under fraction were only right when asked with the median).
"""

import math

import numpy as np
import pytest
import shapely
import zonal_cases as cases
from raster_files import blocky_segments, read_rat, write_raster
from statistic_reference import reference

from tessera.engine import TesseraError, segment_stats, zonal_stats
from tessera.engine.statistics.catalogue import (
    CATALOGUE,
    CLASS_STATISTICS,
    PIXEL_RULES,
    STATISTICS,
    StatPlan,
    markdown_table,
)

ROWS, COLS = 30, 40
PERCENTILES = (10, 62.5)
MISSING = -9999.0
#: image type: (nodata, lowest value, values step, NaN pixels)
IMAGES = {
    "uint8": (0, 1, 1, False),
    "int16": (-5, -6, 1, False),
    "uint16": (None, 60000, 1, False),
    "int32": (-1, 100000, 7, False),
    "float32": (-9999.0, -3.0, 0.5, True),
    "float64": (None, 0.25, 0.75, True),
}
#: statistics asked alone: every one of the catalogue, and a percentile alone
ALONE = [[s] for s in STATISTICS] + [[]]
WHERE = ["segments", "centre", "all_touched", "fraction"]


def image(dtype, bands):
    """Few distinct values (ties for mode and minority, a dozen classes for frac), nodata
    or NaN pixels, and one block (a segment, and a polygon over it) without a valid pixel."""
    nodata, low, step, nan = IMAGES[dtype]
    rng = np.random.default_rng(bands)
    data = low + step * rng.integers(0, 12, (bands, ROWS, COLS)).astype(np.float64)
    # a skewed tail: the shape statistics see asymmetric zones
    data[:, rng.random((ROWS, COLS)) < 0.08] = low + 30 * step
    invalid = np.nan if nodata is None else nodata
    if nodata is not None or nan:
        data[:, rng.random((ROWS, COLS)) < 0.05] = invalid
    if nan and nodata is not None:
        data[:, rng.random((ROWS, COLS)) < 0.03] = np.nan
    if nodata is not None or nan:
        data[:, 0:5, 0:4] = invalid
    return data.astype(dtype)


def valid_mask(band, dtype):
    nodata = IMAGES[dtype][0]
    valid = ~np.isnan(band.astype(np.float64))
    return valid if nodata is None else valid & (band != nodata)


def segments():
    seg = blocky_segments(ROWS, COLS, 5, 4, seed=3, dtype=np.uint16)
    seg[29, 39] = seg.max() + 1     # one pixel
    seg[12, 10:15] = 0              # null pixels
    return seg


def polygons():
    x0, y0 = cases.X0, cases.Y0
    return [
        ("star", cases.star(np.random.default_rng(5), x0 + 120, y0 - 130, 90, 11)),
        ("holes", shapely.box(x0 + 200, y0 - 250, x0 + 385, y0 - 40).difference(
            shapely.Point(x0 + 290, y0 - 150).buffer(45))),
        ("multipart", shapely.MultiPolygon([shapely.box(x0 + 13, y0 - 287, x0 + 71, y0 - 222),
                                            shapely.box(x0 + 333, y0 - 292, x0 + 371, y0 - 261)])),
        ("disc", shapely.Point(x0 + 210, y0 - 160).buffer(115, 16)),
        ("sub-pixel", shapely.box(x0 + 301.2, y0 - 198.9, x0 + 304.3, y0 - 196.1)),
        ("outside", shapely.box(x0 - 500, y0 + 100, x0 - 100, y0 + 400)),
        ("partly outside", shapely.box(x0 + 350, y0 - 350, x0 + 450, y0 - 270)),
        ("invalid block", shapely.box(x0 + 5.3, y0 - 45.3, x0 + 35.3, y0 - 5.3)),
    ]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    shapes = polygons()
    xs, ys = cases.pixel_centres(ROWS, COLS)
    weights = {"centre": [shapely.contains_xy(g, xs, ys).astype(np.float64) for _, g in shapes],
               "all_touched": [], "fraction": []}
    for _, geometry in shapes:
        exact = cases.coverage_fractions(geometry, ROWS, COLS)
        exact[exact < 1e-9] = 0.0
        weights["all_touched"].append((exact > 0).astype(np.float64))
        stored = exact.astype(np.float32).astype(np.float64)  # as the engine and exactextract
        stored[exact > 1 - 1e-9] = 1.0
        weights["fraction"].append(stored)
    seg = segments()
    return {"folder": folder, "polygons": shapes, "weights": weights, "segments": seg,
            "segment_path": write_raster(folder / "segments.tif", seg, nodata=0),
            "layer": cases.write_polygons(folder / "zones.gpkg", shapes), "images": {}}


def image_path(scene, dtype, bands):
    key = (dtype, bands)
    if key not in scene["images"]:
        data = image(dtype, bands)
        path = write_raster(scene["folder"] / f"image_{dtype}_{bands}.tif", data,
                            nodata=IMAGES[dtype][0])
        scene["images"][key] = (path, data)
    return scene["images"][key]


def expected_values(scene, where, data, dtype, percentiles):
    """{zone key: [reference per band]}; zone keys index the engine's columns."""
    out = {}
    if where == "segments":
        seg = scene["segments"]
        for sid in np.unique(seg[seg != 0]):
            out[int(sid)] = [reference(band[(seg == sid) & valid_mask(band, dtype)],
                                       percentiles=percentiles) for band in data]
        return out
    for index, weight in enumerate(scene["weights"][where]):
        out[index] = [reference(band[(weight > 0) & valid_mask(band, dtype)],
                                weight[(weight > 0) & valid_mask(band, dtype)]
                                if where == "fraction" else None, percentiles=percentiles)
                      for band in data]
    return out


def run(scene, where, dtype, bands, statistics, percentiles, tag):
    """The engine's columns as {name: values indexed by zone key}, and its missing value."""
    path, _ = image_path(scene, dtype, bands)
    if where == "segments":
        output = scene["folder"] / f"rat_{tag}.img"
        result = segment_stats(scene["segment_path"], path, statistics=statistics,
                               percentiles=percentiles, missing_value=MISSING,
                               output_rat=str(output))
        rat = read_rat(output)
        assert list(rat) == result.columns
        return rat, MISSING
    result = zonal_stats(scene["layer"], path, statistics=statistics, bands=range(1, bands + 1),
                         percentiles=percentiles, pixel_rule=where)
    return {name: result.column(name) for name in result.names}, math.nan


def column_name(where, bands, band, label):
    if where == "segments":
        return f"b{band}_{label}"
    return f"_b{band}_{label}" if bands > 1 else f"_{label}"


def tolerance(where, stat):
    if where != "fraction":
        return 1e-9 if stat not in ("skewness", "kurtosis") else 1e-7
    # float32 weights: shapely's exact fractions and the engine's may round apart by an ulp
    return 1e-9 if stat in ("min", "max", "range", "variety") else 2e-5


def close(got, expected, rtol):
    return abs(got - expected) <= rtol * max(abs(expected), 1.0)


def check(scene, where, dtype, bands, statistics, percentiles, tag):
    """Compare every column with the reference; returns the problems found and the
    number of values compared."""
    columns, missing = run(scene, where, dtype, bands, statistics, percentiles, tag)
    _, data = image_path(scene, dtype, bands)
    expected = expected_values(scene, where, data, dtype, percentiles)
    labels = [s for s in statistics if s != "frac"] + [
        f"p{np.format_float_positional(p, trim='-')}" for p in percentiles]
    problems = []
    compared = 0

    def is_missing(value):
        return math.isnan(value) if math.isnan(missing) else value == missing

    for b in range(bands):
        for label in labels:
            name = column_name(where, bands, b + 1, label)
            if name not in columns:
                problems.append(f"{name} missing")
                continue
            for key, per_band in expected.items():
                got, want = float(columns[name][key]), per_band[b].get(label)
                if label != "pixcount" and per_band[b] == {"pixcount": 0.0}:
                    want = None
                if label in ("mode", "minority") and where == "fraction" and want is not None:
                    # summed float32 weights a ulp apart may decide: any value whose summed
                    # weight ties the extreme within the tolerance is right
                    frac = per_band[b]["frac"]
                    extreme = (max if label == "mode" else min)(frac.values())
                    if got in frac and close(frac[got], extreme, 1e-5):
                        continue
                ok = is_missing(got) if want is None else close(got, want,
                                                                 tolerance(where, label))
                compared += 1
                if not ok:
                    problems.append(f"{name} zone {key}: {got} != {want}")
        if "frac" in statistics:
            found, count = check_frac(columns, expected, where, bands, b, is_missing)
            problems += found
            compared += count
    return problems, compared


def check_frac(columns, expected, where, bands, b, is_missing):
    """frac columns: one per class present in any zone, shares as the reference, 0 for a
    class absent from a zone with valid pixels, missing without one; a zone's sum is 1."""
    prefix = column_name(where, bands, b + 1, "frac_")
    classes = sorted({value for per_band in expected.values()
                      for value in per_band[b].get("frac", {})})
    names = [name for name in columns if name.startswith(prefix)]
    wanted = [prefix + np.format_float_positional(value, trim="-") for value in classes]
    if names != wanted:
        return [f"frac columns {names} != {wanted}"], 0
    problems = []
    for key, per_band in expected.items():
        shares = per_band[b].get("frac")
        got = [float(columns[name][key]) for name in names]
        if shares is None:
            if not all(is_missing(value) for value in got):
                problems.append(f"{prefix}* zone {key}: {got} for a zone without valid pixels")
            continue
        for value, name, share in zip(classes, names, got, strict=True):
            if not close(share, shares.get(value, 0.0), tolerance(where, "frac")):
                problems.append(f"{name} zone {key}: {share} != {shares.get(value, 0.0)}")
        if abs(sum(got) - 1.0) > 1e-12:
            problems.append(f"{prefix}* zone {key} sum to {sum(got)}")
    return problems, len(expected) * len(names)


def asked(statistics, dtype):
    """The statistics a dtype can take: frac needs integer class values."""
    if np.dtype(dtype).kind == "f":
        return [s for s in statistics if s not in CLASS_STATISTICS]
    return statistics


@pytest.mark.parametrize("bands", [1, 3])
@pytest.mark.parametrize("dtype", list(IMAGES))
@pytest.mark.parametrize("where", WHERE)
def test_every_statistic_alone_and_all_together(scene, where, dtype, bands):
    problems = []
    compared = 0
    runs = [(s, (25,) if not s else ()) for s in ALONE]
    runs.append((list(STATISTICS), PERCENTILES))
    for number, (statistics, percentiles) in enumerate(runs):
        statistics = asked(statistics, dtype)
        if not statistics and not percentiles:
            continue  # frac alone on a float image: refused (tested below)
        tag = f"{where}_{dtype}_{bands}_{number}"
        found, count = check(scene, where, dtype, bands, statistics, percentiles, tag)
        problems += [f"{statistics or percentiles}: {p}" for p in found[:5]]
        compared += count
    assert not problems, "\n".join(problems[:40])
    assert compared >= 100 * bands


def test_the_issue_example_mode_minority_variety_under_fraction(scene):
    path, data = image_path(scene, "uint8", 1)
    result = zonal_stats(scene["layer"], path, statistics=("mode", "minority", "variety"),
                         pixel_rule="fraction")
    expected = expected_values(scene, "fraction", data, "uint8", ())
    for index, (per_band,) in expected.items():
        for stat in ("mode", "minority", "variety"):
            got = result.column(f"_{stat}")[index]
            want = per_band.get(stat)
            assert (np.isnan(got) if want is None else got == want), (stat, index, got, want)
            assert want is None or 0 < got < 1e6


def test_frac_is_refused_on_float_images_and_too_many_classes(scene, tmp_path):
    path, _ = image_path(scene, "float32", 1)
    with pytest.raises(TesseraError, match="categorical"):
        zonal_stats(scene["layer"], path, statistics=["frac"])
    with pytest.raises(TesseraError, match="categorical"):
        segment_stats(scene["segment_path"], path, statistics=["mean", "frac"])
    continuous = np.arange(ROWS * COLS, dtype=np.int32).reshape(ROWS, COLS) * 3
    wide = write_raster(tmp_path / "continuous.tif", continuous)
    output = tmp_path / "out.img"
    with pytest.raises(TesseraError, match="more than 1000"):
        segment_stats(scene["segment_path"], wide, statistics=["frac"], output_rat=str(output))
    assert not output.exists()


def test_unknown_statistics_and_codes_raise():
    from tessera.engine.statistics.column_values import PREPARED, column_value
    from tessera.engine.statistics.kernels import zone_statistics
    from tessera.engine.statistics.weighted_kernels import weighted_zone_statistics

    with pytest.raises(TesseraError, match="Unknown statistic"):
        StatPlan(["mean", "average"], [1], "float32")
    prepared = (1.0,) * len(PREPARED)
    with pytest.raises(ValueError, match="unknown statistic code"):
        column_value(999, prepared, np.zeros(1), -1, -9999.0)
    values = np.ones((1, 4), np.float32)
    one = np.zeros(1, np.int64)
    four = np.full(1, 4, np.int64)
    for code in (-1, len(STATISTICS) + 1, STATISTICS.index("frac")):
        table = np.array([[0, code, -1]], np.int64)
        results = np.zeros((1, 1))
        needs = np.zeros(1, np.int64)
        with pytest.raises(ValueError, match="unknown statistic code"):
            zone_statistics(one, one, four, values, np.zeros(1), np.zeros(1, np.bool_), False,
                            table, np.zeros(0), False, needs, results, -9999.0)
        with pytest.raises(ValueError, match="unknown statistic code"):
            weighted_zone_statistics(one, one, four, values, np.ones(4, np.float32),
                                     np.zeros(1), np.zeros(1, np.bool_), table, np.zeros(0),
                                     needs, results, -9999.0)


def test_undefined_values_are_missing(tmp_path):
    """cv of a zero mean, skewness and kurtosis of equal values: the missing value."""
    seg = np.array([[1, 1, 2, 2, 3, 3]], np.uint8)
    image_values = np.array([[-2, 2, 5, 5, 1, 4]], np.int16)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    segment_stats(seg_path, write_raster(tmp_path / "image.tif", image_values),
                  statistics=["cv", "skewness", "kurtosis", "frac"])
    rat = read_rat(seg_path)
    assert rat["b1_cv"][1] == MISSING and rat["b1_cv"][2] == 0.0
    assert rat["b1_skewness"][2] == MISSING and rat["b1_kurtosis"][2] == MISSING
    assert rat["b1_skewness"][3] == 0.0 and rat["b1_kurtosis"][3] == -2.0
    assert [n for n in rat if "frac" in n] == ["b1_frac_-2", "b1_frac_1", "b1_frac_2",
                                               "b1_frac_4", "b1_frac_5"]
    assert rat["b1_frac_5"][2] == 1.0 and rat["b1_frac_5"][1] == 0.0


def test_the_readme_table_is_the_catalogue():
    import os

    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "README.md")
    with open(readme, encoding="utf-8") as stream:
        assert markdown_table() in stream.read()
    assert len(CATALOGUE) == len(STATISTICS) and list(PIXEL_RULES) == [
        "centre", "all_touched", "fraction"]


@pytest.mark.parametrize("rule", ["fraction", "all_touched"])
def test_frac_and_cv_equal_exactextract(tmp_path, rule):
    from exactextract import exact_extract

    data = np.nan_to_num(cases.image(), nan=-1.0).astype(np.int16)  # band 2: 12 classes
    image_file = cases.write_image(tmp_path / "classes.tif", data[1:])
    layer = cases.write_polygons(tmp_path / "zones.gpkg", cases.polygons())
    suffix = "" if rule == "fraction" else "(coverage_weight=none)"
    theirs = [f["properties"] for f in exact_extract(
        image_file, layer, [f"unique{suffix}", f"frac{suffix}",
                            f"coefficient_of_variation{suffix}"], include_cols=["name"])]
    ours = zonal_stats(layer, image_file, statistics=["cv", "frac"], pixel_rule=rule)
    # exactextract sums some coverage fractions in float32 (agreement to ~1e-8 on slivers)
    rtol = 1e-7 if rule == "fraction" else 1e-9
    compared = 0
    for index, props in enumerate(theirs):
        shares = dict(zip(np.asarray(props["unique"]).tolist(),
                          np.asarray(props["frac"]).tolist(), strict=True))
        for name in ours.names:
            if name.startswith("_frac_"):
                got = ours.column(name)[index]
                expected = shares.get(float(name[len("_frac_"):]), 0.0)
                if not shares:
                    assert np.isnan(got), (name, index)
                else:
                    assert got == pytest.approx(expected, rel=rtol, abs=1e-12), (name, index)
                    compared += 1
        cv = ours.column("_cv")[index]
        expected = props["coefficient_of_variation"]
        assert (np.isnan(cv) and np.isnan(expected)) or cv == pytest.approx(expected, rel=rtol)
    assert compared > 200
