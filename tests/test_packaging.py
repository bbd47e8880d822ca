"""The plugin zip (`make package`): what it holds, that plugins.qgis.org's checks accept it
and refuse broken ones, and that QGIS runs every algorithm from a fresh profile where only
the zip's contents were unpacked (not the repository)."""

import configparser
import json
import os
import site
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "demo"))

import sample_data  # noqa: E402
from validate_plugin_zip import REQUIRED_METADATA, problems  # noqa: E402

DEVELOPMENT = ("tests/", "bench/", "demo/", "scripts/", ".git", ".venv", ".ci",
               "requirements-dev.txt", "requirements-lock.txt", "Makefile", "pyproject.toml")


def _metadata():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(REPO, "metadata.txt"), encoding="utf-8")
    return parser["general"]


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory):
    """``scripts/build_package.py`` (what ``make package`` runs) into a temporary dist."""
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "build_package.py"),
                           "--output", str(dist)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    path = dist / f"tessera-{_metadata()['version']}.zip"
    assert path.is_file(), done.stdout
    return path


def test_zip_holds_one_tessera_folder_with_runtime_files_only(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"tessera"}
    assert os.path.getsize(plugin_zip) <= 25_000_000
    for required in ("__init__.py", "metadata.txt", "LICENSE", "requirements.txt",
                     "installer.py", "resources/icon.png", "engine/segments/statistics.py",
                     "help/segmentstats.html", "help/index.html"):
        assert f"tessera/{required}" in names, required
    for name in names:
        inside = name.split("/", 1)[1]
        assert not inside.startswith(DEVELOPMENT), name
        assert "__pycache__" not in name and not name.endswith((".pyc", ".nbi", ".nbc")), name
    assert problems(str(plugin_zip)) == []


def test_validator_accepts_the_built_zip(plugin_zip):
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts",
                                                        "validate_plugin_zip.py"),
                           str(plugin_zip)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "passes" in done.stdout


def _rewrite(good, bad, rename=None, change=None, add=None):
    """A copy of zip ``good`` at ``bad`` with entries renamed, contents changed, files added."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as out:
        for entry in source.infolist():
            data = source.read(entry)
            if change and entry.filename in change:
                data = change[entry.filename](data)
            out.writestr((rename or (lambda n: n))(entry.filename), data)
        for name, data in (add or {}).items():
            out.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    return str(bad)


def _refused(path):
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts",
                                                        "validate_plugin_zip.py"), path],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout
    return done.stderr


def test_validator_refuses_a_pycache_folder(plugin_zip, tmp_path):
    bad = _rewrite(plugin_zip, tmp_path / "tessera-0.2.0.zip", add={
        "tessera/engine/__pycache__/rat.cpython-311.pyc": b"\x00" * 16})
    message = _refused(bad)
    assert "__pycache__" in message and ".pyc" in message


@pytest.mark.parametrize("key", REQUIRED_METADATA)
def test_validator_refuses_a_missing_metadata_key(plugin_zip, tmp_path, key):
    def drop(data):
        lines = data.decode("utf-8").splitlines(keepends=True)
        kept, skipping = [], False
        for line in lines:  # the key's line and its continuation lines
            if line.startswith(f"{key}="):
                skipping = True
                continue
            if skipping and line[:1] in (" ", "\t"):
                continue
            skipping = False
            kept.append(line)
        return "".join(kept).encode("utf-8")

    bad = _rewrite(plugin_zip, tmp_path / "tessera-0.2.0.zip",
                   change={"tessera/metadata.txt": drop})
    assert f"metadata.txt lacks {key}" in _refused(bad)


def test_validator_refuses_a_wrong_top_folder(plugin_zip, tmp_path):
    bad = _rewrite(plugin_zip, tmp_path / "tessera-main.zip",
                   rename=lambda name: "tessera-main/" + name.split("/", 1)[1])
    assert "must be 'tessera'" in _refused(bad)
    no_folder = _rewrite(plugin_zip, tmp_path / "flat.zip",
                         rename=lambda name: name.split("/", 1)[1] or "root-marker")
    assert "one top folder expected" in _refused(no_folder)


def test_validator_refuses_an_oversized_zip(plugin_zip, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 25_100_000, dtype=np.uint8).tobytes()
    bad = _rewrite(plugin_zip, tmp_path / "tessera-0.2.0.zip",
                   add={"tessera/resources/huge.bin": noise})
    assert "at most 25 MB" in _refused(bad)


def test_validator_refuses_development_files_and_a_non_png_icon(plugin_zip, tmp_path):
    bad = _rewrite(plugin_zip, tmp_path / "tessera-0.2.0.zip",
                   change={"tessera/resources/icon.png": lambda data: b"<svg/>"},
                   add={"tessera/tests/test_x.py": b"", "tessera/.git/HEAD": b"ref"})
    message = _refused(bad)
    assert "tessera/tests/test_x.py" in message
    assert "'.git'" in message
    assert "not a PNG or JPEG" in message


# --- the zip installed into a fresh QGIS profile --------------------------------------------

@pytest.fixture(scope="session")
def installed_profile(plugin_zip, tmp_path_factory):
    """A fresh QGIS profile (QGIS_CUSTOM_CONFIG_PATH) with the zip unpacked into its plugin
    folder and Tessera enabled; returns (environment, plugin folder)."""
    root = tmp_path_factory.mktemp("qgis-config")
    plugins = root / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    # numba, zarr and shapely of the test venv, but not the repository's plugin folder
    env = {k: v for k, v in os.environ.items() if k not in ("QGIS_PLUGINPATH", "PYTHONPATH")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(root), QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    done = subprocess.run(["qgis_process.bin", "plugins", "enable", "tessera"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return env, plugins / "tessera"


def _qgis_process(env, *args):
    done = subprocess.run(["qgis_process.bin", "--json", *args], env=env, capture_output=True,
                          text=True, timeout=900)
    try:
        parsed = json.loads(done.stdout)
    except json.JSONDecodeError:
        parsed = None
    return done.returncode, parsed, done.stdout + done.stderr


def _recipes(files, out):
    """Parameters of one small run of every algorithm and model of the provider."""
    scenes = [files[f"scene_{k}"] for k in (1, 2, 3)]
    return {
        "tessera:segmentstats": {"SEGMENTS": files["segments"], "IMAGE": files["image"],
                                 "STATISTICS": "pixcount,mean,median,mode",
                                 "PERCENTILES": "10,90", "OVERWRITE": "true"},
        "tessera:segmentspatialstats": {
            "SEGMENTS": files["segments_img"], "IMAGE": files["image"], "BAND": 2,
            "STATISTICS": "centroid,area,perimeter,variogram", "MAX_LAG": 2,
            "OUTPUT_RAT": str(out / "spatial.img"), "OVERWRITE": "true"},
        "tessera:zonalstats": {"INPUT": files["polygons"], "RASTER": files["image"],
                               "STATISTICS": "pixcount,mean,median",
                               "OUTPUT": str(out / "zones.gpkg")},
        "tessera:copyrat": {"INPUT_RASTER": files["segments"],
                            "OUTPUT": str(out / "segments_rat.zarr"), "OVERWRITE": "true"},
        "tessera:exportrat": {"INPUT_RASTER": files["segments"],
                              "OUTPUT": str(out / "segments_rat.csv")},
        "tessera:rattoraster": {"SEGMENTS": files["segments"], "COLUMNS": "b1_mean,b1_median",
                                "OUTPUT": str(out / "segment_means.tif")},
        "tessera:segmentpolygons": {"SEGMENTS": files["segments"], "COLUMNS": "b1_mean",
                                    "OUTPUT": str(out / "segments.gpkg")},
        "tessera:globalregression": {"INPUTS": scenes, "OUTPUT_FOLDER": str(out / "global")},
        "tessera:localblockadjustment": {"INPUTS": scenes, "BLOCKS": 4,
                                         "OUTPUT_FOLDER": str(out / "local")},
        "model:normalize and summarize": {
            "INPUTS": scenes, "POLYGONS": files["polygons"], "BLOCKS": 4,
            "local:NORMALIZED": str(out / "model_normalized"),
            "zonal:ZONES": str(out / "model_zones.gpkg")},
    }


def _small_files(folder):
    os.makedirs(folder, exist_ok=True)
    image = sample_data.landscape(72, 96, 3)
    segments = sample_data.segmentation(72, 96, 8)
    write = sample_data.write_array
    gt, wkt = sample_data.geotransform(), sample_data.crs_wkt()
    files = {
        "image": write(os.path.join(folder, "image.tif"), image, gt, wkt, nodata=0),
        "segments": write(os.path.join(folder, "segments.tif"), segments, gt, wkt),
        "segments_img": write(os.path.join(folder, "segments.img"), segments, gt, wkt,
                              driver="HFA"),
        "polygons": sample_data.polygons(os.path.join(folder, "zones.gpkg"), count=4,
                                         extent=80),
    }
    for index, path in enumerate(sample_data.overlapping_scenes(folder, rows=180, cols=180),
                                 start=1):
        files[f"scene_{index}"] = path
    return files


def test_packaged_plugin_lists_and_runs_every_algorithm_from_a_fresh_profile(
        installed_profile, tmp_path):
    env, plugin = installed_profile
    code, listing, output = _qgis_process(env, "list")
    assert code == 0, output
    algorithms = listing["providers"]["tessera"]["algorithms"]
    files = _small_files(str(tmp_path / "data"))
    recipes = _recipes(files, tmp_path)
    by_name = {key.split(":", 1)[1].lower(): key for key in recipes}
    listed = {}
    for algorithm_id, details in algorithms.items():
        key = algorithm_id if algorithm_id in recipes else by_name.get(details["name"].lower())
        assert key is not None, f"no test run for {algorithm_id}: add one to _recipes"
        listed[algorithm_id] = key
    assert set(listed.values()) == set(recipes)

    order = list(recipes)  # segmentstats writes the RAT the RAT tools read
    for algorithm_id, key in sorted(listed.items(), key=lambda item: order.index(item[1])):
        code, details, output = _qgis_process(env, "help", algorithm_id)
        assert code == 0, output
        if key.startswith("tessera:"):  # an algorithm's help page, shipped in the zip
            help_url = details["algorithm_details"]["help_url"]
            assert help_url.startswith("file://"), help_url
            assert os.path.isfile(help_url[len("file://"):]), help_url
            assert help_url[len("file://"):].startswith(str(plugin)), help_url
        args = ["run", algorithm_id, "--"]
        for name, value in recipes[key].items():
            for item in value if isinstance(value, list) else [value]:
                args.append(f"{name}={item}")
        code, result, output = _qgis_process(env, *args)
        assert code == 0 and result is not None, f"{algorithm_id}: {output[-3000:]}"
        assert "Traceback" not in output, output
    assert os.path.exists(tmp_path / "zones.gpkg")
    assert os.path.exists(tmp_path / "segment_means.tif")
    assert os.path.exists(tmp_path / "segments.gpkg")
    assert len([f for f in os.listdir(tmp_path / "local") if f.endswith(".tif")]) == 3


def test_help_pages_name_every_parameter(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as archive:
        page = archive.read("tessera/help/segmentstats.html").decode("utf-8")
        index = archive.read("tessera/help/index.html").decode("utf-8")
    for parameter in ("SEGMENTS", "IMAGE", "STATISTICS", "PERCENTILES"):
        assert f"({parameter})" in page
    assert 'href="segmentstats.html"' in index and 'href="zonalstats.html"' in index


def test_package_metadata_is_ready_for_the_repository():
    general = _metadata()
    assert general["qgisMaximumVersion"].startswith("4.")
    assert general["icon"].endswith(".png")
    with open(os.path.join(REPO, general["icon"]), "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    changelog = general["changelog"]
    assert general["version"] in changelog and "0.1.0" in changelog
    for dependency in ("numba", "zarr", "shapely", "installer"):
        assert dependency in general["about"], dependency
    tags = general["tags"].lower()
    for tag in ("object-based", "obia", "radiometric normalization", "zonal statistics"):
        assert tag in tags, tag
