"""The ``spmp`` command: run the servers, devices and simulators of SPMP, and inspect LwM2M data.

Every subcommand has ``--help``. Exit status: 0 on success, 2 for bad input (an unknown object, a
payload that does not decode, bad options), 1 for an internal error (a bug: rerun with
``--log-level DEBUG`` for the traceback).

This package holds the Typer ``app`` (the ``spmp`` entry point), its main callback (``--version``,
``--log-level``, ``--log-format``) and the list of commands; each command group lives in its own
module (``objects``, ``codecs``, ``server``, ``bootstrap``, ``client``, ``bts``, ``charger``, ``demo``,
``scenario``, ``fleet``), with what they share in ``_common``.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from spmp import __version__
from spmp import logging as spmp_logging
from spmp.cli import bootstrap, bts, charger, client, codecs, demo, fleet, objects, scenario, server
from spmp.cli._common import log

app = typer.Typer(
    name="spmp",
    help="SPMP: manage solar-powered telecom sites over LwM2M.\n\n"
    "Servers: `server` (LwM2M management server + REST API), `bootstrap` (bootstrap server; also its "
    "configurations and factory PSKs), `psk` (device PSKs). Devices and simulators: `client`, `charger` "
    "(a solar charger, simulated or read over Modbus), `modbus-sim`, `bts` (a BTS over NETCONF), `fleet` "
    "(many devices, load tests), `demo` (the whole system on loopback), `scenario`. LwM2M data: `objects`, "
    "`decode`, `codecs-demo`. Every command has --help; exit status 0 ok, 2 bad input, 1 internal error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class LogFormat(StrEnum):
    KV = "kv"
    JSON = "json"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"spmp {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            envvar="SPMP_LOG_LEVEL",
            help="Least severe log level to print to stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        ),
    ] = "WARNING",
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", envvar="SPMP_LOG_FORMAT", help="Log lines as key=value pairs or JSON objects."),
    ] = LogFormat.KV,
) -> None:
    """SPMP: manage solar-powered telecom sites over LwM2M.

    Logs go to stderr as structured lines (quiet by default); secrets such as PSKs, keys, tokens
    and passwords are always masked.
    """
    try:
        spmp_logging.configure(log_level, "json" if log_format is LogFormat.JSON else "kv")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from None
    log.debug("cli started", extra={"version": __version__, "argv": spmp_logging.redact_argv(sys.argv[1:])})


# ----------------------------------------------------------------------------------------- commands
# In the order `spmp --help` lists them.

app.command("objects")(objects.objects)
app.command("decode")(codecs.decode)
app.command("codecs-demo")(codecs.codecs_demo)
app.command("server")(server.server)
app.add_typer(server.psk_app, name="psk")
app.add_typer(bootstrap.bootstrap_app, name="bootstrap")
app.command("client")(client.client_command)
app.command("bts")(bts.bts_command)
app.command("charger")(charger.charger_command)
app.command("modbus-sim")(charger.modbus_sim_command)
app.command("demo")(demo.demo)
app.add_typer(scenario.scenario_app, name="scenario")
app.add_typer(fleet.fleet_app, name="fleet")
