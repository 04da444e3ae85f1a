"""Read a real charge controller over Modbus TCP, as described by a register map.

`ModbusSource` connects with pymodbus' asyncio TCP client, reads the map's registers in as few
block reads as the map allows (`RegisterMap.blocks`), and returns a `ControllerReading`: the
quantities in engineering units, the charge state's name, and the errors of this read.

Failure policy, so that one bad read never takes the caller down:

- a block the controller refuses (a Modbus exception such as Illegal Data Address) costs only the
  quantities in that block: they are missing from the reading and its ``errors`` say why;
- an unreachable controller, a lost connection or a timeout makes `read` raise a
  `ModbusSourceError` subclass; `poll` turns that into a reading with no quantities and the error;
- connection attempts back off exponentially (``backoff_initial`` doubling to ``backoff_max``),
  so a dead controller is not hammered however often the caller asks; the first success resets it.

Every error message starts with ``host:port`` and names the registers involved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from spmp.charger.modbus.mapping import Block, RegisterKind, RegisterMap, load_builtin_map

__all__ = [
    "EXCEPTION_CODES",
    "ControllerReading",
    "ControllerTimeoutError",
    "ControllerUnreachableError",
    "ModbusExceptionError",
    "ModbusSource",
    "ModbusSourceError",
    "Quantity",
    "QuantityError",
]

#: Modbus exception codes and their names in the Modbus application protocol specification (7).
EXCEPTION_CODES: Mapping[int, str] = {
    0x01: "Illegal Function",
    0x02: "Illegal Data Address",
    0x03: "Illegal Data Value",
    0x04: "Server Device Failure",
    0x05: "Acknowledge",
    0x06: "Server Device Busy",
    0x08: "Memory Parity Error",
    0x0A: "Gateway Path Unavailable",
    0x0B: "Gateway Target Device Failed to Respond",
}


class ModbusSourceError(Exception):
    """Reading the controller failed; the message starts with ``host:port``."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint


class ControllerUnreachableError(ModbusSourceError):
    """No connection: refused, no route, lost, or waiting out the reconnect backoff."""


class ControllerTimeoutError(ModbusSourceError):
    """Connected, but the controller did not answer a request in time."""


class ModbusExceptionError(ModbusSourceError):
    """The controller answered a block read with a Modbus exception code."""

    def __init__(self, endpoint: str, unit_id: int, block: Block, code: int) -> None:
        name = EXCEPTION_CODES.get(code, "unknown exception code")
        super().__init__(endpoint, f"unit {unit_id}: Modbus exception {code} ({name}) reading {block.describe()}")
        self.code = code
        self.block = block


class QuantityError(ModbusSourceError):
    """Registers were read but a quantity could not be computed (e.g. its scale divided by zero)."""

    def __init__(self, endpoint: str, quantity: str, reason: str) -> None:
        super().__init__(endpoint, f"{quantity}: {reason}")
        self.quantity = quantity


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    unit: str
    register: str  # the map's name for the register it came from


@dataclass(frozen=True, slots=True)
class ControllerReading:
    """One read of the controller. Quantities that could not be read are absent; ``errors`` says why."""

    timestamp: datetime
    endpoint: str
    quantities: Mapping[str, Quantity] = field(default_factory=dict)
    charge_state: str | None = None
    errors: tuple[ModbusSourceError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def value(self, quantity: str) -> float | None:
        found = self.quantities.get(quantity)
        return None if found is None else found.value


class ModbusSource:
    """A charge controller at ``host:port`` (Modbus unit ``unit_id``) read through ``mapping``.

    Use as ``async with ModbusSource(...) as source:`` (or call `close`), then `read` or `poll`.
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        unit_id: int = 1,
        mapping: RegisterMap | None = None,
        *,
        timeout: float = 2.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.mapping = mapping if mapping is not None else load_builtin_map()
        self.blocks = self.mapping.blocks()
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.requests = 0  # block reads sent, for statistics and tests
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()  # one read at a time: concurrent reads would race to reconnect
        self._backoff = backoff_initial
        self._retry_at = 0.0

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def __aenter__(self) -> ModbusSource:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection (the next read reconnects)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _connect(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        now = asyncio.get_running_loop().time()
        if now < self._retry_at:
            raise ControllerUnreachableError(
                self.endpoint, f"not connected; next attempt in {self._retry_at - now:.2f} s"
            )
        # reconnect_delay=0 turns off pymodbus' own background reconnection: this class owns the
        # policy, and two reconnect loops would fight. retries=0: a timeout is reported, not
        # silently multiplied by the retry count.
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout, retries=0, reconnect_delay=0, name=self.endpoint
        )
        if not await client.connect():
            client.close()
            self._retry_at = asyncio.get_running_loop().time() + self._backoff
            wait, self._backoff = self._backoff, min(2 * self._backoff, self.backoff_max)
            raise ControllerUnreachableError(
                self.endpoint,
                f"cannot connect (refused, unreachable or no answer within {self.timeout} s); "
                f"next attempt in {wait:.2f} s",
            )
        self._backoff = self.backoff_initial
        self._retry_at = 0.0
        self._client = client
        return client

    async def _read_block(self, client: AsyncModbusTcpClient, block: Block) -> list[int]:
        read = client.read_holding_registers if block.kind is RegisterKind.HOLDING else client.read_input_registers
        self.requests += 1
        try:
            response = await read(block.start, count=block.count, device_id=self.unit_id)
        except (ModbusIOException, ConnectionException, OSError) as exc:
            # Whatever state the connection is in, start afresh: a late answer to this request
            # must not be taken for the answer to the next one.
            lost = not client.connected
            self.close()
            if lost or not isinstance(exc, ModbusIOException):
                raise ControllerUnreachableError(self.endpoint, f"connection lost reading {block.describe()}") from exc
            raise ControllerTimeoutError(
                self.endpoint, f"unit {self.unit_id}: no answer within {self.timeout} s reading {block.describe()}"
            ) from exc
        except ModbusException as exc:
            raise ModbusSourceError(self.endpoint, f"{exc} reading {block.describe()}") from exc
        if response.isError():
            raise ModbusExceptionError(self.endpoint, self.unit_id, block, response.exception_code)
        if len(response.registers) < block.count:
            raise ModbusSourceError(
                self.endpoint, f"short answer: {len(response.registers)} registers reading {block.describe()}"
            )
        return list(response.registers[: block.count])

    async def read(self) -> ControllerReading:
        """Read every block once; raise `ModbusSourceError` if the controller cannot be talked to."""
        async with self._lock:
            return await self._read()

    async def _read(self) -> ControllerReading:
        client = await self._connect()
        words: dict[tuple[RegisterKind, int], int] = {}
        errors: list[ModbusSourceError] = []
        for block in self.blocks:
            try:
                registers = await self._read_block(client, block)
            except (ControllerUnreachableError, ControllerTimeoutError):
                raise
            except ModbusSourceError as exc:
                errors.append(exc)  # this block's quantities are lost; the others are still good
                continue
            words.update(((block.kind, a), w) for a, w in zip(block.addresses, registers, strict=True))
        decoded = self.mapping.decode(words)
        errors.extend(QuantityError(self.endpoint, q, reason) for q, reason in decoded.failures.items())
        quantities: dict[str, Quantity] = {}
        charge_state: str | None = None
        for measurement in self.mapping.measurements:
            value = decoded.values.get(measurement.quantity)
            if isinstance(value, str):
                charge_state = value
            elif value is not None and measurement.unit is not None:
                quantities[measurement.quantity] = Quantity(value, measurement.unit, measurement.name)
        return ControllerReading(datetime.now(UTC), self.endpoint, quantities, charge_state, tuple(errors))

    async def poll(self, interval: float) -> AsyncIterator[ControllerReading]:
        """A reading every ``interval`` seconds, forever; failures arrive as readings with errors.

        Ticks are scheduled from the start, so slow reads don't make the cadence drift; a tick
        missed entirely (a read longer than the interval) is skipped rather than caught up in a burst.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                reading = await self.read()
            except ModbusSourceError as exc:
                reading = ControllerReading(datetime.now(UTC), self.endpoint, errors=(exc,))
            yield reading
            next_at += interval
            now = loop.time()
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)
