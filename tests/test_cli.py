"""The ``spmp`` command (through Typer's CliRunner, and once as a real process) and its logging setup."""

from __future__ import annotations

import io
import json
import logging
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

import spmp
from spmp import logging as spmp_logging
from spmp.cli import app
from spmp.cli.codecs import DEMO_FORMATS
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.objects.docs import render_markdown

MANUFACTURER = "Open Mobile Alliance"
# TLV of /3/0/0 (Manufacturer) = "Open Mobile Alliance": resource with value, 8-bit id, 8-bit length.
TLV_MANUFACTURER = "C8 00 14 " + MANUFACTURER.encode().hex(" ")


def run(runner: CliRunner, *args: str, stdin: bytes | None = None) -> Result:
    return runner.invoke(app, list(args), input=stdin)


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit status 2, a one-line readable message on stderr, no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------------ version, help


def test_version_prints_the_package_version(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"spmp {spmp.__version__}"


def test_no_arguments_shows_the_commands(cli_runner: CliRunner) -> None:
    result = run(cli_runner)
    for command in ("objects", "decode", "demo"):
        assert command in result.output


@pytest.mark.parametrize("command", [[], ["objects"], ["decode"], ["demo"], ["codecs-demo"], ["charger"]])
def test_every_command_has_help(cli_runner: CliRunner, command: list[str]) -> None:
    result = run(cli_runner, *command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    assert len(result.stdout.splitlines()) > 5


def test_decode_help_lists_every_format(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "decode", "--help")
    for name in ("tlv", "senml-json", "senml-cbor", "lwm2m-json", "lwm2m-cbor", "text", "opaque", "cbor"):
        assert name in result.stdout


def test_unknown_command_is_a_usage_error(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "frobnicate")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_real_executable_runs() -> None:
    executable = Path(sys.executable).with_name("spmp")
    assert executable.exists(), f"{executable} is missing: is SPMP installed in this venv (pip install -e .)?"
    done = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for command in ("objects", "decode", "demo"):
        assert command in done.stdout
    assert done.stderr == ""


# ------------------------------------------------------------------------------------------ objects


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of a rich table (continuation lines of wrapped cells included)."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


def test_objects_lists_every_model_of_the_default_registry(cli_runner: CliRunner) -> None:
    models = list(default_registry())
    assert models, "the default registry is empty"
    result = run(cli_runner, "objects")
    assert result.exit_code == 0, result.output
    assert f"({len(models)})" in result.stdout
    rows = [row for row in table_rows(result.stdout) if row[0]]
    expected = [
        [str(m.id), m.name, m.version, "multiple" if m.multiple else "single", str(len(m.resources))] for m in models
    ]
    assert rows == expected


def test_objects_include_device_and_the_spmp_objects(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "objects")
    listed = {row[0] for row in table_rows(result.stdout)}
    assert {"3", "3316", "26241", "26242", "26243", "26244", "26245", "26246"} <= listed


def test_objects_id_shows_the_resources_of_one_object(cli_runner: CliRunner) -> None:
    model = default_registry().object_model(3316)
    assert model is not None
    result = run(cli_runner, "objects", "--id", "3316")
    assert result.exit_code == 0, result.output
    assert model.name in result.stdout
    for resource in model.resources.values():
        assert str(resource.id) in result.stdout
        assert resource.name in result.stdout
    assert "5700" in result.stdout


def test_objects_unknown_id_is_a_clean_error(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "objects", "--id", "9999")
    assert_clean_error(result, "9999")


def test_objects_markdown_is_the_generated_document(cli_runner: CliRunner) -> None:
    expected = render_markdown(default_registry())
    result = run(cli_runner, "objects", "--markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == expected.rstrip("\n")


# ------------------------------------------------------------------------------------------- decode


def test_decode_tlv_instance(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "decode", "--format", "tlv", "--path", "/3/0", TLV_MANUFACTURER)
    assert result.exit_code == 0, result.output
    assert f"'{MANUFACTURER}'" in result.stdout
    assert "Manufacturer" in result.stdout
    assert "Device" in result.stdout
    assert "23 bytes" in result.stdout


def test_decode_text_resource_with_units(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "decode", "-f", "text", "-p", "/3/0/9", b"87".hex())
    assert result.exit_code == 0, result.output
    assert "9 Battery Level = 87" in result.stdout


def test_decode_senml_json_of_a_sensor(cli_runner: CliRunner) -> None:
    payload = json.dumps([{"bn": "/3316/0/", "n": "5700", "v": 48.25}]).encode()
    result = run(cli_runner, "decode", "--format", "senml-json", "--path", "/3316/0", payload.hex())
    assert result.exit_code == 0, result.output
    assert "5700 Sensor Value = 48.25" in result.stdout


def test_decode_reads_a_file_and_stdin(cli_runner: CliRunner, tmp_path: Path) -> None:
    payload = bytes.fromhex(TLV_MANUFACTURER)
    (tmp_path / "payload.bin").write_bytes(payload)
    from_file = run(cli_runner, "decode", "--format", "tlv", "--path", "/3/0", f"@{tmp_path / 'payload.bin'}")
    from_stdin = run(cli_runner, "decode", "--format", "tlv", "--path", "/3/0", "-", stdin=payload)
    assert from_file.exit_code == 0, from_file.output
    assert from_stdin.exit_code == 0, from_stdin.output
    assert MANUFACTURER in from_file.stdout
    assert from_file.stdout == from_stdin.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "tlv", "--path", "/3/0", "C8 00 zz"], "not hexadecimal"),
        (["--format", "tlv", "--path", "/3/0", "C80"], "not hexadecimal"),
        (["--format", "tlv", "--path", "3/0", TLV_MANUFACTURER], "3/0"),
        (["--format", "tlv", "--path", "/3/x", TLV_MANUFACTURER], "/3/x"),
        (["--format", "tlv", "--path", "/3/0", "C8 00 14 4F 70"], "cannot decode"),
        (["--format", "text", "--path", "/3/0/9", b"eighty".hex()], "cannot decode"),
        (["--format", "tlv", "--path", "/3/0", "@/nonexistent/payload.bin"], "cannot read"),
    ],
)
def test_decode_bad_input_is_a_clean_error(cli_runner: CliRunner, args: list[str], fragment: str) -> None:
    result = run(cli_runner, "decode", *args)
    assert_clean_error(result, fragment)


def test_decode_unknown_format_is_a_usage_error(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "decode", "--format", "xml", "--path", "/3/0", "00")
    assert result.exit_code == 2
    assert "xml" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------------------------- demo


def test_demo_round_trips_the_device_object_in_every_format(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "codecs-demo")
    assert result.exit_code == 0, result.output
    assert "SPMP Demo Solar" in result.stdout
    for fmt in DEMO_FORMATS:
        assert f"- {fmt.value} (content format {int(fmt.content_format)}): " in result.stdout
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"- {fmt.value} "))
        assert "round trip ok" in line, line


# ------------------------------------------------------------------------------------------ logging


def test_log_level_debug_logs_structured_lines_to_stderr(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "--log-level", "debug", "--version")
    assert result.exit_code == 0
    quiet = run(cli_runner, "objects", "--id", "3")
    loud = run(cli_runner, "--log-level", "DEBUG", "objects", "--id", "3")
    assert quiet.stderr == ""
    assert 'level=debug logger=spmp.cli msg="cli started"' in loud.stderr
    assert loud.stdout == quiet.stdout


def test_log_format_json(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "--log-level", "DEBUG", "--log-format", "json", "objects", "--id", "3")
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert any(r["msg"] == "cli started" and r["version"] == spmp.__version__ for r in records)


def test_bad_log_level_is_a_usage_error(cli_runner: CliRunner) -> None:
    result = run(cli_runner, "--log-level", "LOUD", "objects")
    assert result.exit_code == 2
    assert "LOUD" in result.output
    assert "Traceback" not in result.output


def capture(level: str = "DEBUG", fmt: spmp_logging.LogFormat = "kv") -> io.StringIO:
    stream = io.StringIO()
    spmp_logging.configure(level, fmt, stream=stream)
    return stream


@pytest.mark.usefixtures("restore_logging")
def test_configure_is_quiet_by_default_and_idempotent() -> None:
    first = io.StringIO()
    spmp_logging.configure(stream=first)
    stream = capture("WARNING")
    log = logging.getLogger("spmp.test")
    log.info("hidden")
    log.warning("shown", extra={"ep": "charger-1", "lifetime": 300})
    assert first.getvalue() == ""
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "level=warning logger=spmp.test msg=shown ep=charger-1 lifetime=300" in lines[0]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_secret_fields_never_reach_the_log(fmt: spmp_logging.LogFormat) -> None:
    stream = capture(fmt=fmt)
    log = logging.getLogger("spmp.test")
    log.info("bootstrap", extra={"psk": "S3cret-PSK-1", "psk_identity": "charger-7", "dtls": {"key": "S3cret-2"}})
    log.info("credentials %s", {"password": "S3cret-3", "user": "ops"})
    log.info("login token=%s for %s", "S3cret-4", "ops")
    log.info('config {"secret": "S3cret-5", "apiToken": "S3cret-6"}')
    log.info("ok", extra={"config": [{"privateKey": "S3cret-7"}], "keywords": "solar,bts"})
    text = stream.getvalue()
    assert "S3cret" not in text
    assert "charger-7" in text  # an identity is not a secret
    assert "solar,bts" in text  # nor are keywords
    assert text.count(spmp_logging.REDACTED) >= 7


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("psk", True),
        ("dtls_psk", True),
        ("key", True),
        ("privateKey", True),
        ("snmp.auth_password", True),
        ("api-token", True),
        ("client_secret", True),
        ("Authorization", True),
        ("psk_identity", False),
        ("key_id", False),
        ("keywords", False),
        ("ep", False),
        ("lifetime", False),
    ],
)
def test_is_secret_key(name: str, secret: bool) -> None:
    assert spmp_logging.is_secret_key(name) is secret


_VALUE_CHARS = string.ascii_letters + string.digits + "!#$%*+-./:=@^_~"


@given(
    name=st.sampled_from(["psk", "password", "token", "secret", "key", "dtls.psk", "apiKey"]),
    value=st.text(alphabet=_VALUE_CHARS, min_size=1, max_size=40).map(lambda v: "Zq" + v),
    quoted=st.booleans(),
)
def test_secret_values_in_message_text_are_masked(name: str, value: str, quoted: bool) -> None:
    text = f'connect {name}="{value} x" done' if quoted else f"connect {name}={value} done"
    assert "Zq" not in spmp_logging.redact_text(text)
    assert spmp_logging.redact_text(text).startswith(f"connect {name}=")
