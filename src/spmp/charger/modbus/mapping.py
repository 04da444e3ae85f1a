"""Declarative Modbus register maps: which registers a charge controller has and what they mean.

A map is a TOML file (see docs/modbus.md), so supporting another controller means writing a file,
not code. Loading validates everything up front and names the file and the key in every error:
a map that loads can always be planned into block reads and decoded. The shipped maps live in
``maps/`` beside this module; `load_builtin_map` opens them by name.

The map is pure data and pure functions (no I/O beyond reading the file): `RegisterMap.blocks`
plans the reads, `RegisterMap.decode` turns register words into engineering values, and the
``encode`` methods do the reverse for the simulator.
"""

from __future__ import annotations

import math
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from spmp.charger.modbus.expression import Expression, ExpressionError, compile_expression

__all__ = [
    "QUANTITIES",
    "Block",
    "DataType",
    "Decoded",
    "MappingError",
    "Measurement",
    "RegisterKind",
    "RegisterMap",
    "Scaling",
    "load_builtin_map",
    "load_map",
    "parse_map",
]

#: Every quantity a map may feed, with the unit its values must have (None: an enumeration, whose
#: value is a state name). Units are SenML symbols. A map converts to these units in its scale
#: expression, so everything downstream of the source can rely on them.
QUANTITIES: Mapping[str, str | None] = {
    "battery_voltage": "V",
    "array_voltage": "V",
    "load_voltage": "V",
    "target_voltage": "V",
    "battery_current": "A",
    "array_current": "A",
    "load_current": "A",
    "output_power": "W",
    "input_power": "W",
    "heatsink_temperature": "Cel",
    "battery_temperature": "Cel",
    "ambient_temperature": "Cel",
    "battery_soc": "%",
    "charge_energy": "Wh",
    "charge_state": None,
}

MAX_READ = 125  # registers per Read Holding/Input Registers request (Modbus application protocol, 6.3)


class MappingError(ValueError):
    """A map file is invalid; the message starts with ``<file>: <key>:``."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key


class RegisterKind(StrEnum):
    HOLDING = "holding"
    INPUT = "input"


class DataType(StrEnum):
    # Conversions are to_words/from_words, not encode/decode: those would shadow str's own.
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    F16 = "f16"
    F32 = "f32"

    @property
    def words(self) -> int:
        return 1 if self.value.endswith("16") else 2

    @property
    def is_float(self) -> bool:
        return self.value.startswith("f")

    def from_words(self, words: Sequence[int], word_order: str = "big") -> float:
        """The value of these registers (the first is the high word unless word_order is "little")."""
        ordered = list(words) if word_order == "big" else list(reversed(words))
        value: float = struct.unpack(">" + _STRUCT[self], struct.pack(f">{len(ordered)}H", *ordered))[0]
        return value

    def to_words(self, raw: float, word_order: str = "big") -> list[int]:
        """Register words holding ``raw``; ValueError if it does not fit this type."""
        try:
            packed = struct.pack(">" + _STRUCT[self], raw if self.is_float else int(raw))
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"{raw} does not fit {self.value}") from exc
        words = list(struct.unpack(f">{self.words}H", packed))
        return words if word_order == "big" else list(reversed(words))


_STRUCT = {
    DataType.U16: "H",
    DataType.S16: "h",
    DataType.U32: "I",
    DataType.S32: "i",
    DataType.F16: "e",
    DataType.F32: "f",
}

_E = TypeVar("_E", bound=StrEnum)

Words = Mapping[tuple[RegisterKind, int], int]
"""Register contents by (kind, address), as read from a controller."""


@dataclass(frozen=True, slots=True)
class Scaling:
    """A value read from the controller that scale expressions use, such as TriStar's V_PU.

    Either a 16.16 fixed-point pair (``hi`` is the integer part, ``lo`` the fraction in 1/65536),
    or one plain register of ``type``.
    """

    name: str
    kind: RegisterKind
    address: int
    type: DataType
    lo_address: int | None = None
    typical: float | None = None  # what the simulator serves until told otherwise

    @property
    def addresses(self) -> tuple[int, ...]:
        own = tuple(range(self.address, self.address + self.type.words))
        return own if self.lo_address is None else (*own, self.lo_address)

    def decode(self, words: Words, word_order: str) -> float:
        value = self.type.from_words(
            [words[self.kind, a] for a in range(self.address, self.address + self.type.words)], word_order
        )
        if self.lo_address is not None:
            value += words[self.kind, self.lo_address] / 65536
        return value

    def encode(self, value: float, word_order: str) -> dict[int, int]:
        """Register contents by address that make this scaling read ``value``."""
        if self.lo_address is None:
            raw = value if self.type.is_float else round(value)
            return dict(
                zip(
                    range(self.address, self.address + self.type.words),
                    self.type.to_words(raw, word_order),
                    strict=True,
                )
            )
        whole, fraction = divmod(round(value * 65536), 65536)
        if not 0 <= whole <= 0xFFFF:
            raise ValueError(f"scaling {self.name}: {value} does not fit a 16.16 fixed-point pair")
        return {self.address: whole, self.lo_address: fraction}


@dataclass(frozen=True, slots=True)
class Measurement:
    """One register (or register pair) and the SPMP quantity it feeds."""

    name: str  # the vendor's register name: the key in the map file
    quantity: str
    kind: RegisterKind
    address: int
    type: DataType
    unit: str | None
    scale: Expression | None  # None for an enumeration
    states: Mapping[int, str] | None  # register value -> state name, for an enumeration

    @property
    def addresses(self) -> tuple[int, ...]:
        return tuple(range(self.address, self.address + self.type.words))

    def decode(self, words: Sequence[int], word_order: str, env: Mapping[str, float]) -> float | str:
        """The engineering value (or state name) of these words; ExpressionError if arithmetic fails."""
        raw = self.type.from_words(words, word_order)
        if self.states is not None:
            # A firmware newer than the map may report a state the map does not know: say so, don't fail.
            return self.states.get(int(raw), f"UNKNOWN({int(raw)})")
        assert self.scale is not None
        return self.scale.evaluate({**env, "raw": raw})

    def encode(self, value: float | str, word_order: str, env: Mapping[str, float]) -> list[int]:
        """Register words that decode to ``value`` (within the type's resolution); ValueError if impossible."""
        if self.states is not None:
            by_name = {name: raw for raw, name in self.states.items()}
            if isinstance(value, str):
                if value not in by_name:
                    raise ValueError(f"{self.quantity}: unknown state {value!r} (known: {', '.join(by_name)})")
                return self.type.to_words(by_name[value], word_order)
            return self.type.to_words(value, word_order)
        if isinstance(value, str):
            raise ValueError(f"{self.quantity}: expected a number, got {value!r}")
        assert self.scale is not None
        # Invert the scale expression assuming it is linear in raw (every real map is: raw * factor +
        # offset); check the assumption instead of trusting it.
        scale = self.scale

        def forward(raw: float) -> float:
            return scale.evaluate({**env, "raw": raw})

        offset = forward(0.0)
        slope = forward(1.0) - offset
        if slope == 0:
            raise ValueError(f"{self.quantity}: scale {scale.text!r} does not depend on raw")
        raw = (value - offset) / slope
        if not self.type.is_float:
            raw = round(raw)
        if not math.isclose(forward(raw), value, rel_tol=1e-6, abs_tol=abs(slope)):
            raise ValueError(f"{self.quantity}: scale {scale.text!r} is not linear in raw; cannot encode {value}")
        try:
            return self.type.to_words(raw, word_order)
        except ValueError as exc:
            raise ValueError(
                f"{self.quantity}: {value} {self.unit} needs raw {raw}, which does not fit {self.type}"
            ) from exc


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers of ``kind`` from ``start``, and the map items inside."""

    kind: RegisterKind
    start: int
    count: int
    items: tuple[str, ...]

    @property
    def addresses(self) -> range:
        return range(self.start, self.start + self.count)

    def describe(self) -> str:
        last = self.start + self.count - 1
        return f"{self.kind} registers 0x{self.start:04X}-0x{last:04X} ({', '.join(self.items)})"


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a set of register words means: values by quantity, and why any quantity is absent.

    ``missing`` quantities lacked a register or scaling (the read of it failed, reported there);
    ``failures`` had everything but their arithmetic failed, which is a problem of its own.
    """

    values: dict[str, float | str]
    missing: dict[str, str]
    failures: dict[str, str]


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A validated register map. Build one with `load_map`, `load_builtin_map` or `parse_map`."""

    name: str
    source: str
    word_order: str
    max_gap: int
    max_registers: int
    constants: Mapping[str, float]
    scalings: Mapping[str, Scaling]
    measurements: tuple[Measurement, ...]

    def measurement(self, quantity: str) -> Measurement:
        for measurement in self.measurements:
            if measurement.quantity == quantity:
                return measurement
        raise KeyError(f"{self.source}: no measurement feeds {quantity!r}")

    def items(self) -> list[Scaling | Measurement]:
        """Every scaling and measurement: everything that occupies registers."""
        return [*self.scalings.values(), *self.measurements]

    def used_scalings(self) -> tuple[Scaling, ...]:
        used = set().union(*(m.scale.names for m in self.measurements if m.scale is not None))
        return tuple(s for name, s in self.scalings.items() if name in used)

    def blocks(self) -> tuple[Block, ...]:
        """The fewest reads covering every register the map needs.

        Registers closer than ``max_gap`` unused registers share one read, up to ``max_registers``
        per read: a round trip costs far more than a few extra words, but only where the device
        answers for the gap (a real TriStar does; some controllers raise Illegal Data Address).
        """
        needed: list[Scaling | Measurement] = [*self.used_scalings(), *self.measurements]
        spans = sorted((item.kind, a, item.name) for item in needed for a in item.addresses)
        blocks: list[Block] = []
        for kind, address, name in spans:
            if blocks:
                last = blocks[-1]
                end = last.start + last.count
                if last.kind == kind and address - end <= self.max_gap and address - last.start < self.max_registers:
                    count = max(last.count, address - last.start + 1)
                    items = last.items if name in last.items else (*last.items, name)
                    blocks[-1] = Block(kind, last.start, count, items)
                    continue
            blocks.append(Block(kind, address, 1, (name,)))
        return tuple(blocks)

    def scaling_env(self, words: Words) -> tuple[dict[str, float], dict[str, str]]:
        """Constants and the scalings readable from ``words``; the reason for each one that is not."""
        env = dict(self.constants)
        missing: dict[str, str] = {}
        for scaling in self.used_scalings():
            if all((scaling.kind, a) in words for a in scaling.addresses):
                env[scaling.name] = scaling.decode(words, self.word_order)
            else:
                missing[scaling.name] = f"scaling {scaling.name} was not read"
        return env, missing

    def decode(self, words: Words) -> Decoded:
        """Every quantity whose registers (and scalings) are in ``words``."""
        env, missing = self.scaling_env(words)
        values: dict[str, float | str] = {}
        absent: dict[str, str] = {}
        failures: dict[str, str] = {}
        for m in self.measurements:
            needs = [missing[n] for n in sorted(m.scale.names) if n in missing] if m.scale else []
            if not all((m.kind, a) in words for a in m.addresses):
                absent[m.quantity] = f"register {m.name} was not read"
            elif needs:
                absent[m.quantity] = "; ".join(needs)
            else:
                try:
                    values[m.quantity] = m.decode([words[m.kind, a] for a in m.addresses], self.word_order, env)
                except ExpressionError as exc:
                    failures[m.quantity] = f"{m.name}: scale {m.scale.text if m.scale else ''!r}: {exc}"
        return Decoded(values, absent, failures)


# --- loading and validation -------------------------------------------------------------------

_TOP_KEYS = {"device", "constants", "scalings", "measurements"}
_DEVICE_KEYS = {"name", "word_order", "max_gap", "max_registers"}
_SCALING_KEYS = {"hi", "lo", "address", "type", "kind", "typical"}
_MEASUREMENT_KEYS = {"quantity", "address", "kind", "type", "scale", "unit", "states"}


class _Checker:
    """Typed access to the parsed TOML that raises MappingError naming the file and key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> MappingError:
        return MappingError(self.source, key, message)

    def table(self, value: object, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, not {type(value).__name__}")
        if allowed is not None and (unknown := sorted(set(value) - allowed)):
            raise self.fail(
                f"{key}.{unknown[0]}" if key else unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )
        return value

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        return value

    def integer(self, value: object, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be an integer from {low} to {high}, not {value!r}")
        return value

    def number(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, not {value!r}")
        return float(value)

    def choice(self, value: object, key: str, enum: type[_E]) -> _E:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return enum(value)
        except ValueError:
            raise self.fail(key, f"must be one of {', '.join(e.value for e in enum)}, not {value!r}") from None

    def identifier(self, name: str, key: str) -> str:
        if not name.isidentifier() or not name.isascii() or name == "raw":
            raise self.fail(key, "names used in expressions must be ASCII identifiers other than 'raw'")
        return name


def _scaling(check: _Checker, name: str, spec: object) -> Scaling:
    key = f"scalings.{name}"
    check.identifier(name, key)
    table = check.table(spec, key, _SCALING_KEYS)
    kind = check.choice(table.get("kind", "holding"), f"{key}.kind", RegisterKind)
    typical = check.number(table["typical"], f"{key}.typical") if "typical" in table else None
    if "hi" in table or "lo" in table:
        if "address" in table or "type" in table or not {"hi", "lo"} <= set(table):
            raise check.fail(key, "give either both 'hi' and 'lo' (16.16 fixed point) or 'address' and 'type'")
        hi = check.integer(table["hi"], f"{key}.hi", 0, 0xFFFF)
        lo = check.integer(table["lo"], f"{key}.lo", 0, 0xFFFF)
        return Scaling(name, kind, hi, DataType.U16, lo, typical)
    if "address" not in table:
        raise check.fail(key, "needs 'hi' and 'lo', or 'address'")
    data_type = check.choice(table.get("type", "u16"), f"{key}.type", DataType)
    address = check.integer(table["address"], f"{key}.address", 0, 0x10000 - data_type.words)
    return Scaling(name, kind, address, data_type, None, typical)


def _measurement(check: _Checker, name: str, spec: object, names: set[str]) -> Measurement:
    key = f"measurements.{name}"
    table = check.table(spec, key, _MEASUREMENT_KEYS)
    quantity = check.string(table.get("quantity"), f"{key}.quantity")
    if quantity not in QUANTITIES:
        raise check.fail(f"{key}.quantity", f"unknown quantity {quantity!r} (known: {', '.join(QUANTITIES)})")
    kind = check.choice(table.get("kind", "holding"), f"{key}.kind", RegisterKind)
    data_type = check.choice(table.get("type", "u16"), f"{key}.type", DataType)
    if "address" not in table:
        raise check.fail(f"{key}.address", "is required")
    address = check.integer(table["address"], f"{key}.address", 0, 0x10000 - data_type.words)
    unit = QUANTITIES[quantity]
    if unit is None:
        if "scale" in table or "unit" in table:
            raise check.fail(key, f"{quantity} is an enumeration: give 'states', not 'scale' or 'unit'")
        if data_type.is_float:
            raise check.fail(f"{key}.type", "an enumeration needs an integer type")
        states_table = check.table(table.get("states"), f"{key}.states")
        states: dict[int, str] = {}
        for raw, state in states_table.items():
            if not raw.isdigit() or int(raw) > 0xFFFF:
                raise check.fail(f"{key}.states.{raw}", "state keys must be register values 0-65535")
            states[int(raw)] = check.string(state, f"{key}.states.{raw}")
        if not states:
            raise check.fail(f"{key}.states", "must name at least one state")
        return Measurement(name, quantity, kind, address, data_type, None, None, states)
    if "states" in table:
        raise check.fail(f"{key}.states", f"{quantity} is a number, not an enumeration")
    given_unit = check.string(table.get("unit"), f"{key}.unit")
    if given_unit != unit:
        raise check.fail(f"{key}.unit", f"{quantity} is in {unit!r}, not {given_unit!r} (convert in 'scale')")
    text = check.string(table.get("scale"), f"{key}.scale")
    try:
        scale = compile_expression(text, names | {"raw"})
    except ExpressionError as exc:
        raise check.fail(f"{key}.scale", f"{text!r}: {exc}") from None
    return Measurement(name, quantity, kind, address, data_type, unit, scale, None)


def parse_map(text: str, source: str = "<string>") -> RegisterMap:
    """Parse and validate a map from TOML text; ``source`` names it in errors."""
    check = _Checker(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise check.fail("", f"not valid TOML: {exc}") from None
    check.table(document, "", _TOP_KEYS)
    device = check.table(document.get("device", {}), "device", _DEVICE_KEYS)
    name = check.string(device.get("name", Path(source).stem), "device.name")
    word_order = device.get("word_order", "big")
    if word_order not in ("big", "little"):
        raise check.fail("device.word_order", f"must be 'big' (high word first) or 'little', not {word_order!r}")
    max_gap = check.integer(device.get("max_gap", 0), "device.max_gap", 0, MAX_READ)
    max_registers = check.integer(device.get("max_registers", MAX_READ), "device.max_registers", 2, MAX_READ)

    constants = {
        check.identifier(k, f"constants.{k}"): check.number(v, f"constants.{k}")
        for k, v in check.table(document.get("constants", {}), "constants").items()
    }
    scalings = {k: _scaling(check, k, v) for k, v in check.table(document.get("scalings", {}), "scalings").items()}
    if clash := sorted(set(constants) & set(scalings)):
        raise check.fail(f"scalings.{clash[0]}", "a constant has the same name")

    if "measurements" not in document:
        raise check.fail("measurements", "is required")
    measurements_table = check.table(document["measurements"], "measurements")
    names = set(constants) | set(scalings)
    measurements = tuple(_measurement(check, k, v, names) for k, v in measurements_table.items())
    if not measurements:
        raise check.fail("measurements", "must define at least one measurement")

    # Two items on one register would make the simulator's encoding ambiguous and almost always
    # mean a typo in an address.
    owners: dict[tuple[RegisterKind, int], str] = {}
    fed: dict[str, str] = {}
    for section, items in (("scalings", tuple(scalings.values())), ("measurements", measurements)):
        for item in items:
            key = f"{section}.{item.name}"
            for address in item.addresses:
                if (item.kind, address) in owners:
                    other = owners[item.kind, address]
                    raise check.fail(key, f"{item.kind} register 0x{address:04X} is already used by {other}")
                owners[item.kind, address] = key
            if isinstance(item, Measurement):
                if item.quantity in fed:
                    raise check.fail(f"{key}.quantity", f"{item.quantity} is already fed by {fed[item.quantity]}")
                fed[item.quantity] = key
    return RegisterMap(name, source, word_order, max_gap, max_registers, constants, scalings, measurements)


def load_map(path: str | Path) -> RegisterMap:
    """Load and validate a map file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(str(path), "", f"cannot read: {exc}") from None
    return parse_map(text, str(path))


def load_builtin_map(name: str = "tristar_mppt") -> RegisterMap:
    """Load a map shipped with SPMP (``maps/<name>.toml``), e.g. ``tristar_mppt``."""
    resource = resources.files("spmp.charger.modbus") / "maps" / f"{name}.toml"
    if not resource.is_file():
        raise MappingError(f"maps/{name}.toml", "", "no such built-in map")
    return parse_map(resource.read_text(encoding="utf-8"), f"maps/{name}.toml")
