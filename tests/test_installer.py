"""The dependency installer (installer.py) in a throwaway environment made from Debian's
Python with python3-gdal and without numba/zarr (not the project's venv): what it installs
keeps GDAL working and numpy on its major version, segment statistics run on top of it,
and a failed or cancelled install leaves everything as it was."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import PLUGINS_DIR

from tessera import installer

DEBIAN_PYTHON = "/usr/bin/python3"


def _clean_env(**extra):
    """The environment without the project venv's paths; ``NAME=None`` drops a variable."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "NUMBA_CACHE_DIR")}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def _run(python, code, **kwargs):
    return subprocess.run([python, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=900, env=_clean_env(), **kwargs)


def _listing(folder):
    """Every file under ``folder`` with its size (the state to compare before and after)."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found.append((os.path.relpath(path, folder), os.path.getsize(path)
                          if os.path.isfile(path) else -1))
    return sorted(found)


@pytest.fixture(scope="session")
def debian_venv(tmp_path_factory):
    """``python3 -m venv --system-site-packages`` from Debian's Python: python3-gdal and
    Debian's numpy, no numba and no zarr 3. Returns (python, its own site-packages)."""
    if not os.path.exists(DEBIAN_PYTHON):
        pytest.skip("needs Debian's /usr/bin/python3")
    folder = tmp_path_factory.mktemp("debian-venv")
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--system-site-packages", str(folder)],
                   check=True, timeout=300, env=_clean_env())
    python = str(folder / "bin" / "python")
    probe = _run(python, """
        import json, site, numpy
        from osgeo import gdal_array
        missing = []
        for name in ("numba", "zarr"):
            try:
                module = __import__(name)
                if name == "zarr" and int(module.__version__.split(".")[0]) >= 3:
                    continue
            except ImportError:
                pass
            missing.append(name)
        print(json.dumps({"numpy": numpy.__version__, "missing": missing,
                          "site": site.getsitepackages()[0]}))
    """)
    if probe.returncode != 0:
        pytest.skip(f"Debian's Python lacks python3-gdal/numpy: {probe.stderr[-500:]}")
    state = json.loads(probe.stdout)
    assert state["missing"] == ["numba", "zarr"], state
    return python, state["site"], state["numpy"]


def _installer(python, *args, **env):
    return subprocess.run([python, "-m", "tessera.installer", *args], capture_output=True,
                          text=True, timeout=1800, cwd=PLUGINS_DIR, env=_clean_env(**env))


def test_install_keeps_gdal_and_numpy_major_and_runs_segment_statistics(debian_venv, tmp_path):
    python, own_site, numpy_before = debian_venv
    system_site = "/usr/lib/python3/dist-packages"
    before = (_listing(own_site), _listing(system_site))
    target = tmp_path / "profile" / "python" / "tessera-packages"
    done = _installer(python, "install", "--target", str(target))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((target / "tessera-packages.json").read_text())
    installed = {name.lower() for name, _ in record["installed"]}
    assert {"numba", "zarr"} <= installed, record
    assert (_listing(own_site), _listing(system_site)) == before, "site-packages changed"
    assert not [p for p in os.listdir(target.parent) if p != target.name], "staging left over"

    work = tmp_path / "work"
    work.mkdir()
    check = _run(python, f"""
        import sys
        sys.path.insert(0, {PLUGINS_DIR!r})
        from tessera import installer
        assert installer.activate({str(target)!r}) == {str(target)!r}
        from osgeo import gdal_array
        import numpy as np
        import numba, zarr
        from tessera.engine import segment_stats
        from tessera.engine.io.raster_io import write_array
        write_array("seg.tif", (np.arange(100).reshape(10, 10) // 10 + 1).astype("uint8"))
        write_array("img.tif", np.arange(100, dtype="uint16").reshape(10, 10))
        result = segment_stats("seg.tif", "img.tif", statistics=["mean", "median"])
        array = gdal_array.LoadFile("img.tif")
        print("NUMPY", np.__version__, "ZARR", zarr.__version__, "NUMBA", numba.__version__)
        print("SEGMENTS", result.segment_count, "GDAL_ARRAY", int(array.sum()))
    """, cwd=work)
    assert check.returncode == 0, check.stderr[-3000:]
    words = check.stdout.split()
    numpy_after = words[words.index("NUMPY") + 1]
    assert numpy_after.split(".")[0] == numpy_before.split(".")[0]
    assert words[words.index("ZARR") + 1].startswith("3.")
    assert "SEGMENTS 10" in check.stdout and "GDAL_ARRAY 4950" in check.stdout

    status = _installer(python, "status", "--target", str(target))
    assert status.returncode == 0 and "missing" not in status.stdout, status.stdout


def test_failed_install_leaves_everything_as_it_was(debian_venv, tmp_path):
    python, own_site, _ = debian_venv
    target = tmp_path / "tessera-packages"
    (target / "earlier").mkdir(parents=True)  # what an earlier install left
    (target / "earlier" / "module.py").write_text("VALUE = 1\n")
    (target / "tessera-packages.json").write_text('{"python": "3.11"}')
    before = (_listing(own_site), _listing(target), sorted(os.listdir(tmp_path)))
    done = _installer(python, "install", "--target", str(target), "--index-url",
                      "http://127.0.0.1:9/simple", PIP_CONFIG_FILE=os.devnull,
                      PIP_FIND_LINKS=None, PIP_EXTRA_INDEX_URL=None, PIP_RETRIES="0",
                      PIP_DEFAULT_TIMEOUT="5")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "nothing was changed" in done.stderr
    assert (_listing(own_site), _listing(target), sorted(os.listdir(tmp_path))) == before


def test_cancelled_install_leaves_the_folder_as_it_was(debian_venv, tmp_path):
    python, _, _ = debian_venv
    target = tmp_path / "tessera-packages"
    target.mkdir()
    (target / "kept.txt").write_text("kept")
    with pytest.raises(installer.InstallError, match="cancelled"):
        installer.install(target=str(target), python=python, output=lambda line: None,
                          cancelled=lambda: True)
    assert sorted(os.listdir(tmp_path)) == ["tessera-packages"]
    assert sorted(os.listdir(target)) == ["kept.txt"]


def test_plan_works_where_pep_668_refuses_user_installs():
    if not os.path.exists("/usr/lib/python3.11/EXTERNALLY-MANAGED"):
        pytest.skip("Debian's Python is not marked externally managed here")
    done = _installer(DEBIAN_PYTHON, "plan")
    assert done.returncode == 0, done.stderr[-2000:]
    planned = dict(line.split("==") for line in done.stdout.split())
    assert "numba" in planned and "zarr" in planned
    assert planned.get("numpy", "1.").startswith("1."), planned


def test_find_python_inside_qgis_finds_the_interpreter(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis")
    python = installer.find_python()
    done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(sys.version_info[:2])


def test_find_python_skips_another_python_of_the_same_version(monkeypatch, tmp_path):
    """Inside QGIS, sys.executable may be the first python3 on PATH (pyenv's, say): same
    version, other installation; pip must not run with it."""
    other = tmp_path / "python3"
    major, minor = sys.version_info[:2]
    other.write_text(f"#!/bin/sh\necho {major}.{minor}\necho /opt/other-python\n")
    other.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(other))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    python = installer.find_python()
    assert python != str(other)
    done = subprocess.run([python, "-c", "import sys; print(sys.base_prefix)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == sys.base_prefix


def test_activate_puts_the_folder_before_site_packages_for_this_python_only(tmp_path,
                                                                           monkeypatch):
    site = str(tmp_path / "lib" / "site-packages")
    monkeypatch.setattr(sys, "path", ["/plugins", site, "/elsewhere"])
    target = tmp_path / "tessera-packages"
    assert installer.activate(str(target)) is None  # nothing installed yet
    target.mkdir()
    (target / installer.RECORD).write_text('{"python": "2.7"}')
    assert installer.activate(str(target)) is None  # made for another Python
    (target / installer.RECORD).write_text(json.dumps({"python": installer._python_tag()}))
    assert installer.activate(str(target)) == str(target)
    assert sys.path == ["/plugins", str(target), site, "/elsewhere"]


def test_runtime_requirements_are_ranges_that_the_lock_satisfies():
    requirements = installer.runtime_requirements()
    names = [r.split(">")[0].split("<")[0].split("=")[0] for r in requirements]
    assert names == ["numba", "zarr", "shapely"]
    assert not any("==" in r for r in requirements)
    assert "zarr>=3,<3.1.6" in requirements
