"""A simulated charge controller: a pymodbus TCP server serving a register map.

Values are set in engineering units (``sim.set("battery_voltage", 52.3)``) and stored as the
register words the map says a real controller would hold: the map's decoding, run in reverse, with
the scaling registers the simulator currently serves. So the source under test decodes real wire
data, and a change of scaling (``sim.set_scaling("v_pu", 96.0)``) changes what the same raw words
mean, as on a real device.

The served address range runs from 0 to the highest register the map uses, every register
readable (as on a TriStar); registers the map doesn't name read 0. Tests can also make registers
answer with a Modbus exception (`fail`), delay answers (`delay`), and see every read request
(`requests`). `serve_snapshot` serves the physics model's values (`spmp.charger.site`), which is
what a ``--modbus-sim`` demo wants: the simulated site, seen through a real Modbus stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from spmp.charger.modbus.mapping import RegisterKind, RegisterMap, load_builtin_map
from spmp.charger.site import SiteSnapshot

__all__ = ["DEMO_VALUES", "ChargerSimulator", "ReadRequest", "snapshot_values"]

#: A 48 V site at midday, absorbing: fixed values for a demo or a test that needs plausible numbers.
DEMO_VALUES: Mapping[str, float | str] = {
    "battery_voltage": 56.4,
    "array_voltage": 88.2,
    "battery_current": 21.5,
    "array_current": 14.1,
    "heatsink_temperature": 41.0,
    "battery_temperature": 27.0,
    "charge_state": "ABSORPTION",
    "target_voltage": 57.6,
    "output_power": 1212.0,
    "input_power": 1243.0,
}

_READ_KIND = {3: RegisterKind.HOLDING, 4: RegisterKind.INPUT}


def snapshot_values(snapshot: SiteSnapshot) -> dict[str, float | str]:
    """The simulated site's measurements as map quantities: lets the simulator front the physics model."""
    values: dict[str, float | str] = {
        "battery_voltage": snapshot.battery_voltage_v,
        "battery_current": snapshot.battery_current_a,
        "battery_temperature": snapshot.battery_temperature_c,
        "array_voltage": snapshot.pv_voltage_v,
        "array_current": snapshot.pv_current_a,
        "input_power": snapshot.pv_power_w,
        "output_power": snapshot.charger_output_w,
        "heatsink_temperature": snapshot.heatsink_c,
        "ambient_temperature": snapshot.ambient_c,
        "battery_soc": 100 * snapshot.soc,
        "charge_state": snapshot.charge_state.name,
    }
    if snapshot.target_voltage_v is not None:
        values["target_voltage"] = snapshot.target_voltage_v
    return values


@dataclass(frozen=True, slots=True)
class ReadRequest:
    kind: RegisterKind
    address: int
    count: int


class ChargerSimulator:
    """Serve ``mapping`` (default: the TriStar MPPT map) on ``host:port`` (port 0: any free port)."""

    def __init__(
        self,
        mapping: RegisterMap | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_id: int = 1,
        scalings: Mapping[str, float] | None = None,
    ) -> None:
        self.mapping = mapping if mapping is not None else load_builtin_map()
        self.host = host
        self.unit_id = unit_id
        self.delay = 0.0  # seconds each answer waits, to provoke timeouts
        self.requests: list[ReadRequest] = []
        self._port = port
        self._words: dict[RegisterKind, dict[int, int]] = {kind: {} for kind in RegisterKind}
        self._failures: dict[tuple[RegisterKind, int], int] = {}
        self._server: ModbusTcpServer | None = None
        for name, scaling in self.mapping.scalings.items():
            given = (scalings or {}).get(name)
            self.set_scaling(name, given if given is not None else scaling.typical or 1.0)

    # --- values -------------------------------------------------------------------------------

    def set_scaling(self, name: str, value: float) -> None:
        """Serve scaling ``name`` (e.g. ``v_pu``) as ``value``; raw measurement words stay as they are."""
        scaling = self.mapping.scalings[name]
        self._words[scaling.kind].update(scaling.encode(value, self.mapping.word_order))

    def scaling_values(self) -> dict[str, float]:
        words = {(kind, a): w for kind, table in self._words.items() for a, w in table.items()}
        return self.mapping.scaling_env(words)[0]

    def set(self, quantity: str, value: float | str) -> None:
        """Serve ``quantity`` as ``value`` (its map unit, or a state name), encoded with today's scalings."""
        measurement = self.mapping.measurement(quantity)
        words = measurement.encode(value, self.mapping.word_order, self.scaling_values())
        self._words[measurement.kind].update(zip(measurement.addresses, words, strict=True))

    def update(self, values: Mapping[str, float | str]) -> None:
        for quantity, value in values.items():
            self.set(quantity, value)

    @property
    def quantities(self) -> frozenset[str]:
        """The quantities this simulator's map can serve."""
        return frozenset(m.quantity for m in self.mapping.measurements)

    def serve_snapshot(self, snapshot: SiteSnapshot) -> None:
        """Serve a simulated site's values: those of its quantities that the map has."""
        self.update({q: v for q, v in snapshot_values(snapshot).items() if q in self.quantities})

    def set_word(self, kind: RegisterKind, address: int, word: int) -> None:
        """Serve a raw register word as is."""
        self._words[kind][address] = word & 0xFFFF

    def fail(
        self, address: int, code: int = ExcCodes.ILLEGAL_ADDRESS, kind: RegisterKind = RegisterKind.HOLDING
    ) -> None:
        """Answer any read touching this register with Modbus exception ``code``."""
        self._failures[kind, address] = code

    def clear_failures(self) -> None:
        self._failures.clear()

    # --- server ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self._port}"

    def _device(self) -> SimDevice:
        def registers(kind: RegisterKind) -> list[SimData]:
            used = [a for item in self.mapping.items() if item.kind is kind for a in item.addresses]
            if not used:
                return [SimData(0, datatype=DataType.INVALID)]  # this kind does not exist on the device
            # Read-only: the simulated controller's measurements are not the client's to write.
            return [SimData(0, count=max(used) + 1, values=0, datatype=DataType.REGISTERS, readonly=True)]

        # pymodbus insists on a bit block for coils and discrete inputs: one register's worth, all off.
        def bits() -> list[SimData]:
            return [SimData(0, values=False, datatype=DataType.BITS, readonly=True)]

        return SimDevice(
            self.unit_id,
            simdata=(bits(), bits(), registers(RegisterKind.HOLDING), registers(RegisterKind.INPUT)),
            action=self._serve,
        )

    async def _serve(  # noqa: PLR0917 -- the signature pymodbus calls a SimDevice action with
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        # pymodbus calls this for every valid request, with the live register block: fill the
        # requested words from our table, so values set at any time are served at once.
        kind = _READ_KIND.get(function_code)
        if kind is None or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        self.requests.append(ReadRequest(kind, address, count))
        for a in range(address, address + count):
            if (kind, a) in self._failures:
                return ExcCodes(self._failures[kind, a])
        if self.delay:
            await asyncio.sleep(self.delay)
        table = self._words[kind]
        for a in range(address, address + count):
            registers[a - start_address] = table.get(a, 0)
        return None

    async def start(self) -> None:
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self._port))
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None) or []
        if sockets:
            self._port = sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def serve_forever(self) -> None:
        """Serve until cancelled (the ``--modbus-sim`` demo)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> ChargerSimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
