"""The Modbus charge-controller source: expressions, register maps, and reads against a real
pymodbus TCP server (the simulator) on a loopback ephemeral port."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spmp.charger.modbus import parse_endpoint
from spmp.charger.modbus.expression import ExpressionError, compile_expression
from spmp.charger.modbus.mapping import (
    DataType,
    MappingError,
    RegisterKind,
    RegisterMap,
    load_builtin_map,
    load_map,
    parse_map,
)
from spmp.charger.modbus.simulator import DEMO_VALUES, ChargerSimulator
from spmp.charger.modbus.source import (
    ControllerTimeoutError,
    ControllerUnreachableError,
    ModbusExceptionError,
    ModbusSource,
    QuantityError,
)

TRISTAR = load_builtin_map()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def source_for(sim: ChargerSimulator, mapping: RegisterMap | None = None, **options: float) -> ModbusSource:
    options = {"timeout": 1.0, "backoff_initial": 0.02, "backoff_max": 0.1, **options}
    return ModbusSource(sim.host, sim.port, sim.unit_id, mapping or sim.mapping, **options)


# --- expressions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("raw * v_pu * 2**-15", 9520 * 180 * 2**-15),
        ("-2**2", -4.0),
        ("2**3**2", 512.0),
        ("(raw - 32768) / 10", -2324.8),
        ("0x10 + .5 + 1e1", 26.5),
        ("+raw", 9520.0),
        ("raw--1", 9521.0),
    ],
)
def test_expression_evaluates_arithmetic(text: str, expected: float) -> None:
    value = compile_expression(text, ["raw", "v_pu"]).evaluate({"raw": 9520, "v_pu": 180})
    assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("raw ^ 2", "unexpected character '^'"),
        ("__import__(raw)", "unknown name '__import__'"),
        ("raw.real", "unexpected"),
        ("v_pu * 2", "unknown name 'v_pu'"),
        ("(raw", "missing ')'"),
        ("raw +", "found end of expression"),
        ("1e999", "out of range"),
        ("raw" + "+raw" * 80, "longer than"),
        ("(" * 40 + "1" + ")" * 40, "deeper than"),
        ("-" * 40 + "1", "deeper than"),
        ("[1]", "unexpected character '['"),
    ],
)
def test_expression_rejects(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        compile_expression(text, ["raw"])


@pytest.mark.parametrize(
    ("text", "message"),
    [("1 / raw", "division by zero"), ("(raw - 1) ** 0.5", "math domain"), ("10 ** (raw + 400)", "range")],
)
def test_expression_arithmetic_failures_raise_expression_error(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        compile_expression(text, ["raw"]).evaluate({"raw": 0})


_EXPRESSION_ALPHABET = st.sampled_from([*"0123456789.eExX+-*/() _", "raw", "**", "v_pu", "a", "\t", "\u00a0", "٣"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_EXPRESSION_ALPHABET, max_size=40).map("".join)))
def test_expression_random_text_raises_only_expression_error(text: str) -> None:
    try:
        expression = compile_expression(text, ["raw", "v_pu"])
    except ExpressionError:
        return
    assert expression.names <= {"raw", "v_pu"}
    try:
        value = expression.evaluate({"raw": 3.0, "v_pu": 0.0})
    except ExpressionError:
        return
    assert math.isfinite(value)


# --- data types and maps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_type", "raw"),
    [
        (DataType.U16, 65535),
        (DataType.S16, -2),
        (DataType.U32, 0x12345678),
        (DataType.S32, -70000),
        (DataType.F16, 1.5),
        (DataType.F32, -3.25),
    ],
)
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_data_types_round_trip(data_type: DataType, raw: float, word_order: str) -> None:
    words = data_type.to_words(raw, word_order)
    assert len(words) == data_type.words
    assert data_type.from_words(words, word_order) == raw


def test_word_order_puts_the_high_word_first_when_big() -> None:
    assert DataType.U32.to_words(0x12345678, "big") == [0x1234, 0x5678]
    assert DataType.U32.to_words(0x12345678, "little") == [0x5678, 0x1234]
    with pytest.raises(ValueError, match="does not fit u16"):
        DataType.U16.to_words(70000)


def test_tristar_map_reads_in_one_block() -> None:
    assert TRISTAR.name == "Morningstar TriStar MPPT"
    (block,) = TRISTAR.blocks()
    assert (block.kind, block.start, block.count) == (RegisterKind.HOLDING, 0, 0x3C)
    assert {m.quantity for m in TRISTAR.measurements} >= {
        "battery_voltage", "array_voltage", "battery_current", "heatsink_temperature", "charge_state", "output_power"
    }  # fmt: skip
    assert TRISTAR.measurement("charge_state").states == dict(enumerate(
        ["START", "NIGHT_CHECK", "DISCONNECT", "NIGHT", "FAULT", "MPPT", "ABSORPTION", "FLOAT", "EQUALIZE", "SLAVE"]
    ))  # fmt: skip


def test_blocks_group_contiguous_registers_only_without_gap_allowance() -> None:
    strict = dataclasses.replace(TRISTAR, max_gap=0)
    spans = [(b.start, b.count) for b in strict.blocks()]
    assert spans == [(0x00, 4), (0x18, 1), (0x1B, 3), (0x23, 1), (0x25, 1), (0x32, 2), (0x3A, 2)]
    assert strict.blocks()[2].items == ("adc_va_f", "adc_ib_f_shadow", "adc_ia_f_shadow")
    capped = dataclasses.replace(TRISTAR, max_registers=0x20)
    assert [(b.start, b.count) for b in capped.blocks()] == [(0x00, 0x1E), (0x23, 0x19)]


MINIMAL = """
[scalings]
v_pu = { hi = 0, lo = 1 }
[constants]
k = 2
[measurements.vb]
quantity = "battery_voltage"
address = 0x18
type = "s16"
scale = "raw * v_pu * 2**-15"
unit = "V"
"""


def _broken(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (_broken('"raw * v_pu * 2**-15"', '"raw * v_pu *"'), "measurements.vb.scale", "found end of expression"),
        (_broken('"raw * v_pu * 2**-15"', '"raw * i_pu"'), "measurements.vb.scale", "unknown name 'i_pu'"),
        (_broken('"raw * v_pu * 2**-15"', "\"__import__('os')\""), "measurements.vb.scale", "unexpected character"),
        (_broken('"battery_voltage"', '"flux_capacitance"'), "measurements.vb.quantity", "unknown quantity"),
        (_broken('"s16"', '"s17"'), "measurements.vb.type", "must be one of u16, s16"),
        (_broken('unit = "V"', 'unit = "mV"'), "measurements.vb.unit", "battery_voltage is in 'V'"),
        (_broken("address = 0x18", "address = -1"), "measurements.vb.address", "integer from 0"),
        (_broken("address = 0x18", 'address = "24"'), "measurements.vb.address", "integer"),
        (
            _broken("address = 0x18", "address = 1"),
            "measurements.vb",
            "register 0x0001 is already used by scalings.v_pu",
        ),
        (_broken('unit = "V"', 'unit = "V"\nkind = "coil"'), "measurements.vb.kind", "holding, input"),
        (_broken('unit = "V"', 'unit = "V"\nscael = "raw"'), "measurements.vb.scael", "unknown key"),
        (_broken("{ hi = 0, lo = 1 }", "{ hi = 0 }"), "scalings.v_pu", "both 'hi' and 'lo'"),
        (_broken("k = 2", "k = true"), "constants.k", "finite number"),
        (_broken("k = 2", "raw = 2"), "constants.raw", "other than 'raw'"),
        (_broken("k = 2", "v_pu = 2"), "scalings.v_pu", "a constant has the same name"),
        (
            MINIMAL + "\n[measurements.other]\nquantity = 'battery_voltage'\naddress = 2\nscale = 'raw'\nunit = 'V'\n",
            "measurements.other.quantity",
            "already fed by measurements.vb",
        ),
        (
            MINIMAL + "\n[measurements.cs]\nquantity = 'charge_state'\naddress = 3\nscale = 'raw'\n",
            "measurements.cs",
            "enumeration",
        ),
        (
            MINIMAL + "\n[measurements.cs]\nquantity = 'charge_state'\naddress = 3\nstates = { x = 'A' }\n",
            "measurements.cs.states.x",
            "register values",
        ),
        (MINIMAL + "\n[device]\nword_order = 'middle'\n", "device.word_order", "'big'"),
        (MINIMAL + "\n[device]\nmax_registers = 500\n", "device.max_registers", "from 2 to 125"),
        ("[scalings]\n", "measurements", "is required"),
        ("[measurements\n", "", "not valid TOML"),
    ],
)
def test_map_validation_names_file_and_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(text)
    with pytest.raises(MappingError, match=re.escape(message)) as caught:
        load_map(path)
    assert str(caught.value).startswith(f"{path}: {key}: " if key else f"{path}: ")
    assert caught.value.key == key


def test_map_validation_of_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read"):
        load_map(tmp_path / "absent.toml")
    with pytest.raises(MappingError, match="no such built-in map"):
        load_builtin_map("absent")


def test_decode_reports_missing_registers_and_failed_arithmetic_separately() -> None:
    mapping = parse_map(MINIMAL)
    decoded = mapping.decode({(RegisterKind.HOLDING, 0x18): 100})
    assert decoded.values == {} and decoded.missing == {"battery_voltage": "scaling v_pu was not read"}
    divide = parse_map(_broken('"raw * v_pu * 2**-15"', '"raw / v_pu"'))
    decoded = divide.decode({(RegisterKind.HOLDING, a): 0 for a in (0, 1, 0x18)})
    assert decoded.failures == {"battery_voltage": "vb: scale 'raw / v_pu': division by zero"}


# --- against a pymodbus server -------------------------------------------------------------------


def test_values_round_trip_within_the_scaling_resolution() -> None:
    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim) as source:
            sim.update(DEMO_VALUES)
            sim.set("battery_voltage", 52.3)
            sim.set("battery_current", -12.5)
            reading = await source.read()
        assert reading.ok, reading.errors
        v_step, i_step = 180 * 2**-15, 80 * 2**-15
        assert reading.value("battery_voltage") == pytest.approx(52.3, abs=v_step / 2)
        assert reading.value("battery_current") == pytest.approx(-12.5, abs=i_step / 2)
        assert reading.value("heatsink_temperature") == 41.0
        assert reading.value("output_power") == pytest.approx(1212.0, abs=180 * 80 * 2**-17)
        assert reading.quantities["battery_voltage"].unit == "V"
        assert reading.quantities["battery_voltage"].register == "adc_vb_f_med"
        assert reading.quantities["heatsink_temperature"].unit == "Cel"
        assert reading.charge_state == "ABSORPTION"
        assert reading.endpoint == sim.endpoint
        assert reading.timestamp.tzinfo is not None

    run(body)


def test_every_charge_state_name_and_an_unknown_one() -> None:
    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim) as source:
            for name in TRISTAR.measurement("charge_state").states.values():  # type: ignore[union-attr]
                sim.set("charge_state", name)
                assert (await source.read()).charge_state == name
            sim.set_word(RegisterKind.HOLDING, 0x32, 42)
            assert (await source.read()).charge_state == "UNKNOWN(42)"

    run(body)


def test_scaling_registers_are_read_and_respected() -> None:
    async def body() -> None:
        async with ChargerSimulator(scalings={"v_pu": 96.667}) as sim, source_for(sim) as source:
            sim.set("battery_voltage", 52.3)
            reading = await source.read()
            assert reading.value("battery_voltage") == pytest.approx(52.3, abs=96.667 * 2**-15)
            # Same raw words, twice the scaling: a controller with another rating reads twice the volts.
            sim.set_scaling("v_pu", 2 * 96.667)
            doubled = (await source.read()).value("battery_voltage")
            assert doubled == pytest.approx(2 * reading.value("battery_voltage"), rel=1e-4)  # type: ignore[operator]

    run(body)


def test_one_request_per_block() -> None:
    async def body() -> None:
        async with ChargerSimulator() as sim:
            async with source_for(sim) as source:
                await source.read()
                await source.read()
            assert source.requests == 2 and [(r.address, r.count) for r in sim.requests] == [(0, 0x3C)] * 2
            sim.requests.clear()
            strict = dataclasses.replace(TRISTAR, max_gap=0)
            async with source_for(sim, strict) as source:
                assert (await source.read()).ok
            assert source.requests == 7
            assert [(r.address, r.count) for r in sim.requests] == [(b.start, b.count) for b in strict.blocks()]

    run(body)


def test_concurrent_reads_share_one_connection() -> None:
    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim) as source:
            sim.update(DEMO_VALUES)
            readings = await asyncio.gather(*(source.read() for _ in range(5)))
        assert all(r.ok and r.charge_state == "ABSORPTION" for r in readings)
        assert source.requests == 5 and len(sim.requests) == 5

    run(body)


def test_illegal_address_costs_only_its_block() -> None:
    extended = parse_map(
        (Path(__file__).parents[1] / "src/spmp/charger/modbus/maps/tristar_mppt.toml").read_text()
        + '\n[measurements.not_there]\nquantity = "load_current"\naddress = 0x0100\nscale = "raw"\nunit = "A"\n',
        "extended.toml",
    )

    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim, extended) as source:
            sim.update(DEMO_VALUES)
            reading = await source.read()
        (error,) = reading.errors
        assert isinstance(error, ModbusExceptionError) and error.code == 2
        assert str(error) == (
            f"{sim.endpoint}: unit 1: Modbus exception 2 (Illegal Data Address) reading holding registers"
            " 0x0100-0x0100 (not_there)"
        )
        assert "load_current" not in reading.quantities
        assert reading.value("battery_voltage") == pytest.approx(56.4, abs=0.01)

    run(body)


def test_device_failure_exception_and_decode_failure_do_not_raise() -> None:
    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim, dataclasses.replace(TRISTAR, max_gap=0)) as source:
            sim.update(DEMO_VALUES)
            sim.fail(0x23, code=4)
            reading = await source.read()
            assert [type(e) for e in reading.errors] == [ModbusExceptionError]
            assert "Modbus exception 4 (Server Device Failure)" in str(reading.errors[0])
            assert "heatsink_temperature" not in reading.quantities and "battery_voltage" in reading.quantities
            sim.clear_failures()
            sim.set_scaling("v_pu", 1e-5)  # rounds to 0: the controller's scaling is broken

        divide = parse_map(_broken('"raw * v_pu * 2**-15"', '"raw / v_pu"'), "divide.toml")
        async with ChargerSimulator(divide) as sim, source_for(sim) as source:
            sim.set_scaling("v_pu", 0.0)
            reading = await source.read()
            (error,) = reading.errors
            assert isinstance(error, QuantityError) and "division by zero" in str(error)

    run(body)


def test_unreachable_controller_then_reconnect_when_it_comes_back() -> None:
    async def body() -> None:
        port = free_port()
        sim = ChargerSimulator(port=port)
        sim.update(DEMO_VALUES)
        try:
            await _unreachable_then_back(sim, port)
        finally:
            await sim.stop()

    run(body)


async def _unreachable_then_back(sim: ChargerSimulator, port: int) -> None:
    """Down: errors and backoff; up: readings; restarted under a live connection: errors, then readings."""
    async with ModbusSource("127.0.0.1", port, timeout=1.0, backoff_initial=0.02, backoff_max=0.05) as source:
        with pytest.raises(ControllerUnreachableError, match=rf"^127\.0\.0\.1:{port}: cannot connect"):
            await source.read()
        with pytest.raises(ControllerUnreachableError, match="next attempt in"):
            await source.read()  # inside the backoff: no connection attempt at all
        states: list[str] = []
        async for reading in source.poll(0.01):
            if reading.ok:
                assert reading.value("battery_voltage") == pytest.approx(56.4, abs=0.01)
                break
            assert isinstance(reading.errors[0], ControllerUnreachableError) and not reading.quantities
            states.append("down")
            if len(states) == 3:
                await sim.start()
        # Errors may go on for a tick or two after the restart: the source waits out its backoff.
        assert len(states) >= 3 and source.connected
        # The controller restarts under a live connection: errors, then readings again.
        await sim.stop()
        await asyncio.sleep(0.05)
        with pytest.raises(ControllerUnreachableError, match=str(port)):
            await source.read()
        await sim.start()
        await asyncio.sleep(0.1)  # past the backoff
        assert (await source.read()).ok


def test_timeout_names_endpoint_and_registers_then_recovers() -> None:
    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim, timeout=0.2) as source:
            sim.update(DEMO_VALUES)
            sim.delay = 0.5
            with pytest.raises(ControllerTimeoutError) as caught:
                await source.read()
            assert str(caught.value).startswith(
                f"{sim.endpoint}: unit 1: no answer within 0.2 s reading holding registers"
            )
            assert "0x0000-0x003B" in str(caught.value)
            sim.delay = 0.0
            reading = await source.read()
            assert reading.ok and reading.charge_state == "ABSORPTION"

    run(body)


def test_input_registers_32_bit_types_and_little_word_order() -> None:
    mapping = parse_map(
        """
        [device]
        word_order = "little"
        [constants]
        kilo = 1000
        [scalings]
        gain = { address = 10, type = "f32", kind = "input", typical = 0.5 }
        [measurements.energy]
        quantity = "charge_energy"
        kind = "input"
        address = 0
        type = "u32"
        scale = "raw * kilo"
        unit = "Wh"
        [measurements.power]
        quantity = "output_power"
        kind = "input"
        address = 2
        type = "f32"
        scale = "raw"
        unit = "W"
        [measurements.current]
        quantity = "load_current"
        kind = "holding"
        address = 0
        type = "s32"
        scale = "raw * gain"
        unit = "A"
        """,
        "generic.toml",
    )
    assert [(b.kind, b.start, b.count) for b in mapping.blocks()] == [
        (RegisterKind.HOLDING, 0, 2), (RegisterKind.INPUT, 0, 4), (RegisterKind.INPUT, 10, 2)
    ]  # fmt: skip

    async def body() -> None:
        async with ChargerSimulator(mapping) as sim, source_for(sim) as source:
            sim.update({"charge_energy": 123_456_000, "output_power": 812.25, "load_current": -3.5})
            reading = await source.read()
        assert reading.ok, reading.errors
        assert reading.value("charge_energy") == 123_456_000
        assert reading.value("output_power") == 812.25
        assert reading.value("load_current") == -3.5
        assert reading.charge_state is None

    run(body)


def test_simulator_refuses_values_it_cannot_encode() -> None:
    sim = ChargerSimulator()
    with pytest.raises(ValueError, match="does not fit s16"):
        sim.set("battery_voltage", 500.0)
    with pytest.raises(ValueError, match="unknown state 'BOOST'"):
        sim.set("charge_state", "BOOST")
    nonlinear = parse_map(_broken('"raw * v_pu * 2**-15"', '"raw * raw * v_pu"'))
    with pytest.raises(ValueError, match="not linear in raw"):
        ChargerSimulator(nonlinear, scalings={"v_pu": 1.0}).set("battery_voltage", 50.0)


def test_simulator_fronts_the_physics_model() -> None:
    from datetime import UTC, datetime

    from spmp.charger import Site

    site = Site.default_48v(0, 0, 1, start=datetime(2024, 3, 20, 12, tzinfo=UTC))
    site.step(600)
    snapshot = site.snapshot()

    async def body() -> None:
        async with ChargerSimulator() as sim, source_for(sim) as source:
            sim.serve_snapshot(snapshot)
            reading = await source.read()
        assert reading.ok, reading.errors
        assert reading.value("battery_voltage") == pytest.approx(snapshot.battery_voltage_v, abs=0.01)
        assert reading.value("battery_current") == pytest.approx(snapshot.battery_current_a, abs=0.01)
        assert reading.value("input_power") == pytest.approx(snapshot.pv_power_w, abs=0.11)
        assert reading.charge_state == snapshot.charge_state.name

    run(body)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5:5020", ("10.0.0.5", 5020)),
        ("tristar.site-7", ("tristar.site-7", 502)),
        ("[::1]:1502", ("::1", 1502)),
        ("::1", ("::1", 502)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", [":502", "host:", "host:0", "host:70000", "host:x", "[::1]x"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_endpoint(text)
