"""Never lose or silently corrupt a user's data: RAT targets, CSV tables and zonal
outputs. Every case hashes the inputs and existing outputs before and after; nothing may
change where a run fails, is killed, runs out of disk or races another run."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zonal_cases as cases
from conftest import PLUGINS_DIR
from osgeo import gdal, ogr
from raster_files import blocky_segments, read_rat, write_raster

from tessera.engine import segment_stats, zonal_stats
from tessera.engine.errors import TesseraError
from tessera.engine.rat.store import RatStore


def digest(folder):
    """Hash of every file under ``folder`` (temporary files Tessera hides excluded)."""
    hashes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if ".tessera-" in path:
                continue
            with open(path, "rb") as stream:
                hashes[os.path.relpath(path, folder)] = hashlib.sha256(stream.read()).hexdigest()
    return hashes


@pytest.fixture
def scene(tmp_path):
    """Segments (64 x 64, 4 x 4 blocks) with a one-column RAT in the .aux.xml, an image,
    a HFA copy of the segments with the same RAT, and a Zarr store with one column."""
    seg = blocky_segments(64, 64, 4, 4, seed=3)
    image = np.random.default_rng(5).integers(0, 1000, (64, 64)).astype(np.uint16)
    paths = {
        "seg": write_raster(tmp_path / "seg.tif", seg),
        "img_seg": write_raster(tmp_path / "seg.img", seg, driver="HFA"),
        "image": write_raster(tmp_path / "image.tif", image),
        "image_img": write_raster(tmp_path / "image.img", image, driver="HFA"),
    }
    for key in ("seg", "img_seg"):
        segment_stats(paths[key], paths["image"], statistics=["max"])
    segment_stats(paths["seg"], paths["image"], statistics=["max"],
                  output_rat=str(tmp_path / "stats.zarr"))
    paths["zarr"] = str(tmp_path / "stats.zarr")
    paths["arrays"] = (seg, image)
    return paths


def test_a_table_or_rat_that_is_an_input_is_refused_and_nothing_changes(tmp_path, scene):
    before = digest(tmp_path)
    cases_ = [
        (dict(output_table=scene["image"]), "output table .*image.tif is the image"),
        (dict(output_table=scene["seg"]), "output table .*seg.tif is the segment raster"),
        (dict(output_rat=scene["image"]), "output RAT .*image.tif is the image"),
        (dict(output_rat=scene["image"], output_table=str(tmp_path / "t.csv")), "is the image"),
        (dict(output_rat=str(tmp_path / "r.img"), output_table=str(tmp_path / "r.img")),
         "output table and the output RAT are both"),
    ]
    for kwargs, match in cases_:
        with pytest.raises(TesseraError, match=match):
            segment_stats(scene["seg"], scene["image"], statistics=["mean"], overwrite=True,
                          **kwargs)
    with pytest.raises(TesseraError, match="output RAT .*image.img is the image"):
        segment_stats(scene["seg"], scene["image_img"], statistics=["mean"],
                      output_rat=scene["image_img"])
    assert digest(tmp_path) == before


def test_the_segment_file_named_as_output_rat_is_its_own_rat(tmp_path, scene):
    segment_stats(scene["seg"], scene["image"], statistics=["mean"],
                  output_rat=os.path.join(tmp_path, ".", "seg.tif"))
    seg, image = scene["arrays"]
    rat = read_rat(scene["seg"])
    assert set(rat) == {"b1_max", "b1_mean"}
    for sid in np.unique(seg)[:20]:
        assert rat["b1_mean"][sid] == pytest.approx(image[seg == sid].mean(), rel=1e-12)


def test_an_existing_table_is_replaced_only_with_overwrite(tmp_path, scene):
    table = tmp_path / "stats.csv"
    table.write_text("precious\n")
    with pytest.raises(TesseraError, match="stats.csv already exists"):
        segment_stats(scene["seg"], scene["image"], statistics=["mean"], output_table=table,
                      output_rat=str(tmp_path / "new.zarr"))
    assert table.read_text() == "precious\n"
    assert not os.path.exists(tmp_path / "new.zarr")  # nothing written at all
    segment_stats(scene["seg"], scene["image"], statistics=["mean"], output_table=table,
                  output_rat=str(tmp_path / "new.zarr"), overwrite=True)
    seg, image = scene["arrays"]
    lines = table.read_text().splitlines()
    assert lines[0] == "id,b1_mean" and len(lines) == 1 + len(np.unique(seg))


def test_an_output_folder_that_is_a_file_is_a_clear_error(tmp_path, scene):
    (tmp_path / "notes.txt").write_text("x")
    layer = cases.write_polygons(tmp_path / "z.gpkg", cases.polygons())
    before = digest(tmp_path)
    with pytest.raises(TesseraError, match="notes.txt is a file, not a folder"):
        segment_stats(scene["seg"], scene["image"], statistics=["mean"],
                      output_table=tmp_path / "notes.txt" / "stats.csv")
    with pytest.raises(TesseraError, match="notes.txt is a file, not a folder"):
        zonal_stats(layer, scene["image"], output_table=tmp_path / "notes.txt" / "z.csv")
    assert digest(tmp_path) == before


def test_zonal_table_is_checked_against_the_inputs_and_existing_files(tmp_path, scene):
    layer = cases.write_polygons(tmp_path / "zones.gpkg", cases.polygons())
    before = digest(tmp_path)
    for table, match in ((scene["image"], "is the raster"), (layer, "is the polygon layer")):
        with pytest.raises(TesseraError, match=match):
            zonal_stats(layer, scene["image"], output_table=table, overwrite=True)
    (tmp_path / "z.csv").write_text("keep")
    with pytest.raises(TesseraError, match="z.csv already exists"):
        zonal_stats(layer, scene["image"], output_table=tmp_path / "z.csv")
    assert (tmp_path / "z.csv").read_text() == "keep"
    del before["zones.gpkg"]  # reading a GeoPackage may touch its header
    after = digest(tmp_path)
    after.pop("zones.gpkg")
    after.pop("z.csv")
    assert after == before
    result = zonal_stats(layer, scene["image"], output_table=tmp_path / "z.csv",
                         overwrite=True)
    assert len((tmp_path / "z.csv").read_text().splitlines()) == 1 + result.feature_count


def test_a_layer_with_an_undefined_crs_is_named_as_such(tmp_path, scene):
    path = str(tmp_path / "undefined.gpkg")
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = source.CreateLayer("polys", None, ogr.wkbPolygon)  # GeoPackage srs_id 0
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(
        "POLYGON((500000 5999400,500300 5999400,500300 5999700,500000 5999700,"
        "500000 5999400))"))
    layer.CreateFeature(feature)
    source = None
    with pytest.raises(TesseraError, match="undefined.gpkg has an undefined coordinate "
                                           "reference system.*Assign projection"):
        zonal_stats(path, scene["image"])


# --- Runs in other processes: killed, out of disk, racing ------------------------------

WRITER = """
import resource, signal, sys
sys.path.insert(0, {plugins!r})
from tessera.engine import segment_stats
limit = {limit!r}
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
result = segment_stats({segments!r}, {image!r}, statistics={statistics!r},
                       column_prefix={prefix!r}, output_rat={output_rat!r},
                       output_table={table!r}, overwrite={overwrite!r})
print("wrote", result.columns)
"""


def writer(segments, image, statistics=("mean",), prefix="", output_rat=None, table=None,
           overwrite=False, limit=None):
    """A Python process running segment_stats (``limit``: largest file size it may write)."""
    code = WRITER.format(plugins=PLUGINS_DIR, segments=str(segments), image=str(image),
                         statistics=list(statistics), prefix=prefix,
                         output_rat=None if output_rat is None else str(output_rat),
                         table=None if table is None else str(table), overwrite=overwrite,
                         limit=limit)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def big_scene(tmp_path):
    """A segment GeoTIFF of 250000 segments with a RAT of one column, large enough that
    writing a RAT takes a while; an image; a Zarr store with that column."""
    seg = blocky_segments(1000, 1000, 2, 2, seed=1)
    image = np.random.default_rng(2).integers(0, 4000, (1000, 1000)).astype(np.uint16)
    seg_path = write_raster(tmp_path / "big.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    segment_stats(seg_path, image_path, statistics=["min"])
    segment_stats(seg_path, image_path, statistics=["min"],
                  output_rat=str(tmp_path / "big.zarr"))
    return {"seg": seg_path, "image": image_path, "zarr": str(tmp_path / "big.zarr"),
            "arrays": (seg, image)}


def staging_started(folder):
    return any(TEMPORARY in name for name in os.listdir(folder)) or any(
        name.startswith(".tessera-staged-") for name in _zarr_columns(folder))


TEMPORARY = ".tessera-tmp-"


def _zarr_columns(folder):
    rat = os.path.join(folder, "big.zarr", "RAT")
    return os.listdir(rat) if os.path.isdir(rat) else []


@pytest.mark.parametrize("target", ["own", "zarr"])
def test_a_killed_write_leaves_the_rat_as_it_was(tmp_path, big_scene, target):
    """kill -9 as soon as the staged copy appears, and later: the RAT is the old one or
    the complete new one, never a part; a rerun without overwrite then works."""
    output_rat = None if target == "own" else big_scene["zarr"]
    statistics = ("mean", "max", "stddev", "median", "sum")
    before = digest(tmp_path)
    for delay in (0.0, 0.2, 0.6):
        process = writer(big_scene["seg"], big_scene["image"], statistics, output_rat=output_rat)
        deadline = time.time() + 120
        while not staging_started(tmp_path) and process.poll() is None:
            assert time.time() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if delay == 0.0:  # killed while writing
            assert digest(tmp_path) == before
        elif digest(tmp_path) != before:  # the run was faster: it must have finished whole
            break
    expected = {f"b1_{s}" for s in statistics} | {"b1_min"}
    if target == "own":
        columns = set(read_rat(big_scene["seg"]))
    else:
        columns = set(RatStore(big_scene["zarr"], read_only=True).column_names())
    assert columns in ({"b1_min"}, expected)
    if columns == {"b1_min"}:
        assert digest(tmp_path) == before
        result = segment_stats(big_scene["seg"], big_scene["image"], statistics=statistics,
                               output_rat=output_rat)  # no half-written column in the way
        assert set(result.columns) == expected - {"b1_min"}


@pytest.mark.parametrize("target", ["tif", "img", "zarr", "table"])
def test_a_full_disk_is_an_error_that_changes_nothing(tmp_path, scene, target):
    """RLIMIT_FSIZE lets the process write nothing larger than the files there already
    are (as a full disk would stop it): the run fails, every file stays as it was."""
    sizes = {"tif": os.path.getsize(scene["seg"] + ".aux.xml"),
             "img": os.path.getsize(scene["img_seg"]) - 1,
             "zarr": 200, "table": 300}
    segments = scene["img_seg"] if target == "img" else scene["seg"]
    output_rat = scene["zarr"] if target == "zarr" else None
    table = str(tmp_path / "table.csv") if target == "table" else None
    before = digest(tmp_path)
    process = writer(segments, scene["image"], ("mean", "median", "stddev", "sum"),
                     output_rat=output_rat, table=table, limit=sizes[target])
    out, err = process.communicate(timeout=300)
    assert process.returncode != 0, out
    assert "TesseraError" in err and "Traceback" in err
    assert digest(tmp_path) == before
    segment_stats(segments, scene["image"], statistics=["mean"], output_rat=output_rat,
                  output_table=table)  # and the next run is not blocked


def test_two_runs_writing_one_rat_both_land(tmp_path, big_scene):
    first = writer(big_scene["seg"], big_scene["image"], ("mean", "max"), prefix="a_")
    second = writer(big_scene["seg"], big_scene["image"], ("median", "sum"), prefix="b_")
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    rat = read_rat(big_scene["seg"])
    assert set(rat) == {"b1_min", "a_b1_mean", "a_b1_max", "b_b1_median", "b_b1_sum"}
    seg, image = big_scene["arrays"]
    ids = seg.ravel()
    sums = np.bincount(ids, image.ravel().astype(np.float64))
    present = np.bincount(ids) > 0
    assert np.array_equal(rat["b_b1_sum"][present], sums[present])
    maxima = np.zeros(ids.max() + 1)
    np.maximum.at(maxima, ids, image.ravel())
    assert np.array_equal(rat["a_b1_max"][present], maxima[present])


def test_two_runs_writing_the_same_columns_one_is_refused(tmp_path, big_scene):
    runs = [writer(big_scene["seg"], big_scene["image"], ("mean",),
                   output_rat=big_scene["zarr"]) for _ in range(2)]
    outcomes = [(process.wait(timeout=300), process.stderr.read()) for process in runs]
    assert sorted(code for code, _ in outcomes) == [0, 1]
    refused = next(err for code, err in outcomes if code)
    assert "already has the column(s) b1_mean" in refused
    with RatStore(big_scene["zarr"], read_only=True) as store:
        assert store.column_names() == ["b1_mean", "b1_min"]


def test_a_geotiff_rat_keeps_other_side_car_content(tmp_path, scene):
    dataset = gdal.Open(scene["seg"])
    dataset.GetRasterBand(1).SetMetadataItem("NOTE", "kept")
    dataset = None
    segment_stats(scene["seg"], scene["image"], statistics=["mean"])
    dataset = gdal.Open(scene["seg"])
    assert dataset.GetRasterBand(1).GetMetadataItem("NOTE") == "kept"
    assert set(read_rat(scene["seg"])) == {"b1_max", "b1_mean"}
    assert not [n for n in os.listdir(tmp_path) if TEMPORARY in n]


@pytest.mark.parametrize("explicit", [False, True])
def test_a_rat_written_while_qgis_holds_the_raster_survives_closing_it(run_algorithm,
                                                                       tmp_path, explicit):
    """QGIS rewrites a GeoTIFF's .aux.xml from what it read when it closes the file; the
    segment file given as OUTPUT_RAT is its own RAT, and either way the RAT survives."""
    from qgis.core import QgsProject, QgsRasterLayer

    seg = blocky_segments(40, 40, 4, 4, seed=9)
    image = np.random.default_rng(9).integers(0, 100, (40, 40)).astype(np.uint8)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    layer = QgsRasterLayer(seg_path, "segments")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    layer.dataProvider().bandStatistics(1)  # QGIS's handle now has something to store
    try:
        run_algorithm("segmentstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                       "STATISTICS": ["mean"],
                                       "OUTPUT_RAT": seg_path if explicit else None})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    rat = read_rat(seg_path)
    assert "b1_mean" in rat
    for sid in np.unique(seg)[:10]:
        assert rat["b1_mean"][sid] == pytest.approx(image[seg == sid].mean(), rel=1e-12)
    with pytest.raises(Exception, match="image.tif is the image"):
        run_algorithm("segmentstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                       "STATISTICS": ["max"], "OUTPUT_RAT": image_path})


def test_one_huge_segment_id_is_refused_up_front_with_the_memory_it_needs(tmp_path,
                                                                          monkeypatch):
    from tessera.engine import segment_spatial_stats
    from tessera.engine.segments import pipeline as module

    monkeypatch.setattr(module, "available_memory", lambda: 2**30)  # 1 GiB free
    seg = np.ones((30, 30), np.uint32)
    seg[0, 0] = 200_000_000
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", np.ones((30, 30), np.uint8))
    before = digest(tmp_path)
    for run in (lambda: segment_stats(seg_path, image_path, statistics=["mean"]),
                lambda: segment_spatial_stats(seg_path, statistics=["area"])):
        with pytest.raises(TesseraError, match=r"seg.tif holds id 200000000.* GiB here, but "
                                               r"only 1.0 GiB of memory is free.*consecutively"):
            run()
    assert digest(tmp_path) == before


def test_zonal_output_that_is_the_input_geopackage_is_refused(run_algorithm, tmp_path, scene):
    """OUTPUT = the GeoPackage holding INPUT (other layers beside it) would wipe the file."""
    from qgis.core import QgsProcessingException

    path = cases.write_polygons(tmp_path / "multi.gpkg", cases.polygons(), layer_name="polys")
    other = ogr.Open(path, 1)
    other.CreateLayer("notes", None, ogr.wkbNone)
    other = None
    before = digest(tmp_path)
    for output in (path, f"ogr:dbname='{path}' table=\"stats\" (geom)", scene["image"]):
        with pytest.raises(QgsProcessingException, match="would destroy an input"):
            run_algorithm("zonalstats", {"INPUT": f"{path}|layername=polys",
                                         "RASTER": scene["image"], "OUTPUT": output})
    existing = tmp_path / "existing.gpkg"
    cases.write_polygons(existing, cases.polygons())
    with pytest.raises(QgsProcessingException, match="existing.gpkg already exists"):
        run_algorithm("zonalstats", {"INPUT": f"{path}|layername=polys",
                                     "RASTER": scene["image"], "OUTPUT": str(existing)})
    after = digest(tmp_path)
    after.pop("existing.gpkg")
    assert after == before
    layers = [layer.GetName() for layer in ogr.Open(path)]
    assert sorted(layers) == ["notes", "polys"]
    results = run_algorithm("zonalstats", {"INPUT": f"{path}|layername=polys",
                                           "RASTER": scene["image"], "OUTPUT": str(existing),
                                           "OVERWRITE": True})
    assert ogr.Open(results["OUTPUT"].split("|")[0]).GetLayer(0).GetFeatureCount() == len(
        cases.polygons())


def test_read_only_targets_are_refused_and_left_as_they_were(tmp_path, scene):
    separate = str(tmp_path / "separate.img")
    segment_stats(scene["seg"], scene["image"], statistics=["min"], output_rat=separate)
    table = tmp_path / "table.csv"
    table.write_text("mine")
    for path in (separate, scene["img_seg"], scene["seg"] + ".aux.xml", table):
        os.chmod(path, 0o444)
    before = digest(tmp_path)
    runs = [
        (dict(output_rat=separate), "separate.img is read-only"),
        (dict(output_rat=str(tmp_path / "x.zarr"), output_table=table, overwrite=True),
         "table.csv is read-only"),
        (dict(segments=scene["img_seg"]), "seg.img is read-only"),
        (dict(), "seg.tif.aux.xml is read-only"),
    ]
    for kwargs, match in runs:
        arguments = dict(segments=scene["seg"], image=scene["image"], statistics=["mean"])
        arguments.update(kwargs)
        with pytest.raises(TesseraError, match=match):
            segment_stats(**arguments)
    assert digest(tmp_path) == before


def test_exportrat_replaces_an_existing_table_only_with_overwrite(run_algorithm, tmp_path,
                                                                 scene):
    from qgis.core import QgsProcessingException

    table = tmp_path / "rat.csv"
    table.write_text("mine\n")
    with pytest.raises(QgsProcessingException, match="rat.csv already exists"):
        run_algorithm("exportrat", {"INPUT_RASTER": scene["seg"], "OUTPUT": str(table)})
    assert table.read_text() == "mine\n"
    with pytest.raises(QgsProcessingException, match="is the raster with a RAT"):
        run_algorithm("exportrat", {"INPUT_RASTER": scene["seg"], "OUTPUT": scene["seg"],
                                    "OVERWRITE": True})
    run_algorithm("exportrat", {"INPUT_RASTER": scene["seg"], "OUTPUT": str(table),
                                "OVERWRITE": True})
    seg, _ = scene["arrays"]
    assert len(table.read_text().splitlines()) == 1 + seg.max() + 1


@pytest.mark.parametrize("extension", [".gpkg", ".shp"])
def test_an_output_layer_is_published_whole_or_not_at_all(run_algorithm, tmp_path, scene,
                                                          extension):
    """The output layer is written beside its file and renamed: a run cancelled while
    writing it leaves the old file; a finished run replaces it whole (side files too)."""
    from qgis.core import QgsProcessingFeedback, QgsVectorLayer

    layer = cases.write_polygons(tmp_path / "zones.gpkg", cases.polygons())
    output = str(tmp_path / f"stats{extension}")
    run_algorithm("zonalstats", {"INPUT": layer, "RASTER": scene["image"], "OUTPUT": output,
                                 "STATISTICS": ["min"]})
    before = digest(tmp_path)

    class CancelWhileWriting(QgsProcessingFeedback):
        def setProgress(self, value):  # noqa: N802 (QGIS API)
            super().setProgress(value)
            if value > 90:  # the layer is being written
                self.cancel()

    with pytest.raises(Exception, match="[Cc]ancel"):
        run_algorithm("zonalstats", {"INPUT": layer, "RASTER": scene["image"],
                                     "OUTPUT": output, "STATISTICS": ["mean"],
                                     "OVERWRITE": True}, feedback=CancelWhileWriting())
    assert digest(tmp_path) == before
    assert not [n for n in os.listdir(tmp_path) if TEMPORARY in n]
    results = run_algorithm("zonalstats", {"INPUT": layer, "RASTER": scene["image"],
                                           "OUTPUT": output, "STATISTICS": ["mean"],
                                           "OVERWRITE": True})
    written = QgsVectorLayer(results["OUTPUT"], "written", "ogr")
    assert written.isValid() and written.featureCount() == len(cases.polygons())
    assert "_mean" in written.fields().names() and "_min" not in written.fields().names()
    if extension == ".gpkg":
        assert [lyr.GetName() for lyr in ogr.Open(output)] == ["stats"]
    assert not [n for n in os.listdir(tmp_path) if TEMPORARY in n]
