"""HTML reports: they parse, their images are embedded PNGs, their numbers equal the
results' and numpy's (overlap mismatch, band means, scales and offsets, statistics of the
RAT or of the zonal fields)."""

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from osgeo import gdal, ogr
from raster_files import blocky_segments, read_rat, write_raster
from test_model import NODATA, PIXEL, X0, Y0, scene, write_polygons

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Report(HTMLParser):
    """Tables (by id: rows of cell texts) and images of an HTML page."""

    def __init__(self, path):
        super().__init__()
        self.tables, self.images = {}, []
        self._table = self._row = self._cell = None
        with open(path, encoding="utf-8") as stream:
            self.feed(stream.read())
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"t{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def rows(self, table):
        """Rows as dicts keyed by the header."""
        header, *body = self.tables[table]
        return [dict(zip(header, row, strict=True)) for row in body]

    def check_images(self, at_least):
        assert len(self.images) >= at_least
        for source in self.images:
            prefix = "data:image/png;base64,"
            assert source.startswith(prefix)
            assert base64.b64decode(source[len(prefix):]).startswith(PNG_SIGNATURE)


def two_scenes(tmp_path):
    world = scene(60, 100, seed=3)
    a, b = world[:, :, :60], world[:, :, 40:].copy()
    b = (b * (1 + 0.4 * np.linspace(0, 1, b.shape[2]))[None, None, :] + 50).astype(np.float32)
    b[:, :5, -7:] = NODATA
    path_a, path_b = tmp_path / "scene_a.tif", tmp_path / "scene_b.tif"
    write_raster(path_a, a, nodata=NODATA)
    write_raster(path_b, b, nodata=NODATA, geotransform=(X0 + 40 * PIXEL, PIXEL, 0, Y0, 0, -PIXEL))
    return [str(path_a), str(path_b)]


def mean_abs_difference(path_a, path_b, band):
    """numpy: mean |A − B| over the 20 overlapping columns (B starts at A's column 40)."""
    a = read_band(path_a, band)[:, 40:60]
    b = read_band(path_b, band)[:, :20]
    valid = (a != NODATA) & (b != NODATA)
    return np.abs(a - b)[valid].mean(), int(valid.sum())


def read_band(path, band):
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(band).ReadAsArray().astype(np.float64)


def band_mean(path, band):
    values = read_band(path, band)
    return values[values != NODATA].mean()


def check_mismatch(report, inputs, outputs):
    rows = report.rows("mismatch")
    assert len(rows) == 2  # one overlap, two bands
    for row in rows:
        band = int(row["Band"])
        before, pixels = mean_abs_difference(*inputs, band)
        after, _ = mean_abs_difference(*outputs, band)
        assert row["Overlap"] == "scene_a / scene_b"
        assert int(row["Pixel pairs"]) == pixels
        assert float(row["Mean |A − B| before"]) == pytest.approx(before, rel=1e-5)
        assert float(row["Mean |A − B| after"]) == pytest.approx(after, rel=1e-5)
        assert after < before


def check_means(report, inputs, outputs):
    names = {"scene_a": 0, "scene_b": 1}
    for row in report.rows("means"):
        index, band = names[row["Image"]], int(row["Band"])
        assert float(row["Mean before"]) == pytest.approx(band_mean(inputs[index], band),
                                                          rel=1e-5)
        assert float(row["Mean after"]) == pytest.approx(band_mean(outputs[index], band),
                                                         rel=1e-5)


def test_global_regression_report(run_algorithm, tmp_path):
    inputs = two_scenes(tmp_path)
    html = tmp_path / "out" / "report.html"  # in the output folder the run creates
    results = run_algorithm("globalregression", {
        "INPUTS": inputs, "OUTPUT_FOLDER": str(tmp_path / "out"), "OUTPUT_HTML": str(html)})
    assert results["OUTPUT_HTML"] == str(html)
    report = Report(html)
    report.check_images(2)  # mismatch bars, spectral profiles
    outputs = sorted(results["OUTPUTS"])
    check_mismatch(report, inputs, outputs)
    check_means(report, inputs, outputs)
    adjustments = json.loads(results["ADJUSTMENTS"])
    rows = report.rows("adjustments")
    assert len(rows) == 4
    for row in rows:
        expected = adjustments[row["Image"]][f"band_{int(row['Band']) - 1}"]
        assert float(row["Scale"]) == pytest.approx(expected["scale"], rel=1e-7)
        assert float(row["Offset"]) == pytest.approx(expected["offset"], rel=1e-7, abs=1e-6)


def test_local_block_adjustment_report_with_block_maps(run_algorithm, tmp_path):
    inputs = two_scenes(tmp_path)
    html = tmp_path / "local.html"
    results = run_algorithm("localblockadjustment", {
        "INPUTS": inputs, "OUTPUT_FOLDER": str(tmp_path / "out"), "BLOCKS": 6,
        "SAVE_BLOCK_MAPS": str(tmp_path / "maps"), "OUTPUT_HTML": str(html)})
    report = Report(html)
    report.check_images(4)  # mismatch, profiles, block maps of bands 1 and 2
    check_mismatch(report, inputs, sorted(results["OUTPUTS"]))
    check_means(report, inputs, sorted(results["OUTPUTS"]))
    assert len(results["BLOCK_MAPS"]) == 3


def test_segment_stats_report(run_algorithm, tmp_path):
    seg = blocky_segments(40, 60, 5, 6, seed=8)
    image = np.random.default_rng(8).integers(1, 1000, (40, 60)).astype(np.uint16)
    image[:5, :6] = 0  # nodata: one segment without a valid pixel gets the missing value
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=0)
    html = tmp_path / "stats.html"
    results = run_algorithm("segmentstats", {
        "SEGMENTS": seg_path, "IMAGE": image_path, "STATISTICS": ["pixcount", "mean", "max"],
        "OUTPUT_HTML": str(html)})
    report = Report(html)
    report.check_images(1)
    facts = {row[0]: row[1] for row in report.tables["facts"][1:]}
    assert int(facts["Segments with pixels"]) == results["SEGMENT_COUNT"] == len(np.unique(seg))
    rat = read_rat(seg_path)
    rows = {row["Statistic"]: row for row in report.rows("statistics")}
    assert set(rows) == set(results["COLUMNS"].split(","))
    for name, row in rows.items():
        values = rat[name][1:]  # row 0: the null id
        values = values[values != -9999]
        assert int(row["Segments with a value"]) == values.size
        assert float(row["Minimum"]) == pytest.approx(values.min(), rel=1e-5)
        assert float(row["Mean"]) == pytest.approx(values.mean(), rel=1e-5)
        assert float(row["Maximum"]) == pytest.approx(values.max(), rel=1e-5)
    assert int(rows["b1_mean"]["Segments with a value"]) == len(np.unique(seg)) - 1


def test_zonal_stats_report(run_algorithm, tmp_path):
    inputs = two_scenes(tmp_path)
    boxes = [(0, 20, 0, 30), (10, 50, 45, 58), (30, 60, 5, 40)]
    write_polygons(tmp_path / "zones.gpkg", boxes)
    html = tmp_path / "zonal.html"
    results = run_algorithm("zonalstats", {
        "INPUT": str(tmp_path / "zones.gpkg"), "RASTER": inputs[0],
        "STATISTICS": ["pixcount", "mean"], "OUTPUT": str(tmp_path / "z.gpkg"),
        "OUTPUT_HTML": str(html)})
    assert results["OUTPUT_HTML"] == str(html)
    report = Report(html)
    report.check_images(1)
    source = ogr.Open(str(tmp_path / "z.gpkg"))
    features = list(source.GetLayer(0))
    fields = {name: np.array([f.GetField(name) for f in features], np.float64)
              for name in ("_pixcount", "_mean")}
    rows = {row["Statistic"]: row for row in report.rows("statistics")}
    for name, values in fields.items():
        assert float(rows[name]["Mean"]) == pytest.approx(values.mean(), rel=1e-5)
        assert float(rows[name]["Maximum"]) == pytest.approx(values.max(), rel=1e-5)
    facts = {row[0]: row[1] for row in report.tables["facts"][1:]}
    assert int(facts["Features"]) == results["FEATURE_COUNT"] == 3


def test_an_existing_report_is_refused_before_any_work(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException

    inputs = two_scenes(tmp_path)
    (tmp_path / "report.html").write_text("keep me")
    parameters = {"INPUTS": inputs, "OUTPUT_FOLDER": str(tmp_path / "out"),
                  "OUTPUT_HTML": str(tmp_path / "report.html")}
    with pytest.raises(QgsProcessingException, match="report.html exists already"):
        run_algorithm("globalregression", parameters)
    assert (tmp_path / "report.html").read_text() == "keep me"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    run_algorithm("globalregression", {**parameters, "OVERWRITE": True})
    Report(tmp_path / "report.html").check_images(2)


def test_reports_are_html_outputs_that_the_results_viewer_opens(tessera_provider):
    from qgis.core import QgsApplication

    for name in ("globalregression", "localblockadjustment", "segmentstats", "zonalstats"):
        algorithm = QgsApplication.processingRegistry().algorithmById(f"tessera:{name}")
        assert algorithm.outputDefinition("OUTPUT_HTML").type() == "outputHtml", name
        assert algorithm.hasHtmlOutputs()
