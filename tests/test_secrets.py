"""Issue 19: credentials never printed or stored. S3 addresses with credentials are refused
without repeating them, raster and store names in messages are redacted, the algorithms'
error funnel redacts (the debug traceback too), and the Zarr store's modification log
records what Tessera did, never ``sys.argv`` or the user name."""

import getpass
import json
import os
import sys

import numpy as np
import pytest
from raster_files import blocky_segments, write_raster

from tessera.engine import TesseraError, segment_stats
from tessera.engine.io.store_location import store_location
from tessera.engine.rat.store import RatStore
from tessera.engine.version import tessera_version

KEY, SECRET = "AKIAEXAMPLEKEY", "SuperSecret42"
STORE_URL = f"s3://{KEY}:{SECRET}@bucket/prefix/stats.zarr"


def assert_no_secret(text):
    assert SECRET not in text and KEY not in text, text


@pytest.fixture
def rasters(tmp_path):
    seg = write_raster(tmp_path / "seg.tif", blocky_segments(20, 20, 5, 5))
    image = write_raster(tmp_path / "image.tif", np.ones((20, 20), np.uint8))
    return seg, image


def test_an_s3_address_with_credentials_is_refused_without_repeating_them(rasters):
    for call in (lambda: store_location(STORE_URL), lambda: RatStore(STORE_URL),
                 lambda: segment_stats(*rasters, output_rat=STORE_URL)):
        with pytest.raises(TesseraError) as caught:
            call()
        text = str(caught.value)
        assert_no_secret(text)
        assert "s3://***@bucket/prefix/stats.zarr holds credentials" in text
        assert "AWS_SECRET_ACCESS_KEY" in text  # where they belong


def test_raster_names_in_messages_are_redacted(rasters):
    url = f"/vsicurl/https://{KEY}:{SECRET}@127.0.0.1:9/image.tif"  # nothing listens there
    with pytest.raises(TesseraError) as caught:
        segment_stats(rasters[0], url)
    assert_no_secret(str(caught.value))
    assert "Cannot open raster /vsicurl/https://***@127.0.0.1:9/image.tif" in str(caught.value)


def test_store_names_and_attributes_hold_no_credentials(tmp_path):
    location = store_location("s3://bucket/prefix/stats.zarr?X-Amz-Signature=abc123")
    assert "abc123" not in location.name
    with RatStore(tmp_path / "plain.zarr") as store:
        store.set_row_count(3)
        store.create_column("a", np.int32)
        store.write_block("a", np.arange(3), 0)
        assert store.name == str(tmp_path / "plain.zarr")


def test_the_modification_log_records_what_tessera_did_not_who_ran_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["nightly_job.py", "--db-password=hunter2"])
    path = tmp_path / "log.zarr"
    with RatStore(path) as store:
        store.set_row_count(4)
        store.create_column("b1_mean", np.float64)
        store.write_block("b1_mean", np.ones(4), 0)
        (when, by, what), = store.modification_log("b1_mean")
    assert by == f"Tessera {tessera_version()}" and tessera_version()
    assert what == ["write column", "b1_mean"]
    stored = json.loads((path / "RAT" / "b1_mean" / "zarr.json").read_text())
    entry, = stored["attributes"]["MODIFICATIONLOG"]
    assert entry[1:] == [by, what] and entry[0] == when.isoformat()
    user = getpass.getuser()
    for root, _, names in os.walk(path):
        for name in names:
            content = open(os.path.join(root, name), "rb").read()
            assert b"hunter2" not in content and b"nightly_job" not in content
            if name == "zarr.json":
                assert user not in json.dumps(json.loads(content)["attributes"])


def test_the_algorithm_error_funnel_redacts_messages_and_tracebacks(tessera_provider):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    from tessera.algorithms.base import TesseraAlgorithm

    class Leaky(TesseraAlgorithm):
        NAME = "leaky"
        DISPLAY_NAME = "Leaky"
        REQUIRES = ()

        def process(self, parameters, context, feedback):
            if parameters["kind"] == "bug":
                raise RuntimeError(f"cannot reach https://{KEY}:{SECRET}@host/x")
            if parameters["kind"] == "user":
                raise TesseraError(f"Cannot open raster s3://{KEY}:{SECRET}@b/x.tif")
            raise QgsProcessingException(f"layer https://{KEY}:{SECRET}@host/x")

    class Debug(QgsProcessingFeedback):
        lines = []

        def pushDebugInfo(self, text):  # noqa: N802 (QGIS API)
            self.lines.append(text)

    feedback = Debug()
    for kind in ("bug", "user", "qgis"):
        with pytest.raises(QgsProcessingException) as caught:
            Leaky().processAlgorithm({"kind": kind}, None, feedback)
        assert_no_secret(str(caught.value))
        assert "***@" in str(caught.value)
    assert feedback.lines and "RuntimeError" in feedback.lines[0]
    assert_no_secret("".join(feedback.lines))
