"""Shared pytest fixtures. Keep this small: fixtures used by one test module live in that module."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo what ``spmp.logging.configure`` (run by every ``spmp`` command) did to the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture
def cli_runner(restore_logging: None) -> CliRunner:
    """A Typer CliRunner with a wide, colourless terminal, so that rich output is not wrapped."""
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "SPMP_LOG_LEVEL": None})
