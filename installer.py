"""Installing Tessera's Python packages without harming QGIS's own Python.

Plain Python (no QGIS), used three ways:

* from QGIS: Plugins > Tessera > Install Python dependencies (a background task, see
  ``desktop/dependency_install.py``), or the message bar offered when something is missing;
* from the QGIS Python console: ``from tessera import installer; installer.install()``;
* from a shell, for administrators, with the Python that QGIS runs on::

      cd <QGIS profile>/python/plugins && python3 -m tessera.installer install
      python3 <plugin folder>/installer.py status

What it does: pip first resolves ``requirements.txt`` (``--dry-run --report``) against the
packages this Python already has, with numpy held to the major version GDAL was built
against (and never below the installed one). Only what is missing then goes, with
``--target`` (allowed where PEP 668 refuses ``--user``), into a staging folder that replaces
the plugin's packages folder (``<profile>/python/tessera-packages``) once pip succeeded. So a
failed or cancelled install leaves everything as it was, and QGIS's own site-packages are
never written to. :func:`activate` puts that folder on ``sys.path`` when the plugin loads.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(PLUGIN_DIR, "requirements.txt")
FOLDER_NAME = "tessera-packages"
RECORD = "tessera-packages.json"  # what the folder holds and for which Python
OPTIONAL = {"s3fs": "s3fs", "matplotlib": "matplotlib", "distributed": "dask[distributed]"}


class InstallError(Exception):
    """The install could not be done; the packages folder is as it was."""


def runtime_requirements(path=REQUIREMENTS):
    """The requirement lines of ``requirements.txt`` (comments and blanks dropped)."""
    with open(path, encoding="utf-8") as stream:
        lines = (line.split("#", 1)[0].strip() for line in stream)
        return [line for line in lines if line]


def default_target(profile_python_dir=None):
    """The folder the plugin owns for its packages.

    ``$TESSERA_PACKAGES`` if set; else ``tessera-packages`` in the QGIS profile's ``python``
    folder (given by QGIS, or found from this file's place in ``<profile>/python/plugins``);
    else beside the folder holding the plugin.
    """
    if os.environ.get("TESSERA_PACKAGES"):
        return os.path.abspath(os.environ["TESSERA_PACKAGES"])
    if profile_python_dir:
        return os.path.join(profile_python_dir, FOLDER_NAME)
    plugins = os.path.dirname(PLUGIN_DIR)
    if os.path.basename(plugins) == "plugins":
        return os.path.join(os.path.dirname(plugins), FOLDER_NAME)
    return os.path.join(plugins, FOLDER_NAME)


def _python_tag():
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def read_record(target):
    """The record the installer left in ``target`` ({} when there is none)."""
    try:
        with open(os.path.join(target, RECORD), encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return {}


def activate(target=None):
    """Put the packages folder on ``sys.path`` (before site-packages); returns it or None.

    Only packages this Python lacked (or had too old) are in the folder, so placing it
    before site-packages changes nothing else; a folder made for another Python version
    (QGIS upgraded) is left out, and the dependency check then offers a new install.
    """
    target = target or default_target()
    if not os.path.isdir(target):
        return None
    record = read_record(target)
    if record.get("python") not in (None, _python_tag()):
        return None
    if target not in sys.path:
        sys.path.insert(_site_packages_index(), target)
    import importlib

    importlib.invalidate_caches()
    return target


def _site_packages_index():
    for index, entry in enumerate(sys.path):
        if os.path.basename(entry.rstrip("/\\")) in ("site-packages", "dist-packages"):
            return index
    return len(sys.path)


def find_python():
    """The Python interpreter QGIS runs on (inside QGIS, ``sys.executable`` is QGIS itself
    or whatever ``python3`` comes first on PATH, e.g. pyenv's): the first candidate of this
    Python version whose ``sys.base_prefix`` is this one's."""
    executable = sys.executable or ""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = []
    if re.match(r"^python[0-9.]*(\.exe)?$", os.path.basename(executable).lower()):
        candidates.append(executable)
    for prefix in dict.fromkeys([sys.exec_prefix, sys.base_exec_prefix, sys.prefix]):
        if sys.platform == "win32":  # OSGeo4W: apps\Python3x\python.exe; bin\python3.exe
            candidates += [os.path.join(prefix, "python.exe"), os.path.join(prefix, "python3.exe")]
            root = os.path.dirname(os.path.dirname(prefix))
            candidates += [os.path.join(root, "bin", "python3.exe"),
                           os.path.join(root, "bin", "python.exe")]
        else:  # Linux /usr/bin/python3.11; macOS QGIS.app/Contents/MacOS/bin/python3
            candidates += [os.path.join(prefix, "bin", f"python{version}"),
                           os.path.join(prefix, "bin", "python3")]
    if sys.platform == "darwin":
        macos = os.path.dirname(executable)
        candidates += [os.path.join(macos, "bin", f"python{version}"),
                       os.path.join(macos, "bin", "python3")]
    candidates += [shutil.which(f"python{version}") or "", shutil.which("python3") or ""]
    for candidate in dict.fromkeys(candidates):
        if candidate and os.path.isfile(candidate) and _is_this_python(candidate):
            return candidate
    raise InstallError(
        f"Cannot find the Python {version} interpreter that QGIS runs on (looked for "
        f"python{version} in {sys.base_exec_prefix}). Run the installer from a shell with "
        "that Python: python3 -m tessera.installer install (see Tessera's README).")


def _is_this_python(candidate):
    """Whether ``candidate`` is this Python's version and installation (not another one of
    the same version, such as pyenv's)."""
    code = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.base_prefix)"
    try:
        done = subprocess.run([candidate, "-c", code], capture_output=True, text=True,
                              timeout=60, **_no_window())
    except (OSError, subprocess.SubprocessError):
        return False
    lines = done.stdout.splitlines()
    return (done.returncode == 0 and len(lines) == 2 and lines[0] == _python_tag()
            and _same_path(lines[1], sys.base_prefix))


def _same_path(a, b):
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _no_window():
    """Keep Windows from flashing a console for each subprocess."""
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}


def _query(python, code, env=None):
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env, **_no_window())
    return done.stdout.strip() if done.returncode == 0 else None


def numpy_constraint(python, env=None):
    """``numpy>=<installed>,<<next major>``: keep the major version GDAL was built against,
    never downgrade; None when that Python has no numpy."""
    version = _query(python, "import numpy; print(numpy.__version__)", env)
    if not version:
        return None
    release = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version)
    if release is None:
        return None
    base = ".".join(part for part in release.groups() if part is not None)
    return f"numpy>={base},<{int(release.group(1)) + 1}"


def _child_env(search_path):
    """Environment for pip and the checks: unbuffered, never prompting; QGIS's own module
    paths when given (so pip sees what QGIS sees)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1")
    if search_path:
        env["PYTHONPATH"] = os.pathsep.join(search_path)
    return env


def _run_pip(python, arguments, output, cancelled, env):
    """Run ``python -m pip <arguments>``, passing each output line to ``output``."""
    command = [python, "-m", "pip", *arguments]
    output("$ " + " ".join(command))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, env=env, **_no_window())
    lines = []
    try:
        for line in process.stdout:
            line = line.rstrip()
            lines.append(line)
            output(line)
            if cancelled():
                process.terminate()
                raise InstallError("The install was cancelled; nothing was changed.")
    finally:
        process.stdout.close()
        code = process.wait()
    if code != 0:
        last = "\n".join(lines[-15:])
        raise InstallError(f"pip failed (exit code {code}); nothing was changed.\n{last}")
    return lines


def plan(requirements, *, python, pip_args=(), output=print, cancelled=lambda: False,
         search_path=None):
    """``[(name, version)]`` pip would install into this Python for ``requirements``
    (resolved against what it already has, numpy held to its major version)."""
    env = _child_env(search_path)
    with tempfile.TemporaryDirectory(prefix="tessera-install-") as work:
        constraints = os.path.join(work, "constraints.txt")
        numpy = numpy_constraint(python, env)
        with open(constraints, "w", encoding="utf-8") as stream:
            stream.write(f"{numpy}\n" if numpy else "")
        report = os.path.join(work, "report.json")
        _run_pip(python, ["install", "--dry-run", "--report", report, "--constraint",
                          constraints, "--upgrade-strategy", "only-if-needed",
                          "--progress-bar", "off", *pip_args, *requirements],
                 output, cancelled, env)
        with open(report, encoding="utf-8") as stream:
            items = json.load(stream).get("install", [])
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in items]


def install(requirements=None, *, target=None, python=None, extras=(), pip_args=(),
            output=print, cancelled=lambda: False, search_path=None):
    """Install what ``requirements`` (default: ``requirements.txt`` plus ``extras`` and the
    extras installed before) need and this Python lacks into ``target``.

    Returns ``[(name, version)]`` installed. Raises :class:`InstallError` with pip's last
    lines when it fails; ``target`` is then as it was.
    """
    target = os.path.abspath(target or default_target())
    python = python or find_python()
    if _query(python, "import pip") is None:
        raise InstallError(
            f"pip is not available for {python}. On Debian/Ubuntu install it with "
            "sudo apt install python3-pip; elsewhere: python -m ensurepip --user.")
    previous = read_record(target)
    extras = list(dict.fromkeys([*previous.get("extras", []), *extras]))
    wanted = list(requirements or runtime_requirements())
    wanted += [OPTIONAL.get(extra, extra) for extra in extras]
    output(f"Resolving {', '.join(wanted)} for {python}")
    packages = plan(wanted, python=python, pip_args=pip_args, output=output,
                    cancelled=cancelled, search_path=search_path)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=parent)
    try:
        if packages:
            output("Installing " + ", ".join(f"{n} {v}" for n, v in packages))
            _run_pip(python, ["install", "--no-deps", "--target", staging,
                              "--no-warn-script-location", "--progress-bar", "off", *pip_args,
                              *[f"{name}=={version}" for name, version in packages]],
                     output, cancelled, _child_env(search_path))
        _verify(python, staging, wanted, search_path, output)
        tag = _query(python, "import sys; print('%d.%d' % sys.version_info[:2])")
        record = {"python": tag or _python_tag(), "installed": [list(p) for p in packages],
                  "requirements": wanted, "extras": extras, "time": time.time()}
        with open(os.path.join(staging, RECORD), "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=1)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    output(f"Installed into {target}: " + (", ".join(f"{n} {v}" for n, v in packages)
                                           or "nothing was missing"))
    return packages


def _verify(python, staging, requirements, search_path, output):
    """Import each requirement with ``staging`` on the path, as the plugin will; an
    InstallError (the folder is then dropped) when one fails."""
    modules = [re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].replace("-", "_")
               for r in requirements]
    code = (f"import sys; sys.path.insert(0, {staging!r}); "
            + "; ".join(f"import {module}" for module in modules))
    env = _child_env(search_path)
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300,
                          env=env, **_no_window())
    if done.returncode != 0:
        raise InstallError("The installed packages do not import; nothing was changed.\n"
                           + done.stderr[-2000:])
    output("Checked: " + ", ".join(modules) + " import")


def _swap_into_place(staging, target):
    """Replace ``target`` with ``staging``; on failure ``target`` stays as it was."""
    old = None
    if os.path.exists(target):
        old = f"{target}.old-{os.getpid()}-{int(time.time())}"
        try:
            os.rename(target, old)
        except OSError as error:  # Windows: files of the folder are loaded by this QGIS
            raise InstallError(
                f"Cannot replace {target} while it is in use ({error}); nothing was changed. "
                "Restart QGIS and install again before running a Tessera algorithm.") from None
    try:
        os.rename(staging, target)
    except OSError:
        if old:
            os.rename(old, target)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


def status(target=None):
    """``{requirement: installed version or None}`` for this Python (with ``target``)."""
    from importlib import metadata

    activate(target)
    result = {}
    for requirement in runtime_requirements():
        name = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]
        try:
            result[requirement] = metadata.version(name)
        except metadata.PackageNotFoundError:
            result[requirement] = None
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m tessera.installer",
        description="Install Tessera's Python packages for QGIS into a folder the plugin owns, "
                    "keeping numpy's major version and QGIS's own packages as they are.")
    parser.add_argument("command", choices=["install", "status", "plan", "where"])
    parser.add_argument("--target", help="packages folder (default: %(default)s)",
                        default=default_target())
    parser.add_argument("--python", help="the Python QGIS runs on (default: this one)",
                        default=sys.executable)
    parser.add_argument("--with", dest="extras", action="append", default=[],
                        choices=sorted(OPTIONAL), help="also install an optional package")
    parser.add_argument("--index-url", help="pip's package index")
    arguments = parser.parse_args(argv)
    pip_args = ["--index-url", arguments.index_url] if arguments.index_url else []
    try:
        if arguments.command == "where":
            print(arguments.target)
        elif arguments.command == "status":
            for requirement, version in status(arguments.target).items():
                print(f"{requirement:<20} {version or 'missing'}")
        elif arguments.command == "plan":
            wanted = runtime_requirements() + [OPTIONAL[e] for e in arguments.extras]
            for name, version in plan(wanted, python=arguments.python, pip_args=pip_args,
                                      output=lambda line: None):
                print(f"{name}=={version}")
        else:
            install(target=arguments.target, python=arguments.python,
                    extras=arguments.extras, pip_args=pip_args)
    except InstallError as error:
        print(f"tessera.installer: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
