"""The ``spmp`` command on plain user mistakes and secrets: one red line and exit 2, never a
traceback; secrets on the command line never reach a log line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from spmp.cli import app
from spmp.logging import REDACTED, redact_argv

PSK_HEX = "5ec12e7b5ec12e7b"
TOKEN = "tok-9f8e7d6c5b4a"
PASSWORD = "pa55-w0rd-xyz"


def spmp(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``spmp`` executable (so that ``sys.argv`` is what the user typed)."""
    executable = Path(sys.executable).with_name("spmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPMP_")}
    return subprocess.run(
        [str(executable), *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit status 2, a one-line readable message on stderr, no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:"), result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------- secrets in argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["psk", "add", "--key", "00aa"], ["psk", "add", "--key", REDACTED]),
        (["--psk-key=00aa", "--psk-identity", "id"], [f"--psk-key={REDACTED}", "--psk-identity", "id"]),
        (["--api-token", "t", "--password=p"], ["--api-token", REDACTED, f"--password={REDACTED}"]),
        (["--bts-password", "p", "--secret", "s"], ["--bts-password", REDACTED, "--secret", REDACTED]),
        (["--key-file", "k.hex", "--psk-key-file", "-"], ["--key-file", "k.hex", "--psk-key-file", "-"]),
        (["--store", "postgresql://u:pw@db:5432/spmp"], ["--store", f"postgresql://u:{REDACTED}@db:5432/spmp"]),
        (["--authorized-keys", "a", "--endpoint", "e"], ["--authorized-keys", "a", "--endpoint", "e"]),
    ],
)
def test_redact_argv_masks_the_values_of_secret_options(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_debug_log_of_the_command_line_masks_keys_tokens_and_passwords(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    added = spmp("--log-level", "DEBUG", "psk", "add", "--endpoint", "e1", "--identity", "i1", "--key", PSK_HEX,
                 "--data", data)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "cli started" in added.stderr and "psk" in added.stderr
    # --opt=VALUE forms too; --data makes the server stop at once, after the log line.
    served = spmp("--log-level", "DEBUG", "server", f"--api-token={TOKEN}", "--password", PASSWORD,
                  f"--bts-password={PASSWORD}", "--data", "/proc/forbidden")  # fmt: skip
    charger = spmp("--log-level", "DEBUG", "--log-format", "json", "charger", "--server", "coaps://127.0.0.1:9",
                   f"--psk-key={PSK_HEX}", "--psk-identity", "i1", "--modbus", "nonsense")  # fmt: skip
    for done in (added, served, charger):
        text = done.stdout + done.stderr
        assert "cli started" in text
        assert PSK_HEX not in text and TOKEN not in text and PASSWORD not in text
        assert "Traceback" not in text
    assert "i1" in charger.stderr  # identities are not secret


# ------------------------------------------------------------------------------- data directories


@pytest.mark.parametrize(
    "command",
    [
        ["psk", "list"],
        ["psk", "add", "--endpoint", "e", "--identity", "i", "--key", "00"],
        ["bootstrap"],
        ["bootstrap", "psk", "list"],
        ["bootstrap", "config", "list"],
        ["fleet", "provision", "--devices", "1"],
        ["server"],
        ["demo"],
    ],
)
def test_an_unusable_data_directory_is_a_clean_error(cli_runner: CliRunner, command: list[str]) -> None:
    result = cli_runner.invoke(app, [*command, "--data", "/proc/forbidden"])
    assert_clean_error(result, "/proc/forbidden")


def test_a_data_directory_whose_database_cannot_open_is_a_clean_error(cli_runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "spmp.db").mkdir()
    for command in (["psk", "list"], ["bootstrap", "psk", "list"]):
        assert_clean_error(cli_runner.invoke(app, [*command, "--data", str(tmp_path)]), "spmp.db")


# ------------------------------------------------------------------------------ other user mistakes


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (["bootstrap", "config", "set", "--endpoint", "e", "--server", "nonsense"], "only coap:// and coaps://"),
        (["bootstrap", "config", "set", "--endpoint", "e", "--server", "coaps://"], "no host"),
        (["client", "--endpoint", "e", "--server", "http://x"], "only coap:// and coaps://"),
        (
            ["charger", "--server", "coaps://h:5684", "--psk-identity", "i", "--psk-key", "00", "--bts", "x"],
            "HOST:PORT",
        ),
        (["fleet", "--devices", "1", "--server", "nonsense"], "nonsense"),
        (["decode", "--format", "tlv", "--path", "/3/0", "@/nonexistent/payload"], "/nonexistent/payload"),
        (["scenario", "poor-sun", "--days", "0.1", "--write", "/nonexistent/dir/x.md"], "/nonexistent/dir/x.md"),
    ],
)
def test_plain_user_mistakes_are_one_red_line(
    cli_runner: CliRunner, tmp_path: Path, command: list[str], fragment: str
) -> None:
    extra = ["--data", str(tmp_path)] if command[0] == "bootstrap" else []
    assert_clean_error(cli_runner.invoke(app, [*command, *extra]), fragment)


@pytest.mark.parametrize(
    "command",
    [
        ["server", "--coaps-port", "99999"],
        ["server", "--api-port", "-1"],
        ["bootstrap", "--coap-port", "70000"],
        ["bts", "--port", "99999"],
        ["demo", "--api-port", "65536"],
        ["modbus-sim", "--port", "65536"],
    ],
)
def test_out_of_range_ports_are_usage_errors(cli_runner: CliRunner, tmp_path: Path, command: list[str]) -> None:
    extra = [] if command[0] == "modbus-sim" else ["--data", str(tmp_path)]
    result = cli_runner.invoke(app, [*command, *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and command[1] in result.output


def test_top_level_help_describes_the_command_set(cli_runner: CliRunner) -> None:
    text = cli_runner.invoke(app, ["--help"]).stdout
    assert "object models, payloads, demo" not in text
    for command in ("server", "bootstrap", "client", "charger", "bts", "demo", "fleet", "scenario", "psk"):
        assert f"`{command}`" in text
    client_help = cli_runner.invoke(app, ["client", "--help"]).stdout
    assert "coaps://host:5684" in client_help
