"""The GDAL back-end of the RAT interface (engine/rat/tables.py GdalRat): RATs in
HFA files and in a GeoTIFF's .aux.xml, checked by reopening with plain GDAL."""

import numpy as np
import pytest
from osgeo import gdal
from raster_files import read_rat, write_raster

from tessera.engine.errors import TesseraError
from tessera.engine.rat.tables import GdalRat, ZarrRat, open_rat

WORDS = np.array(["", "eau", "forêt", "ville 🏙️", "champ", "日本"], dtype=object)


@pytest.fixture(params=["img", "tif"])
def rat_raster(request, tmp_path):
    """A small uint32 raster without a RAT: an HFA .img or a GeoTIFF."""
    driver = {"img": "HFA", "tif": "GTiff"}[request.param]
    path = tmp_path / f"segments.{request.param}"
    write_raster(path, np.arange(12, dtype=np.uint32).reshape(3, 4), driver=driver)
    return path


def _reference_table(rows, seed=0):
    rng = np.random.default_rng(seed)
    return {"count": rng.integers(-2**31, 2**31 - 1, rows).astype(np.int32),
            "mean": rng.normal(100, 20, rows),
            "name": WORDS[rng.integers(0, len(WORDS), rows)]}


def _gdal_strings(values):
    return [v.decode("utf-8") for v in values]


def test_blocks_at_non_zero_starts_persist_for_both_kinds_of_rat(rat_raster):
    rows = 1000
    reference = _reference_table(rows)
    blocks = [(0, 130), (130, 1), (131, 400), (531, 469)]
    with open_rat(rat_raster, update=True) as rat:
        assert rat.live == (rat_raster.suffix == ".img")  # HFA in the file, GTiff in memory
        rat.set_row_count(rows)
        for name, kind in (("count", "integer"), ("mean", "real"), ("name", "string")):
            rat.create_column(name, kind)
        # Columns interleaved block by block, from the end backwards.
        for start, length in reversed(blocks):
            for name, values in reference.items():
                rat.write(name, values[start:start + length], start)
        for start, length in [(0, 10), (555, 77), (990, 50)]:
            np.testing.assert_array_equal(rat.read("count", start, length),
                                          reference["count"][start:start + length])
            assert list(rat.read("name", start, length)) == list(
                reference["name"][start:start + length])
    if rat_raster.suffix == ".tif":
        assert (rat_raster.parent / (rat_raster.name + ".aux.xml")).exists()
    stored = read_rat(rat_raster)  # plain GDAL, a fresh handle
    np.testing.assert_array_equal(stored["count"], reference["count"])
    # The .aux.xml keeps reals as text of 15 significant digits (GDAL's PAM), HFA exactly.
    tolerance = 1e-14 if rat_raster.suffix == ".tif" else 0
    np.testing.assert_allclose(stored["mean"], reference["mean"], rtol=tolerance, atol=0)
    assert _gdal_strings(stored["name"]) == list(reference["name"])
    with open_rat(rat_raster) as rat:  # and block reads at offsets of the stored table
        assert rat.row_count() == rows
        for start, length in [(1, 1), (333, 333), (999, 5)]:
            np.testing.assert_allclose(rat.read("mean", start, length),
                                       reference["mean"][start:start + length],
                                       rtol=tolerance, atol=0)
            assert list(rat.read("name", start, length)) == list(
                reference["name"][start:start + length])


def test_kinds_and_dtypes_of_columns(rat_raster):
    with open_rat(rat_raster, update=True) as rat:
        rat.set_row_count(3)
        for name, kind in (("i", "integer"), ("r", "real"), ("s", "string")):
            rat.create_column(name, kind)
        assert [rat.column_kind(c) for c in ("i", "r", "s")] == ["integer", "real", "string"]
        assert [rat.column_dtype(c) for c in ("i", "r", "s")] == [np.int32, np.float64, object]
        rat.write("s", ["a", "b", "c"])
        assert [type(v) for v in rat.read("s")] == [str, str, str]
        assert rat.read("i").dtype == np.int32 and rat.read("r").dtype == np.float64
        with pytest.raises(TesseraError, match="Unknown RAT column kind"):
            rat.create_column("x", "boolean")
        with pytest.raises(TesseraError, match="already has a column 'i'"):
            rat.create_column("i", "integer")
        with pytest.raises(TesseraError, match="cannot be deleted"):
            rat.delete_column("i")
    dataset = gdal.Open(str(rat_raster))
    rat = dataset.GetRasterBand(1).GetDefaultRAT()
    assert [rat.GetTypeOfCol(i) for i in range(3)] == [gdal.GFT_Integer, gdal.GFT_Real,
                                                      gdal.GFT_String]


def test_row_count_grows_and_shrinks_keeping_values(rat_raster):
    with open_rat(rat_raster, update=True) as rat:
        rat.set_row_count(10)
        rat.create_column("v", "real")
        rat.create_column("s", "string")
        rat.write("v", np.arange(10) + 0.5)
        rat.write("s", [f"n{i}" for i in range(10)])
    with open_rat(rat_raster, update=True) as rat:
        rat.write("v", [99.0], 9)  # a cached column, then a resize
        rat.set_row_count(25)
        rat.write("v", [7.0], 24)
    stored = read_rat(rat_raster)
    np.testing.assert_array_equal(stored["v"], np.r_[np.arange(9) + 0.5, 99, np.zeros(14), 7])
    assert _gdal_strings(stored["s"]) == [f"n{i}" for i in range(10)] + [""] * 15
    with open_rat(rat_raster, update=True) as rat:
        rat.set_row_count(4)
    np.testing.assert_array_equal(read_rat(rat_raster)["v"], np.arange(4) + 0.5)


def test_a_read_only_rat_refuses_changes_and_the_file_is_unchanged(rat_raster):
    with open_rat(rat_raster, update=True) as rat:
        rat.set_row_count(5)
        rat.create_column("v", "integer")
        rat.write("v", np.arange(5))
    with open_rat(rat_raster) as rat:
        for action in (lambda: rat.write("v", [1], 0), lambda: rat.set_row_count(8),
                       lambda: rat.create_column("w", "real")):
            with pytest.raises(TesseraError, match="read-only") as raised:
                action()
            assert str(rat_raster) in str(raised.value)
    np.testing.assert_array_equal(read_rat(rat_raster)["v"], np.arange(5))


def test_values_are_checked_before_they_reach_gdal(rat_raster):
    with open_rat(rat_raster, update=True) as rat:
        rat.set_row_count(4)
        rat.create_column("i", "integer")
        rat.create_column("r", "real")
        rat.write("i", np.array([1.0, -2.0, 3.0]), 1)  # whole floats are integers
        for column, values, problem in [("i", [0.5], "non-integer"), ("i", [np.nan], "non-int"),
                                        ("i", [2**31], "32-bit"), ("r", ["x"], "numbers"),
                                        ("i", [1, 2, 3], "outside")]:
            with pytest.raises(TesseraError, match=problem):
                rat.write(column, np.array(values), 2)
        np.testing.assert_array_equal(rat.read("i"), [0, 1, -2, 3])
        assert rat.read("i", 3, 100).tolist() == [3]
        assert rat.read("i", 4, 10).size == 0
        with pytest.raises(TesseraError, match="must not be negative"):
            rat.read("i", -1, 2)
        with pytest.raises(TesseraError, match="no column 'zzz'"):
            rat.read("zzz")


def test_discarded_edits_of_a_side_car_rat_are_not_stored(tmp_path):
    path = write_raster(tmp_path / "seg.tif", np.ones((2, 2), np.uint8))
    with open_rat(path, update=True) as rat:
        rat.set_row_count(3)
        rat.create_column("v", "integer")
        rat.write("v", [1, 2, 3])
    with pytest.raises(RuntimeError), open_rat(path, update=True) as rat:
        rat.write("v", [9, 9, 9])
        raise RuntimeError("the computation failed")
    np.testing.assert_array_equal(read_rat(path)["v"], [1, 2, 3])


def test_new_rat_files_are_created_by_extension(tmp_path):
    for name, driver in (("only_rat.img", "HFA"), ("only_rat.tif", "GTiff")):
        with open_rat(tmp_path / name, update=True, create=True) as rat:
            rat.set_row_count(2)
            rat.create_column("s", "string")
            rat.write("s", ["ü", "ß"])
        dataset = gdal.Open(str(tmp_path / name))
        assert dataset.GetDriver().ShortName == driver
        assert _gdal_strings(read_rat(tmp_path / name)["s"]) == ["ü", "ß"]
    with pytest.raises(TesseraError, match="Cannot tell which format"):
        open_rat(tmp_path / "x.csv", update=True, create=True)
    with pytest.raises(TesseraError, match="not found"):
        open_rat(tmp_path / "missing.img")


def test_open_rat_chooses_the_back_end(tmp_path):
    path = write_raster(tmp_path / "seg.img", np.ones((2, 2), np.uint8), driver="HFA")
    with open_rat(path) as rat:
        assert isinstance(rat, GdalRat)
    with open_rat(tmp_path / "table.zarr", update=True, create=True) as rat:
        assert isinstance(rat, ZarrRat)
        rat.set_row_count(3)
        rat.create_column("s", "string")
        rat.create_column("i", "integer")
        rat.write("i", np.array([1.0, 2.0, 3.0]))  # whole floats, as for GDAL
        with pytest.raises(TesseraError, match="non-integer"):
            rat.write("i", np.array([1.5]))
        rat.write("s", np.array([b"caf\xc3\xa9"], dtype="S"), 2)
        assert rat.column_kind("s") == "string" and rat.column_dtype("i") == np.int32
        assert list(rat.read("s")) == ["", "", "café"]
