"""A real charge controller over Modbus TCP, described by a register-map file (docs/modbus.md).

- `mapping`: the TOML register-map format, its validation, block planning and decoding;
- `expression`: the safe arithmetic language of the maps' scale expressions;
- `source`: `ModbusSource`, which reads a controller and yields `ControllerReading`s;
- `simulator`: `ChargerSimulator`, a pymodbus server serving a map, for tests and demos.
"""

from __future__ import annotations

from spmp.charger.modbus.expression import ExpressionError
from spmp.charger.modbus.mapping import (
    QUANTITIES,
    MappingError,
    RegisterKind,
    RegisterMap,
    load_builtin_map,
    load_map,
    parse_map,
)
from spmp.charger.modbus.simulator import DEMO_VALUES, ChargerSimulator
from spmp.charger.modbus.source import (
    ControllerReading,
    ControllerTimeoutError,
    ControllerUnreachableError,
    ModbusExceptionError,
    ModbusSource,
    ModbusSourceError,
    Quantity,
    QuantityError,
)

__all__ = [
    "DEMO_VALUES",
    "QUANTITIES",
    "ChargerSimulator",
    "ControllerReading",
    "ControllerTimeoutError",
    "ControllerUnreachableError",
    "ExpressionError",
    "MappingError",
    "ModbusExceptionError",
    "ModbusSource",
    "ModbusSourceError",
    "Quantity",
    "QuantityError",
    "RegisterKind",
    "RegisterMap",
    "load_builtin_map",
    "load_map",
    "parse_endpoint",
    "parse_map",
]


def parse_endpoint(text: str, default_port: int = 502) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; the port may be omitted) as (host, port); ValueError if malformed."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""  # a name, an IPv4 address or a bare IPv6 address: no port
    if not host:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    if not port and not text.endswith(":"):
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return host, int(port)
