"""`make package`: the plugin zip for plugins.qgis.org, ``dist/tessera-<version>.zip``.

One top folder ``tessera/`` with what runs in QGIS: the plugin modules, ``engine/``,
``resources/``, the runtime ``requirements.txt`` (the installer reads it), ``LICENSE`` and
``help/`` (pages generated from the algorithms by scripts/build_help.py, the target of
their Help buttons). Left out: tests, benchmarks, the demo, scripts, development
requirements, dot-folders (.git, .venv, .ci), ``__pycache__``, compiled files and numba's
cache. The zip is then checked by scripts/validate_plugin_zip.py.

    .venv/bin/python scripts/build_package.py [--output dist]
"""

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = "tessera"
#: Top-level entries of the repository that are not part of the plugin.
DEVELOPMENT = {"tests", "bench", "demo", "scripts", "dist", "build", "help", "Makefile",
               "pyproject.toml", "requirements-dev.txt", "requirements-lock.txt", "README.md"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".nbi", ".nbc", ".aux.xml")
DIST = os.path.join(REPO, "dist")
FIXED_TIME = (2024, 1, 1, 0, 0, 0)  # same bytes for the same files


def plugin_version(plugin_dir=REPO):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(plugin_dir, "metadata.txt"), encoding="utf-8")
    return parser["general"]["version"].strip()


def _ignored(folder, names):
    return {name for name in names
            if name.startswith(".") or name == "__pycache__" or name.endswith(SKIPPED_SUFFIXES)
            or (os.path.samefile(folder, REPO) and name in DEVELOPMENT)}


def stage(staging):
    """Copy the plugin's runtime files to ``staging/tessera`` and build its help pages."""
    plugin = os.path.join(staging, FOLDER)
    shutil.copytree(REPO, plugin, ignore=_ignored)
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "build_help.py"), plugin],
                   check=True, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
                   stdout=subprocess.DEVNULL)
    return plugin


def write_zip(plugin, path):
    """Zip ``plugin`` (a folder named ``tessera``) with entries in a stable order."""
    root = os.path.dirname(plugin)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for folder, folders, files in os.walk(plugin):
            folders.sort()
            relative = os.path.relpath(folder, root).replace(os.sep, "/")
            entry = zipfile.ZipInfo(relative + "/", FIXED_TIME)
            entry.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(entry, b"")
            for name in sorted(files):
                entry = zipfile.ZipInfo(f"{relative}/{name}", FIXED_TIME)
                entry.external_attr = 0o100644 << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                with open(os.path.join(folder, name), "rb") as stream:
                    archive.writestr(entry, stream.read())
    return path


def build(output=DIST):
    """Build and check ``<output>/tessera-<version>.zip``; returns its path."""
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    from validate_plugin_zip import problems

    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, f"{FOLDER}-{plugin_version()}.zip")
    with tempfile.TemporaryDirectory(prefix="tessera-package-") as staging:
        partial = write_zip(stage(staging), os.path.join(staging, os.path.basename(path)))
        found = problems(partial, FOLDER)
        if found:
            raise SystemExit("The plugin zip would be refused:\n  " + "\n  ".join(found))
        shutil.move(partial, path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=DIST)
    path = build(parser.parse_args().output)
    with zipfile.ZipFile(path) as archive:
        count = sum(1 for name in archive.namelist() if not name.endswith("/"))
    print(f"{path}: {count} files, {os.path.getsize(path) / 1e6:.2f} MB, passes the "
          "plugins.qgis.org upload checks")


if __name__ == "__main__":
    main()
