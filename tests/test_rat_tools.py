"""Copying and exporting RATs (engine/rat/tools.py, tessera:copyrat,
tessera:exportrat) between GDAL RATs and Zarr stores, and segment statistics
written to a Zarr store."""

import csv
import os

import numpy as np
import pytest
from moto_s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)
from osgeo import gdal
from raster_files import blocky_segments, read_rat, write_raster

from tessera.engine import copy_rat, segment_stats
from tessera.engine.errors import CancelledError, TesseraError
from tessera.engine.rat.store import RatStore
from tessera.engine.rat.tables import open_rat

LABELS = np.array(["", "water", "forêt", "bâti", "champ"], dtype=object)


def _table(rows, seed=0):
    rng = np.random.default_rng(seed)
    return {"count": rng.integers(0, 5000, rows).astype(np.int32),
            "mean": rng.normal(300, 50, rows),
            "label": LABELS[rng.integers(0, len(LABELS), rows)]}


def _gdal_rat(path, table, driver="HFA"):
    """A raster (HFA .img by default) whose RAT holds ``table``."""
    write_raster(path, np.zeros((4, 4), np.uint32), driver=driver)
    kinds = {"i": "integer", "f": "real", "O": "string"}
    with open_rat(path, update=True) as rat:
        rat.set_row_count(len(next(iter(table.values()))))
        for name, values in table.items():
            rat.create_column(name, kinds[values.dtype.kind])
            rat.write(name, values)
    return str(path)


def _store(path, table, chunk=None):
    with RatStore(path) as store:
        if chunk:
            store.set_chunk_size(chunk)
        store.set_row_count(len(next(iter(table.values()))))
        for name, values in table.items():
            store.create_column(name, str if values.dtype == object else values.dtype)
            store.write_block(name, values, 0)
    return path


def _store_columns(path):
    with RatStore(path, read_only=True) as store:
        return {n: store.read_block(n, 0, store.row_count) for n in store.column_names()}


# copy_rat ----------------------------------------------------------------------------------------
def test_gdal_to_zarr_to_geotiff_round_trip_block_by_block(tmp_path):
    table = _table(1003)
    source = _gdal_rat(tmp_path / "segments.img", table)
    store = tmp_path / "rat.zarr"
    result = copy_rat(source, store, block_rows=97)
    assert result.columns == ["count", "mean", "label"] and result.row_count == 1003
    copied = _store_columns(store)
    assert copied["count"].dtype == np.int32 and copied["mean"].dtype == np.float64
    np.testing.assert_array_equal(copied["count"], table["count"])
    np.testing.assert_array_equal(copied["mean"], table["mean"])
    assert list(copied["label"]) == list(table["label"])

    target = write_raster(tmp_path / "other.tif", np.zeros((3, 3), np.uint8))
    copy_rat(store, target, columns="label,count", block_rows=250)
    stored = read_rat(target)  # the GeoTIFF's .aux.xml, read by plain GDAL
    assert list(stored) == ["label", "count"]
    np.testing.assert_array_equal(stored["count"], table["count"])
    assert [v.decode() for v in stored["label"]] == list(table["label"])


def test_zarr_to_zarr_keeps_exact_dtypes(tmp_path):
    table = {"u8": np.arange(40, dtype=np.uint8), "big": np.arange(40, dtype=np.int64) * 2**40,
             "f32": np.linspace(0, 1, 40, dtype=np.float32),
             "s": np.array([f"r{i}" for i in range(40)], dtype=object)}
    _store(tmp_path / "a.zarr", table, chunk=16)
    copy_rat(tmp_path / "a.zarr", tmp_path / "b.zarr", columns=["s", "big", "u8", "f32"],
             block_rows=10)
    copied = _store_columns(tmp_path / "b.zarr")
    for name, values in table.items():
        assert copied[name].dtype == values.dtype
        np.testing.assert_array_equal(copied[name], values)


def test_copies_read_and_write_in_blocks(tmp_path, monkeypatch):
    table = {"v": np.arange(20_000, dtype=np.float64)}
    _store(tmp_path / "big.zarr", table, chunk=1000)
    lengths = {"read": [], "write": []}
    read, write = RatStore.read_block, RatStore.write_block

    def spy_read(self, name, start, length):
        block = read(self, name, start, length)
        lengths["read"].append(len(block))
        return block

    def spy_write(self, name, block, start):
        lengths["write"].append(len(block))
        return write(self, name, block, start)

    monkeypatch.setattr(RatStore, "read_block", spy_read)
    monkeypatch.setattr(RatStore, "write_block", spy_write)
    copy_rat(tmp_path / "big.zarr", tmp_path / "copy.zarr", block_rows=3000)
    # copied, then read back from both sides, one block at a time
    assert sorted(lengths["read"]) == sorted(([3000] * 6 + [2000]) * 3)
    assert lengths["write"] == [3000] * 6 + [2000]
    np.testing.assert_array_equal(_store_columns(tmp_path / "copy.zarr")["v"], table["v"])


def test_the_destination_grows_and_other_columns_are_kept(tmp_path):
    _store(tmp_path / "dest.zarr", {"kept": np.array([5, 6, 7], np.int16)})
    source = _gdal_rat(tmp_path / "segments.img", _table(8))
    copy_rat(source, tmp_path / "dest.zarr", columns=["mean"])
    copied = _store_columns(tmp_path / "dest.zarr")
    np.testing.assert_array_equal(copied["kept"], [5, 6, 7, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(copied["mean"], _table(8)["mean"])


def test_overwrite_rules(tmp_path):
    table = _table(6)
    source = _store(tmp_path / "src.zarr", table)
    target = _gdal_rat(tmp_path / "target.img", {"count": np.arange(10, dtype=np.int32),
                                                 "mean": np.zeros(10)})
    with pytest.raises(TesseraError, match="already has the column"):
        copy_rat(source, target, columns=["count"])
    np.testing.assert_array_equal(read_rat(target)["count"], np.arange(10))
    copy_rat(source, target, columns=["count"], overwrite=True)
    # Overwritten in place: the source's rows, then zeros up to the destination's 10 rows.
    np.testing.assert_array_equal(read_rat(target)["count"], np.r_[table["count"], [0] * 4])
    strings = _store(tmp_path / "s2.zarr", {"mean": np.array(["x"], dtype=object)})
    with pytest.raises(TesseraError, match="another type"):
        copy_rat(strings, target, columns=["mean"], overwrite=True)
    np.testing.assert_array_equal(read_rat(target)["mean"], np.zeros(10))
    # A Zarr column is replaced, even by one of another type.
    _store(tmp_path / "dest.zarr", {"count": np.array(["a", "b"], dtype=object)})
    copy_rat(source, tmp_path / "dest.zarr", columns=["count"], overwrite=True)
    copied = _store_columns(tmp_path / "dest.zarr")
    assert copied["count"].dtype == np.int32
    np.testing.assert_array_equal(copied["count"], table["count"])


def test_bad_requests_are_refused_before_anything_is_written(tmp_path):
    plain = write_raster(tmp_path / "plain.tif", np.ones((2, 2), np.uint8))
    with pytest.raises(TesseraError, match="no raster attribute table"):
        copy_rat(plain, tmp_path / "x.zarr")
    source = _store(tmp_path / "src.zarr", {"huge": np.array([1, 2**40], np.int64),
                                            "ok": np.array([1, 2], np.int64)})
    with pytest.raises(TesseraError, match="no column"):
        copy_rat(source, tmp_path / "x.zarr", columns="ok,missing")
    with pytest.raises(TesseraError, match="32-bit"):
        copy_rat(source, tmp_path / "new.img")
    copy_rat(source, tmp_path / "new.img", columns="ok")  # values that fit are fine
    np.testing.assert_array_equal(read_rat(tmp_path / "new.img")["ok"], [1, 2])
    with pytest.raises(TesseraError, match="same RAT"):
        copy_rat(source, tmp_path / "src.zarr")
    with RatStore(tmp_path / "wide.zarr") as store:
        store.set_row_count(2)
        store.create_column("xy", np.float64, width=2)
    with pytest.raises(TesseraError, match="several values per row"):
        copy_rat(tmp_path / "wide.zarr", tmp_path / "y.zarr")
    for never in ("x.zarr", "y.zarr"):
        assert not (tmp_path / never).exists()
    assert not os.path.exists(plain + ".aux.xml")


def _cancel_after(calls):
    count = [0]

    def cancelled():
        count[0] += 1
        return count[0] > calls

    return cancelled


def test_a_cancelled_copy_leaves_the_destination_as_it_was(tmp_path):
    source = _gdal_rat(tmp_path / "segments.img", _table(500))
    with pytest.raises(CancelledError, match="was removed"):
        copy_rat(source, tmp_path / "new.zarr", block_rows=50, cancelled=_cancel_after(5))
    assert not (tmp_path / "new.zarr").exists()

    _store(tmp_path / "old.zarr", {"kept": np.arange(3, dtype=np.int8)})
    with pytest.raises(CancelledError, match="as it was"):
        copy_rat(source, tmp_path / "old.zarr", block_rows=50, cancelled=_cancel_after(12))
    with RatStore(tmp_path / "old.zarr", read_only=True) as store:
        assert store.column_names() == ["kept"] and store.row_count == 3
        np.testing.assert_array_equal(store.read_block("kept", 0, 9), [0, 1, 2])

    tif = write_raster(tmp_path / "seg.tif", np.zeros((2, 2), np.uint8))
    with pytest.raises(CancelledError):
        copy_rat(source, tif, block_rows=50, cancelled=_cancel_after(12))
    assert read_rat(tif) == {}


def test_progress_reaches_the_end(tmp_path):
    source = _store(tmp_path / "src.zarr", _table(300), chunk=100)
    reported = []
    copy_rat(source, tmp_path / "dst.img", block_rows=100,
             progress=lambda fraction, message: reported.append(fraction))
    assert reported == sorted(reported) and reported[-1] == pytest.approx(1.0)


def test_copy_to_a_store_on_s3(s3_endpoint, s3_bucket):  # noqa: F811
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        table = _table(50)
        source = _gdal_rat(os.path.join(folder, "segments.img"), table)
        url = f"s3://{s3_bucket}/rats/segments.zarr"
        copy_rat(source, url, storage_options=s3_endpoint.storage_options, block_rows=20)
        with RatStore(url, read_only=True, storage_options=s3_endpoint.storage_options) as st:
            assert list(st.read_block("label", 0, 50)) == list(table["label"])
        back = os.path.join(folder, "back.img")
        copy_rat(url, back, columns=["mean"])  # endpoint from AWS_ENDPOINT_URL
        np.testing.assert_array_equal(read_rat(back)["mean"], table["mean"])


# Segment statistics into a Zarr store ------------------------------------------------------------
def test_segment_statistics_write_readable_zarr_columns_with_overwrite_rules(tmp_path):
    seg = blocky_segments(40, 50, 5, 7, seed=2)
    image = np.random.default_rng(2).integers(1, 900, (40, 50)).astype(np.uint16)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    store = tmp_path / "stats.zarr"
    segment_stats(seg_path, image_path, statistics=["pixcount", "mean", "max"], output_rat=store)
    columns = _store_columns(store)
    assert sorted(columns) == ["b1_max", "b1_mean", "b1_pixcount"]
    assert columns["b1_pixcount"].dtype == np.int32 and columns["b1_mean"].dtype == np.float64
    for sid in np.unique(seg):
        pixels = image[seg == sid]
        assert columns["b1_pixcount"][sid] == pixels.size
        assert columns["b1_max"][sid] == pixels.max()
        assert columns["b1_mean"][sid] == pytest.approx(pixels.mean(), rel=1e-12)
    with RatStore(store, read_only=True) as opened:
        assert opened.row_count == seg.max() + 1
        assert len(opened.modification_log("b1_mean")) == 1

    with pytest.raises(TesseraError, match="already has the column"):
        segment_stats(seg_path, image_path, statistics=["mean"], output_rat=store)
    assert len(RatStore(store, read_only=True).modification_log("b1_mean")) == 1  # untouched
    segment_stats(seg_path, image_path, statistics=["mean"], output_rat=store, overwrite=True)
    with RatStore(store, read_only=True) as opened:
        assert len(opened.modification_log("b1_mean")) == 2
        np.testing.assert_array_equal(opened.read_block("b1_mean", 0, opened.row_count),
                                      columns["b1_mean"])


# Algorithms --------------------------------------------------------------------------------------
def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_exportrat_writes_a_geopackage_table_and_a_csv(run_algorithm, tmp_path):
    from qgis.core import QgsVectorLayer, QgsWkbTypes

    table = _table(25)
    store = _store(tmp_path / "rat.zarr", table)
    gpkg = str(tmp_path / "export.gpkg")
    results = run_algorithm("exportrat", {"INPUT_STORE": str(store), "COLUMNS": "label,count",
                                          "OUTPUT": gpkg})
    assert results["ROW_COUNT"] == 25
    layer = QgsVectorLayer(results["OUTPUT"], "export", "ogr")
    assert layer.isValid() and layer.wkbType() == QgsWkbTypes.NoGeometry
    assert [f.name() for f in layer.fields()][-3:] == ["id", "label", "count"]
    features = sorted(layer.getFeatures(), key=lambda f: f["id"])
    assert [f["id"] for f in features] == list(range(25))
    assert [f["count"] for f in features] == table["count"].tolist()
    assert [f["label"] or "" for f in features] == list(table["label"])

    raster = _gdal_rat(tmp_path / "segments.img", table)
    csv_path = str(tmp_path / "export.csv")
    run_algorithm("exportrat", {"INPUT_RASTER": raster, "COLUMNS": "mean", "ID_FIELD": "segment",
                                "OUTPUT": csv_path})
    rows = _read_csv(csv_path)
    assert list(rows[0]) == ["segment", "mean"]
    assert [int(r["segment"]) for r in rows] == list(range(25))
    np.testing.assert_allclose([float(r["mean"]) for r in rows], table["mean"], rtol=1e-12)


def test_exportrat_refuses_unclear_inputs(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException

    store = _store(tmp_path / "rat.zarr", {"id": np.arange(3, dtype=np.int32)})
    raster = _gdal_rat(tmp_path / "segments.img", _table(3))
    out = str(tmp_path / "t.csv")
    for parameters, problem in [
        ({"INPUT_STORE": str(store), "INPUT_RASTER": raster}, "either"),
        ({}, "either"),
        ({"INPUT_STORE": str(store)}, "already has a column 'id'"),
        ({"INPUT_STORE": str(store), "COLUMNS": "nope"}, "no column"),
        ({"INPUT_STORE": str(tmp_path)}, "not a Zarr RAT store"),
    ]:
        with pytest.raises(QgsProcessingException, match=problem):
            run_algorithm("exportrat", {**parameters, "OUTPUT": out})


def test_copyrat_between_a_geotiff_rat_and_a_store(run_algorithm, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    table = _table(30)
    raster = _gdal_rat(tmp_path / "segments.tif", table, driver="GTiff")
    store = str(tmp_path / "copy.zarr")
    results = run_algorithm("copyrat", {"INPUT_RASTER": raster, "OUTPUT": store})
    assert results["COLUMNS"] == "count,mean,label" and results["ROW_COUNT"] == 30
    np.testing.assert_array_equal(_store_columns(store)["count"], table["count"])

    # Back into a GeoTIFF that QGIS has open as a layer: the RAT survives QGIS's handles.
    target = write_raster(tmp_path / "target.tif", np.zeros((4, 4), np.uint32))
    layer = QgsRasterLayer(target, "target", "gdal")
    QgsProject.instance().addMapLayer(layer)
    try:
        run_algorithm("copyrat", {"INPUT_STORE": store, "COLUMNS": "mean", "OUTPUT": target})
        np.testing.assert_allclose(read_rat(target)["mean"], table["mean"], rtol=1e-14)
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    np.testing.assert_allclose(read_rat(target)["mean"], table["mean"], rtol=1e-14)


def test_copyrat_and_exportrat_through_qgis_process(qgis_process, tmp_path):
    table = _table(12)
    raster = _gdal_rat(tmp_path / "segments.img", table)
    store = tmp_path / "cli.zarr"
    code, result, output = qgis_process("run", "tessera:copyrat", "--",
                                        f"INPUT_RASTER={raster}", "COLUMNS=label,mean",
                                        f"OUTPUT={store}")
    assert code == 0, output
    assert result["results"]["COLUMNS"] == "label,mean"
    assert result["results"]["ROW_COUNT"] == 12
    assert list(_store_columns(store)["label"]) == list(table["label"])

    csv_path = tmp_path / "cli.csv"
    code, result, output = qgis_process("run", "tessera:exportrat", "--",
                                        f"INPUT_STORE={store}", f"OUTPUT={csv_path}")
    assert code == 0, output
    assert result["results"]["ROW_COUNT"] == 12
    rows = _read_csv(csv_path)
    assert list(rows[0]) == ["id", "label", "mean"]  # a store's columns come sorted
    assert [r["label"] for r in rows] == list(table["label"])

    code, _, output = qgis_process("run", "tessera:copyrat", "--", f"INPUT_STORE={tmp_path}",
                                   f"OUTPUT={tmp_path / 'x.zarr'}")
    assert code != 0 and "not a Zarr RAT store" in output and "Traceback" not in output
    assert gdal.Open(str(raster)) is not None


def test_copyrat_and_exportrat_with_a_store_on_s3(run_algorithm, s3_bucket, tmp_path):  # noqa: F811
    # The endpoint comes from AWS_ENDPOINT_URL (set by the fixture), as it would in QGIS.
    table = _table(40)
    raster = _gdal_rat(tmp_path / "segments.img", table)
    url = f"s3://{s3_bucket}/qgis/segments.zarr"
    results = run_algorithm("copyrat", {"INPUT_RASTER": raster, "COLUMNS": "mean,label",
                                        "OUTPUT": url})
    assert results["OUTPUT"] == url and results["ROW_COUNT"] == 40
    csv_path = str(tmp_path / "from_s3.csv")
    run_algorithm("exportrat", {"INPUT_STORE": url, "OUTPUT": csv_path})
    rows = _read_csv(csv_path)
    assert [r["label"] for r in rows] == list(table["label"])
    np.testing.assert_allclose([float(r["mean"]) for r in rows], table["mean"], rtol=1e-12)


def test_exportrat_of_many_rows_keeps_every_row_in_order(run_algorithm, tmp_path):
    values = np.arange(23_456, dtype=np.int64) * 7 - 5  # more rows than one feature batch
    store = _store(tmp_path / "many.zarr", {"v": values}, chunk=5000)
    csv_path = str(tmp_path / "many.csv")
    results = run_algorithm("exportrat", {"INPUT_STORE": str(store), "OUTPUT": csv_path})
    assert results["ROW_COUNT"] == len(values)
    rows = _read_csv(csv_path)
    assert [int(r["id"]) for r in rows] == list(range(len(values)))
    assert [int(r["v"]) for r in rows] == values.tolist()
