"""Shared pytest fixtures. Keep this small: fixtures used by one test module live in that module."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from _peers import MARKER, missing_tools_message
from pg_server import PgServer, PgUnavailableError

# Property tests assert behaviour, never speed: no per-example deadline, and no "too slow" health check
# (the shared 2-core machines run them under load). CI replays the same examples every run so that a
# landing never depends on the draw; runs elsewhere keep exploring new ones.
settings.register_profile("spmp", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("spmp"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "spmp")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*programs): the test runs these programs; missing ones fail it")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A test marked ``needs_tools`` (tests/_peers.py) fails, never skips, when a program is missing."""
    for mark in item.iter_markers(MARKER):
        message = missing_tools_message(tuple(mark.args))
        if message is not None:
            pytest.fail(message, pytrace=False)


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole session, started on first use (see tests/pg_server.py)."""
    try:
        server = PgServer.start()
    except PgUnavailableError as exc:
        pytest.fail(f"cannot start a PostgreSQL server for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL server, dropped after the test."""
    name = pg_server.create_database()
    yield pg_server.dsn(name)
    pg_server.drop_database(name)
