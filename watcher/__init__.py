"""watcher: keeps watch over Mistral AI jobs and tells people when something happens.

The version lives in one place, pyproject.toml; the installed distribution's metadata
(``mistral-watcher``) carries it here.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTION = "mistral-watcher"  # on PyPI; `watcher` there is an unrelated project


def _version() -> str:
    """The installed distribution's version; in a checkout imported without installing it
    (``PYTHONPATH=.``), the one its pyproject.toml declares; else ``0+unknown``."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
            project = tomllib.load(file)["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "0+unknown"
    return str(project["version"]) if project.get("name") == DISTRIBUTION else "0+unknown"


__version__ = _version()
