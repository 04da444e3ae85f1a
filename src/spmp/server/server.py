"""The LwM2M management server: transports, request routing, and the Python API the REST API calls.

:class:`ManagementServer` listens on CoAPS (DTLS PSK, keys from the Store's security table through
:class:`~spmp.server.psk.StorePskCache`) and, only when ``insecure=True`` is asked for explicitly, on
plain CoAP, with one :class:`~spmp.coap.endpoint.Endpoint` per transport. Uplink requests go to the
:class:`~spmp.server.registrations.RegistrationManager` (``/rd``) and the
:class:`~spmp.server.observations.ObservationManager` (``/dp``, notifications).

Downlink operations (read, write, execute, create, delete, discover, write-attributes, observe, ...)
pick a content format from what the client announced (its ``ct`` list and LwM2M version), decode
answers with the client's pinned model, and turn failures into :mod:`spmp.server.errors`.

Queue mode (TS Core §6.5): a client registered with ``Q`` is reachable only for a while after it
sent something (``awake_time``, MAX_TRANSMIT_WAIT by default). Outside that window requests wait in
the client's queue and go out, in order, when it next sends Register or Update; each caller waits at
most ``queue_timeout`` (or its own ``timeout``) and then gets :class:`DeviceTimeout` saying so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from spmp.coap.dtls import PskStore, X509Credentials
from spmp.coap.dtls_server import DtlsServerTransport
from spmp.coap.endpoint import CoapParameters, Endpoint
from spmp.coap.errors import CoapError, PeerReset, RequestTimeout, TransportClosed
from spmp.coap.message import Code, Request, Response
from spmp.coap.observe import Observation as CoapObservation
from spmp.coap.transport import Peer
from spmp.coap.udp import SERVER_RECV_BUFFER, UdpTransport
from spmp.lwm2m import codecs
from spmp.lwm2m.attributes import AttributeUpdate, NotificationAttributes, parse_query
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.execute import parse_arguments
from spmp.lwm2m.link import Link, format_links, parse_links
from spmp.lwm2m.model import ModelLookup, ModelRegistry, ResourceType
from spmp.lwm2m.node import Node, ObjectInstance, ResourceInstance, SingleResource, validate
from spmp.lwm2m.path import Path
from spmp.server.background import BackgroundWork
from spmp.server.calibration import CalibrationBackups
from spmp.server.cluster import ClusterRouter
from spmp.server.errors import (
    ClientNotRegistered,
    DeviceError,
    DeviceTimeout,
    InvalidArgument,
    QueueFull,
    ServerError,
)
from spmp.server.events import EventHub
from spmp.server.observations import ObservationInfo, ObservationManager, TelemetrySink
from spmp.server.psk import StorePskCache
from spmp.server.registrations import ClientSession, RegistrationEvent, RegistrationManager
from spmp.store import Notifier, Registration, SecurityInfo, Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[Endpoint, Peer], Awaitable[T]]

MAX_UPLINK_PAYLOAD = 64 * 1024
"""Largest Register/Update/Send body accepted (after block-wise reassembly); 4.13 beyond."""


REFUSAL_LOG_INTERVAL = 60.0
"""At most one "input refused" WARNING summary per this many seconds (see :meth:`ManagementServer.refusals`)."""

RESUME_GRACE = 2.0
"""See :meth:`ManagementServer._settle_dormant`."""

_MULTI_PREFERENCE = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.LWM2M_CBOR, ContentFormat.TLV)
"""Multi-value formats in our order of preference, when a 1.1+ client lists what it supports (ct)."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What :meth:`ManagementServer.read` answers: the node and the content format it came in."""

    path: Path
    node: Node
    content_format: int | None


class _Queued:
    """A downlink operation waiting for a queue-mode client to wake up."""

    __slots__ = ("future", "operation", "path")

    def __init__(self, operation: Operation[Any], path: str, future: asyncio.Future[Any]) -> None:
        self.operation = operation
        self.path = path
        self.future = future


def _path(path: str | Path) -> Path:
    if isinstance(path, Path):
        return path
    try:
        return Path.parse(path)
    except Lwm2mError as exc:
        raise InvalidArgument(str(exc)) from None


def _not_root(path: Path, operation: str) -> None:
    if path.is_root:
        raise InvalidArgument(f"{operation} needs an object, instance or resource path, not /")


def _diagnostic(response: Response) -> str:
    return response.payload[:200].decode("utf-8", "replace")


class ManagementServer:
    """See the module docstring. ``await start()``, use the API, ``await stop()``."""

    def __init__(
        self,
        store: Store,
        registry: ModelRegistry,
        *,
        host: str = "127.0.0.1",
        coap_port: int = 5683,
        coaps_port: int = 5684,
        insecure: bool = False,
        psk_store: PskStore | None = None,
        certificates: X509Credentials | None = None,
        params: CoapParameters | None = None,
        awake_time: float | None = None,
        queue_timeout: float = 300.0,
        queue_limit: int = 64,
        registration_rate: float = 20.0,
        registration_burst: int = 50,
        discover_on_register: bool = True,
        background_rate: float = 200.0,
        background_concurrency: int = 16,
        background_limit: int = 200_000,
        prefer_text: bool = True,
        psk_refresh: float = 30.0,
        event_queue_size: int = 1000,
        node_id: str = "",
    ) -> None:
        self.store = store
        self.registry = registry
        self.host = host
        self.coap_port = coap_port
        self.coaps_port = coaps_port
        self.insecure = insecure
        self.params = params if params is not None else CoapParameters()
        self.awake_time = awake_time if awake_time is not None else self.params.max_transmit_wait
        self.queue_timeout = queue_timeout
        self.queue_limit = queue_limit
        self.discover_on_register = discover_on_register
        """Discover every object a client announces after it registers, in the background (see below)."""
        self.prefer_text = prefer_text
        self.psk_refresh = psk_refresh
        self.certificates = certificates
        """X.509 mode next to PSK: our certificate and key, and the CA(s) client certificates must chain to.
        A registration over a certificate session must use the certificate's CN as endpoint name."""
        self.psk_cache: StorePskCache | None = StorePskCache(store) if psk_store is None else None
        self.psk_store: PskStore = psk_store if psk_store is not None else self.psk_cache  # type: ignore[assignment]
        self.cluster: ClusterRouter | None = (
            ClusterRouter(self, store, node_id) if node_id and isinstance(store, Notifier) else None
        )
        """Several servers on one PostgreSQL store (spmp.server.cluster): forwarding to the node holding a
        device, one view of the fleet, events from every node. None with SQLite/memory or no node_id."""
        self.events = EventHub(event_queue_size) if self.cluster is None else self.cluster.event_hub(event_queue_size)
        self.registrations_manager = RegistrationManager(
            store,
            registry,
            psk_cache=self.psk_cache,
            rate=registration_rate,
            burst=registration_burst,
            node_id=node_id,
        )
        self.sink = TelemetrySink(store)
        self.observations = ObservationManager(store, self.events, self.registrations_manager, self.sink)
        self.registrations_manager.listeners.append(self._on_registration_event)
        self.background = BackgroundWork(
            self._still_registered, rate=background_rate, concurrency=background_concurrency, limit=background_limit
        )
        """Post-registration work (Discover, calibration backup): queued and rate-limited, never blocking
        the Register response (:mod:`spmp.server.background`)."""
        self.calibration = CalibrationBackups(self)  # back up 3316/3317 calibration at registration
        self.registrations_manager.certificate_peer = self._certificate_peer
        self.registrations_manager.cluster = self.cluster
        self.coap: Endpoint | None = None
        self.coaps: Endpoint | None = None
        self.dtls: DtlsServerTransport | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dormant: dict[str, list[Any]] = {}
        self.uplink_too_large = 0
        """Requests with a body over MAX_UPLINK_PAYLOAD, answered 4.13."""
        self.refusal_log_interval = REFUSAL_LOG_INTERVAL
        self.refusal_check_interval = 1.0
        self.resume_grace = RESUME_GRACE
        """Seconds between a restarted client's Update and observing again what it did not notify for."""
        self._discovery_slots = asyncio.Semaphore(64)
        self._started = False

    # ------------------------------------------------------------------------------------------------
    # Life cycle

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.psk_cache is not None:
            await self.psk_cache.load()
        await self.registrations_manager.load()
        for stored in await self.store.list_observations():
            # Observations of a previous run: their CoAP state is gone; re-established on the next Update.
            self._dormant.setdefault(stored.endpoint, []).append(stored)
        try:
            if self.insecure:
                log.warning(
                    "plain CoAP enabled: registrations and data on this port are neither authenticated nor encrypted",
                    extra={"address": f"{self.host}:{self.coap_port}"},
                )
                udp = await UdpTransport.bind(self.host, self.coap_port, recv_buffer=SERVER_RECV_BUFFER)
                self.coap = Endpoint(udp, params=self.params)
                self.coap.handler = self._handler_for(self.coap)
                self.coap.on_unmatched_notification = self._resume_hook(self.coap)
            self.dtls = await DtlsServerTransport.bind(
                self.host, self.coaps_port, self.psk_store, certificates=self.certificates
            )
            self.coaps = Endpoint(self.dtls, params=self.params)
            self.coaps.handler = self._handler_for(self.coaps)
            self.coaps.on_unmatched_notification = self._resume_hook(self.coaps)
        except BaseException:
            await self._close_endpoints()
            raise
        if self.cluster is not None:
            await self.cluster.start()
        self.registrations_manager.start()
        self.background.start()
        if self.psk_cache is not None and self.psk_refresh > 0:
            self._spawn(self._refresh_psk())
        self._spawn(self._watch_refusals())
        log.info(
            "management server started",
            extra={
                "coap": self.coap_address,
                "coaps": self.coaps_address,
                "registrations": len(self.registrations_manager),
            },
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.cluster is not None:
            await self.cluster.stop()
        await self.registrations_manager.stop()
        await self.background.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.psk_cache is not None:
            await self.psk_cache.close()
        for session in self.registrations_manager.sessions():
            self._fail_queue(session, ServerError("server stopped"))
        await self._close_endpoints()
        await self.sink.flush()
        self.events.close()
        log.info("management server stopped")

    async def _close_endpoints(self) -> None:
        for endpoint in (self.coap, self.coaps):
            if endpoint is not None:
                await endpoint.close()
        self.coap = self.coaps = None
        self.dtls = None

    async def __aenter__(self) -> ManagementServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def coap_address(self) -> tuple[str, int] | None:
        return None if self.coap is None else self.coap.transport.local_address

    @property
    def coaps_address(self) -> tuple[str, int] | None:
        return None if self.coaps is None else self.coaps.transport.local_address

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring (registrations, reporting, CoAP endpoints, DTLS handshakes)."""
        out: dict[str, Any] = {
            "registrations": len(self.registrations_manager),
            "observations": self.observations.count(),
            "registration": dataclasses.asdict(self.registrations_manager.stats),
            "reporting": dataclasses.asdict(self.observations.stats),
            "telemetry_written": self.sink.written,
            "events_published": self.events.published,
            "deferred": self.background.as_dict(),
        }
        if self.coap is not None:
            out["coap"] = dataclasses.asdict(self.coap.stats)
        if self.coaps is not None:
            out["coaps"] = dataclasses.asdict(self.coaps.stats)
        if self.dtls is not None:
            out["dtls"] = dataclasses.asdict(self.dtls.stats)
        out["telemetry"] = {
            **dataclasses.asdict(self.observations.stats),
            "written": self.sink.written,
            "write_failures": self.sink.failed,
        }
        out["refusals"] = self.refusals()
        return out

    def refusals(self) -> dict[str, int]:
        """Input refused or dropped so far, by kind (cumulative counts; the DTLS ones exist with a DTLS
        port). ``dtls_handshakes_failed`` includes the unknown identities, refused certificates and
        timeouts, which are also counted on their own."""
        registration = self.registrations_manager.stats
        reporting = self.observations.stats
        out = {
            "coap_malformed": sum(e.stats.malformed for e in (self.coap, self.coaps) if e is not None),
            "registration_rate_limited": registration.rate_limited,
            "registration_forbidden": registration.forbidden,
            "registration_bad_request": registration.bad_requests,
            "registration_too_large": registration.too_large,
            "uplink_too_large": self.uplink_too_large,
            "send_rejected": reporting.rejected_sends,
            "notification_undecodable": reporting.decode_errors,
        }
        if self.dtls is not None:
            dtls = self.dtls.stats
            out["dtls_handshakes_failed"] = dtls.handshakes_failed
            out["dtls_unknown_identity"] = dtls.unknown_identity
            out["dtls_certificate_refused"] = dtls.certificate_refused
            out["dtls_handshake_timeouts"] = dtls.handshake_timeouts
            out["dtls_refused_max_sessions"] = dtls.refused_max_sessions
            out["dtls_garbage"] = dtls.garbage
        return out

    async def _watch_refusals(self) -> None:
        """A WARNING summary line when input was refused: at most one per :attr:`refusal_log_interval`
        seconds, with the counts since the previous line (nothing is logged while nothing is refused).
        Reads counters every :attr:`refusal_check_interval` seconds; the hot paths only count."""
        loop = asyncio.get_running_loop()
        last = self.refusals()
        last_time = loop.time()
        quiet_until = 0.0
        while True:
            await asyncio.sleep(self.refusal_check_interval)
            now = loop.time()
            if now < quiet_until:
                continue
            current = self.refusals()
            counts = {kind: n - last.get(kind, 0) for kind, n in current.items() if n > last.get(kind, 0)}
            if not counts:
                continue
            log.warning("input refused", extra={**counts, "seconds": round(now - last_time)})
            last, last_time = current, now
            quiet_until = now + self.refusal_log_interval

    # ------------------------------------------------------------------------------------------------
    # Uplink

    def _handler_for(self, via: Endpoint) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def handle(request: Request) -> Response:
            if len(request.payload) > MAX_UPLINK_PAYLOAD:
                log.warning("oversized request", extra={"peer": str(request.peer), "bytes": len(request.payload)})
                self.uplink_too_large += 1
                too_large = Response(Code.REQUEST_ENTITY_TOO_LARGE, b"payload too large")
                too_large.size1 = MAX_UPLINK_PAYLOAD  # RFC 7252 5.10.9: the largest body we take
                return too_large
            path = request.path
            if path and path[0] == "rd":
                return await self.registrations_manager.handle(request, via)
            if path == ("dp",):
                return self.observations.handle_send(request)
            log.info("request for an unknown path", extra={"peer": str(request.peer), "path": "/".join(path)[:80]})
            return Response(Code.NOT_FOUND, b"no such resource")

        return handle

    def _certificate_peer(self, peer: Peer) -> bool:
        """Whether ``peer`` authenticated with a certificate (its identity is then the certificate's CN)."""
        return self.dtls is not None and self.dtls.session_mode(peer.address) == "certificate"

    def _resume_hook(
        self, via: Endpoint
    ) -> Callable[[Peer, bytes, Response], Coroutine[Any, Any, CoapObservation | None]]:
        """The endpoint's unmatched-notification hook: adopt notifications of persisted observations."""

        async def hook(peer: Peer, token: bytes, response: Response) -> CoapObservation | None:
            return await self._resume_observation(via, peer, token)

        return hook

    async def _resume_observation(self, via: Endpoint, peer: Peer, token: bytes) -> CoapObservation | None:
        """A notification with a token this run did not register: if the Store holds that observation
        for the peer's current registration (a previous run made it), take it over, so telemetry keeps
        flowing after a restart without waiting for the client's next Update. Else None (RST)."""
        session = self.registrations_manager.by_peer(peer)
        if session is None:
            return None
        endpoint = session.endpoint
        try:
            stored = await self.store.get_observation(endpoint, token)
        except Exception:
            log.exception("observation lookup failed", extra={"endpoint": endpoint})
            return None
        if (
            stored is None
            or stored.registration_id != session.registration.registration_id
            or self.registrations_manager.get(endpoint) is not session
        ):
            return None
        try:
            paths = tuple(Path.parse(p) for p in stored.paths)
            request = self._observe_request(session, paths, stored.composite, stored.content_format)
        except (Lwm2mError, ServerError) as exc:
            log.info("cannot resume a stored observation", extra={"endpoint": endpoint, "error": str(exc)})
            return None

        def coap_for(live: Any) -> CoapObservation:
            callback = self.observations.callback(live)
            return via.adopt_observation(peer, token, request, callback=callback, queue_size=1)

        live = self.observations.adopt(session, stored, coap_for)
        dormant = self._dormant.get(endpoint)
        if dormant is not None:
            dormant[:] = [d for d in dormant if d.token != token]  # not to be re-observed on the next Update
            if not dormant:
                del self._dormant[endpoint]
        return live.coap

    def _observe_request(
        self, session: ClientSession, paths: tuple[Path, ...], composite: bool, fmt: int | None
    ) -> Request:
        """The observe request (without Observe) that :meth:`observe` / :meth:`observe_composite` send."""
        if composite:
            cf = ContentFormat.of(fmt) if fmt is not None else self._composite_format(session)
            payload = codecs.multi_codec_for(cf).encode_paths(paths)
            return Request(Code.FETCH, "", payload=payload, content_format=cf, accept=cf)
        return Request(Code.GET, str(paths[0]), accept=fmt)

    def _on_registration_event(self, kind: RegistrationEvent, session: ClientSession) -> None:
        registration = session.registration
        endpoint = registration.endpoint
        if kind in ("registered", "deregistered", "expired"):
            self.observations.drop_endpoint(endpoint)
        if kind in ("deregistered", "expired"):
            self._dormant.pop(endpoint, None)
            self._fail_queue(session, ClientNotRegistered(endpoint))
        self.events.publish(kind, endpoint, _registration_data(registration))
        if kind == "registered":
            self._dormant.pop(endpoint, None)
            if self.discover_on_register:
                self.background.submit(session, self._discover_all)
            if session.carried or session.queue:
                self._spawn(self._after_registration(session))
        elif kind == "updated":
            if self._dormant.get(endpoint):
                self._spawn(self._settle_dormant(session))
            self._kick_queue(session)

    def _still_registered(self, session: ClientSession) -> bool:
        return self.registrations_manager.get(session.endpoint) is session

    async def _after_registration(self, session: ClientSession) -> None:
        """Re-establish the observations of the registration it replaced, then send whatever waited in
        its queue (Discover is background work, see :attr:`background`)."""
        if session.carried:
            await self._reobserve(session, delete_old=False)
        self._kick_queue(session)

    async def _discover_all(self, session: ClientSession) -> None:
        registration = session.registration
        try:
            object_ids = [oid for oid, _ in self.registrations_manager.parse_links(registration.object_links).objects]
        except Lwm2mError:
            return
        links: list[Link] = []
        async with self._discovery_slots:
            for object_id in object_ids:
                if self.registrations_manager.get(registration.endpoint) is not session:
                    return  # replaced or gone meanwhile
                try:
                    links.extend(await self.discover(registration.endpoint, Path.of(object_id), timeout=60.0))
                except DeviceError as exc:
                    log.debug(
                        "discover refused",
                        extra={"endpoint": registration.endpoint, "object": object_id, "error": str(exc)},
                    )
                except ServerError as exc:
                    log.info("discover failed", extra={"endpoint": registration.endpoint, "error": str(exc)})
                    return
        current = session.registration
        if self.registrations_manager.get(current.endpoint) is not session:
            return
        updated = dataclasses.replace(current, discovered=format_links(links))
        await self.store.save_registration(updated)
        if session.registration is current:
            session.registration = updated
        log.debug("discovered", extra={"endpoint": current.endpoint, "links": len(links)})

    async def _settle_dormant(self, session: ClientSession) -> None:
        """The first Update after a restart, from a client with observations of a previous run: the
        notifications it stored while we were away come right behind our 2.04, under the old tokens, and
        are adopted (:meth:`_resume_observation` takes them off the dormant list). Only the observations
        not heard of within :attr:`resume_grace` are observed again (their old entries deleted): doing
        that at once would answer the stored notifications with RST, and lose them."""
        await asyncio.sleep(self.resume_grace)
        if not self._still_registered(session):
            return
        dormant = self._dormant.pop(session.endpoint, None)
        if dormant:
            session.carried = dormant + session.carried
            await self._reobserve(session, delete_old=True)

    async def _reobserve(self, session: ClientSession, *, delete_old: bool) -> None:
        carried, session.carried = session.carried, []
        endpoint = session.endpoint
        for stored in carried:
            try:
                if delete_old:
                    await self.store.delete_observation(endpoint, stored.token)
                paths = [Path.parse(p) for p in stored.paths]
                fmt = None if stored.content_format is None else ContentFormat.of(stored.content_format)
                if stored.composite:
                    await self.observe_composite(endpoint, paths, content_format=fmt)
                else:
                    await self.observe(endpoint, paths[0], content_format=fmt)
            except (ServerError, Lwm2mError) as exc:
                log.info(
                    "could not re-establish an observation",
                    extra={"endpoint": endpoint, "paths": stored.paths, "error": str(exc)},
                )
            except Exception:
                log.exception("re-observe failed", extra={"endpoint": endpoint})

    async def _refresh_psk(self) -> None:
        assert self.psk_cache is not None
        while True:
            await asyncio.sleep(self.psk_refresh)
            try:
                await self.psk_cache.load()
            except Exception:
                log.exception("psk cache refresh failed")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------------------------
    # Downlink plumbing: direct or queued

    def _session(self, endpoint: str) -> ClientSession:
        session = self.registrations_manager.get(endpoint)
        if session is None and self.cluster is not None:
            session = self.cluster.remote_session(endpoint)  # another node holds it: calls are forwarded
        if session is None:
            raise ClientNotRegistered(endpoint)
        return session

    def _awake(self, session: ClientSession) -> bool:
        return asyncio.get_running_loop().time() - session.last_seen < self.awake_time

    async def _call(self, session: ClientSession, operation: Operation[T], path: str, timeout: float | None) -> T:
        """Run ``operation`` against the client now, or queue it while a queue-mode client sleeps."""
        if session.registration.queue_mode and (session.queue or not self._awake(session)):
            return await self._enqueue(session, operation, path, timeout)
        return await self._direct(session, operation, path, timeout)

    async def _direct(self, session: ClientSession, operation: Operation[T], path: str, timeout: float | None) -> T:
        via = session.via
        if via is None:
            via = self.coaps if session.peer.identity is not None else self.coap
        if via is None:
            raise ServerError(f"no transport to reach {session.endpoint!r} on")
        started = asyncio.get_running_loop().time()
        try:
            if timeout is None:
                return await operation(via, session.peer)
            return await asyncio.wait_for(operation(via, session.peer), timeout)
        except TimeoutError:
            raise DeviceTimeout(session.endpoint, path, asyncio.get_running_loop().time() - started) from None
        except RequestTimeout as exc:
            raise DeviceTimeout(session.endpoint, path, exc.seconds) from None
        except PeerReset:
            raise ServerError(f"{session.endpoint!r} reset the request for {path}") from None
        except TransportClosed:
            raise ServerError("the server is stopping") from None
        except CoapError as exc:
            raise ServerError(f"{session.endpoint!r}: {exc}") from None

    async def _enqueue(self, session: ClientSession, operation: Operation[T], path: str, timeout: float | None) -> T:
        queue = session.queue
        if queue is None:
            queue = session.queue = deque()
        if len(queue) >= self.queue_limit:
            raise QueueFull(session.endpoint, self.queue_limit)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        queue.append(_Queued(operation, path, future))
        if self._awake(session):
            self._kick_queue(session)
        wait = timeout if timeout is not None else self.queue_timeout
        started = loop.time()
        log.debug("request queued", extra={"endpoint": session.endpoint, "path": path, "queued": len(queue)})
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            raise DeviceTimeout(
                session.endpoint, path, loop.time() - started, "queued: the client did not wake up in time"
            ) from None

    def _kick_queue(self, session: ClientSession) -> None:
        if session.queue and not session.draining:
            session.draining = True
            self._spawn(self._drain(session))

    async def _drain(self, session: ClientSession) -> None:
        """Send a woken client's queued requests in order, while it stays registered and awake."""
        queue = session.queue
        try:
            while queue and self.registrations_manager.get(session.endpoint) is session and self._awake(session):
                item = queue.popleft()
                if item.future.done():
                    continue  # its caller gave up
                try:
                    result = await self._direct(session, item.operation, item.path, None)
                except Exception as exc:
                    if not item.future.done():
                        item.future.set_exception(exc)
                else:
                    if not item.future.done():
                        item.future.set_result(result)
        finally:
            session.draining = False

    def _fail_queue(self, session: ClientSession, error: Exception) -> None:
        queue = session.queue
        while queue:
            item = queue.popleft()
            if not item.future.done():
                item.future.set_exception(error)

    async def _request(self, session: ClientSession, request: Request, path: str, timeout: float | None) -> Response:
        if self.cluster is not None and self.cluster.is_remote(session):
            return await self.cluster.request(session, request, path, timeout)

        async def send(via: Endpoint, peer: Peer) -> Response:
            return await via.request(peer, request)

        return await self._call(session, send, path, timeout)

    # ------------------------------------------------------------------------------------------------
    # Content formats

    def _multi_format(self, session: ClientSession) -> ContentFormat:
        registration = session.registration
        if registration.lwm2m_version == "1.0":
            return ContentFormat.TLV
        announced = registration.content_formats
        if announced:
            for fmt in _MULTI_PREFERENCE:
                if fmt in announced:
                    return fmt
        return ContentFormat.SENML_CBOR

    def _value_format(self, session: ClientSession, path: Path) -> ContentFormat:
        """Text (or opaque) for one single value when ``prefer_text``, else the multi-value format."""
        if self.prefer_text and path.level >= 3:
            model = session.model.object_model(path.ids[0])
            resource = None if model is None else model.resource(path.ids[2])
            if resource is not None and (path.is_resource_instance or not resource.multiple):
                return ContentFormat.OPAQUE if resource.type is ResourceType.OPAQUE else ContentFormat.TEXT
        return self._multi_format(session)

    def _check(self, response: Response, expected: Code, endpoint: str, path: str) -> None:
        if response.code != expected:
            if response.is_success:
                log.info("unexpected success code", extra={"endpoint": endpoint, "path": path, "code": response.code})
                return
            raise DeviceError(response.code, _diagnostic(response))

    def _decode(self, response: Response, path: Path, models: ModelLookup, endpoint: str) -> Node:
        fmt = response.content_format
        try:
            return codecs.decode(response.payload, path, ContentFormat.TEXT if fmt is None else fmt, models)
        except (Lwm2mError, ValueError) as exc:
            raise ServerError(f"{endpoint!r} answered {path} with an undecodable payload: {exc}") from None

    # ------------------------------------------------------------------------------------------------
    # The API

    def registrations(self) -> list[Registration]:
        """Every registration; in a cluster, those the other nodes hold too."""
        local = [s.registration for s in self.registrations_manager.sessions()]
        if self.cluster is not None:
            local.extend(self.cluster.remote_registrations())
        return local

    def registration(self, endpoint: str) -> Registration | None:
        session = self.registrations_manager.get(endpoint)
        if session is None and self.cluster is not None:
            return self.cluster.remote_registration(endpoint)
        return None if session is None else session.registration

    def model_for(self, endpoint: str) -> ModelLookup:
        """The registry pinned to the object versions ``endpoint`` announced (newest versions if unknown)."""
        session = self.registrations_manager.get(endpoint)
        if session is None and self.cluster is not None:
            session = self.cluster.remote_session(endpoint)
        return self.registry if session is None else session.model

    async def read(
        self,
        endpoint: str,
        path: str | Path,
        *,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> ReadResult:
        target = _path(path)
        _not_root(target, "Read")
        session = self._session(endpoint)
        fmt = content_format if content_format is not None else self._value_format(session, target)
        response = await self._request(session, Request(Code.GET, str(target), accept=fmt), str(target), timeout)
        self._check(response, Code.CONTENT, endpoint, str(target))
        return ReadResult(target, self._decode(response, target, session.model, endpoint), response.content_format)

    async def read_composite(
        self,
        endpoint: str,
        paths: Sequence[str | Path],
        *,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> dict[Path, Node | None]:
        targets = [_path(p) for p in paths]
        if not targets:
            raise InvalidArgument("Read-Composite needs at least one path")
        session = self._session(endpoint)
        fmt = content_format if content_format is not None else self._composite_format(session)
        codec = codecs.multi_codec_for(fmt)
        request = Request(Code.FETCH, "", payload=codec.encode_paths(targets), content_format=fmt, accept=fmt)
        response = await self._request(session, request, "/", timeout)
        self._check(response, Code.CONTENT, endpoint, "/")
        answer_fmt = response.content_format if response.content_format is not None else fmt
        try:
            found = codecs.decode_nodes(response.payload, answer_fmt, session.model)
        except (Lwm2mError, ValueError) as exc:
            raise ServerError(f"{endpoint!r} answered Read-Composite with an undecodable payload: {exc}") from None
        out: dict[Path, Node | None] = {}
        for target in targets:
            if not any(p.starts_with(target) or target.starts_with(p) for p in found):
                out[target] = None
        out.update(found)
        return out

    def _composite_format(self, session: ClientSession) -> ContentFormat:
        if session.registration.lwm2m_version == "1.0":
            raise InvalidArgument(f"{session.endpoint!r} speaks LwM2M 1.0, which has no composite operations")
        fmt = self._multi_format(session)
        return ContentFormat.SENML_CBOR if fmt is ContentFormat.TLV else fmt

    async def write(
        self,
        endpoint: str,
        path: str | Path,
        node: Node,
        *,
        replace: bool = True,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> None:
        target = _path(path)
        _not_root(target, "Write")
        session = self._session(endpoint)
        try:
            validate(node, target, session.model)
        except Lwm2mError as exc:
            raise InvalidArgument(str(exc)) from None
        if content_format is not None:
            fmt = content_format
        elif isinstance(node, SingleResource | ResourceInstance):
            fmt = self._value_format(session, target)
        else:
            fmt = self._multi_format(session)
        try:
            payload = codecs.encode(node, target, fmt, session.model)
        except Lwm2mError as exc:
            raise InvalidArgument(str(exc)) from None
        method = Code.PUT if replace else Code.POST
        request = Request(method, str(target), payload=payload, content_format=fmt)
        response = await self._request(session, request, str(target), timeout)
        self._check(response, Code.CHANGED, endpoint, str(target))

    async def write_composite(
        self,
        endpoint: str,
        nodes: Mapping[Path, Node],
        *,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> None:
        if not nodes:
            raise InvalidArgument("Write-Composite needs at least one node")
        session = self._session(endpoint)
        fmt = content_format if content_format is not None else self._composite_format(session)
        try:
            for target, node in nodes.items():
                validate(node, target, session.model)
            payload = codecs.encode_nodes(dict(nodes), fmt, session.model)
        except Lwm2mError as exc:
            raise InvalidArgument(str(exc)) from None
        request = Request(Code.IPATCH, "", payload=payload, content_format=fmt)
        response = await self._request(session, request, "/", timeout)
        self._check(response, Code.CHANGED, endpoint, "/")

    async def write_attributes(
        self,
        endpoint: str,
        path: str | Path,
        attributes: NotificationAttributes | AttributeUpdate | str | Sequence[str],
        *,
        timeout: float | None = None,
    ) -> None:
        """Write-Attributes (PUT with the attributes as query); a bare name in a query unsets it."""
        target = _path(path)
        _not_root(target, "Write-Attributes")
        session = self._session(endpoint)
        if isinstance(attributes, NotificationAttributes | AttributeUpdate):
            query = attributes.to_query()
        else:
            try:
                query = parse_query(attributes, lwm2m_version=session.registration.lwm2m_version).to_query()
            except Lwm2mError as exc:
                raise InvalidArgument(str(exc)) from None
        if not query:
            raise InvalidArgument("Write-Attributes needs at least one attribute")
        response = await self._request(session, Request(Code.PUT, str(target), query=query), str(target), timeout)
        self._check(response, Code.CHANGED, endpoint, str(target))

    async def discover(self, endpoint: str, path: str | Path, *, timeout: float | None = None) -> list[Link]:
        target = _path(path)
        _not_root(target, "Discover")
        session = self._session(endpoint)
        request = Request(Code.GET, str(target), accept=ContentFormat.LINK)
        response = await self._request(session, request, str(target), timeout)
        self._check(response, Code.CONTENT, endpoint, str(target))
        try:
            return parse_links(response.payload)
        except Lwm2mError as exc:
            raise ServerError(f"{endpoint!r} answered Discover with bad link-format: {exc}") from None

    async def execute(
        self, endpoint: str, path: str | Path, arguments: str | None = None, *, timeout: float | None = None
    ) -> None:
        target = _path(path)
        if not target.is_resource:
            raise InvalidArgument(f"Execute needs a resource path, not {target}")
        payload = b"" if not arguments else arguments.encode("ascii", "replace")
        try:
            parse_arguments(payload)
        except Lwm2mError as exc:
            raise InvalidArgument(str(exc)) from None
        session = self._session(endpoint)
        response = await self._request(session, Request(Code.POST, str(target), payload=payload), str(target), timeout)
        self._check(response, Code.CHANGED, endpoint, str(target))

    async def create(
        self,
        endpoint: str,
        object_path: str | Path,
        instance: ObjectInstance,
        *,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> Path:
        """Create an instance under ``object_path``; returns the created instance's path."""
        target = _path(object_path)
        if not target.is_object:
            raise InvalidArgument(f"Create needs an object path, not {target}")
        session = self._session(endpoint)
        fmt = content_format if content_format is not None else self._multi_format(session)
        if instance.id is None and fmt is not ContentFormat.TLV:
            # SenML and LwM2M CBOR name every value by its full path: the instance needs an id.
            prefix = f"{target}/"
            taken = {int(p[len(prefix) :]) for p in session.registration.instances if p.startswith(prefix)}
            instance = ObjectInstance(next(i for i in range(65535) if i not in taken), instance.resources)
        where = target if instance.id is None or fmt is ContentFormat.TLV else target.child(instance.id)
        try:
            validate(instance, target.child(instance.id if instance.id is not None else 0), session.model)
            payload = codecs.encode(instance, where, fmt, session.model)
        except Lwm2mError as exc:
            raise InvalidArgument(str(exc)) from None
        request = Request(Code.POST, str(target), payload=payload, content_format=fmt)
        response = await self._request(session, request, str(target), timeout)
        self._check(response, Code.CREATED, endpoint, str(target))
        location = response.location_path
        if len(location) >= 2 and location[-1].isdigit() and location[-2].isdigit():
            return Path.of(int(location[-2]), int(location[-1]))
        if instance.id is not None:
            return target.child(instance.id)
        raise ServerError(f"{endpoint!r} created an instance of {target} without saying which (no Location-Path)")

    async def delete(self, endpoint: str, path: str | Path, *, timeout: float | None = None) -> None:
        target = _path(path)
        _not_root(target, "Delete")
        session = self._session(endpoint)
        response = await self._request(session, Request(Code.DELETE, str(target)), str(target), timeout)
        self._check(response, Code.DELETED, endpoint, str(target))

    async def observe(
        self,
        endpoint: str,
        path: str | Path,
        *,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> ObservationInfo:
        target = _path(path)
        _not_root(target, "Observe")
        session = self._session(endpoint)
        fmt = content_format if content_format is not None else self._value_format(session, target)
        request = Request(Code.GET, str(target), accept=fmt)
        return await self._observe(session, request, (target,), composite=False, fmt=fmt, timeout=timeout)

    async def observe_composite(
        self,
        endpoint: str,
        paths: Sequence[str | Path],
        *,
        content_format: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> ObservationInfo:
        targets = tuple(_path(p) for p in paths)
        if not targets:
            raise InvalidArgument("Observe-Composite needs at least one path")
        session = self._session(endpoint)
        fmt = content_format if content_format is not None else self._composite_format(session)
        payload = codecs.multi_codec_for(fmt).encode_paths(targets)
        request = Request(Code.FETCH, "", payload=payload, content_format=fmt, accept=fmt)
        return await self._observe(session, request, targets, composite=True, fmt=fmt, timeout=timeout)

    async def _observe(
        self,
        session: ClientSession,
        request: Request,
        paths: tuple[Path, ...],
        *,
        composite: bool,
        fmt: int,
        timeout: float | None,
    ) -> ObservationInfo:
        if self.cluster is not None and self.cluster.is_remote(session):
            return await self.cluster.observe(session, paths, composite=composite, fmt=fmt, timeout=timeout)
        live = self.observations.prepare(session, paths, composite, fmt)
        callback = self.observations.callback(live)

        async def observe(via: Endpoint, peer: Peer) -> CoapObservation:
            return await via.observe(peer, request, callback=callback, queue_size=1)

        where = str(paths[0]) if len(paths) == 1 else "/"
        coap = await self._call(session, observe, where, timeout)
        response = coap.response
        if not coap.active:
            if response is not None and not response.is_success:
                raise DeviceError(response.code, _diagnostic(response))
            raise ServerError(f"{session.endpoint!r} answered without accepting the observation of {where}")
        return await self.observations.established(live, coap)

    async def cancel_observation(
        self, endpoint: str, path: str | Path, *, active: bool = True, timeout: float | None = None
    ) -> None:
        """Cancel every observation of ``endpoint`` that covers ``path``: actively (GET with Observe=1)
        or passively (forget it; the next notification is answered with RST)."""
        target = _path(path)
        session = self._session(endpoint)
        if self.cluster is not None and self.cluster.is_remote(session):
            await self.cluster.cancel(session, target, active=active, timeout=timeout)
            return
        lives = self.observations.find(endpoint, target)
        if not lives:
            raise InvalidArgument(f"no observation of {target} on {endpoint!r}")
        for live in lives:
            if active:

                async def deregister(via: Endpoint, peer: Peer, live: Any = live) -> None:
                    await self.observations.cancel(live, active=True)

                await self._call(session, deregister, str(target), timeout)
            else:
                await self.observations.cancel(live, active=False)

    async def cancel_composite_observation(
        self, endpoint: str, paths: Sequence[str | Path], *, active: bool = True, timeout: float | None = None
    ) -> int:
        """Cancel the composite observations of ``endpoint`` over exactly ``paths`` (in any order), actively
        (GET/FETCH with Observe=1) or passively. Returns how many were cancelled (0: none matched)."""
        targets = {_path(p) for p in paths}
        session = self._session(endpoint)
        if self.cluster is not None and self.cluster.is_remote(session):
            return await self.cluster.cancel_composite(session, targets, active=active, timeout=timeout)
        lives = [live for live in self.observations.find(endpoint) if live.composite and set(live.paths) == targets]
        for live in lives:
            if active:

                async def deregister(via: Endpoint, peer: Peer, live: Any = live) -> None:
                    await self.observations.cancel(live, active=True)

                await self._call(session, deregister, "/", timeout)
            else:
                await self.observations.cancel(live, active=False)
        return len(lives)

    async def put_psk(self, endpoint: str, identity: str, key: bytes) -> None:
        """Store (or replace) an endpoint's PSK; new DTLS handshakes use it at once."""
        if self.psk_cache is None:
            raise ServerError("this server was given its own PSK store; manage keys there")
        await self.psk_cache.put(SecurityInfo(endpoint, identity, key))


def _registration_data(registration: Registration) -> dict[str, Any]:
    return {
        "registration_id": registration.registration_id,
        "lifetime": registration.lifetime,
        "lwm2m_version": registration.lwm2m_version,
        "binding": registration.binding,
        "queue_mode": registration.queue_mode,
        "address": f"{registration.host}:{registration.port}",
        "secure": registration.dtls_identity is not None,
    }
