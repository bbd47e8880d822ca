"""Running ``qgis_process.bin`` with Tessera enabled in a throwaway profile.

Used by the demo and the tests: the repository root (the plugin folder)
appears as ``tessera`` in a temporary plugin folder, QGIS gets a fresh
profile, and the embedded Python sees the packages of the running Python
(numba, zarr) through ``PYTHONPATH``.
"""

import json
import os
import site
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTABLE = "qgis_process.bin"  # the `qgis_process` wrapper passes a flag 3.22 rejects


def plugin_folder():
    """A temporary folder where the plugin appears as ``tessera``."""
    folder = tempfile.mkdtemp(prefix="tessera-plugins-")
    os.symlink(REPO, os.path.join(folder, "tessera"))
    return folder


class QgisProcess:
    """``qgis_process.bin`` with Tessera enabled in a fresh profile."""

    def __init__(self, plugins=None, profile=None):
        self.plugins = plugins or plugin_folder()
        self.profile = profile or tempfile.mkdtemp(prefix="tessera-qgis-profile-")
        python_path = [self.plugins, *site.getsitepackages()]
        if os.environ.get("PYTHONPATH"):
            python_path.append(os.environ["PYTHONPATH"])
        self.env = dict(os.environ, QGIS_PLUGINPATH=self.plugins,
                        QGIS_CUSTOM_CONFIG_PATH=self.profile, QT_QPA_PLATFORM="offscreen",
                        PYTHONPATH=os.pathsep.join(python_path))
        subprocess.run([EXECUTABLE, "plugins", "enable", "tessera"], env=self.env,
                       capture_output=True, check=True, timeout=300)

    def run(self, *args, timeout=3600):
        """Run ``qgis_process.bin --json <args>``: (exit code, parsed JSON or None, all output)."""
        done = subprocess.run([EXECUTABLE, "--json", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        try:
            parsed = json.loads(done.stdout)
        except json.JSONDecodeError:
            parsed = None
        return done.returncode, parsed, done.stdout + done.stderr

    def algorithm(self, algorithm_id, **parameters):
        """Run an algorithm with ``NAME=value`` parameters (lists repeat the parameter)."""
        args = ["run", algorithm_id, "--"]
        for name, value in parameters.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            args += [f"{name}={v}" for v in values]
        return self.run(*args)
