"""An S3-compatible server on 127.0.0.1 for the tests: moto in server mode,
started on a free port. Every AWS setting points at it (endpoint, fake
credentials, no instance metadata, no user config files), so no test can
reach another address."""

import logging
import uuid
from dataclasses import dataclass

import pytest


@dataclass
class S3Endpoint:
    url: str

    @property
    def storage_options(self):
        """s3fs options for this endpoint (what RatStore's ``storage_options`` takes)."""
        return {"client_kwargs": {"endpoint_url": self.url}}

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False,
                                 **self.storage_options)

    def new_bucket(self):
        """A fresh bucket; returns its name."""
        name = f"tessera-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    nowhere = str(tmp_path_factory.mktemp("no-aws-config") / "none")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": nowhere,
            "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield S3Endpoint(url)
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A new empty bucket on the test server: its name."""
    return s3_endpoint.new_bucket()
