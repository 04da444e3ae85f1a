"""The fleet simulator: N lightweight LwM2M clients in one process, as a load generator (see docs/fleet.md).

Each device registers (``POST /rd``), answers Read/Observe/Discover with real encodings, sends a
notification per observation every ``period`` seconds (CON or NON), updates its registration before
the lifetime ends and de-registers when the fleet stops. With ``psk`` every device opens its own DTLS
session (:class:`~spmp.coap.dtls_client.DtlsClientTransport`) as identity ``<prefix><n>`` with the key
:func:`device_key` derives from the fleet secret.

Why one UDP socket per device by default: the management server keys a client by its address (the
registration's peer is where Read/Observe go), and an LwM2M downlink request names no endpoint, only
``/o/i/r``. Several devices behind one address cannot be told apart by the server's requests, so a
shared socket (``sockets < devices``) is only honest for what is routed by the registration's
Location-Path (Register, Update, De-register): the registration storm. Requests arriving on a shared
socket are answered by its first device. DTLS needs one socket per device (one session = one identity).

The message layer is lean on purpose (no :class:`~spmp.coap.endpoint.Endpoint` per device): requests the
devices send are CON with the RFC 7252 back-off; requests the server sends are answered piggybacked and
remembered per socket for deduplication; notifications are built from :class:`PayloadTemplate` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import random
import resource
import struct
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from spmp.coap.dtls import DtlsError
from spmp.coap.dtls_client import DtlsClientTransport
from spmp.coap.errors import CoapError, CoapMessageError, PeerReset, RequestTimeout
from spmp.coap.message import Code, Message, Option, Request, Response, decode, encode, uint_bytes
from spmp.coap.transport import DatagramTransport, Peer
from spmp.coap.udp import UdpTransport
from spmp.fleet.device import DeviceData, PayloadTemplate, answer, models, registration_payload
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.path import Path
from spmp.store import SecurityInfo, SecurityScope, Store

__all__ = [
    "DEFAULT_SECRET",
    "Fleet",
    "FleetConfig",
    "FleetError",
    "FleetStats",
    "device_key",
    "endpoint_name",
    "provision",
]

log = logging.getLogger(__name__)

DEFAULT_SECRET: Final = b"spmp-fleet-load-test-secret"
"""The fleet secret when none is given: fine for load tests on loopback, never for real devices."""

_CON: Final = 0
_NON: Final = 1
_ACK: Final = 2
_RST: Final = 3
_HEADER = struct.Struct("!BBH")
_CONTENT = int(Code.CONTENT)


class FleetError(Exception):
    """A fleet cannot start as configured (bad server URI, too few file descriptors, ...)."""


def endpoint_name(prefix: str, index: int) -> str:
    """The endpoint name (and PSK identity) of device ``index``: ``<prefix><index>``."""
    return f"{prefix}{index}"


def device_key(secret: bytes, identity: str) -> bytes:
    """The device's 16-byte PSK: the first 16 bytes of HMAC-SHA256(fleet secret, identity)."""
    return hmac.new(secret, identity.encode(), hashlib.sha256).digest()[:16]


async def provision(
    store: Store, devices: int, *, prefix: str = "fleet-", secret: bytes = DEFAULT_SECRET, first: int = 0
) -> int:
    """Write the PSK of every fleet device into ``store`` (server scope, identity = endpoint name)."""
    for index in range(first, first + devices):
        name = endpoint_name(prefix, index)
        await store.put_security(SecurityInfo(name, name, device_key(secret, name)), SecurityScope.SERVER)
    return devices


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """How to run a fleet; ``server`` is ``coap://host:port`` or (with ``psk``) ``coaps://host:port``."""

    devices: int
    server: str
    period: float = 10.0
    """Seconds between two notifications of one observation."""
    psk: bool = False
    prefix: str = "fleet-"
    secret: bytes = DEFAULT_SECRET
    sockets: int | None = None
    """UDP sockets the devices share (None: one per device, see the module docstring)."""
    confirmable: bool = True
    """Notifications as CON (acknowledged, retransmitted) or NON."""
    lifetime: int = 300
    first: int = 0
    """Index of the first device (several fleet processes can split a range)."""
    bind: str = "127.0.0.1"
    concurrency: int = 256
    """Registrations (and DTLS handshakes, at most 64) in flight while starting."""
    ack_timeout: float = 2.0
    max_retransmit: int = 4
    start_timeout: float = 300.0
    """Devices not registered this long after start count as failed."""
    stop_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise FleetError("need at least one device")
        if self.period <= 0:
            raise FleetError("the notification period must be positive")
        if self.sockets is not None and not 1 <= self.sockets <= self.devices:
            raise FleetError("--sockets must be between 1 and the number of devices")
        if self.psk and self.sockets is not None and self.sockets != self.devices:
            raise FleetError("with --psk every device needs its own socket (one DTLS session per identity)")
        _parse_server(self.server, self.psk)


@dataclass(slots=True)
class FleetStats:
    """Counters; the CLI shows them while starting and at the end."""

    devices: int = 0
    registered: int = 0
    """Devices registered right now."""
    peak_registered: int = 0
    registrations: int = 0
    """Successful Registers (re-registrations included)."""
    failed: int = 0
    rate_limited: int = 0
    handshakes: int = 0
    started_at: float = 0.0
    first_registered_at: float = 0.0
    last_registered_at: float = 0.0
    updates: int = 0
    update_failures: int = 0
    deregistered: int = 0
    deregister_failures: int = 0
    requests_served: int = 0
    observations: int = 0
    notifications_sent: int = 0
    notifications_acked: int = 0
    notifications_reset: int = 0
    notifications_timed_out: int = 0
    notifications_superseded: int = 0
    retransmissions: int = 0
    notifications_behind: int = 0
    """Notifications the scheduler could not send on time (the generator is the bottleneck)."""
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def registration_seconds(self) -> float:
        """From the start to the last successful registration of the start phase."""
        if not self.last_registered_at:
            return 0.0
        return self.last_registered_at - self.started_at

    @property
    def registrations_per_second(self) -> float:
        seconds = self.registration_seconds
        return self.registrations / seconds if seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.endswith("_at")}
        out["errors"] = dict(self.errors)
        out["registration_seconds"] = round(self.registration_seconds, 3)
        out["registrations_per_second"] = round(self.registrations_per_second, 1)
        return out


# ------------------------------------------------------------------------------------------ message layer


class _Exchange:
    """A request a device sent and waits an answer for."""

    __slots__ = ("attempts", "data", "future", "mid", "timeout", "timer", "token")

    def __init__(self, mid: int, token: bytes, data: bytes, future: asyncio.Future[Response], timeout: float) -> None:
        self.mid = mid
        self.token = token
        self.data = data
        self.future = future
        self.timeout = timeout
        self.attempts = 0
        self.timer: asyncio.TimerHandle | None = None


class _Notification:
    """A CON notification waiting for its ACK."""

    __slots__ = ("attempts", "data", "mid", "observation", "timeout", "timer")

    def __init__(self, observation: _Observation, mid: int, data: bytes, timeout: float) -> None:
        self.observation = observation
        self.mid = mid
        self.data = data
        self.timeout = timeout
        self.attempts = 0
        self.timer: asyncio.TimerHandle | None = None


class _Observation:
    __slots__ = ("active", "content_format", "device", "path", "pending", "seq", "template", "token")

    def __init__(
        self, device: _Device, token: bytes, path: Path, content_format: int, template: PayloadTemplate | None
    ) -> None:
        self.device = device
        self.token = token
        self.path = path
        self.content_format = content_format
        self.template = template
        self.seq = random.getrandbits(16)
        self.active = True
        self.pending: _Notification | None = None


class _Device:
    __slots__ = ("data", "location", "name", "observations", "socket", "update_timer")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.data = DeviceData(name, index)
        self.socket: _Socket | None = None
        self.location: tuple[str, ...] = ()
        self.observations: dict[bytes, _Observation] = {}
        self.update_timer: asyncio.TimerHandle | None = None


_REPLY_CACHE = 8


class _Socket:
    """One UDP socket (or DTLS session) to the server, carrying one or more devices."""

    def __init__(self, fleet: Fleet, transport: DatagramTransport, server: Peer) -> None:
        self.fleet = fleet
        self.transport = transport
        self.server = server
        self.devices: list[_Device] = []
        self.mid = random.getrandbits(16)
        self.exchanges: dict[int, _Exchange] = {}
        self.by_token: dict[bytes, _Exchange] = {}
        self.notifications: dict[int, _Notification] = {}
        self.replies: dict[int, bytes] = {}
        self.reply_order: deque[int] = deque()
        transport.set_handler(self.on_datagram)

    def next_mid(self) -> int:
        self.mid = mid = (self.mid + 1) & 0xFFFF
        return mid

    def send(self, data: bytes) -> None:
        try:
            self.transport.send(data, self.server)
        except (CoapError, OSError, ValueError) as exc:
            self.fleet.stats.error(f"send: {type(exc).__name__}")

    # -- requests the devices send ---------------------------------------------------------------

    async def request(self, request: Request) -> Response:
        fleet = self.fleet
        loop = fleet.loop
        mid = self.next_mid()
        token = os.urandom(4)
        while token in self.by_token:
            token = os.urandom(4)
        data = encode(Message(_CON, request.method, mid, token, request.options, request.payload))
        future: asyncio.Future[Response] = loop.create_future()
        timeout = fleet.config.ack_timeout * random.uniform(1.0, 1.5)
        exchange = _Exchange(mid, token, data, future, timeout)
        self.exchanges[mid] = exchange
        self.by_token[token] = exchange
        self.send(data)
        exchange.timer = loop.call_later(timeout, self._retransmit, exchange)
        try:
            return await future
        finally:
            if exchange.timer is not None:
                exchange.timer.cancel()
            if self.exchanges.get(mid) is exchange:
                del self.exchanges[mid]
            if self.by_token.get(token) is exchange:
                del self.by_token[token]

    def _retransmit(self, exchange: _Exchange) -> None:
        if exchange.future.done():
            return
        config = self.fleet.config
        if exchange.attempts >= config.max_retransmit or self.exchanges.get(exchange.mid) is not exchange:
            exchange.future.set_exception(RequestTimeout(self.server, exchange.timeout))
            return
        exchange.attempts += 1
        exchange.timeout *= 2
        self.fleet.stats.retransmissions += 1
        self.send(exchange.data)
        exchange.timer = self.fleet.loop.call_later(exchange.timeout, self._retransmit, exchange)

    # -- incoming --------------------------------------------------------------------------------

    def on_datagram(self, data: bytes, peer: Peer) -> None:
        if len(data) < 4 or peer.port != self.server.port:
            return
        b0 = data[0]
        mtype = (b0 >> 4) & 3
        code = data[1]
        mid = (data[2] << 8) | data[3]
        if code == 0:
            if mtype in (_ACK, _RST):
                self._empty(mtype, mid)
            elif mtype == _CON:
                self.send(_HEADER.pack(0x40 | (_RST << 4), 0, mid))  # CoAP ping
            return
        try:
            msg = decode(data)
        except CoapMessageError:
            self.fleet.stats.error("malformed datagram")
            return
        try:
            if code >= 64:
                self._response(msg, peer)
            elif code < 32 and mtype in (_CON, _NON):
                self._serve(msg, peer)
        except Exception:
            log.exception("fleet: error handling a message from the server")
            self.fleet.stats.error("handler")

    def _empty(self, mtype: int, mid: int) -> None:
        stats = self.fleet.stats
        notification = self.notifications.pop(mid, None)
        if notification is not None:
            if notification.timer is not None:
                notification.timer.cancel()
            observation = notification.observation
            if observation.pending is notification:
                observation.pending = None
            if mtype == _ACK:
                stats.notifications_acked += 1
            else:
                stats.notifications_reset += 1
                self.fleet.forget(observation)
            return
        exchange = self.exchanges.get(mid)
        if exchange is None:
            return
        if mtype == _RST:
            if not exchange.future.done():
                exchange.future.set_exception(PeerReset(self.server))
            return
        # Empty ACK: the response comes separately; stop retransmitting, wait for it.
        del self.exchanges[mid]
        if exchange.timer is not None:
            exchange.timer.cancel()
        config = self.fleet.config
        wait = config.ack_timeout * ((1 << (config.max_retransmit + 1)) - 1) * 1.5
        exchange.timer = self.fleet.loop.call_later(wait, self._retransmit, exchange)

    def _response(self, msg: Message, peer: Peer) -> None:
        if msg.type == _ACK:
            exchange = self.exchanges.get(msg.mid)
            if exchange is not None and exchange.token == msg.token and not exchange.future.done():
                exchange.future.set_result(Response.from_message(msg, peer))
            return
        exchange = self.by_token.get(msg.token)
        if msg.type == _CON:
            self.send(_HEADER.pack(0x40 | ((_ACK if exchange is not None else _RST) << 4), 0, msg.mid))
        if exchange is not None and not exchange.future.done():
            exchange.future.set_result(Response.from_message(msg, peer))

    def _serve(self, msg: Message, peer: Peer) -> None:
        confirmable = msg.type == _CON
        if confirmable:
            cached = self.replies.get(msg.mid)
            if cached is not None:
                self.send(cached)
                return
        fleet = self.fleet
        fleet.stats.requests_served += 1
        device = self.devices[0]
        request = Request.from_message(msg, peer)
        result = answer(request, device.data)
        response = result.response
        options = response.options
        if result.observe is not None and result.path is not None:
            if result.observe and response.is_success:
                fmt = response.content_format
                observation = fleet.observe(device, msg.token, result.path, ContentFormat.TEXT if fmt is None else fmt)
                options = sorted([*options, (Option.OBSERVE, uint_bytes(observation.seq))], key=_number)
            else:
                old = device.observations.get(msg.token)
                if old is not None:
                    fleet.forget(old)
        reply = encode(
            Message(
                _ACK if confirmable else _NON,
                response.code,
                msg.mid if confirmable else self.next_mid(),
                msg.token,
                options,
                response.payload,
            )
        )
        self.send(reply)
        if confirmable:
            self.replies[msg.mid] = reply
            order = self.reply_order
            order.append(msg.mid)
            if len(order) > _REPLY_CACHE:
                self.replies.pop(order.popleft(), None)

    # -- notifications ---------------------------------------------------------------------------

    def notify(self, observation: _Observation, payload: bytes, confirmable: bool) -> None:
        fleet = self.fleet
        observation.seq = seq = (observation.seq + 1) & 0xFFFFFF
        mid = self.next_mid()
        data = _notification_bytes(confirmable, mid, observation.token, seq, observation.content_format, payload)
        self.send(data)
        fleet.stats.notifications_sent += 1
        if confirmable:
            previous = observation.pending
            if previous is not None:
                # Still unacknowledged: the new value supersedes it (RFC 7641 §4.5.2).
                if previous.timer is not None:
                    previous.timer.cancel()
                self.notifications.pop(previous.mid, None)
                fleet.stats.notifications_superseded += 1
            timeout = fleet.config.ack_timeout * random.uniform(1.0, 1.5)
            pending = _Notification(observation, mid, data, timeout)
            pending.timer = fleet.loop.call_later(timeout, self._renotify, pending)
            self.notifications[mid] = pending
            observation.pending = pending

    def _renotify(self, pending: _Notification) -> None:
        if self.notifications.get(pending.mid) is not pending:
            return
        fleet = self.fleet
        if pending.attempts >= fleet.config.max_retransmit:
            del self.notifications[pending.mid]
            if pending.observation.pending is pending:
                pending.observation.pending = None
            fleet.stats.notifications_timed_out += 1
            return
        pending.attempts += 1
        pending.timeout *= 2
        fleet.stats.retransmissions += 1
        self.send(pending.data)
        pending.timer = fleet.loop.call_later(pending.timeout, self._renotify, pending)

    def drop_timers(self) -> None:
        for notification in self.notifications.values():
            if notification.timer is not None:
                notification.timer.cancel()
        self.notifications.clear()


def _number(option: tuple[int, bytes]) -> int:
    return option[0]


def _notification_bytes(  # noqa: PLR0917 - the hot path avoids keyword passing
    confirmable: bool, mid: int, token: bytes, seq: int, content_format: int, payload: bytes
) -> bytes:
    """A 2.05 notification with Observe (6) and Content-Format (12), written without a Message."""
    observe = uint_bytes(seq)
    fmt = uint_bytes(content_format)
    header = _HEADER.pack(0x40 | ((_CON if confirmable else _NON) << 4) | len(token), _CONTENT, mid)
    if len(fmt) < 13:
        options = bytes(((6 << 4) | len(observe),)) + observe + bytes(((6 << 4) | len(fmt),)) + fmt
    else:  # pragma: no cover - content formats fit in 2 bytes
        raise ValueError("content format too long")
    return b"".join((header, token, options, b"\xff", payload)) if payload else header + token + options


# ------------------------------------------------------------------------------------------------ fleet


class Fleet:
    """See the module docstring. ``await start()``, then ``await stop()`` (or ``async with``)."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.stats = FleetStats(devices=config.devices)
        self.loop = asyncio.get_running_loop()
        scheme, host, port = _parse_server(config.server, config.psk)
        self.server_host = host
        self.server_port = port
        self.secure = scheme == "coaps"
        self.devices = [
            _Device(endpoint_name(config.prefix, i), i) for i in range(config.first, config.first + config.devices)
        ]
        self.sockets: list[_Socket] = []
        self._observations: list[_Observation] = []
        self._templates: dict[tuple[Path, int], PayloadTemplate | None] = {}
        self._notifier: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._payload = registration_payload()
        self._stopping = False
        self._started = False
        self.period = config.period
        """Seconds between notifications of one observation; may be changed while running."""

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- start -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sockets and register every device; returns when all are registered or failed."""
        if self._started:
            return
        self._started = True
        config = self.config
        self.stats.started_at = time.monotonic()
        if not self.secure:
            count = config.sockets if config.sockets is not None else config.devices
            _ensure_files(count)
            server = Peer(self.server_host, self.server_port)
            for _ in range(count):
                transport = await UdpTransport.bind(config.bind, 0)
                self.sockets.append(_Socket(self, transport, server))
            for i, device in enumerate(self.devices):
                device.socket = self.sockets[i % count]
                device.socket.devices.append(device)
        else:
            _ensure_files(config.devices)
        self._notifier = self.loop.create_task(self._notify_loop(), name="spmp-fleet-notifier")
        slots = asyncio.Semaphore(config.concurrency)
        handshakes = asyncio.Semaphore(min(64, config.concurrency))
        deadline = self.loop.time() + config.start_timeout

        async def bring_up(device: _Device) -> None:
            async with slots:
                try:
                    if self.secure:
                        async with handshakes:
                            await self._connect(device)
                    await asyncio.wait_for(self._register(device, deadline), max(deadline - self.loop.time(), 0.1))
                except (CoapError, DtlsError, OSError, TimeoutError) as exc:
                    self.stats.failed += 1
                    self.stats.error(f"register: {type(exc).__name__}")

        await asyncio.gather(*(bring_up(d) for d in self.devices))

    async def _connect(self, device: _Device) -> None:
        key = device_key(self.config.secret, device.name)
        transport = await DtlsClientTransport.connect(
            self.server_host,
            self.server_port,
            device.name,
            key,
            handshake_timeout=min(30.0, self.config.start_timeout),
            local_address=(self.config.bind, 0),
        )
        self.stats.handshakes += 1
        sock = _Socket(self, transport, transport.peer)
        sock.devices.append(device)
        device.socket = sock
        self.sockets.append(sock)

    async def _register(self, device: _Device, deadline: float) -> bool:
        sock = device.socket
        assert sock is not None
        config = self.config
        query = (f"ep={device.name}", f"lt={config.lifetime}", "lwm2m=1.1", "b=U")
        request = Request(Code.POST, "rd", query=query, payload=self._payload, content_format=ContentFormat.LINK)
        while True:
            response = await sock.request(request)
            if response.code == Code.CREATED:
                first = not device.location
                device.location = tuple(response.location_path)
                stats = self.stats
                stats.registrations += 1
                if first:
                    stats.registered += 1
                    stats.peak_registered = max(stats.peak_registered, stats.registered)
                now = time.monotonic()
                if not stats.first_registered_at:
                    stats.first_registered_at = now
                if not self._stopping:
                    stats.last_registered_at = now
                self._schedule_update(device)
                return True
            if response.code == Code.SERVICE_UNAVAILABLE:
                self.stats.rate_limited += 1
                wait = (response.max_age or 1) + random.uniform(0.0, 1.0)
                if self.loop.time() + wait >= deadline:
                    raise TimeoutError
                await asyncio.sleep(wait)
                continue
            self.stats.failed += 1
            self.stats.error(f"register: {Code(response.code) if response.code in _CODES else response.code}")
            return False

    def _schedule_update(self, device: _Device) -> None:
        if device.update_timer is not None:
            device.update_timer.cancel()
        lifetime = self.config.lifetime
        delay = max(1.0, lifetime * random.uniform(0.75, 0.9))
        device.update_timer = self.loop.call_later(delay, self._update_due, device)

    def _update_due(self, device: _Device) -> None:
        device.update_timer = None
        if not self._stopping:
            self._spawn(self._update(device))

    async def _update(self, device: _Device) -> None:
        sock = device.socket
        if sock is None or not device.location or self._stopping:
            return
        try:
            response = await sock.request(Request(Code.POST, device.location))
        except CoapError as exc:
            self.stats.update_failures += 1
            self.stats.error(f"update: {type(exc).__name__}")
            self._schedule_update(device)
            return
        if response.code == Code.CHANGED:
            self.stats.updates += 1
            self._schedule_update(device)
            return
        self.stats.update_failures += 1
        if response.code == Code.NOT_FOUND and not self._stopping:
            # The server forgot us (expired, restarted with another store): register again.
            for observation in list(device.observations.values()):
                self.forget(observation)
            device.location = ()
            self.stats.registered -= 1
            try:
                await self._register(device, self.loop.time() + self.config.start_timeout)
            except (CoapError, TimeoutError) as exc:
                self.stats.error(f"re-register: {type(exc).__name__}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- observations and notifications --------------------------------------------------------------

    def observe(self, device: _Device, token: bytes, path: Path, content_format: int) -> _Observation:
        key = (path, content_format)
        if key not in self._templates:
            self._templates[key] = PayloadTemplate.build(path, content_format)
        old = device.observations.get(token)
        if old is not None:
            self.forget(old)
        observation = _Observation(device, token, path, content_format, self._templates[key])
        device.observations[token] = observation
        self._observations.append(observation)
        self.stats.observations += 1
        return observation

    def forget(self, observation: _Observation) -> None:
        if not observation.active:
            return
        observation.active = False
        device = observation.device
        if device.observations.get(observation.token) is observation:
            del device.observations[observation.token]
        self.stats.observations -= 1

    def _payload_of(self, observation: _Observation) -> bytes | None:
        data = observation.device.data
        template = observation.template
        if template is not None:
            return template.render(template.values_for(observation.path, data))
        path = observation.path
        instance = data.instance(path.ids[0])
        if instance is None:
            return None
        node: Any = (
            instance if path.is_object_instance else instance.resources.get(path.ids[2] if path.level >= 3 else -1)
        )
        if node is None:
            return None
        try:
            return codecs.encode(node, path, ContentFormat.of(observation.content_format), models())
        except Lwm2mError:
            return None

    async def _notify_loop(self) -> None:
        """Send each live observation's notification once per period, spread evenly over the period."""
        loop = self.loop
        confirmable = self.config.confirmable
        tick = min(0.01, self.period / 10)
        cursor = 0
        budget = 0.0
        last = loop.time()
        stats = self.stats
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            observations = self._observations
            n = len(observations)
            budget += n * (now - last) / self.period
            last = now
            count = int(budget)
            budget -= count
            if count > n:
                stats.notifications_behind += count - n
                count = n
            if budget > n:
                stats.notifications_behind += int(budget)
                budget = 0.0
            for _ in range(count):
                if cursor >= len(observations):
                    cursor = 0
                    if len(observations) != stats.observations:
                        observations[:] = [o for o in observations if o.active]
                    if not observations:
                        break
                observation = observations[cursor]
                cursor += 1
                if not observation.active:
                    continue
                device = observation.device
                sock = device.socket
                if sock is None:
                    continue
                device.data.advance()
                payload = self._payload_of(observation)
                if payload is not None:
                    sock.notify(observation, payload, confirmable)

    # -- stop ---------------------------------------------------------------------------------------

    async def stop(self, *, deregister: bool = True) -> None:
        """De-register every registered device (bounded by ``stop_timeout``; skipped when not
        ``deregister``), then close the sockets."""
        if self._stopping:
            return
        self._stopping = True
        if self._notifier is not None:
            self._notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._notifier
        for device in self.devices:
            if device.update_timer is not None:
                device.update_timer.cancel()
                device.update_timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self.sockets:
            sock.drop_timers()
        slots = asyncio.Semaphore(self.config.concurrency)

        async def _deregister(device: _Device) -> None:
            sock = device.socket
            if sock is None or not device.location:
                return
            async with slots:
                try:
                    response = await sock.request(Request(Code.DELETE, device.location))
                except CoapError as exc:
                    self.stats.deregister_failures += 1
                    self.stats.error(f"deregister: {type(exc).__name__}")
                    return
            if response.code == Code.DELETED:
                self.stats.deregistered += 1
                self.stats.registered -= 1
                device.location = ()
            else:
                self.stats.deregister_failures += 1

        try:
            await asyncio.wait_for(
                asyncio.gather(*(_deregister(d) for d in self.devices if deregister), return_exceptions=True),
                self.config.stop_timeout,
            )
        except TimeoutError:
            self.stats.error("deregister: stop timeout")
        for sock in self.sockets:
            sock.drop_timers()
        await asyncio.gather(*(s.transport.close() for s in self.sockets), return_exceptions=True)
        self.sockets.clear()

    async def run(self, duration: float | None, stop: asyncio.Event | None = None) -> FleetStats:
        """Start, keep running ``duration`` seconds (None: until ``stop`` is set), stop; the stats."""
        try:
            await self.start()
            waiter = stop if stop is not None else asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), duration)
        finally:
            await self.stop()
        return self.stats


_CODES = frozenset(int(c) for c in Code)


def _parse_server(uri: str, psk: bool) -> tuple[str, str, int]:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("coap", "coaps"):
        raise FleetError(f"the server must be coap://host:port or coaps://host:port, not {uri!r}")
    if psk != (scheme == "coaps"):
        raise FleetError("use coaps:// with --psk and coap:// without it")
    host = parts.hostname
    if not host:
        raise FleetError(f"no host in {uri!r}")
    try:
        port = parts.port or (5684 if scheme == "coaps" else 5683)
    except ValueError:
        raise FleetError(f"bad port in {uri!r}") from None
    return scheme, host, port


def _ensure_files(sockets: int) -> None:
    """Raise the open-file limit (soft up to hard) when the sockets need it; FleetError if impossible."""
    needed = sockets + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < needed:
            raise FleetError(
                f"{sockets} sockets need about {needed} open files but the limit is {soft}: "
                "raise it (ulimit -n) or share sockets with --sockets"
            )
