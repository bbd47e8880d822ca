"""Tessera's version, read from the plugin's ``metadata.txt`` (no QGIS needed)."""

import configparser
import functools
import os

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=1)
def tessera_version() -> str:
    """The ``version`` of ``metadata.txt``'s ``[general]`` section ("" when unreadable)."""
    parser = configparser.ConfigParser()
    try:
        parser.read(os.path.join(PLUGIN_DIR, "metadata.txt"), encoding="utf-8")
    except (OSError, configparser.Error):
        return ""
    return parser.get("general", "version", fallback="")
