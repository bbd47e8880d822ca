"""Test session set-up: the plugin importable as ``tessera``, QGIS headless
(pytest-qgis), the provider registered once, and ``qgis_process.bin`` runs
with the plugin enabled in a throwaway profile."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
sys.path.insert(0, os.path.join(REPO, "demo"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qgis_cli import QgisProcess, plugin_folder  # noqa: E402

# The repository root is the plugin folder: importable as `tessera`.
PLUGINS_DIR = plugin_folder()
sys.path.insert(0, PLUGINS_DIR)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def shared_data(*parts):
    """Path of a file under ../shared/data, or skip the test when it is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not available: {path} (needs ../shared/data beside the clone)")
    return path


@pytest.fixture(scope="session")
def tessera_provider(qgis_app, qgis_processing):
    """The Tessera provider, registered in the test's QGIS once per session."""
    from qgis.core import QgsApplication

    from tessera.plugin import TesseraPlugin

    plugin = TesseraPlugin()
    plugin.initProcessing()
    assert plugin.provider is not None, "the Tessera provider could not be registered"
    yield plugin.provider
    plugin.unload()
    assert QgsApplication.processingRegistry().providerById("tessera") is None


@pytest.fixture
def run_algorithm(tessera_provider):
    """Run ``tessera:<name>`` through ``processing.run``; returns its results."""
    import processing

    def run(name, parameters, feedback=None):
        return processing.run(f"tessera:{name}", parameters, feedback=feedback)

    return run


@pytest.fixture(scope="session")
def qgis_cli(tmp_path_factory):
    """``qgis_process.bin`` with Tessera enabled in a fresh profile (see demo/qgis_cli.py)."""
    return QgisProcess(PLUGINS_DIR, str(tmp_path_factory.mktemp("qgis-profile")))


@pytest.fixture
def qgis_process(qgis_cli):
    """Run ``qgis_process.bin --json <args>``: (exit code, parsed JSON or None, output)."""
    return qgis_cli.run


@pytest.fixture(scope="session", autouse=True)
def shared_data_stays_untouched():
    """No test may write beside the real data (QGIS writes .aux.xml beside rasters it opens)."""
    def listing():
        return sorted(
            os.path.join(root, name) for root, _, names in os.walk(SHARED_DATA) for name in names
        ) if os.path.isdir(SHARED_DATA) else []

    before = listing()
    yield
    added = sorted(set(listing()) - set(before))
    assert not added, f"tests wrote into the shared data folder: {added}"


_EXIT_STATUS = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    """End the process with pytest's status once everything is reported: tearing QGIS down
    at interpreter exit (QgsApplication.exitQgis with live layers, tasks and Qt objects of
    the tests) can crash after a green run and turn it red."""
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of two single-threaded worker processes for the test module."""
    from dask_cluster import two_workers

    with two_workers() as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    """A ``distributed.Client`` of the module's :func:`cluster`."""
    import distributed

    with distributed.Client(cluster) as dask_client:
        yield dask_client
