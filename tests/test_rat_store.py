"""The Zarr RAT store (engine/rat/store.py): ratzarr's layout and API, local
and on an S3-compatible server on 127.0.0.1, its error cases and its
command line."""

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import PLUGINS_DIR
from moto_s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)

from tessera.engine.errors import TesseraError
from tessera.engine.io.store_location import classify_store_path, store_location
from tessera.engine.rat.store import RatStore
from tessera.engine.rat.tables import is_zarr_target
from tessera.engine.version import tessera_version

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FLOAT_DTYPES = [np.float16, np.float32, np.float64]
STRINGS = ["", "plain", "é accentué", "日本語のテキスト", "emoji 🌍🛰️", "x" * 5000,
           "tab\tand\nnewline"]


def zarr_json(*parts):
    with open(os.path.join(*map(str, parts), "zarr.json"), encoding="utf-8") as stream:
        return json.load(stream)


# Paths -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, path", [
    ("C:\\data\\rat.zarr", "local", "C:\\data\\rat.zarr"),
    ("c:/data/rat.zarr/", "local", "c:/data/rat.zarr"),
    ("D:rat.zarr", "local", "D:rat.zarr"),
    ("\\\\server\\share\\rat.zarr", "local", "\\\\server\\share\\rat.zarr"),
    ("/tmp/rat.zarr", "local", "/tmp/rat.zarr"),
    ("relative/rat.zarr", "local", "relative/rat.zarr"),
    ("file:///tmp/my%20rat.zarr", "local", "/tmp/my rat.zarr"),
    ("file:///C:/data/rat.zarr", "local", "C:/data/rat.zarr"),
    ("s3://bucket/some/rat.zarr", "s3", "bucket/some/rat.zarr"),
    ("S3://bucket/rat.zarr/", "s3", "bucket/rat.zarr"),
])
def test_store_paths_are_classified_windows_drives_included(text, kind, path):
    location = store_location(text)
    assert classify_store_path(text) == kind
    assert (location.kind, location.path) == (kind, path)


@pytest.mark.parametrize("text", ["gs://bucket/rat.zarr", "https://host/rat.zarr",
                                  "s3://bucket", "s3:///rat.zarr", "s3://bucket/a/../rat.zarr", ""])
def test_unsupported_or_incomplete_addresses_are_refused(text):
    with pytest.raises(TesseraError):
        store_location(text)


def test_zarr_targets_are_recognised_on_every_path_style():
    assert is_zarr_target("C:\\data\\rat.zarr")
    assert is_zarr_target("s3://bucket/rat")
    assert is_zarr_target("/tmp/x.ZARR/")
    assert not is_zarr_target("C:\\data\\segments.img")
    assert not is_zarr_target("gs://bucket/rat.zarr")


def test_a_windows_drive_path_is_opened_as_a_local_folder(tmp_path, monkeypatch):
    # On Linux "C:\\x.zarr" is a valid file name in the current folder: proof that the store
    # took the path as a local path (ratzarr raises "Unknown zarrfile spec" here).
    monkeypatch.chdir(tmp_path)
    with RatStore("C:\\rat.zarr") as store:
        store.set_row_count(3)
    assert (tmp_path / "C:\\rat.zarr" / "zarr.json").exists()


# Round trips -------------------------------------------------------------------------------------
def test_every_numpy_integer_and_float_dtype_round_trips(tmp_path):
    path = tmp_path / "types.zarr"
    expected = {}
    with RatStore(path) as store:
        store.set_row_count(6)
        for dtype in INT_DTYPES:
            info = np.iinfo(dtype)
            values = np.array([info.min, info.max, 0, 1, info.max // 3, info.min // 3 or 7],
                              dtype=dtype)
            expected[np.dtype(dtype).name] = values
        for dtype in FLOAT_DTYPES:
            info = np.finfo(dtype)
            values = np.array([info.min, info.max, np.nan, -np.inf, info.tiny, -0.1], dtype=dtype)
            expected[np.dtype(dtype).name] = values
        for name, values in expected.items():
            store.create_column(name, values.dtype)
            store.write_block(name, values, 0)
    with RatStore(path, read_only=True) as store:
        assert store.column_names() == sorted(expected)
        for name, values in expected.items():
            read = store.read_block(name, 0, 6)
            assert read.dtype == values.dtype
            np.testing.assert_array_equal(read, values)
            assert store.column_dtype(name) == values.dtype
    # What other Zarr code sees: the numpy type names of Zarr format 3.
    for name in expected:
        assert zarr_json(path, "RAT", name)["data_type"] == name


def test_strings_round_trip_as_variable_length_utf8(tmp_path):
    path = tmp_path / "strings.zarr"
    with RatStore(path) as store:
        store.set_chunk_size(3)
        store.set_row_count(len(STRINGS) + 2)
        store.create_column("name", str)
        store.write_block("name", STRINGS, 1)       # a list of str
        store.create_column("code", np.dtype("U4"))  # fixed-width numpy input: still variable
        store.write_block("code", np.array(["ab", "cdef"]), 0)
        store.write_block("code", np.array([b"xy", "z\u00e9".encode()], dtype=object), 3)
    with RatStore(path, read_only=True) as store:
        names = store.read_block("name", 0, 100)
        assert names.dtype == object
        assert list(names) == [""] + STRINGS + [""]
        assert all(type(v) is str for v in names)
        assert list(store.read_block("code", 0, 5)) == ["ab", "cdef", "", "xy", "zé"]
        assert store.column_is_string("name") and not store.has_column("missing")
    metadata = zarr_json(path, "RAT", "name")
    assert metadata["data_type"] == "string"
    assert metadata["codecs"][0]["name"] == "vlen-utf8"


def test_block_writes_and_reads_not_aligned_to_chunks(tmp_path):
    rng = np.random.default_rng(7)
    reference = np.zeros(100, np.int64)
    with RatStore(tmp_path / "blocks.zarr") as store:
        store.set_chunk_size(7)
        store.set_row_count(100)
        store.create_column("v", np.int64)
        for start, length in [(3, 13), (16, 5), (50, 29), (95, 5), (0, 2), (40, 12)]:
            block = rng.integers(-1000, 1000, length)
            store.write_block("v", block, start)
            reference[start:start + length] = block
        assert store.column_chunk_size("v") == 7
        for start, length in [(0, 100), (5, 9), (13, 8), (94, 50), (99, 1), (100, 5), (150, 2)]:
            np.testing.assert_array_equal(store.read_block("v", start, length),
                                          reference[start:start + length])
    chunks = set(os.listdir(tmp_path / "blocks.zarr" / "RAT" / "v" / "c"))
    assert {"0", "14"} <= chunks <= {str(i) for i in range(15)}  # ceil(100 / 7) chunks


def test_multi_value_columns_have_a_width(tmp_path):
    with RatStore(tmp_path / "wide.zarr") as store:
        store.set_chunk_size(4)
        store.set_row_count(9)
        store.create_column("xy", np.float32, width=2)
        block = np.arange(10, dtype=np.float32).reshape(5, 2)
        store.write_block("xy", block, 3)
        assert store.column_width("xy") == 2
        np.testing.assert_array_equal(store.read_block("xy", 3, 5), block)
        with pytest.raises(TesseraError, match=r"shape \(rows, 2\)"):
            store.write_block("xy", np.arange(3, dtype=np.float32), 0)
    assert zarr_json(tmp_path / "wide.zarr", "RAT", "xy")["shape"] == [9, 2]


# Row count and chunk size ------------------------------------------------------------------------
def test_resize_truncates_and_extends_every_column(tmp_path):
    path = tmp_path / "resize.zarr"
    with RatStore(path) as store:
        store.set_chunk_size(8)
        store.set_row_count(20)
        store.create_column("n", np.int32)
        store.create_column("s", str)
        store.write_block("n", np.arange(1, 21), 0)
        store.write_block("s", [f"r{i}" for i in range(20)], 0)
        store.set_row_count(11)  # inside the second chunk
        assert store.row_count == 11
        np.testing.assert_array_equal(store.read_block("n", 0, 100), np.arange(1, 12))
        store.set_row_count(30)
        # The rows cut off come back as zeros / empty strings, not as their old values.
        expected = np.concatenate([np.arange(1, 12), np.zeros(19, np.int32)])
        np.testing.assert_array_equal(store.read_block("n", 0, 100), expected)
        assert list(store.read_block("s", 9, 100)) == ["r9", "r10"] + [""] * 19
    assert zarr_json(path, "RAT")["attributes"]["ROWCOUNT"] == 30
    assert zarr_json(path, "RAT", "n")["shape"] == [30]
    with RatStore(path) as store:
        assert store.row_count == 30
        store.set_row_count(0)
        assert store.read_block("s", 0, 10).size == 0


def test_chunk_size_persists_and_applies_to_new_columns(tmp_path):
    path = tmp_path / "chunks.zarr"
    with RatStore(path) as store:
        assert store.chunk_size == 500000
        store.create_column("before", np.float64)
        store.set_chunk_size(1234)
    assert zarr_json(path, "RAT")["attributes"]["CHUNKSIZE"] == 1234
    with RatStore(path) as store:
        assert store.chunk_size == 1234
        store.create_column("after", np.float64)
        assert store.column_chunk_size("before") == 500000
        assert store.column_chunk_size("after") == 1234
        with pytest.raises(TesseraError, match="at least 1"):
            store.set_chunk_size(0)
    grid = zarr_json(path, "RAT", "after")["chunk_grid"]
    assert grid["configuration"]["chunk_shape"] == [1234]


# Columns, attributes, modification log -----------------------------------------------------------
def test_a_new_column_writes_only_inside_its_own_folder(tmp_path, monkeypatch):
    """zarr makes sure a new array's parent groups exist by writing their metadata to a
    temporary file beside the groups' own, then dropping it: a run killed in between left
    ``zarr.<hex>.partial`` in the user's store. Existing parents are not written at all."""
    import zarr.storage._local as local

    path = tmp_path / "kept.zarr"
    with RatStore(path) as store:
        store.set_row_count(10)
    written = []
    put = local._put

    def recording(target, value, *args, **kwargs):
        written.append(os.path.relpath(target, path))
        return put(target, value, *args, **kwargs)

    monkeypatch.setattr(local, "_put", recording)
    with RatStore(path) as store:
        store.create_column("b1_mean", np.float64)
        store.write_block("b1_mean", np.arange(10.0), 0)
    assert written and all(name.startswith(os.path.join("RAT", "b1_mean", ""))
                           for name in written), written
    assert sorted(os.listdir(path)) == ["RAT", "zarr.json"]


def test_column_names_create_and_delete(tmp_path):
    with RatStore(tmp_path / "names.zarr") as store:
        for name in ["b2_mean", "Area", "b1_mean", "class name"]:
            store.create_column(name, np.float64)
        assert store.column_names() == ["Area", "b1_mean", "b2_mean", "class name"]
        assert store.has_column("class name")
        store.delete_column("b1_mean")
        assert store.column_names() == ["Area", "b2_mean", "class name"]
        assert not (tmp_path / "names.zarr" / "RAT" / "b1_mean").exists()
        with pytest.raises(TesseraError, match="already has a column 'Area'"):
            store.create_column("Area", np.int32)
        for bad in ["", "a/b", "..", "__private"]:
            with pytest.raises(TesseraError):
                store.create_column(bad, np.int32)
        with pytest.raises(TesseraError, match="cannot hold"):
            store.create_column("when", np.dtype("datetime64[s]"))
        for action in (lambda: store.delete_column("nope"), lambda: store.column_dtype("nope"),
                       lambda: store.read_block("nope", 0, 1)):
            with pytest.raises(TesseraError, match="no column 'nope'"):
                action()


def test_column_and_store_attribute_mappings_are_stored_at_once(tmp_path):
    path = tmp_path / "attrs.zarr"
    with RatStore(path) as store:
        store.create_column("v", np.int32)
        column = store.column_attrs("v")
        column["units"] = "m"
        column["classes"] = {"1": "water", "2": "forest"}
        store.attrs["source"] = "segments.img"
        assert zarr_json(path, "RAT", "v")["attributes"]["units"] == "m"  # already on disk
        del column["units"]
        with pytest.raises(TesseraError, match="JSON"):
            column["bad"] = object()
    with RatStore(path, read_only=True) as store:
        assert dict(store.column_attrs("v")) == {"MODIFICATIONLOG": [],
                                                 "classes": {"1": "water", "2": "forest"}}
        assert store.attrs["source"] == "segments.img"
        assert store.attrs["ROWCOUNT"] == 0 and store.attrs["CHUNKSIZE"] == 500000
        with pytest.raises(TesseraError, match="read-only"):
            store.attrs["x"] = 1


def test_modification_log_has_one_entry_per_column_per_opened_store(tmp_path):
    path = tmp_path / "log.zarr"
    before = datetime.now(UTC)
    with RatStore(path) as store:
        store.set_row_count(10)
        for name in ("a", "b", "never"):
            store.create_column(name, np.int32)
        store.write_block("a", np.arange(5), 0)
        store.write_block("a", np.arange(5), 5)
        store.write_block("b", np.arange(3), 2)
    middle = datetime.now(UTC)
    with RatStore(path) as store:
        store.write_block("a", np.arange(2), 8)
    after = datetime.now(UTC)
    with RatStore(path, read_only=True) as store:
        log_a, log_b = store.modification_log("a"), store.modification_log("b")
        assert store.modification_log("never") == []
    assert len(log_a) == 2 and len(log_b) == 1
    for (when, by, what), column in zip(log_a + log_b, ["a", "a", "b"], strict=True):
        assert when.tzinfo is not None and when.utcoffset().total_seconds() == 0
        assert by == f"Tessera {tessera_version()}"
        assert what == ["write column", column]  # what Tessera did, never argv or user
    assert before <= log_a[0][0] <= middle <= log_a[1][0] <= after
    stored = zarr_json(path, "RAT", "a")["attributes"]["MODIFICATIONLOG"]
    assert [len(entry) for entry in stored] == [3, 3]
    assert datetime.fromisoformat(stored[0][0]).utcoffset().total_seconds() == 0


# Refusals ----------------------------------------------------------------------------------------
def _snapshot(path):
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            with open(os.path.join(root, name), "rb") as stream:
                files[os.path.relpath(os.path.join(root, name), path)] = stream.read()
    return files


def test_a_read_only_store_refuses_every_change(tmp_path):
    path = tmp_path / "ro.zarr"
    with RatStore(path) as store:
        store.set_row_count(4)
        store.create_column("v", np.int32)
        store.write_block("v", np.arange(4), 0)
    before = _snapshot(path)
    with RatStore(path, read_only=True) as store:
        for action in (lambda: store.write_block("v", np.arange(2), 0),
                       lambda: store.set_row_count(9), lambda: store.create_column("w", float),
                       lambda: store.delete_column("v"), lambda: store.set_chunk_size(5),
                       lambda: store.column_attrs("v").update(x=1)):
            with pytest.raises(TesseraError, match="read-only") as raised:
                action()
            assert str(path) in str(raised.value)
        np.testing.assert_array_equal(store.read_block("v", 0, 4), np.arange(4))
    assert _snapshot(path) == before


def test_a_missing_store_is_refused_unless_it_may_be_created(tmp_path):
    path = tmp_path / "missing.zarr"
    with pytest.raises(TesseraError, match="does not exist") as raised:
        RatStore(path, read_only=True)
    assert str(path) in str(raised.value)
    with pytest.raises(TesseraError, match="does not exist"):
        RatStore(path, create=False)
    assert not path.exists()
    with pytest.raises(TesseraError, match="folder"):
        RatStore(tmp_path / "no" / "such" / "folder" / "x.zarr")
    assert not RatStore.exists(path) and not RatStore.is_valid(path)
    RatStore.delete(path)  # nothing to delete: no error


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    import zarr

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"not zarr")
    plain_file = tmp_path / "table.zarr"
    plain_file.write_text("a file, not a folder")
    no_rat = tmp_path / "norat.zarr"
    zarr.create_group(str(no_rat), zarr_format=3).create_group("other")
    for path in (folder, plain_file, no_rat):
        assert RatStore.exists(path) and not RatStore.is_valid(path)
        for flags in ({}, {"read_only": True}):
            with pytest.raises(TesseraError, match="not a Zarr RAT store"):
                RatStore(path, **flags)
        with pytest.raises(TesseraError, match="not a Zarr RAT store"):
            RatStore.delete(path)
    assert (folder / "holiday.jpg").read_bytes() == b"not zarr"
    assert plain_file.exists() and no_rat.exists()
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(TesseraError, match="not a Zarr RAT store"):
        RatStore(empty, read_only=True)
    with RatStore(empty) as store:  # an empty folder may receive a new store
        store.set_row_count(2)
    assert RatStore.is_valid(empty)
    RatStore.delete(empty)
    assert not empty.exists()


@pytest.mark.parametrize("dtype, block, problem", [
    (np.int32, np.array([1.0, 2.0]), "float data"),
    (np.int64, np.array([0.5]), "float data"),
    (np.uint8, np.array([300]), "do not fit"),
    (np.uint8, np.array([-1]), "do not fit"),
    (np.int16, np.array([2**40], np.int64), "do not fit"),
    (np.float64, np.array([2**53 + 1], np.int64), "exactly"),
    (np.float32, np.array([2**24 + 1], np.int32), "exactly"),
    (np.float32, np.array([1e39]), "overflows"),
    (np.float64, np.array(["1.5"]), "numbers, not strings"),
    (str, np.array([1, 2]), "strings, not int64"),
    (str, np.array(["ok", None], dtype=object), "not a string"),
])
def test_values_that_would_change_are_refused(tmp_path, dtype, block, problem):
    with RatStore(tmp_path / "narrow.zarr") as store:
        store.set_row_count(4)
        store.create_column("c", dtype)
        before = store.read_block("c", 0, 4)
        with pytest.raises(TesseraError, match=problem) as raised:
            store.write_block("c", block, 1)
        assert "column 'c'" in str(raised.value)
        np.testing.assert_array_equal(store.read_block("c", 0, 4), before)


def test_widening_and_rounding_writes_are_accepted(tmp_path):
    with RatStore(tmp_path / "ok.zarr") as store:
        store.set_row_count(3)
        store.create_column("i64", np.int64)
        store.create_column("f32", np.float32)
        store.create_column("u8", np.uint8)
        store.write_block("i64", np.array([-5, 7, 2**31], np.int64), 0)
        store.write_block("u8", np.array([0, 255, 3], np.int64), 0)  # int64 data that fits
        store.write_block("f32", np.array([1 / 3, 2**24, -2.5]), 0)  # rounded to float32
        np.testing.assert_array_equal(store.read_block("u8", 0, 3), [0, 255, 3])
        np.testing.assert_array_equal(store.read_block("f32", 0, 3),
                                      np.array([1 / 3, 2**24, -2.5], np.float32))


def test_writing_past_the_row_count_is_refused(tmp_path):
    with RatStore(tmp_path / "past.zarr") as store:
        store.set_row_count(10)
        store.create_column("v", np.int32)
        with pytest.raises(TesseraError, match="it has 10 rows"):
            store.write_block("v", np.arange(5), 8)
        with pytest.raises(TesseraError, match="negative"):
            store.write_block("v", np.arange(2), -1)
        np.testing.assert_array_equal(store.read_block("v", 0, 10), np.zeros(10))
        store.write_block("v", np.arange(2), 8)  # the last rows exactly


def test_a_closed_store_refuses_use(tmp_path):
    store = RatStore(tmp_path / "closed.zarr")
    store.close()
    with pytest.raises(TesseraError, match="closed"):
        store.column_names()
    with pytest.raises(TesseraError, match="closed"):
        store.row_count  # noqa: B018


# Concurrent readers ------------------------------------------------------------------------------
def _written_store(path, rows=50_000, chunk=4096):
    data = {"ids": np.arange(rows, dtype=np.int64) * 3,
            "values": np.random.default_rng(1).normal(size=rows)}
    with RatStore(path) as store:
        store.set_chunk_size(chunk)
        store.set_row_count(rows)
        for name, values in data.items():
            store.create_column(name, values.dtype)
            store.write_block(name, values, 0)
    return data


def test_concurrent_readers_in_threads_see_the_same_data(tmp_path):
    path = tmp_path / "shared.zarr"
    data = _written_store(path)
    failures = []

    def read(seed):
        rng = np.random.default_rng(seed)
        try:
            with RatStore(path, read_only=True) as store:
                for _ in range(30):
                    start = int(rng.integers(0, 50_000))
                    length = int(rng.integers(1, 9000))
                    for name, values in data.items():
                        block = store.read_block(name, start, length)
                        if not np.array_equal(block, values[start:start + length]):
                            failures.append((name, start, length))
        except Exception as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=read, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_concurrent_readers_in_processes_see_the_same_data(tmp_path):
    path = tmp_path / "shared.zarr"
    data = _written_store(path)
    script = (f"import sys; sys.path.insert(0, {PLUGINS_DIR!r})\n"
              "from tessera.engine.rat.store import RatStore\n"
              f"with RatStore({str(path)!r}, read_only=True) as s:\n"
              "    total = 0.0\n"
              "    for start in range(0, s.row_count, 7000):\n"
              "        total += float(s.read_block('ids', start, 7000).sum())\n"
              "        total += float(s.read_block('values', start, 7000).sum())\n"
              "print(repr(total))\n")
    readers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    expected = float(data["ids"].sum()) + float(data["values"].sum())
    for reader in readers:
        out, err = reader.communicate(timeout=300)
        assert reader.returncode == 0, err
        assert float(out) == pytest.approx(expected, rel=1e-12)


# Interchange with other code following the layout ------------------------------------------------
def test_a_store_written_with_plain_zarr_in_the_layout_is_read(tmp_path):
    import zarr

    path = str(tmp_path / "other_tool.zarr")
    root = zarr.open_group(path, mode="w", zarr_format=3)
    rat = root.create_group("RAT", attributes={"ROWCOUNT": 5, "CHUNKSIZE": 2})
    area = rat.create_array("Area", shape=(5,), chunks=(2,), dtype="uint16")
    area[:] = [0, 10, 20, 30, 65535]
    label = rat.create_array("Label", shape=(5,), chunks=(2,), dtype=str)
    label[:] = np.array(["", "water", "forêt", "urbain", "sol"], dtype=object)
    label.attrs["MODIFICATIONLOG"] = [["2024-05-01T10:20:30Z", "alice", ["ratzarr_job.py", "-v"]]]
    centre = rat.create_array("centre", shape=(5, 2), chunks=(2, 2), dtype="float64")
    centre[:] = np.arange(10).reshape(5, 2)
    with RatStore(path) as store:
        assert (store.row_count, store.chunk_size) == (5, 2)
        assert store.column_names() == ["Area", "Label", "centre"]
        assert store.column_dtype("Area") == np.uint16
        np.testing.assert_array_equal(store.read_block("Area", 1, 10), [10, 20, 30, 65535])
        assert list(store.read_block("Label", 0, 5)) == ["", "water", "forêt", "urbain", "sol"]
        assert store.column_width("centre") == 2
        assert store.modification_log("Label") == [
            (datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC), "alice", ["ratzarr_job.py", "-v"])]
        store.write_block("Label", ["lac"], 1)  # and it stays writable by us
    assert list(zarr.open_group(path, mode="r")["RAT"]["Label"][:2]) == ["", "lac"]


def test_a_store_without_rowcount_gets_it_from_its_columns(tmp_path):
    import zarr

    path = str(tmp_path / "early.zarr")
    rat = zarr.open_group(path, mode="w", zarr_format=3).create_group("RAT")
    rat.create_array("v", shape=(7,), chunks=(3,), dtype="int32")[:] = np.arange(7)
    with RatStore(path, read_only=True) as store:
        assert (store.row_count, store.chunk_size) == (7, 500000)
    with RatStore(path) as store:  # opened for writing, the attributes are completed
        assert store.row_count == 7
    assert zarr_json(path, "RAT")["attributes"] == {"ROWCOUNT": 7, "CHUNKSIZE": 500000}


def test_a_store_written_by_ratstore_follows_the_layout_for_plain_zarr(tmp_path):
    import zarr

    path = str(tmp_path / "ours.zarr")
    with RatStore(path) as store:
        store.set_chunk_size(4)
        store.set_row_count(10)
        store.create_column("b1_mean", np.float64)
        store.create_column("klass", str)
        store.write_block("b1_mean", np.linspace(0, 1, 10), 0)
        store.write_block("klass", ["a", "b"], 8)
    assert zarr_json(path) == {"attributes": {}, "zarr_format": 3, "node_type": "group"}
    root = zarr.open_group(path, mode="r")
    rat = root["RAT"]
    assert dict(rat.attrs) == {"ROWCOUNT": 10, "CHUNKSIZE": 4}
    assert sorted(rat.array_keys()) == ["b1_mean", "klass"]
    mean = rat["b1_mean"]
    assert (mean.shape, mean.chunks, mean.dtype) == ((10,), (4,), np.float64)
    np.testing.assert_array_equal(mean[:], np.linspace(0, 1, 10))
    assert list(rat["klass"][:]) == [""] * 8 + ["a", "b"]
    log = rat["klass"].attrs["MODIFICATIONLOG"]
    assert len(log) == 1 and log[0][1].startswith("Tessera") and log[0][2] == ["write column",
                                                                             "klass"]
    # The calls ratzarr itself makes: a group opened by path, columns opened as arrays by path.
    assert os.path.exists(os.path.join(path, "zarr.json"))
    assert os.path.exists(os.path.join(path, "RAT"))
    group = zarr.open_group(store=path, path="RAT", mode="a")
    assert sorted(group.keys()) == ["b1_mean", "klass"]
    column = zarr.open_array(store=path, path="RAT/b1_mean")
    column[0:2] = [5.0, 6.0]
    with RatStore(path, read_only=True) as store:
        np.testing.assert_array_equal(store.read_block("b1_mean", 0, 3), [5.0, 6.0, 2 / 9])


# S3 ----------------------------------------------------------------------------------------------
def test_a_store_on_s3_round_trips(s3_endpoint, s3_bucket):  # noqa: F811
    url = f"s3://{s3_bucket}/project/segments_rat.zarr"
    options = s3_endpoint.storage_options
    assert not RatStore.exists(url, options)
    with pytest.raises(TesseraError, match="does not exist"):
        RatStore(url, read_only=True, storage_options=options)
    with RatStore(url, storage_options=options) as store:
        store.set_chunk_size(3)
        store.set_row_count(8)
        store.create_column("mean", np.float32)
        store.create_column("label", str)
        store.write_block("mean", np.arange(5, dtype=np.float32) / 2, 2)
        store.write_block("label", ["ciel", "mer"], 6)
        store.column_attrs("mean")["units"] = "reflectance"
    assert RatStore.exists(url, options) and RatStore.is_valid(url, options)
    keys = set(store_location(url, options).object_keys())
    assert {"zarr.json", "RAT/zarr.json", "RAT/mean/zarr.json", "RAT/label/zarr.json"} <= keys
    with RatStore(url, read_only=True, storage_options=options) as store:
        assert (store.row_count, store.chunk_size) == (8, 3)
        np.testing.assert_array_equal(store.read_block("mean", 0, 8),
                                      np.r_[0, 0, np.arange(5) / 2, 0].astype(np.float32))
        assert list(store.read_block("label", 5, 5)) == ["", "ciel", "mer"]
        assert store.column_attrs("mean")["units"] == "reflectance"
        assert len(store.modification_log("mean")) == 1
        with pytest.raises(TesseraError, match="read-only"):
            store.set_row_count(1)
    with RatStore(url, storage_options=options) as store:
        store.set_row_count(4)
        store.set_row_count(6)
        np.testing.assert_array_equal(store.read_block("mean", 0, 9), [0, 0, 0, 0.5, 0, 0])


def test_deleting_an_s3_store_removes_exactly_its_prefix_past_1000_objects(
        s3_endpoint, s3_bucket):  # noqa: F811
    options = s3_endpoint.storage_options
    filesystem = s3_endpoint.filesystem()
    url = f"s3://{s3_bucket}/runs/rat.zarr"
    with RatStore(url, storage_options=options) as store:
        store.set_chunk_size(1)
        store.set_row_count(1010)
        store.create_column("v", np.int16)
        store.write_block("v", np.arange(1010), 0)  # one object per row
    assert len(store_location(url, options).object_keys()) > 1000
    neighbours = {f"{s3_bucket}/runs/rat.zarr2/zarr.json": b"{}",
                  f"{s3_bucket}/runs/rat.zarr_backup": b"x",
                  f"{s3_bucket}/runs/rat.zar/keep": b"y"}
    filesystem.pipe(neighbours)
    RatStore.delete(url, options)
    assert not RatStore.exists(url, options)
    assert filesystem.find(f"{s3_bucket}/runs/rat.zarr/") == []
    assert sorted(filesystem.find(f"{s3_bucket}/runs")) == sorted(neighbours)
    with pytest.raises(TesseraError, match="not a Zarr RAT store"):
        RatStore.delete(f"s3://{s3_bucket}/runs/rat.zar", options)
    assert filesystem.cat(f"{s3_bucket}/runs/rat.zar/keep") == b"y"


def test_the_s3_endpoint_can_come_from_the_environment(s3_endpoint, s3_bucket):  # noqa: F811
    # AWS_ENDPOINT_URL is set by the fixture: no storage options needed (as from QGIS).
    url = f"s3://{s3_bucket}/env.zarr"
    with RatStore(url) as store:
        store.set_row_count(2)
        store.create_column("v", np.int8)
        store.write_block("v", [4, 5], 0)
    with RatStore(url, read_only=True, storage_options=s3_endpoint.storage_options) as store:
        np.testing.assert_array_equal(store.read_block("v", 0, 2), [4, 5])


# Command line ------------------------------------------------------------------------------------
def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PLUGINS_DIR, os.environ.get(
        "PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "tessera.engine.rat.store", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_command_line_info_columns_and_head(tmp_path):
    path = tmp_path / "cli.zarr"
    with RatStore(path) as store:
        store.set_chunk_size(5)
        store.set_row_count(12)
        store.create_column("b1_mean", np.float64)
        store.create_column("label", str)
        store.write_block("b1_mean", np.arange(12) / 4, 0)
        store.write_block("label", ["eau", "forêt"], 3)
    info = run_cli("info", path)
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert "Rows:       12" in lines and "Chunk size: 5" in lines and "Columns:    2" in lines
    row = next(line.split() for line in lines if line.startswith("label"))
    assert row[:4] == ["label", "string", "1", "5"] and row[-2:] == ["Tessera", tessera_version()]
    columns = run_cli("columns", path)
    assert columns.stdout.splitlines() == ["b1_mean", "label"]
    head = run_cli("head", path, "-n", "3", "--start", "3", "--columns", "label,b1_mean")
    assert head.returncode == 0, head.stderr
    table = [line.split() for line in head.stdout.splitlines()]
    assert table[0] == ["row", "label", "b1_mean"]
    assert table[1:4] == [["3", "eau", "0.75"], ["4", "forêt", "1"], ["5", "1.25"]]
    assert table[4] == ["(3", "of", "12", "rows)"]


def test_command_line_errors_have_exit_codes_and_no_traceback(tmp_path):
    missing = run_cli("info", tmp_path / "missing.zarr")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.txt").write_text("x")
    not_store = run_cli("columns", tmp_path / "folder")
    assert not_store.returncode == 1 and "not a Zarr RAT store" in not_store.stderr
    with RatStore(tmp_path / "ok.zarr") as store:
        store.create_column("a", np.int32)
    unknown = run_cli("head", tmp_path / "ok.zarr", "--columns", "zzz")
    assert unknown.returncode == 1 and "no column 'zzz'" in unknown.stderr
    usage = run_cli("head", tmp_path / "ok.zarr", "-n", "many")
    assert usage.returncode == 2 and "not a whole number" in usage.stderr
    assert run_cli("frobnicate", "x").returncode == 2


def test_command_line_reads_a_store_on_s3(s3_endpoint, s3_bucket):  # noqa: F811
    url = f"s3://{s3_bucket}/cli.zarr"
    with RatStore(url, storage_options=s3_endpoint.storage_options) as store:
        store.set_row_count(3)
        store.create_column("v", np.int32)
        store.write_block("v", [7, 8, 9], 0)
    done = run_cli("--endpoint-url", s3_endpoint.url, "head", url)
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()][1:4] == [
        ["0", "7"], ["1", "8"], ["2", "9"]]


def test_s3_without_s3fs_says_what_to_install(tmp_path):
    code = (f"import sys; sys.path.insert(0, {PLUGINS_DIR!r})\n"
            "class Blocker:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 's3fs':\n"
            "            raise ImportError('blocked for this test')\n"
            "sys.meta_path.insert(0, Blocker())\n"
            "from tessera.engine.rat.store import RatStore\n"
            "from tessera.engine.errors import TesseraError\n"
            "try:\n"
            "    RatStore('s3://bucket/rat.zarr')\n"
            "except TesseraError as error:\n"
            "    print('MESSAGE:', error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    message = done.stdout.split("MESSAGE:", 1)[1]
    assert "s3fs" in message and "pip install" in message and "s3://bucket/rat.zarr" in message
