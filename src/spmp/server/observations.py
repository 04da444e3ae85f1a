"""Information reporting (TS Core §6.4): observations, notifications, Send, and telemetry ingestion.

* Observations are keyed by token, persisted in the Store (one :class:`spmp.store.Observation`
  each), and indexed per endpoint so a re-registration or expiry drops them in one step.
* A notification is decoded with the observation's path, the response's content format and the
  client's pinned model, flattened into :class:`TelemetryPoint` s (one per resource or resource
  instance value, at the SenML time when there is one, else the arrival time) and handed to
  :class:`TelemetrySink`, which appends to the Store in batches; then a "notification" event.
* Send (``POST /dp``, SenML CBOR/JSON or LwM2M CBOR, possibly timestamped) is stored the same way
  and answered 2.04; a "send" event follows.
* Cancel: active (GET with Observe=1 and the same token) or passive (forget it; the CoAP endpoint
  answers the next notification with RST).

The notification path is the hot one (10k/s later): no per-message tasks, copies or store round trips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from spmp.coap.message import Code, Request, Response
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.model import ModelLookup, ResourceType
from spmp.lwm2m.node import MultipleResource, Node, Object, ObjectInstance, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink, Value, time_to_seconds
from spmp.server.events import EventHub
from spmp.server.fastpath import DecodePlan, TelemetryRow, plan_for
from spmp.store import Observation as StoredObservation
from spmp.store import Store, TelemetryPoint, TelemetryValue
from spmp.store.interface import from_epoch_ms, to_epoch_ms, utc_ms

if TYPE_CHECKING:
    from spmp.coap.observe import Observation as CoapObservation
    from spmp.server.registrations import ClientSession, RegistrationManager

log = logging.getLogger(__name__)

TIMESTAMPED_FORMATS = frozenset(
    {ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_JSON, ContentFormat.LWM2M_CBOR}
)
SEND_FORMATS = frozenset({ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR})


@dataclass(frozen=True, slots=True)
class ObservationInfo:
    """An established observation, as the API sees it: ``nodes`` holds the initial values."""

    endpoint: str
    token: str
    """hex"""
    paths: tuple[Path, ...]
    composite: bool
    content_format: int | None
    nodes: dict[Path, Node | None] = field(default_factory=dict)


@dataclass(slots=True)
class ReportingStats:
    notifications: int = 0
    sends: int = 0
    points: int = 0
    decode_errors: int = 0
    rejected_sends: int = 0


# --------------------------------------------------------------------------------- telemetry


def _telemetry_value(value: Value) -> TelemetryValue:
    if isinstance(value, datetime):
        return time_to_seconds(value)
    if isinstance(value, ObjectLink):
        return str(value)
    return value


def node_points(endpoint: str, path: Path, node: Node, when: datetime, out: list[TelemetryPoint]) -> None:
    """Append one point per value below ``node`` (found at ``path``) to ``out``."""
    if isinstance(node, SingleResource | ResourceInstance):
        if node.type is not ResourceType.NONE:
            out.append(TelemetryPoint(endpoint, str(path), when, _telemetry_value(node.value), node.type.value))
    elif isinstance(node, MultipleResource):
        base = str(path)
        type_name = node.type.value
        for ri, value in node.instances.items():
            out.append(TelemetryPoint(endpoint, f"{base}/{ri}", when, _telemetry_value(value), type_name))
    elif isinstance(node, ObjectInstance):
        for resource in node.resources.values():
            node_points(endpoint, path.child(resource.id), resource, when, out)
    elif isinstance(node, Object):
        for iid, instance in node.instances.items():
            node_points(endpoint, path.child(iid), instance, when, out)


def node_rows(endpoint: str, path: Path, node: Node, when_ms: int, out: list[TelemetryRow]) -> None:
    """:func:`node_points` as rows ``(endpoint, path, epoch ms, type name, value)``."""
    if isinstance(node, SingleResource | ResourceInstance):
        if node.type is not ResourceType.NONE:
            out.append((endpoint, str(path), when_ms, node.type.value, _telemetry_value(node.value)))
    elif isinstance(node, MultipleResource):
        base = str(path)
        type_name = node.type.value
        for ri, value in node.instances.items():
            out.append((endpoint, f"{base}/{ri}", when_ms, type_name, _telemetry_value(value)))
    elif isinstance(node, ObjectInstance):
        for resource in node.resources.values():
            node_rows(endpoint, path.child(resource.id), resource, when_ms, out)
    elif isinstance(node, Object):
        for iid, instance in node.instances.items():
            node_rows(endpoint, path.child(iid), instance, when_ms, out)


def _node_at(path: Path, node: Node) -> Path:
    """Where ``node`` sits when decoded at ``path`` (an instance decoded at /o carries its own id)."""
    if isinstance(node, ObjectInstance) and path.is_object and node.id is not None:
        return path.child(node.id)
    return path


class TelemetrySink:
    """Collects points and appends them to the Store in batches (every ``interval`` s or ``batch`` points).

    Points wait as plain rows ``(endpoint, path, epoch ms, type name, value)``; a store with
    ``append_telemetry_rows`` (SQLite) takes them as they are, others get :class:`TelemetryPoint` s
    built at flush time.
    """

    def __init__(self, store: Store, *, interval: float = 0.1, batch: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self._points: list[TelemetryRow] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._append_rows: Callable[[list[TelemetryRow]], Any] | None = getattr(store, "append_telemetry_rows", None)
        self.written = 0
        self.failed = 0

    def append(self, points: Sequence[TelemetryPoint]) -> None:
        self.append_rows([(p.endpoint, p.path, to_epoch_ms(p.timestamp), p.type_name, p.value) for p in points])

    def append_rows(self, rows: list[TelemetryRow]) -> None:
        self._points.extend(rows)
        if len(self._points) >= self.batch:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None and not self._flushing.done():
            return  # the running flush picks the new points up when it is done
        if self._points:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._points:
            points, self._points = self._points, []
            try:
                if self._append_rows is not None:
                    await self._append_rows(points)
                else:
                    await self.store.append_telemetry(
                        [TelemetryPoint(e, p, from_epoch_ms(t), v, n) for e, p, t, n, v in points]
                    )
                self.written += len(points)
            except Exception:
                self.failed += len(points)
                log.exception("telemetry append failed", extra={"points": len(points)})

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await self._flushing
        if self._points:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_loop())
            await self._flushing
        await self.store.flush()


# ------------------------------------------------------------------------------- observations


class _Live:
    """One observation the server holds (its CoAP side is ``coap``)."""

    __slots__ = (
        "coap",
        "composite",
        "content_format",
        "endpoint",
        "last_ms",
        "paths",
        "plan",
        "registration_id",
        "token",
    )

    def __init__(
        self, endpoint: str, registration_id: str, paths: tuple[Path, ...], composite: bool, fmt: int | None
    ) -> None:
        self.endpoint = endpoint
        self.registration_id = registration_id
        self.paths = paths
        self.composite = composite
        self.content_format = fmt
        self.token = b""
        self.coap: CoapObservation | None = None
        self.plan: DecodePlan | None = None
        """The notification fast path's plan (see :mod:`spmp.server.fastpath`), made at the first one."""
        self.last_ms = 0
        """Arrival stamp (epoch ms) given to this observation's last notification (see :func:`_arrival_ms`)."""


def _arrival_ms(live: _Live) -> int:
    """The arrival time of a notification in epoch ms, strictly increasing per observation.

    The Store keeps one point per endpoint, path and millisecond. Two notifications of one observation
    that arrive within the same millisecond are two values (a burst of notifications stored while the
    server was unreachable, or a change right behind another), never a retransmission (the CoAP layer
    removed those): the later one is stamped one millisecond after the earlier one instead of replacing it.
    """
    now = time.time_ns() // 1_000_000
    if now <= live.last_ms:
        now = live.last_ms + 1
    live.last_ms = now
    return now


class _Callback:
    """What a CoAP observation of the server calls: a Response, or the raw fields on the fast path."""

    __slots__ = ("live", "manager")

    def __init__(self, manager: ObservationManager, live: _Live) -> None:
        self.manager = manager
        self.live = live

    def __call__(self, response: Response, /) -> None:
        self.manager._on_notification(self.live, response)

    def raw(self, code: int, seq: int, content_format: int | None, payload: bytes, /) -> bool:
        return self.manager._on_raw_notification(self.live, content_format, payload)


class ObservationManager:
    """Observations, notification decoding, Send, telemetry; see the module docstring."""

    def __init__(self, store: Store, events: EventHub, registrations: RegistrationManager, sink: TelemetrySink) -> None:
        self.store = store
        self.events = events
        self.registrations = registrations
        self.sink = sink
        self.stats = ReportingStats()
        self._by_token: dict[bytes, _Live] = {}
        self._by_endpoint: dict[str, dict[bytes, _Live]] = {}

    # -- establishing ---------------------------------------------------------------------------------

    def prepare(self, session: ClientSession, paths: tuple[Path, ...], composite: bool, fmt: int | None) -> _Live:
        return _Live(session.endpoint, session.registration.registration_id, paths, composite, fmt)

    def callback(self, live: _Live) -> _Callback:
        """The CoAP observation's callback: takes Responses, and raw notifications on the endpoint's
        fast path (see :class:`~spmp.coap.observe.RawNotificationCallback`)."""
        return _Callback(self, live)

    async def established(self, live: _Live, coap: CoapObservation) -> ObservationInfo:
        """Record an accepted observation (memory and Store) and decode its initial response."""
        live.coap = coap
        live.token = coap.token
        self._by_token[live.token] = live
        self._by_endpoint.setdefault(live.endpoint, {})[live.token] = live
        await self.store.save_observation(
            StoredObservation(
                endpoint=live.endpoint,
                registration_id=live.registration_id,
                token=live.token,
                paths=tuple(str(p) for p in live.paths),
                content_format=live.content_format,
                composite=live.composite,
            )
        )
        nodes: dict[Path, Node | None] = {}
        if coap.response is not None:
            session = self.registrations.get(live.endpoint)
            if session is not None:
                nodes = self.decode(live, coap.response, session.model)
        return ObservationInfo(live.endpoint, live.token.hex(), live.paths, live.composite, live.content_format, nodes)

    def adopt(
        self, session: ClientSession, stored: StoredObservation, coap_for: Callable[[_Live], CoapObservation]
    ) -> _Live:
        """Take over an observation persisted by a previous run (its CoAP side comes from ``coap_for``,
        which adopts the token on the endpoint); idempotent per token."""
        live = self._by_token.get(stored.token)
        if live is not None and live.coap is not None and live.coap.active:
            return live
        paths = tuple(Path.parse(p) for p in stored.paths)
        live = _Live(session.endpoint, stored.registration_id, paths, stored.composite, stored.content_format)
        live.token = stored.token
        live.coap = coap_for(live)
        self._by_token[live.token] = live
        self._by_endpoint.setdefault(live.endpoint, {})[live.token] = live
        log.info(
            "observation resumed",
            extra={"endpoint": live.endpoint, "token": live.token.hex(), "paths": list(stored.paths)},
        )
        return live

    def find(self, endpoint: str, path: Path | None = None) -> list[_Live]:
        lives = self._by_endpoint.get(endpoint)
        if not lives:
            return []
        return [live for live in lives.values() if path is None or path in live.paths]

    def count(self) -> int:
        return len(self._by_token)

    # -- cancelling -----------------------------------------------------------------------------------

    async def cancel(self, live: _Live, *, active: bool) -> None:
        self._forget(live)
        coap = live.coap
        try:
            if coap is not None:
                if active:
                    await coap.deregister()
                else:
                    coap.cancel()
        finally:
            try:
                await self.store.delete_observation(live.endpoint, live.token)
            except Exception:  # already gone with its registration: nothing to undo
                log.debug("observation not in store", extra={"endpoint": live.endpoint, "token": live.token.hex()})
            self.events.publish(
                "observation-cancelled",
                live.endpoint,
                {"token": live.token.hex(), "paths": [str(p) for p in live.paths], "active": active},
            )

    def drop_endpoint(self, endpoint: str) -> int:
        """Forget every observation of ``endpoint`` passively (its registration ended or was replaced;
        the Store dropped them with it). Returns how many."""
        lives = self._by_endpoint.pop(endpoint, None)
        if not lives:
            return 0
        for live in lives.values():
            self._by_token.pop(live.token, None)
            if live.coap is not None:
                live.coap.cancel()
        return len(lives)

    def _forget(self, live: _Live) -> None:
        self._by_token.pop(live.token, None)
        lives = self._by_endpoint.get(live.endpoint)
        if lives is not None:
            lives.pop(live.token, None)
            if not lives:
                del self._by_endpoint[live.endpoint]

    # -- notifications --------------------------------------------------------------------------------

    def decode(self, live: _Live, response: Response, models: ModelLookup) -> dict[Path, Node | None]:
        return {path: node for _, path, node in self._decode_series(live, response, models)}

    def _decode_series(
        self, live: _Live, response: Response, models: ModelLookup
    ) -> list[tuple[datetime | None, Path, Node | None]]:
        fmt = response.content_format
        if fmt is None:
            fmt = ContentFormat.TEXT if not live.composite else ContentFormat.SENML_CBOR
        if fmt in TIMESTAMPED_FORMATS:
            return [
                (moment.timestamp, path, node)
                for moment in codecs.decode_timestamped(response.payload, fmt, models)
                for path, node in moment.nodes.items()
            ]
        path = live.paths[0]
        node = codecs.decode(response.payload, path, fmt, models)
        return [(None, _node_at(path, node), node)]

    def _on_notification(self, live: _Live, response: Response) -> None:
        if not response.is_success or response.observe is None:
            # A final response ends the observation (RFC 7641 §3.2): the client cancelled it.
            if self._by_token.get(live.token) is live:
                self._forget(live)
                self._spawn_delete(live)
                self.events.publish(
                    "observation-cancelled",
                    live.endpoint,
                    {"token": live.token.hex(), "paths": [str(p) for p in live.paths], "by": "client"},
                )
            return
        session = self.registrations.get(live.endpoint)
        if session is None or session.registration.registration_id != live.registration_id:
            return  # a late notification of a registration that is gone
        self.registrations.touch(session)
        self.stats.notifications += 1
        if self._ingest_fast(session, live, response):
            return
        try:
            self._ingest(session, live.endpoint, response, live, "notification")
        except (Lwm2mError, ValueError):
            return  # counted and logged in _ingest; the observation stays

    def _on_raw_notification(self, live: _Live, fmt: int | None, payload: bytes) -> bool:
        """A 2.xx notification with Observe from the endpoint's fast path: True when stored (or ignored as
        :meth:`_on_notification` would), False (nothing done) when it must come again as a Response."""
        session = self.registrations.get(live.endpoint)
        if session is None or session.registration.registration_id != live.registration_id:
            return True  # a late notification of a registration that is gone: ignored
        rows: list[TelemetryRow] = []
        if not self._fast_rows(session, live, fmt, payload, rows):
            return False
        self.registrations.touch(session)
        self.stats.notifications += 1
        self._store_fast(live, rows)
        return True

    def _fast_rows(
        self, session: ClientSession, live: _Live, fmt: int | None, payload: bytes, rows: list[TelemetryRow]
    ) -> bool:
        """Rows of a notification by the observation's decode plan; False (``rows`` untouched) when the
        general decoder must decide."""
        if fmt is None:
            fmt = ContentFormat.TEXT if not live.composite else ContentFormat.SENML_CBOR
        plan = live.plan
        model = session.model
        if plan is None or plan.model is not model or plan.fmt != fmt:
            plan = live.plan = plan_for(model, live.paths, live.composite, fmt)
        if plan.kind < 0:
            return False  # no fast reader: do not take an arrival stamp for nothing
        previous = live.last_ms
        if plan.rows(payload, live.endpoint, _arrival_ms(live), rows):
            return True
        live.last_ms = previous  # not taken: the general path takes the stamp
        return False

    def _ingest_fast(self, session: ClientSession, live: _Live, response: Response) -> bool:
        """The notification fast path (:mod:`spmp.server.fastpath`): True when it stored the notification,
        False when the general path must decode it."""
        rows: list[TelemetryRow] = []
        if not self._fast_rows(session, live, response.content_format, response.payload, rows):
            return False
        self._store_fast(live, rows)
        return True

    def _store_fast(self, live: _Live, rows: list[TelemetryRow]) -> None:
        self.stats.points += len(rows)
        if rows:
            self.sink.append_rows(rows)
        if self.events.subscribers:
            self._publish(live.endpoint, rows, live, "notification")

    def _publish(self, endpoint: str, rows: list[TelemetryRow], live: _Live | None, kind: str) -> None:
        data: dict[str, Any] = {
            "values": {row[1]: _jsonable(row[4]) for row in rows},
            "timestamps": sorted({from_epoch_ms(ts).timestamp() for ts in {row[2] for row in rows}}),
        }
        if live is not None:
            data["token"] = live.token.hex()
            data["paths"] = [str(p) for p in live.paths]
        self.events.publish("notification" if kind == "notification" else "send", endpoint, data)

    def _ingest(
        self, session: ClientSession, endpoint: str, response: Response | Request, live: _Live | None, kind: str
    ) -> int:
        now = utc_ms(datetime.now(UTC))
        try:
            if live is not None:
                assert isinstance(response, Response)
                series = self._decode_series(live, response, session.model)
            else:
                fmt = response.content_format
                assert fmt is not None
                series = [
                    (moment.timestamp, path, node)
                    for moment in codecs.decode_timestamped(response.payload, fmt, session.model)
                    for path, node in moment.nodes.items()
                ]
        except (Lwm2mError, ValueError) as exc:
            self.stats.decode_errors += 1
            log.warning("undecodable %s", kind, extra={"endpoint": endpoint, "error": str(exc)[:200]})
            raise
        rows: list[TelemetryRow] = []
        now_ms = to_epoch_ms(now) if live is None else _arrival_ms(live)
        for when, path, node in series:
            if node is not None:
                node_rows(endpoint, path, node, now_ms if when is None else to_epoch_ms(utc_ms(when)), rows)
        self.stats.points += len(rows)
        if rows:
            self.sink.append_rows(rows)
        if self.events.subscribers:
            self._publish(endpoint, rows, live, kind)
        return len(rows)

    def _spawn_delete(self, live: _Live) -> None:
        async def delete() -> None:
            try:
                await self.store.delete_observation(live.endpoint, live.token)
            except Exception:
                log.debug("observation already gone", extra={"endpoint": live.endpoint})

        task = asyncio.get_running_loop().create_task(delete())
        _background.add(task)
        task.add_done_callback(_background.discard)

    # -- Send -------------------------------------------------------------------------------------------

    def handle_send(self, request: Request) -> Response:
        """``POST /dp``: 2.04 once decoded and queued for storage."""
        if request.method != Code.POST:
            return Response(Code.METHOD_NOT_ALLOWED, b"only POST (Send) on /dp")
        peer = request.peer
        assert peer is not None
        session = self.registrations.by_peer(peer)
        if session is None:
            self.stats.rejected_sends += 1
            log.warning("send from an unregistered peer", extra={"peer": str(peer)})
            return Response(Code.FORBIDDEN, b"not registered from this address")
        fmt = request.content_format
        if fmt not in SEND_FORMATS:
            self.stats.rejected_sends += 1
            return Response(Code.UNSUPPORTED_CONTENT_FORMAT, b"Send takes SenML CBOR/JSON or LwM2M CBOR")
        self.registrations.touch(session)
        try:
            self._ingest(session, session.endpoint, request, None, "send")
        except (Lwm2mError, ValueError) as exc:
            self.stats.rejected_sends += 1
            return Response(Code.BAD_REQUEST, str(exc).encode()[:200])
        self.stats.sends += 1
        return Response(Code.CHANGED)


_background: set[asyncio.Task[None]] = set()


def _jsonable(value: TelemetryValue) -> Any:
    return value.hex() if isinstance(value, bytes) else value


__all__ = [
    "ObservationInfo",
    "ObservationManager",
    "ReportingStats",
    "TelemetrySink",
    "node_points",
    "node_rows",
]
