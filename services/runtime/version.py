"""The release of watchledger this process runs (its installed package's version)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version


def _installed() -> str:
    try:
        return package_version("watchledger")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


VERSION = _installed()
