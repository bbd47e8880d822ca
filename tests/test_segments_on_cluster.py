"""Per-segment statistics and spatial statistics on a Dask cluster (``scheduler=``):
the same RAT columns and CSV as the single-process run, on a LocalCluster of two
single-threaded worker processes started by the tests on 127.0.0.1."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from moto_s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)
from raster_files import add_histogram, blocky_segments, read_rat, write_raster
from segment_reference import assert_columns_match, reference_stats

from tessera.engine import CancelledError, TesseraError, segment_spatial_stats, segment_stats
from tessera.engine.segments.cluster import SPATIAL_FLOAT_TOLERANCE, group_windows
from tessera.engine.statistics.catalogue import CLASS_STATISTICS, STATISTICS

distributed = pytest.importorskip("distributed")

ALL = [s for s in STATISTICS if s not in CLASS_STATISTICS]
PERCENTILES = (0, 10, 25, 50, 75, 99.5, 100)


def _segments(rows, cols, seed, spanning=True):
    """Blocky segments in random id order, 1 % null pixels, and (``spanning``) one segment
    (id 1) running down the whole raster: it crosses every part."""
    seg = blocky_segments(rows, cols, 7, 9, seed=seed, first_id=2)
    rng = np.random.default_rng(seed)
    seg[rng.random(seg.shape) < 0.01] = 0
    if spanning:
        seg[:, 3:6] = 1
        seg[rows // 2, :] = 1
    return seg


def _image(dtype, shape, seed, nodata=None):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        data = rng.normal(100, 30, shape).astype(dtype)
        data[rng.random(shape) < 0.01] = np.nan
    else:
        data = rng.integers(0, 3000, shape).astype(dtype)
    if nodata is not None:
        data[rng.random(shape) < 0.03] = nodata
    return data


def _case(folder, seg, image, nodata=None, histogram=True):
    """Two copies of the segment file (one per run) and the image."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name in ("threads", "cluster"):
        path = write_raster(os.path.join(folder, f"seg_{name}.tif"), seg)
        if histogram:
            add_histogram(path)
        paths.append(path)
    return paths, write_raster(os.path.join(folder, "image.tif"), image, nodata=nodata)


def _assert_same_columns(first, second):
    assert list(first) == list(second)
    for name in first:
        assert np.array_equal(first[name], second[name], equal_nan=True), name


def _read(path):
    with open(path, "rb") as file:
        return file.read()


@pytest.mark.parametrize("dtype,nodata,histogram", [
    ("uint16", 7, True), ("float32", -9999.0, True), ("int16", None, False),
])
def test_statistics_equal_the_single_process_run(tmp_path, client, dtype, nodata, histogram):
    seg = _segments(130, 110, seed=1)
    image = _image(dtype, (2, 130, 110), seed=2, nodata=nodata)
    (seg_a, seg_b), image_path = _case(tmp_path, seg, image, nodata, histogram)
    options = dict(statistics=ALL, percentiles=PERCENTILES, window_size=16)
    single = segment_stats(seg_a, image_path, output_table=str(tmp_path / "a.csv"), **options)
    fractions = []
    on_cluster = segment_stats(seg_b, image_path, output_table=str(tmp_path / "b.csv"),
                               scheduler=client, progress=lambda f, m: fractions.append(f),
                               **options)
    assert on_cluster.columns == single.columns
    assert on_cluster.segment_count == single.segment_count
    assert on_cluster.timings["part_count"] >= 4  # the spanning segment crosses them all
    rat_a, rat_b = read_rat(seg_a), read_rat(seg_b)
    _assert_same_columns({k: v for k, v in rat_a.items() if k != "Histogram"},
                         {k: v for k, v in rat_b.items() if k != "Histogram"})
    assert _read(tmp_path / "a.csv") == _read(tmp_path / "b.csv")
    for band in (1, 2):
        assert_columns_match(rat_b, reference_stats(seg, image[band - 1], nodata,
                                                    percentiles=PERCENTILES), band)
    assert fractions[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(fractions, fractions[1:], strict=False))


def test_class_fractions_mode_and_median_of_a_land_cover_image(tmp_path, client):
    seg = _segments(90, 120, seed=3)
    classes = np.random.default_rng(4).choice([10, 20, 30, 250], size=(90, 120)).astype("uint8")
    (seg_a, seg_b), image_path = _case(tmp_path, seg, classes, nodata=250)
    options = dict(statistics=["pixcount", "frac", "mode", "median", "variety"],
                   window_size=24, output_rat=None)
    segment_stats(seg_a, image_path, **options)
    result = segment_stats(seg_b, image_path, scheduler=client, **options)
    assert "b1_frac_20" in result.columns
    _assert_same_columns(read_rat(seg_a), read_rat(seg_b))


def test_the_progress_text_names_the_cluster(tmp_path, client):
    """A run on a cluster says which one (the scheduler's address, its workers and
    threads: what the user can check against the cluster they meant)."""
    seg = _segments(40, 50, seed=8)
    (_, seg_b), image_path = _case(tmp_path, seg, _image("uint16", (1, 40, 50), seed=9))
    messages = []
    segment_stats(seg_b, image_path, statistics=["mean"], scheduler=client,
                  progress=lambda fraction, message: messages.append(message))
    address = client.scheduler.address
    workers = len(client.scheduler_info()["workers"])
    named = [m for m in messages if address in m]
    assert named == [f"Per-segment statistics on a Dask cluster: scheduler {address}, "
                     f"{workers} worker(s), {workers} thread(s)"], messages


def test_whole_width_stripes_and_an_img_target(tmp_path, client):
    """Default windows (whole-width stripes) with a GDAL .img target beside the inputs."""
    seg = _segments(300, 64, seed=5)
    image = _image("uint16", (1, 300, 64), seed=6)
    (seg_a, _), image_path = _case(tmp_path, seg, image)
    targets = [str(tmp_path / "threads.img"), str(tmp_path / "cluster.img")]
    from tessera.engine.segments import cluster as on_cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(on_cluster, "PART_PIXELS", 64 * 40)  # parts of 40 rows
        for target, scheduler in zip(targets, (None, client), strict=True):
            segment_stats(seg_a, image_path, statistics=["mean", "median", "stddev"],
                          percentiles=(90,), output_rat=target, scheduler=scheduler)
    _assert_same_columns(read_rat(targets[0]), read_rat(targets[1]))


def test_packed_rows_come_back_with_the_same_bits():
    """Columns sent as float32 only where every value survives the round trip bit for bit
    (NaN, -0.0, infinities, float32 subnormals); the others stay float64."""
    from tessera.engine.segments.cluster import packed_rows, row_block, select_rows

    rng = np.random.default_rng(5)
    ids = rng.permutation(1000)[:300]
    rows = np.empty((300, 5))
    rows[:, 0] = rng.integers(0, 70000, 300)  # counts: exact in float32
    rows[:, 1] = rng.random(300)  # means: not
    rows[:, 2] = np.float32(rng.standard_normal(300)).astype(np.float64)  # float32 pixels
    rows[:5, 2] = [np.nan, -0.0, np.inf, -np.inf, float(np.float32(1e-40))]
    rows[:, 3] = rows[:, 0]
    rows[7, 3] = 2.0 ** 24 + 1  # one value float32 cannot hold
    rows[:, 4] = np.nan
    rows[9, 4] = 5e-324  # the smallest float64 subnormal: 0 in float32
    piece = {**packed_rows(ids, rows), "pairs": np.zeros((0, 4))}
    assert [c.dtype for c in piece["columns"]] == [np.float32, np.float64, np.float32,
                                                    np.float64, np.float64]
    assert np.array_equal(row_block(piece).view(np.int64), rows.view(np.int64))
    chosen = select_rows(piece, 200, 600)
    inside = (ids >= 200) & (ids < 600)
    assert np.array_equal(chosen["ids"], ids[inside])
    assert np.array_equal(row_block(chosen).view(np.int64), rows[inside].view(np.int64))


def test_parts_are_consecutive_runs_of_the_windows():
    from tessera.engine.io.raster_io import Window

    windows = [Window(x, y, 10, 10) for y in range(0, 100, 10) for x in range(0, 50, 10)]
    for workers in (1, 2, 7, 100):
        groups = group_windows(windows, workers, part_pixels=700)
        assert [w for g in groups for w in g] == windows
        assert len(groups) == min(len(windows), max(8, 2 * workers))


def test_an_s3_zarr_target_equals_the_local_run(tmp_path, client, s3_endpoint,  # noqa: F811
                                                s3_bucket):  # noqa: F811
    from tessera.engine.rat.store import RatStore

    seg = _segments(80, 96, seed=7)
    image = _image("uint16", (1, 80, 96), seed=8)
    (seg_a, _), image_path = _case(tmp_path, seg, image)
    local = str(tmp_path / "rat.zarr")
    remote = f"s3://{s3_bucket}/runs/rat.zarr"
    options = dict(statistics=["pixcount", "mean", "median", "max"], window_size=16)
    segment_stats(seg_a, image_path, output_rat=local, **options)
    _worker_environment(client, {"AWS_ENDPOINT_URL": s3_endpoint.url,
                                 "AWS_ACCESS_KEY_ID": "testing",
                                 "AWS_SECRET_ACCESS_KEY": "testing",
                                 "AWS_DEFAULT_REGION": "us-east-1"})
    try:  # the workers write the store's row blocks
        result = segment_stats(seg_a, image_path, output_rat=remote, scheduler=client,
                               **options)
    finally:
        _worker_environment(client, {})
    assert result.timings["write_blocks"] >= 1
    with RatStore(local, read_only=True) as first, \
            RatStore(remote, read_only=True,
                     storage_options=s3_endpoint.storage_options) as second:
        assert first.column_names() == second.column_names()
        assert first.row_count == second.row_count
        for name in first.column_names():
            assert np.array_equal(first.read_block(name, 0, first.row_count),
                                  second.read_block(name, 0, second.row_count),
                                  equal_nan=True), name


def _worker_environment(client, values):
    """Set the workers' environment variables ``values`` (empty: remove the AWS ones)."""
    code = ("import os\n"
            "for name in [n for n in os.environ if n.startswith('AWS_')]:\n"
            "    del os.environ[name]\n"
            f"os.environ.update({values!r})\n")
    client.run(exec, code)


@pytest.mark.parametrize("chunk", [None, 40])
def test_workers_write_a_zarr_target_as_the_client_does(tmp_path, client, chunk):
    """Class fractions, an existing store whose columns are replaced (null row kept), and
    stores of several chunks written by several workers."""
    from tessera.engine.rat.store import RatStore

    seg = _segments(120, 100, seed=27)
    classes = np.random.default_rng(28).choice([3, 5, 9], size=(120, 100)).astype("uint16")
    (seg_a, _), image_path = _case(tmp_path, seg, classes)
    stores = [str(tmp_path / "threads.zarr"), str(tmp_path / "cluster.zarr")]
    options = dict(statistics=["pixcount", "frac", "mode", "mean"], percentiles=(50,),
                   window_size=16)
    for store, scheduler in zip(stores, (None, client), strict=True):
        if chunk:
            with RatStore(store) as created:
                created.set_chunk_size(chunk)
        segment_stats(seg_a, image_path, output_rat=store, scheduler=scheduler,
                      statistics=["mean"], window_size=16)
        with RatStore(store) as written:  # a null row to keep
            written.write_block("b1_mean", np.array([42.0]), 0)
        result = segment_stats(seg_a, image_path, output_rat=store, scheduler=scheduler,
                               overwrite=True, **options)
    assert result.timings["write_blocks"] >= (2 if chunk else 1)
    with RatStore(stores[0], read_only=True) as first, \
            RatStore(stores[1], read_only=True) as second:
        names = first.column_names()
        assert names == second.column_names() and "b1_frac_5" in names
        assert first.read_block("b1_mean", 0, 1)[0] == 42.0
        for name in names:
            assert np.array_equal(first.read_block(name, 0, first.row_count),
                                  second.read_block(name, 0, second.row_count),
                                  equal_nan=True), name
            assert first.column_dtype(name) == second.column_dtype(name)


def test_workers_write_a_store_with_fewer_rows_than_segments(tmp_path, client):
    """The store grows with the publication (staged rows): the workers write past its
    visible row count, and its old column keeps its values, padded."""
    from tessera.engine.rat.store import RatStore

    seg = _segments(90, 80, seed=31)
    (seg_a, _), image_path = _case(tmp_path, seg, _image("uint16", (1, 90, 80), seed=32))
    stores = [str(tmp_path / "threads.zarr"), str(tmp_path / "cluster.zarr")]
    for store, scheduler in zip(stores, (None, client), strict=True):
        with RatStore(store) as created:
            created.set_row_count(5)
            created.set_chunk_size(16)
            created.create_column("old", np.float64)
            created.write_block("old", np.arange(5.0), 0)
        segment_stats(seg_a, image_path, output_rat=store, scheduler=scheduler,
                      statistics=["mean", "median"], window_size=16)
    with RatStore(stores[0], read_only=True) as first, \
            RatStore(stores[1], read_only=True) as second:
        assert first.row_count == second.row_count == int(seg.max()) + 1
        for name in ("old", "b1_mean", "b1_median"):
            assert np.array_equal(first.read_block(name, 0, first.row_count),
                                  second.read_block(name, 0, second.row_count),
                                  equal_nan=True), name
        np.testing.assert_array_equal(second.read_block("old", 0, 5), np.arange(5.0))


def test_cancel_publishes_nothing(tmp_path, client):
    seg = _segments(200, 200, seed=9)
    (_, seg_b), image_path = _case(tmp_path, seg, _image("uint16", (1, 200, 200), seed=10))
    before = read_rat(seg_b)
    stop = threading.Event()
    fractions = []

    def progress(fraction, message):
        fractions.append(fraction)
        if len(fractions) > 2:
            stop.set()

    with pytest.raises(CancelledError):
        segment_stats(seg_b, image_path, statistics=["mean"], window_size=10,
                      scheduler=client, progress=progress, cancelled=stop.is_set)
    _assert_same_columns(read_rat(seg_b), before)
    # the cluster is free for the next run
    assert segment_stats(seg_b, image_path, statistics=["mean"], window_size=50,
                         scheduler=client).segment_count > 0


def test_a_killed_worker_retries_or_fails_cleanly(tmp_path, client):
    from tessera.engine.segments import cluster as on_cluster

    seg = _segments(400, 300, seed=11)
    image = _image("float32", (1, 400, 300), seed=12)
    (seg_a, seg_b), image_path = _case(tmp_path, seg, image)
    target = tmp_path / "cluster.zarr"
    options = dict(statistics=["mean", "median", "stddev"], percentiles=(5, 95),
                   window_size=20)
    segment_stats(seg_a, image_path, output_rat=str(tmp_path / "threads.zarr"), **options)
    pids = client.run(os.getpid)
    killed = []

    def kill_once_a_task_runs():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            processing = client.processing()
            busy = [address for address, keys in processing.items() if keys]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.01)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(on_cluster, "PART_PIXELS", 300 * 40)
        killer = threading.Thread(target=kill_once_a_task_runs)
        killer.start()
        try:
            segment_stats(seg_b, image_path, output_rat=str(target), scheduler=client,
                          **options)
            retried = True
            print("killed worker: retried")
        except TesseraError as error:
            assert "nothing was published" in str(error)
            retried = False
            print("killed worker: failed cleanly")
        killer.join()
    assert killed
    from tessera.engine.rat.store import RatStore

    if retried:
        with RatStore(str(tmp_path / "threads.zarr"), read_only=True) as first, \
                RatStore(str(target), read_only=True) as second:
            for name in first.column_names():
                assert np.array_equal(first.read_block(name, 0, first.row_count),
                                      second.read_block(name, 0, second.row_count),
                                      equal_nan=True), name
    else:
        assert not target.exists()
    client.wait_for_workers(2, timeout=60)


def test_local_scheduler_runs_and_closes_its_cluster(tmp_path):
    seg = _segments(40, 50, seed=13)
    (seg_a, seg_b), image_path = _case(tmp_path, seg, _image("uint16", (1, 40, 50), seed=14))
    segment_stats(seg_a, image_path, statistics=["mean", "median"], window_size=10)
    segment_stats(seg_b, image_path, statistics=["mean", "median"], window_size=10,
                  scheduler="local")
    _assert_same_columns(read_rat(seg_a), read_rat(seg_b))


def test_without_dask_the_scheduler_names_the_package(tmp_path):
    seg = _segments(20, 20, seed=15, spanning=False)
    (seg_a, _), image_path = _case(tmp_path, seg, _image("uint16", (1, 20, 20), seed=16))
    from conftest import PLUGINS_DIR

    code = textwrap.dedent(f"""
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed"):
                    raise ImportError("blocked for this test: " + name)
        sys.meta_path.insert(0, Blocker())
        sys.path.insert(0, {PLUGINS_DIR!r})
        from tessera.engine import TesseraError, segment_stats, segment_spatial_stats
        result = segment_stats({seg_a!r}, {image_path!r}, statistics=["mean"])
        assert result.segment_count > 0
        for run in (segment_stats, segment_spatial_stats):
            try:
                run({seg_a!r}, {image_path!r}, scheduler="local")
            except TesseraError as error:
                print(error)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("dask[distributed]" in line for line in lines), lines


# ---------------------------------------------------------------- spatial statistics


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_spatial_statistics_equal_the_single_process_run(tmp_path, client, dtype):
    seg = _segments(120, 100, seed=17)
    image = _image(dtype, (1, 120, 100), seed=18)
    (seg_a, seg_b), image_path = _case(tmp_path, seg, image, histogram=False)
    options = dict(statistics=["centroid", "bbox", "area", "perimeter", "edgepixels",
                               "variogram", "diagonalrms"], max_lag=3, window_size=16)
    single = segment_spatial_stats(seg_a, image_path, output_table=str(tmp_path / "a.csv"),
                                   **options)
    on_cluster = segment_spatial_stats(seg_b, image_path, output_table=str(tmp_path / "b.csv"),
                                       scheduler=client, **options)
    assert on_cluster.columns == single.columns
    first, second = read_rat(seg_a), read_rat(seg_b)
    assert list(first) == list(second)
    for name in first:
        if dtype == "uint16" or not name.startswith(("gamma_", "drms_")):
            assert np.array_equal(first[name], second[name], equal_nan=True), name
        else:  # float sums of segments crossing parts are grouped otherwise
            assert np.allclose(first[name], second[name], rtol=SPATIAL_FLOAT_TOLERANCE,
                               atol=0), name
    if dtype == "uint16":
        assert _read(tmp_path / "a.csv") == _read(tmp_path / "b.csv")


def test_spatial_shape_statistics_without_an_image(tmp_path, client):
    seg = _segments(90, 70, seed=19)
    (seg_a, seg_b), _ = _case(tmp_path, seg, np.zeros((1, 90, 70), "uint8"))
    segment_spatial_stats(seg_a, statistics=["centroid", "bbox", "perimeter"], window_size=12)
    segment_spatial_stats(seg_b, statistics=["centroid", "bbox", "perimeter"], window_size=12,
                          scheduler=client)
    _assert_same_columns(read_rat(seg_a), read_rat(seg_b))


# ---------------------------------------------------------------- Processing algorithms


@pytest.mark.parametrize("name,parameters", [
    ("segmentstats", {"STATISTICS": ["pixcount", "mean", "median"], "PERCENTILES": "25,75"}),
    ("segmentspatialstats", {"STATISTICS": ["centroid", "perimeter", "variogram"],
                             "MAX_LAG": 2}),
])
def test_algorithms_run_on_the_scheduler_given(run_algorithm, tmp_path, cluster, name,
                                               parameters):
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    definition = QgsApplication.processingRegistry().algorithmById(
        f"tessera:{name}").parameterDefinition("DASK_SCHEDULER")
    assert definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    seg = _segments(60, 80, seed=21)
    (seg_a, seg_b), image_path = _case(tmp_path, seg, _image("uint16", (1, 60, 80), seed=22))
    for path, scheduler in ((seg_a, ""), (seg_b, cluster.scheduler_address)):
        run_algorithm(name, {"SEGMENTS": path, "IMAGE": image_path, **parameters,
                             "DASK_SCHEDULER": scheduler})
    _assert_same_columns(read_rat(seg_a), read_rat(seg_b))


def test_inputs_on_s3_read_by_the_workers(tmp_path, client, s3_endpoint,  # noqa: F811
                                          s3_bucket):  # noqa: F811
    """Segments and image as /vsis3/ and s3:// URLs (no histogram: the workers count)."""
    from osgeo import gdal

    seg = _segments(70, 90, seed=23)
    image = _image("uint16", (1, 70, 90), seed=24)
    (seg_a, seg_b), image_path = _case(tmp_path, seg, image, histogram=False)
    filesystem = s3_endpoint.filesystem()
    filesystem.put(seg_b, f"{s3_bucket}/in/seg.tif")
    filesystem.put(image_path, f"{s3_bucket}/in/image.tif")
    settings = {"AWS_S3_ENDPOINT": s3_endpoint.url.split("//", 1)[1], "AWS_HTTPS": "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}

    def configure(values):
        for name, value in values.items():
            gdal.SetConfigOption(name, value)
            client.run(gdal.SetConfigOption, name, value)

    options = dict(statistics=["pixcount", "mean", "median"], window_size=16)
    segment_stats(seg_a, image_path, output_rat=str(tmp_path / "threads.img"), **options)
    configure(settings)
    try:
        segment_stats(f"/vsis3/{s3_bucket}/in/seg.tif", f"s3://{s3_bucket}/in/image.tif",
                      output_rat=str(tmp_path / "cluster.img"), scheduler=client, **options)
    finally:
        configure(dict.fromkeys(settings))
    _assert_same_columns(read_rat(tmp_path / "threads.img"), read_rat(tmp_path / "cluster.img"))


@pytest.mark.parametrize("change", [+1, -1])
def test_a_histogram_that_disagrees_fails_cleanly(tmp_path, client, change):
    """The spanning segment's count off by one: the merge finds it short or long; the error
    reaches the caller and nothing is published."""
    from osgeo import gdal

    seg = _segments(60, 70, seed=25)
    (_, seg_b), image_path = _case(tmp_path, seg, _image("uint16", (1, 60, 70), seed=26))
    dataset = gdal.Open(seg_b, gdal.GA_Update)
    rat = dataset.GetRasterBand(1).GetDefaultRAT().Clone()
    rat.SetValueAsDouble(1, 0, rat.GetValueAsDouble(1, 0) + change)
    dataset.GetRasterBand(1).SetDefaultRAT(rat)
    rat = dataset = None
    before = read_rat(seg_b)
    target = tmp_path / "out.zarr"
    with pytest.raises(TesseraError, match=r"Histogram column disagrees with the raster: "
                       r"segment 1 has \d+ pixels, not \d+"):
        segment_stats(seg_b, image_path, statistics=["mean"], window_size=10,
                      output_rat=str(target), output_table=str(tmp_path / "t.csv"),
                      scheduler=client)
    _assert_same_columns(read_rat(seg_b), before)
    assert not target.exists() and not (tmp_path / "t.csv").exists()


def _files(folder):
    return {os.path.relpath(os.path.join(root, name), folder):
            _read(os.path.join(root, name))
            for root, _, names in os.walk(folder) for name in names}


def test_a_worker_killed_while_writing_the_store_retries_or_changes_nothing(tmp_path,
                                                                            client):
    """The kill lands in the workers' writes of an existing store's row blocks: the run
    is retried (the same columns as the threaded run) or fails leaving every file of the
    store as it was."""
    import shutil

    from tessera.engine.rat.store import RatStore

    seg = _segments(300, 200, seed=29)
    (seg_a, _), image_path = _case(tmp_path, seg, _image("uint16", (1, 300, 200), seed=30))
    stores = [str(tmp_path / "threads.zarr"), str(tmp_path / "cluster.zarr")]
    with RatStore(stores[0]) as created:
        created.set_chunk_size(40)
    segment_stats(seg_a, image_path, output_rat=stores[0], statistics=["mean"])
    shutil.copytree(stores[0], stores[1])
    before = _files(stores[1])
    options = dict(statistics=["mean", "median", "max"], overwrite=True, window_size=25)
    segment_stats(seg_a, image_path, output_rat=stores[0], **options)
    pids = client.run(os.getpid)
    killed = []

    def kill_a_writer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for address, keys in client.processing().items():
                if any("tessera-segments-write" in str(key) for key in keys):
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_writer)
    killer.start()
    try:
        result = segment_stats(seg_a, image_path, output_rat=stores[1], scheduler=client,
                               **options)
        print("killed writer: retried")
        assert result.timings["write_blocks"] >= 2
        with RatStore(stores[0], read_only=True) as first, \
                RatStore(stores[1], read_only=True) as second:
            assert first.column_names() == second.column_names()
            for name in first.column_names():
                assert np.array_equal(first.read_block(name, 0, first.row_count),
                                      second.read_block(name, 0, second.row_count),
                                      equal_nan=True), name
    except TesseraError as error:
        print("killed writer: failed cleanly:", error)
        assert "nothing was published" in str(error)
        assert _files(stores[1]) == before
    finally:
        killed.append(None)  # stops the killer if it did not fire
        killer.join()
        client.wait_for_workers(2, timeout=60)
    assert killed[0] is not None, "no write task was caught running"


def test_qgis_process_runs_a_local_cluster(qgis_process, tmp_path):
    """DASK_SCHEDULER=local from qgis_process.bin: Tessera starts worker processes of QGIS's
    own Python (whatever sys.executable says there) and closes them; the columns equal the
    threaded run's."""
    seg = _segments(150, 120, seed=41)
    (seg_a, _), image_path = _case(tmp_path, seg, _image("uint16", (1, 150, 120), 42),
                                   histogram=False)
    outputs = {}
    for name, scheduler in (("threads", ""), ("cluster", "local")):
        out = tmp_path / f"{name}.img"
        code, result, output = qgis_process(
            "run", "tessera:segmentstats", "--", f"SEGMENTS={seg_a}", f"IMAGE={image_path}",
            "STATISTICS=mean,median,stddev", f"OUTPUT_RAT={out}",
            f"DASK_SCHEDULER={scheduler}")
        assert code == 0, output
        outputs[name] = read_rat(out)
    assert sorted(outputs["cluster"]) == sorted(outputs["threads"]) == [
        "b1_mean", "b1_median", "b1_stddev"]
    for column, values in outputs["threads"].items():
        assert np.array_equal(outputs["cluster"][column], values), column
