"""A run's Zarr RAT columns are published together (engine/rat/store.py RatStore.publish):
a writer that dies half-way through publishing leaves a plan that readers already follow
and the next writer completes — locally and on S3 (moto on 127.0.0.1)."""

import numpy as np
import pytest
from moto_s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)

from tessera.engine.io import store_location
from tessera.engine.rat.staging import StagedZarrRat
from tessera.engine.rat.store import PUBLICATION_KEY, RatStore

ROWS = 1000


class WriterDiedError(Exception):
    """Stands for the process being killed between two steps."""


def make_store(url):
    with RatStore(url) as store:
        store.set_row_count(ROWS)
        store.set_chunk_size(300)  # several chunk objects per column
        for name, value in (("keep", 1.0), ("old", 2.0), ("gone", 3.0)):
            store.create_column(name, np.float64)
            store.write_block(name, np.full(ROWS, value), 0)


def staged_run(url):
    """A run that replaces 'old', adds 'new_a' and 'new_b' and deletes 'gone'."""
    table = StagedZarrRat(url)
    for name, value in (("old", 20.0), ("new_a", 30.0), ("new_b", 40.0)):
        if name == "old":
            table.delete_column(name)
        table.create_column(name, "real")
        table.write(name, np.arange(ROWS) + value)
    table.delete_column("gone")
    return table


EXPECTED = {"keep": np.full(ROWS, 1.0), "old": np.arange(ROWS) + 20.0,
            "new_a": np.arange(ROWS) + 30.0, "new_b": np.arange(ROWS) + 40.0}


def read_all(url):
    with RatStore(url, read_only=True) as store:
        return {name: store.read_block(name, 0, ROWS) for name in store.column_names()}


def assert_published(url):
    seen = read_all(url)
    assert sorted(seen) == sorted(EXPECTED)
    for name, values in EXPECTED.items():
        np.testing.assert_array_equal(seen[name], values)


def die_after(monkeypatch, method, calls):
    """Let ``calls`` calls of StoreLocation.<method> through, then 'kill' the writer."""
    original = getattr(store_location.StoreLocation, method)
    count = [0]

    def dying(self, *args):
        if count[0] >= calls:
            raise WriterDiedError()
        count[0] += 1
        return original(self, *args)

    monkeypatch.setattr(store_location.StoreLocation, method, dying)



@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "rat.zarr")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/runs/rat.zarr"


def test_a_clean_publication_shows_every_column_and_leaves_no_plan(url):
    make_store(url)
    table = staged_run(url)
    table.commit()
    table.close()
    assert_published(url)
    location = store_location.store_location(url)
    assert location.read_key(PUBLICATION_KEY) is None
    assert not [key for key in location.object_keys() if ".tessera-" in key]


@pytest.mark.parametrize("step", ["move_tree", "delete_keys"])
@pytest.mark.parametrize("calls", [0, 1, 2])
def test_a_writer_dying_mid_publication_is_seen_whole_and_completed(monkeypatch, url, step,
                                                                    calls):
    make_store(url)
    table = staged_run(url)
    with monkeypatch.context() as patch:
        die_after(patch, step, calls)
        with pytest.raises(WriterDiedError):
            table.commit()
    # readers already see the complete new set, not a part of it
    assert_published(url)
    # the next writer completes the plan, then writes its own column
    follower = StagedZarrRat(url)
    follower.create_column("later", "real")
    follower.write("later", np.ones(ROWS))
    follower.commit()
    follower.close()
    expected = dict(EXPECTED, later=np.ones(ROWS))
    seen = read_all(url)
    assert sorted(seen) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(seen[name], values)
    location = store_location.store_location(url)
    assert location.read_key(PUBLICATION_KEY) is None
    assert not [key for key in location.object_keys() if ".tessera-" in key]


def test_a_writer_dying_before_the_plan_changes_nothing(monkeypatch, url):
    make_store(url)
    before = read_all(url)
    table = staged_run(url)
    with monkeypatch.context() as patch:
        die_after(patch, "write_key", 0)
        with pytest.raises(WriterDiedError):
            table.commit()
    seen = read_all(url)
    assert sorted(seen) == sorted(before)
    for name in before:
        np.testing.assert_array_equal(seen[name], before[name])


def test_a_half_copied_column_on_s3_is_not_a_column(s3_bucket):  # noqa: F811
    """S3 has no rename: the array's zarr.json is copied last, so a copy cut short is
    invisible, and deleted first, so a deletion cut short is too."""
    url = f"s3://{s3_bucket}/half.zarr"
    make_store(url)
    location = store_location.store_location(url)
    copied = []

    class CutShort:
        """The S3 file system, the writer dying after two copies."""

        def __init__(self, filesystem):
            self.filesystem = filesystem

        def __getattr__(self, name):
            return getattr(self.filesystem, name)

        def copy(self, source, target, **kwargs):
            if len(copied) == 2:
                raise WriterDiedError()
            copied.append(target)
            return self.filesystem.copy(source, target, **kwargs)

    real = store_location.StoreLocation.filesystem
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_location.StoreLocation, "filesystem",
                      lambda self: CutShort(real(self)))
        with pytest.raises(WriterDiedError):
            location.move_tree("RAT/keep", "RAT/copy")
    assert copied and not any(key.endswith("copy/zarr.json") for key in copied)
    assert location.read_key("RAT/copy/zarr.json") is None
    with RatStore(url, read_only=True) as store:
        assert "copy" not in store.column_names()
        np.testing.assert_array_equal(store.read_block("keep", 0, ROWS), np.full(ROWS, 1.0))


def store_files(url):
    """Every key of the store with its bytes (hidden staged columns left out)."""
    location = store_location.store_location(url)
    return {key: location.read_key(key) for key in location.object_keys()
            if ".tessera-" not in key}


@pytest.mark.parametrize("dies", [None, "before the plan", "mid-publication"])
def test_more_rows_reach_the_visible_columns_only_with_the_publication(monkeypatch, url,
                                                                       dies):
    """A run that needs more rows than the store has: until it publishes, the visible
    columns and ROWCOUNT are untouched; after, every column has the new rows (old
    columns padded with their fill value), also for readers of a plan left half-way."""
    make_store(url)
    before = store_files(url)
    grown = ROWS + 700
    table = StagedZarrRat(url)
    table.set_row_count(grown)
    table.create_column("wide", "real")
    table.write("wide", np.arange(grown, dtype=np.float64))
    assert store_files(url) == before  # visible columns and ROWCOUNT untouched
    with RatStore(url, read_only=True) as reader:
        assert reader.row_count == ROWS
    with monkeypatch.context() as patch:
        if dies == "before the plan":
            die_after(patch, "write_key", 0)
        elif dies == "mid-publication":
            die_after(patch, "move_tree", 0)
        if dies is None:
            table.commit()
        else:
            with pytest.raises(WriterDiedError):
                table.commit()
    if dies == "before the plan":
        table.abandon()
        assert store_files(url) == before
        return
    with RatStore(url, read_only=True) as reader:
        assert reader.row_count == grown
        np.testing.assert_array_equal(reader.read_block("wide", 0, grown), np.arange(grown))
        keep = reader.read_block("keep", 0, grown)
        np.testing.assert_array_equal(keep[:ROWS], np.full(ROWS, 1.0))
        np.testing.assert_array_equal(keep[ROWS:], np.zeros(700))
    if dies:
        StagedZarrRat(url).close()  # the next writer completes the plan
    location = store_location.store_location(url)
    assert location.read_key(PUBLICATION_KEY) is None
    with RatStore(url, read_only=True) as reader:
        assert reader.row_count == grown
        for name in reader.column_names():
            assert reader.read_block(name, 0, grown + 5).shape[0] == grown
        np.testing.assert_array_equal(reader.read_block("keep", 0, grown)[ROWS:], np.zeros(700))
