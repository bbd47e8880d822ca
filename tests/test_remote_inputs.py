"""Rasters read from object storage — s3:// URLs and /vsis3/ paths (moto on 127.0.0.1),
http(s):// through /vsicurl/ — give what the same files give locally."""

import numpy as np
import pytest
from moto_s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)
from raster_files import blocky_segments, read_rat, write_raster

from tessera.engine import segment_stats
from tessera.engine.errors import TesseraError
from tessera.engine.io.raster_io import gdal_path
from tessera.engine.rat.store import RatStore


@pytest.mark.parametrize("given, expected", [
    ("s3://bucket/scenes/a.tif", "/vsis3/bucket/scenes/a.tif"),
    ("S3://bucket/a.tif", "/vsis3/bucket/a.tif"),
    ("gs://bucket/a.tif", "/vsigs/bucket/a.tif"),
    ("az://container/a.tif", "/vsiaz/container/a.tif"),
    ("https://example.org/a.tif", "/vsicurl/https://example.org/a.tif"),
    ("http://example.org/a.tif", "/vsicurl/http://example.org/a.tif"),
    ("/vsis3/bucket/a.tif", "/vsis3/bucket/a.tif"),
    ("/data/s3://odd.tif", "/data/s3://odd.tif"),
])
def test_urls_become_gdal_paths(given, expected):
    assert gdal_path(given) == expected


@pytest.fixture
def scene_on_s3(tmp_path, s3_endpoint, s3_bucket):  # noqa: F811
    """Segments and a 2-band image written locally and uploaded to the bucket."""
    segments = blocky_segments(300, 280, 7, 9, seed=4)
    image = np.random.default_rng(5).integers(0, 5000, (2, 300, 280)).astype(np.uint16)
    local = {"seg": write_raster(tmp_path / "seg.tif", segments),
             "image": write_raster(tmp_path / "image.tif", image)}
    filesystem = s3_endpoint.filesystem()
    for name in ("seg", "image"):
        filesystem.put(local[name], f"{s3_bucket}/scenes/{name}.tif")
    return {"local": local, "bucket": s3_bucket,
            "url": {n: f"s3://{s3_bucket}/scenes/{n}.tif" for n in local},
            "vsi": {n: f"/vsis3/{s3_bucket}/scenes/{n}.tif" for n in local}}


STATISTICS = ("pixcount", "mean", "median", "stddev", "max")


def columns(store):
    with RatStore(store, read_only=True) as rat:
        return {name: rat.read_block(name, 0, rat.row_count) for name in rat.column_names()}


@pytest.mark.parametrize("form", ["url", "vsi"])
def test_segment_statistics_of_rasters_on_s3_equal_the_local_ones(tmp_path, scene_on_s3, form):
    local, remote = scene_on_s3["local"], scene_on_s3[form]
    segment_stats(local["seg"], local["image"], statistics=STATISTICS,
                  output_rat=str(tmp_path / "local.zarr"))
    segment_stats(remote["seg"], remote["image"], statistics=STATISTICS,
                  output_rat=str(tmp_path / "remote.zarr"))
    expected, seen = columns(str(tmp_path / "local.zarr")), columns(str(tmp_path / "remote.zarr"))
    assert sorted(seen) == sorted(expected) and len(expected) == 2 * len(STATISTICS)
    for name in expected:
        np.testing.assert_array_equal(seen[name], expected[name])


def test_results_of_rasters_on_s3_can_go_to_a_store_on_s3(scene_on_s3):
    remote = scene_on_s3["url"]
    store = f"s3://{scene_on_s3['bucket']}/results/rat.zarr"
    segment_stats(remote["seg"], remote["image"], statistics=("mean",), output_rat=store)
    assert sorted(columns(store)) == ["b1_mean", "b2_mean"]


def test_a_missing_object_is_a_clear_error(scene_on_s3):
    missing = f"s3://{scene_on_s3['bucket']}/scenes/nothing.tif"
    with pytest.raises(TesseraError, match=r"Cannot open raster /vsis3/.*nothing\.tif"):
        segment_stats(missing, scene_on_s3["url"]["image"], output_rat="unused.zarr")


def test_the_rat_of_a_geotiff_on_s3_lands_in_its_aux_xml_there(scene_on_s3):
    """GDAL stores the side-car ``.aux.xml`` on S3 in one PUT: the same RAT as locally."""
    local, remote = scene_on_s3["local"], scene_on_s3["url"]
    segment_stats(local["seg"], local["image"], statistics=("mean", "median"))
    segment_stats(remote["seg"], remote["image"], statistics=("mean", "median"))
    expected, seen = read_rat(local["seg"]), read_rat(scene_on_s3["vsi"]["seg"])
    assert sorted(seen) == sorted(expected) == ["b1_mean", "b1_median", "b2_mean", "b2_median"]
    for name in expected:
        np.testing.assert_array_equal(seen[name], expected[name])
