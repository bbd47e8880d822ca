"""Check a plugin zip the way plugins.qgis.org checks uploads, plus Tessera's own rules.

    python3 scripts/validate_plugin_zip.py dist/tessera-0.2.0.zip

The upload checks of the plugin repository (qgis/QGIS-Django, plugins/validator.py):
the zip is at most 25 MB; no entry holds ``..`` or an absolute path, a ``.pyc`` file or a
``__MACOSX``, ``.git`` or ``__pycache__`` folder; one top folder whose name starts with an
ASCII letter and holds only letters, digits, ``-`` and ``_``, with ``__init__.py``,
``metadata.txt`` (a ``[general]`` section with name, description, about, version,
qgisMinimumVersion, author, email, tracker and repository) and ``LICENSE``; no slash in
the author; tracker, repository and homepage are URLs (the repository also fetches them;
not done here, to stay offline). Tessera adds: the top folder is ``tessera``; the icon is a
PNG or JPEG inside the zip; no development files (tests, benchmarks, demo, scripts, dev
requirements, numba cache); the zip name carries the metadata version.
"""

import argparse
import configparser
import os
import re
import sys
import zipfile
from urllib.parse import urlparse

MAX_SIZE = 25_000_000  # bytes, as plugins.qgis.org
REQUIRED_METADATA = ("name", "description", "about", "version", "qgisMinimumVersion",
                     "author", "email", "tracker", "repository")
BOOLEAN_METADATA = ("experimental", "deprecated", "server", "hasProcessingProvider",
                    "supportsQt6")
FORBIDDEN_FOLDERS = ("__MACOSX", ".git", "__pycache__")
DEVELOPMENT = ("tests", "bench", "demo", "scripts", ".venv", ".ci", "dist",
               "requirements-dev.txt", "requirements-lock.txt", "Makefile", "pyproject.toml")
NUMBA_CACHE = (".nbi", ".nbc")
PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-_]+$")
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def problems(path, expected_folder="tessera", max_size=MAX_SIZE):
    """Every reason ``path`` would be refused (an empty list: the zip is fine)."""
    found = []
    size = os.path.getsize(path)
    if size > max_size:
        found.append(f"the zip is {size / 1e6:.1f} MB; at most {max_size / 1e6:.0f} MB")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        return found + [f"not a zip file: {error}"]
    with archive:
        names = archive.namelist()
        found += _entry_problems(names, expected_folder)
        bad = archive.testzip()
        if bad:
            found.append(f"bad zip entry (CRC error?): {bad}")
        tops = sorted({name.split("/")[0] for name in names})
        if len(tops) != 1 or not names or "/" not in names[0]:
            found.append(f"one top folder expected, found: {', '.join(tops) or 'nothing'}")
            return found
        top = tops[0]
        if not PACKAGE_NAME.match(top):
            found.append(f"the top folder name {top!r} must start with an ASCII letter and "
                         "hold only letters, digits, '-' and '_'")
        if expected_folder and top != expected_folder:
            found.append(f"the top folder is {top!r}; QGIS installs the plugin under that "
                         f"name, it must be {expected_folder!r}")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{top}/{required}" not in names:
                found.append(f"{top}/{required} is missing")
        if f"{top}/metadata.txt" in names:
            found += _metadata_problems(archive, top, names, os.path.basename(path))
    return found


def _entry_problems(names, expected_folder):
    found = []
    for name in names:
        parts = name.rstrip("/").split("/")
        if ".." in name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            found.append(f"path information in the entry {name!r}")
        if ".pyc" in name:
            found.append(f"compiled Python file {name!r}")
        for folder in FORBIDDEN_FOLDERS:
            if folder in parts[:-1] or (name.endswith("/") and parts[-1] == folder):
                found.append(f"forbidden folder {folder!r} in {name!r}")
        if len(parts) > 1 and parts[1] in DEVELOPMENT:
            found.append(f"development file in the plugin: {name!r}")
        if name.endswith(NUMBA_CACHE):
            found.append(f"numba cache file {name!r}")
    return list(dict.fromkeys(found))


def _metadata_problems(archive, top, names, zip_name):
    found = []
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    try:
        parser.read_string(archive.read(f"{top}/metadata.txt").decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError) as error:
        return [f"metadata.txt cannot be read: {error}"]
    if not parser.has_section("general"):
        return ["metadata.txt has no [general] section"]
    general = parser["general"]
    for key in REQUIRED_METADATA:
        if not general.get(key, "").strip():
            found.append(f"metadata.txt lacks {key}")
    if "/" in general.get("author", ""):
        found.append("the author in metadata.txt cannot contain slashes")
    for key in ("tracker", "repository", "homepage"):
        value = general.get(key, "").strip()
        if value and not all(urlparse(value)[:2]):
            found.append(f"metadata.txt {key} is not a URL: {value!r}")
    for key in BOOLEAN_METADATA:
        value = general.get(key)
        if value is not None and value.strip().lower() not in ("true", "false", "yes", "no",
                                                               "1", "0"):
            found.append(f"metadata.txt {key} is not a boolean: {value!r}")
    minimum, maximum = general.get("qgisMinimumVersion"), general.get("qgisMaximumVersion")
    if minimum and maximum and _version(maximum) < _version(minimum):
        found.append(f"qgisMaximumVersion {maximum} is below qgisMinimumVersion {minimum}")
    icon = general.get("icon", "").strip()
    if icon:
        member = f"{top}/{icon[2:] if icon.startswith('./') else icon}"
        if member not in names:
            found.append(f"the icon {icon} is not in the zip")
        elif not any(archive.read(member).startswith(magic) for magic in IMAGE_MAGIC):
            found.append(f"the icon {icon} is not a PNG or JPEG image")
    version = general.get("version", "").strip()
    match = re.match(rf"^{re.escape(top)}-(.+)\.zip$", zip_name)
    if match and version and match.group(1) != version:
        found.append(f"the zip is named for version {match.group(1)}, metadata.txt says "
                     f"{version}")
    return found


def _version(text):
    return tuple(int(part) if part.isdigit() else 0 for part in text.strip().split("."))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a QGIS plugin zip before upload.")
    parser.add_argument("zip")
    parser.add_argument("--folder", default="tessera", help="expected top folder")
    arguments = parser.parse_args(argv)
    found = problems(arguments.zip, arguments.folder)
    for problem in found:
        print(f"{arguments.zip}: {problem}", file=sys.stderr)
    if not found:
        print(f"{arguments.zip}: passes the plugins.qgis.org upload checks")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
