"""Zonal statistics on a Dask cluster (``scheduler=``): two single-threaded worker processes
give the same bits as this machine's threads (every column, the CSV), for every pixel rule,
polygons inside a tile group and spanning groups; a cancel writes no CSV; a worker killed
mid-run is replaced."""

import os
import signal

import numpy as np
import pytest
import zonal_cases as cases
from dask_cluster import two_workers
from moto_s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)

from tessera.engine import TesseraError, zonal_stats
from tessera.engine.errors import CancelledError
from tessera.engine.zonal import tile_tasks

distributed = pytest.importorskip("distributed")

STATISTICS = ["pixcount", "min", "max", "sum", "mean", "stddev", "median", "mode", "minority",
              "variety", "cv", "skewness", "kurtosis"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zonal_dask")
    data = cases.image()
    classes = np.nan_to_num(data, nan=-1.0).astype(np.int16) % 7
    return {"image": cases.write_image(folder / "image.tif", data),
            "classes": cases.write_image(folder / "classes.tif", classes),
            "layer": cases.write_polygons(folder / "zones.gpkg", cases.polygons()),
            "folder": folder}


def same_results(here, there):
    assert here.columns == there.columns
    np.testing.assert_array_equal(here.fids, there.fids)
    np.testing.assert_array_equal(here.values, there.values)  # NaN equal NaN here


@pytest.mark.parametrize("rule", ["centre", "all_touched", "fraction"])
@pytest.mark.parametrize("window_size", [None, 16])
def test_zonal_stats_on_the_cluster_are_the_threads_results(client, scene, tmp_path, rule,
                                                             window_size):
    options = dict(statistics=STATISTICS, bands=[1, 2], percentiles="10,50,90",
                   pixel_rule=rule, window_size=window_size)
    here = zonal_stats(scene["layer"], scene["image"], output_table=tmp_path / "here.csv",
                       **options)
    there = zonal_stats(scene["layer"], scene["image"], output_table=tmp_path / "there.csv",
                        scheduler=client, **options)
    same_results(here, there)
    assert (tmp_path / "here.csv").read_bytes() == (tmp_path / "there.csv").read_bytes()


@pytest.mark.parametrize("rule", ["centre", "fraction"])
def test_class_fractions_and_linear_percentiles_on_the_cluster(client, scene, rule):
    options = dict(statistics=["pixcount", "frac", "median"], percentiles="25,75",
                   percentile_method="linear", pixel_rule=rule, window_size=16,
                   column_prefix="z_")
    here = zonal_stats(scene["layer"], scene["classes"], **options)
    there = zonal_stats(scene["layer"], scene["classes"], scheduler=client, **options)
    assert any("frac_" in name for name in there.names)
    same_results(here, there)


def test_every_polygon_spanning_groups_and_spilled_vertices(client, scene, monkeypatch):
    from tessera.engine.io import polygon_source

    monkeypatch.setattr(polygon_source, "SPILL_BYTES", 64)
    monkeypatch.setattr(tile_tasks, "GROUPS_PER_THREAD", 40)  # about one tile per task
    options = dict(statistics=STATISTICS, pixel_rule="fraction", window_size=8)
    here = zonal_stats(scene["layer"], scene["image"], **options)
    there = zonal_stats(scene["layer"], scene["image"], scheduler=client, **options)
    same_results(here, there)


def test_a_cancel_on_the_cluster_writes_no_table(client, scene, tmp_path):
    seen = []
    with pytest.raises(CancelledError):
        zonal_stats(scene["layer"], scene["image"], output_table=tmp_path / "out.csv",
                    scheduler=client, window_size=8,
                    progress=lambda fraction, message: seen.append(fraction),
                    cancelled=lambda: len(seen) > 3)
    assert os.listdir(tmp_path) == []


def test_an_in_memory_raster_is_refused_on_the_cluster(client, scene):
    from osgeo import gdal

    memory = gdal.Translate("", scene["image"], format="MEM")
    with pytest.raises(TesseraError, match="file path or URL"):
        zonal_stats(scene["layer"], memory, scheduler=client)


def test_a_worker_killed_mid_run_is_replaced(client, scene, monkeypatch):
    monkeypatch.setattr(tile_tasks, "GROUPS_PER_THREAD", 40)
    options = dict(statistics=STATISTICS, pixel_rule="fraction", window_size=8)
    here = zonal_stats(scene["layer"], scene["image"], **options)
    killed = []

    def progress(fraction, message):
        if killed or fraction <= 0.1:
            return
        busy = [worker for worker, keys in client.processing().items() if keys]
        if busy:
            os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)
            killed.append(busy[0])

    try:
        there = zonal_stats(scene["layer"], scene["image"], scheduler=client, progress=progress,
                            **options)
    except TesseraError as error:
        assert "nothing was published" in str(error)
    else:
        same_results(here, there)
    client.wait_for_workers(2, timeout=60)


def test_the_algorithm_takes_a_dask_scheduler(run_algorithm, client, scene, tmp_path):
    address = client.scheduler.address
    common = {"INPUT": scene["layer"], "RASTER": scene["image"], "BANDS": [1, 2],
              "STATISTICS": ["pixcount", "mean", "median", "stddev"], "PIXEL_RULE": "fraction"}
    here = run_algorithm("zonalstats", {**common, "OUTPUT": str(tmp_path / "here.gpkg"),
                                        "OUTPUT_TABLE": str(tmp_path / "here.csv")})
    there = run_algorithm("zonalstats", {**common, "OUTPUT": str(tmp_path / "there.gpkg"),
                                         "OUTPUT_TABLE": str(tmp_path / "there.csv"),
                                         "DASK_SCHEDULER": address})
    assert here["FEATURE_COUNT"] == there["FEATURE_COUNT"]
    assert (tmp_path / "here.csv").read_bytes() == (tmp_path / "there.csv").read_bytes()


def test_a_raster_on_s3_is_read_by_the_workers(scene, s3_endpoint, s3_bucket,  # noqa: F811
                                               monkeypatch):
    """Inputs every worker can read: /vsis3/ (here a moto server on 127.0.0.1, its settings
    in the environment the worker processes inherit)."""
    host = s3_endpoint.url.split("://", 1)[1]
    for name, value in {"AWS_S3_ENDPOINT": host, "AWS_HTTPS": "NO",
                        "AWS_VIRTUAL_HOSTING": "FALSE"}.items():
        monkeypatch.setenv(name, value)
    s3_endpoint.filesystem().put(str(scene["image"]), f"{s3_bucket}/image.tif")
    raster = f"/vsis3/{s3_bucket}/image.tif"
    options = dict(statistics=STATISTICS, pixel_rule="fraction", window_size=32)
    here = zonal_stats(scene["layer"], scene["image"], **options)
    with two_workers() as cluster, \
            distributed.Client(cluster) as s3_client:
        there = zonal_stats(scene["layer"], raster, scheduler=s3_client, **options)
    same_results(here, there)
