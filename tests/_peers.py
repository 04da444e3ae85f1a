"""Real peers the tests need (libcoap's command-line tools, pyang): missing ones FAIL, never skip.

A skipped interop test looks green while it hides a machine where the feature was never checked, so
a test that needs an external program marks itself with :func:`needs_tools` (or looks the program up
with :func:`tool`), and a missing program fails the test with what to install and "run make setup".
``make setup`` (part of ``make test`` and ``make demo``) installs every Debian package in
``scripts/debian-packages.txt`` and the Python dev extras, which is where these programs come from.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["MARKER", "missing_tools_message", "needs_tools", "tool"]

MARKER = "needs_tools"

# Where each program comes from, for the failure message.
SOURCES = {
    "coap-client-notls": "Debian package libcoap3-bin",
    "coap-client-openssl": "Debian package libcoap3-bin",
    "coap-server-notls": "Debian package libcoap3-bin",
    "coap-server-openssl": "Debian package libcoap3-bin",
    "pyang": "the dev extra in pyproject.toml",
}


def _which(name: str) -> str | None:
    """``name`` in the running interpreter's bin directory (the venv's, for pyang), else on PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def missing_tools_message(names: tuple[str, ...]) -> str | None:
    """None when every program is installed, else the failure message naming what is missing."""
    missing = [name for name in names if _which(name) is None]
    if not missing:
        return None
    sources = sorted({SOURCES.get(name, "scripts/debian-packages.txt") for name in missing})
    return f"{', '.join(missing)} not installed (from {'; '.join(sources)}): run make setup"


def needs_tools(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or a module, as ``pytestmark``) that runs these programs; conftest.py fails it if one is missing."""
    return getattr(pytest.mark, MARKER)(*names)


def tool(name: str) -> str:
    """The path of program ``name``; fails the calling test (no skip) when it is not installed."""
    found = _which(name)
    if found is None:
        pytest.fail(missing_tools_message((name,)) or name, pytrace=False)
    return found
