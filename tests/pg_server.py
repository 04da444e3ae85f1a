"""A real, throwaway PostgreSQL server for the tests (``initdb`` + ``pg_ctl``, Debian package ``postgresql``).

One server per test session (the ``pg_server`` fixture in conftest.py), in a temporary directory, on a
free loopback port, its unix sockets in that directory, durability off (fsync, synchronous_commit) for
speed. PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` user (``runuser``) in a directory owned by it. TCP connections use a password
(scram-sha-256), so the tests can also check a wrong one. Each test gets its own database.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import asyncpg

SETUP_HINT = "run `make setup` (it installs the Debian package postgresql listed in scripts/debian-packages.txt)"
SUPERUSER = "spmp_test"
SERVER_USER = "postgres"  # who runs the server when the tests run as root


class PgUnavailableError(RuntimeError):
    """No PostgreSQL server could be started; the message says why and what to do."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl (``SPMP_PG_BIN`` overrides)."""
    candidates = [Path(os.environ["SPMP_PG_BIN"])] if os.environ.get("SPMP_PG_BIN") else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(root.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0, reverse=True)
        candidates += [v / "bin" for v in versions]
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    raise PgUnavailableError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin: {SETUP_HINT}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A running test server; ``dsn(database)`` connects to it over TCP with the superuser's password."""

    def __init__(self, bin_dir: Path, base: Path, port: int, password: str, as_user: str | None) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data = base / "data"
        self.port = port
        self.user = SUPERUSER
        self.password = password
        self.as_user = as_user
        self._names = itertools.count(1)

    # ----------------------------------------------------------------------------------- lifecycle

    @classmethod
    def start(cls) -> PgServer:
        bin_dir = find_bin_dir()
        as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PgUnavailableError(
                    f"running as root, and PostgreSQL refuses root, but there is no {SERVER_USER!r} user to run it "
                    f"as: {SETUP_HINT}"
                ) from None
            if shutil.which("runuser") is None:
                raise PgUnavailableError("running as root and `runuser` (util-linux) is missing: install util-linux")
            as_user = SERVER_USER
        base = Path(tempfile.mkdtemp(prefix="spmp-pg-"))
        try:
            password = secrets.token_urlsafe(16)
            (base / "pwfile").write_text(password + "\n")
            (base / "sock").mkdir()
            if as_user is not None:
                info = pwd.getpwnam(as_user)
                for path in (base, base / "pwfile", base / "sock"):
                    os.chown(path, info.pw_uid, info.pw_gid)
            server = cls(bin_dir, base, 0, password, as_user)
            server._run(
                "initdb", "-D", str(server.data), "-U", SUPERUSER, f"--pwfile={base / 'pwfile'}", "-E", "UTF8",
                "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
            )  # fmt: skip
            for attempt in range(3):  # another process may take the free port before the server binds it
                server.port = free_port()
                try:
                    server._pg_ctl_start()
                    break
                except PgUnavailableError:
                    if attempt == 2:
                        raise
            return server
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise

    def _pg_ctl_start(self) -> None:
        options = " ".join(
            f"-c {o}"
            for o in (
                f"port={self.port}",
                "listen_addresses=127.0.0.1",
                f"unix_socket_directories={self.base / 'sock'}",
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
                "max_connections=200",
            )
        )
        log = self.base / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command: Sequence[str] = [str(self.bin_dir / program), *args]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.base, check=False)
        if done.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PgUnavailableError(
                f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{tail}"
            )

    # ----------------------------------------------------------------------------------- databases

    def dsn(self, database: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{self.user}:{pw}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> None:
        """Run statements as the superuser on the ``postgres`` database."""

        async def body() -> None:
            conn = await asyncpg.connect(self.dsn("postgres"))
            try:
                for sql in statements:
                    await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(body())

    def create_database(self) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
