"""Client registrations (TS Core §6.2, Transport §6.4.1): Register, Update, De-register, lifetime expiry.

:class:`RegistrationManager` answers ``POST /rd?…`` (2.01 with Location-Path ``rd/<id>``),
``POST /rd/<id>`` (2.04) and ``DELETE /rd/<id>`` (2.02), keeps one :class:`ClientSession` per endpoint
in memory and every registration in the Store, so a restart loses none (:meth:`load`; each one still
expires at its own deadline).

Design points, because this must later hold 100k registrations:

* Expiry is one heap of ``(deadline, seq, endpoint, registration id)`` served by one task. An Update
  pushes a new entry and leaves the old one to be skipped when popped (lazy deletion); the heap is
  rebuilt when stale entries outnumber live ones.
* Security: a registration over DTLS must come from the PSK identity the Store holds for that
  endpoint, or over a certificate session whose certificate CN is the endpoint name, and an endpoint
  that has a PSK may not register over plain CoAP (4.03, logged, counted).
  Update and De-register must come from the identity that registered.
* Registration floods: a token bucket per source address; excess gets 5.03 with Max-Age telling when
  to retry, counted in :attr:`RegistrationStats.rate_limited`. Other addresses are unaffected.
* Listeners (plain callables, called synchronously) hear registered/updated/deregistered/expired: the
  hook for observations, queue mode, events, and later the SNMP/EMAN layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import math
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from spmp.coap.message import Code, Request, Response
from spmp.coap.transport import Peer
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.link import LINK_LIMITS, RegistrationObjects, parse_registration
from spmp.lwm2m.model import ClientModel, ModelRegistry
from spmp.lwm2m.registration import (
    SUPPORTED_LWM2M_VERSIONS,
    InvalidRegistrationError,
    parse_register,
    parse_update,
)
from spmp.store import Observation as StoredObservation
from spmp.store import Registration, SecurityScope, Store
from spmp.store.interface import utc_now

if TYPE_CHECKING:
    from spmp.coap.endpoint import Endpoint
    from spmp.server.cluster import ClusterRouter
    from spmp.server.psk import StorePskCache

log = logging.getLogger(__name__)

RegistrationEvent = Literal["registered", "updated", "deregistered", "expired"]
Listener = Callable[[RegistrationEvent, "ClientSession"], None]

_MAX_SLEEP = 3600.0


class ClientSession:
    """What the server knows about one registered client, beyond its stored :class:`Registration`."""

    __slots__ = ("carried", "deadline", "draining", "last_seen", "model", "peer", "queue", "registration", "via")

    def __init__(self, registration: Registration, peer: Peer, via: Endpoint | None, model: ClientModel) -> None:
        self.registration = registration
        self.peer = peer
        self.via = via
        """The CoAP endpoint (plain or DTLS) the client talks to us on; None until it does, after a restart."""
        self.model = model
        self.deadline = registration.last_update.timestamp() + registration.lifetime
        self.last_seen = -math.inf
        """Event-loop time of the client's last message (queue mode: it is awake for a while after)."""
        self.carried: list[StoredObservation] = []
        """Observations of the registration this one replaced, to re-establish."""
        self.queue: deque[Any] | None = None
        """Requests waiting for a queue-mode client to wake up (owned by the server's downlink code)."""
        self.draining = False

    @property
    def endpoint(self) -> str:
        return self.registration.endpoint

    def __repr__(self) -> str:
        r = self.registration
        return f"<ClientSession {r.endpoint} id={r.registration_id} {self.peer}>"


@dataclass(slots=True)
class RegistrationStats:
    registered: int = 0
    updated: int = 0
    deregistered: int = 0
    expired: int = 0
    bad_requests: int = 0
    forbidden: int = 0
    rate_limited: int = 0
    too_large: int = 0
    """Register/Update payloads over MAX_REGISTRATION_PAYLOAD, answered 4.13."""


class RateLimiter:
    """A token bucket per key (source address): ``rate`` tokens/s, at most ``burst`` banked."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        """0.0 when allowed (a token is spent), else the seconds until a token is available."""
        buckets = self._buckets
        tokens, last = buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(buckets) >= self.max_keys and key not in buckets:
                self._prune(now)
            buckets[key] = (tokens - 1.0, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no information: drop them first.
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


class _Payload:
    """What a Register/Update payload says, parsed once per distinct payload (fleets send the same
    object links again and again) and shared by every registration that sent it."""

    __slots__ = ("content_formats", "instances", "model", "object_links", "object_versions", "objects")

    def __init__(self, payload: bytes, objects: RegistrationObjects, model: ClientModel) -> None:
        self.objects = objects
        self.object_links = sys.intern(payload.decode("utf-8", "replace"))
        self.object_versions = {oid: ver for oid, ver in objects.objects if ver is not None}
        self.instances = tuple(sys.intern(str(p)) for p in objects.instances)
        self.content_formats = objects.content_formats
        self.model = model


_PAYLOAD_CACHE = 1024
MAX_REGISTRATION_PAYLOAD = LINK_LIMITS.max_links * len("</1>,")
"""Largest Register/Update payload (40 KiB): one that fits never holds more links than the parser takes,
so a bigger one is refused as too large (4.13 with Size1), not as malformed (4.00)."""
"""Distinct registration payloads remembered (parsed, with their pinned model)."""


def _new_id() -> str:
    return secrets.token_hex(6)


def _diagnostic(code: int, message: str) -> Response:
    return Response(code, message.encode()[:200])


class RegistrationManager:
    """See the module docstring. Create, ``await load()``, ``start()``; ``await stop()`` at the end."""

    def __init__(
        self,
        store: Store,
        registry: ModelRegistry,
        *,
        psk_cache: StorePskCache | None = None,
        rate: float = 20.0,
        burst: int = 50,
        node_id: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.psk_cache = psk_cache
        self.node_id = node_id
        self.stats = RegistrationStats()
        self.listeners: list[Listener] = []
        self.certificate_peer: Callable[[Peer], bool] | None = None
        """Tells whether a peer authenticated by X.509 certificate (its identity is then the CN)."""
        self.cluster: ClusterRouter | None = None
        """Set when several servers share the store (spmp.server.cluster): load only this node's
        registrations, carry observations over from another node's, expire only what is still ours."""
        self._limiter = RateLimiter(rate, burst)
        self._clock = clock
        self._sessions: dict[str, ClientSession] = {}
        self._by_id: dict[str, str] = {}
        self._by_peer: dict[Peer, str] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._next_wake = math.inf
        self._payloads: dict[bytes, _Payload] = {}

    # -- lookups ------------------------------------------------------------------------------------

    def get(self, endpoint: str) -> ClientSession | None:
        return self._sessions.get(endpoint)

    def by_peer(self, peer: Peer) -> ClientSession | None:
        endpoint = self._by_peer.get(peer)
        return None if endpoint is None else self._sessions.get(endpoint)

    def sessions(self) -> list[ClientSession]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    # -- life cycle ---------------------------------------------------------------------------------

    async def load(self) -> int:
        """Load every stored registration (before :meth:`start`); returns how many."""
        offset = 0
        while True:
            page = await self.store.list_registrations(offset, 1000)
            for registration in page:
                if self.cluster is not None and not self.cluster.owns(registration):
                    continue  # another node holds that client's session
                peer = Peer(registration.host, registration.port, registration.dtls_identity)
                self._install(ClientSession(registration, peer, None, self._model(registration)))
            if len(page) < 1000:
                break
            offset += len(page)
        log.info("registrations loaded", extra={"count": len(self._sessions)})
        return len(self._sessions)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._expiry_loop(), name="spmp-expiry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- request handling -----------------------------------------------------------------------------

    async def handle(self, request: Request, via: Endpoint) -> Response:
        """Serve a request whose path starts with ``rd``."""
        path = request.path
        if len(path) == 1:
            if request.method != Code.POST:
                return _diagnostic(Code.METHOD_NOT_ALLOWED, "only POST (Register) on /rd")
            return await self._register(request, via)
        if len(path) == 2:
            if request.method == Code.POST:
                return await self._update(request, path[1], via)
            if request.method == Code.DELETE:
                return await self._deregister(request, path[1])
            return _diagnostic(Code.METHOD_NOT_ALLOWED, "only POST (Update) and DELETE (De-register) on /rd/{id}")
        return _diagnostic(Code.NOT_FOUND, "no such registration resource")

    async def _register(self, request: Request, via: Endpoint) -> Response:
        peer = request.peer
        assert peer is not None
        wait = self._limiter.take(peer.host, time.monotonic())
        if wait > 0.0:
            self.stats.rate_limited += 1
            if self.stats.rate_limited & 0x3F == 1:  # log the first and then every 64th, not every one
                log.warning("registration rate limited", extra={"peer": str(peer), "count": self.stats.rate_limited})
            return Response(
                Code.SERVICE_UNAVAILABLE, b"too many registrations from this address", max_age=max(1, math.ceil(wait))
            )
        try:
            params = parse_register(request.query)
        except InvalidRegistrationError as exc:
            return self._bad(request, str(exc), _version_unsupported(request))
        parsed = self._parsed_payload(request)
        if isinstance(parsed, Response):
            return parsed
        refusal = await self._check_identity(params.endpoint, peer)
        if refusal is not None:
            return refusal
        previous = self._sessions.get(params.endpoint)
        carried: list[StoredObservation] = []
        if previous is not None:
            carried = await self.store.list_observations(params.endpoint)
        elif self.cluster is not None:
            carried = await self.cluster.carried(params.endpoint)  # another node held it: a takeover
        now = utc_now()
        registration = Registration(
            registration_id=_new_id(),
            endpoint=params.endpoint,
            lifetime=params.lifetime,
            lwm2m_version=params.lwm2m_version,
            binding=params.binding,
            queue_mode=params.queue_mode,
            sms_number=params.sms_number,
            object_links=parsed.object_links,
            object_versions=parsed.object_versions,
            instances=parsed.instances,
            content_formats=parsed.content_formats,
            host=peer.host,
            port=peer.port,
            dtls_identity=peer.identity,
            registered_at=now,
            last_update=now,
            node_id=self.node_id,
        )
        # Saving a new id for the endpoint replaces the old registration and drops its observations.
        await self.store.save_registration(registration)
        if previous is not None:
            self._uninstall(previous)
        session = ClientSession(registration, peer, via, parsed.model)
        session.last_seen = asyncio.get_running_loop().time()
        session.carried = carried
        if previous is not None and previous.queue:
            session.queue = previous.queue  # requests waiting for this client still want to go out
        self._install(session)
        if previous is None and carried and self.cluster is not None:
            await self.cluster.taken_over(session)  # before the 2.01: keeps the old observations adoptable
        self.stats.registered += 1
        log.info(
            "client registered",
            extra={
                "endpoint": params.endpoint,
                "registration_id": registration.registration_id,
                "peer": str(peer),
                "lifetime": params.lifetime,
                "replaced": previous is not None,
            },
        )
        self._emit("registered", session)
        return Response(Code.CREATED, location_path=("rd", registration.registration_id))

    async def _update(self, request: Request, registration_id: str, via: Endpoint) -> Response:
        peer = request.peer
        assert peer is not None
        session = self._session_for_id(registration_id)
        if session is None:
            return _diagnostic(Code.NOT_FOUND, f"no registration {registration_id[:40]}")
        if session.registration.dtls_identity != peer.identity:
            return self._forbidden(session.endpoint, peer, "update from another identity than the registration's")
        try:
            params = parse_update(request.query)
        except InvalidRegistrationError as exc:
            return self._bad(request, str(exc), False)
        old = session.registration
        changes: dict[str, Any] = {"last_update": utc_now(), "host": peer.host, "port": peer.port}
        if request.payload:
            objects = self._parse_payload(request)
            if isinstance(objects, Response):
                return objects
            changes["object_links"] = request.payload.decode("utf-8", "replace")
            changes["object_versions"] = {oid: ver for oid, ver in objects.objects if ver is not None}
            changes["instances"] = tuple(str(p) for p in objects.instances)
            if objects.content_formats:
                changes["content_formats"] = objects.content_formats
        if params.lifetime is not None:
            changes["lifetime"] = params.lifetime
        if params.binding is not None:
            changes["binding"] = params.binding
        if params.queue_mode is not None:
            changes["queue_mode"] = params.queue_mode
        elif params.binding is not None and old.lwm2m_version == "1.0":
            changes["queue_mode"] = False  # a 1.0 binding without Q turns queue mode off
        if params.sms_number is not None:
            changes["sms_number"] = params.sms_number
        registration = dataclasses.replace(old, **changes)
        await self.store.save_registration(registration)
        if session.registration is not old:
            return _diagnostic(Code.NOT_FOUND, "registration replaced meanwhile")
        if session.peer != peer:
            self._by_peer.pop(session.peer, None)
            session.peer = peer
            self._by_peer[peer] = session.endpoint
        if "object_versions" in changes:
            session.model = self._model(registration)
        session.registration = registration
        session.via = via
        session.last_seen = asyncio.get_running_loop().time()
        self._schedule(session, registration)
        self.stats.updated += 1
        log.debug("client updated", extra={"endpoint": session.endpoint, "peer": str(peer)})
        self._emit("updated", session)
        return Response(Code.CHANGED)

    async def _deregister(self, request: Request, registration_id: str) -> Response:
        peer = request.peer
        assert peer is not None
        session = self._session_for_id(registration_id)
        if session is None:
            return _diagnostic(Code.NOT_FOUND, f"no registration {registration_id[:40]}")
        if session.registration.dtls_identity != peer.identity:
            return self._forbidden(session.endpoint, peer, "de-register from another identity than the registration's")
        self._uninstall(session)
        await self.store.delete_registration(session.endpoint)
        self.stats.deregistered += 1
        log.info("client deregistered", extra={"endpoint": session.endpoint, "peer": str(peer)})
        self._emit("deregistered", session)
        return Response(Code.DELETED)

    def release(self, session: ClientSession) -> None:
        """Forget ``session`` without touching the Store: the client registered with another node."""
        self._uninstall(session)

    def touch(self, session: ClientSession) -> None:
        """Note that the client just sent us something (queue mode: it is awake)."""
        session.last_seen = asyncio.get_running_loop().time()

    # -- helpers ------------------------------------------------------------------------------------------

    def _session_for_id(self, registration_id: str) -> ClientSession | None:
        endpoint = self._by_id.get(registration_id)
        return None if endpoint is None else self._sessions.get(endpoint)

    def parse_links(self, object_links: str) -> RegistrationObjects:
        """The objects of a registration's ``object_links`` (cached like Register payloads)."""
        payload = object_links.encode("utf-8")
        cached = self._payloads.get(payload)
        if cached is not None:
            return cached.objects
        return parse_registration(payload)

    def _parsed_payload(self, request: Request) -> _Payload | Response:
        """:meth:`_parse_payload`, once per distinct payload."""
        payload = request.payload
        fmt = request.content_format
        cached = self._payloads.get(payload)
        if cached is not None and (fmt is None or fmt == ContentFormat.LINK):
            return cached
        objects = self._parse_payload(request)
        if isinstance(objects, Response):
            return objects
        versions = {oid: ver for oid, ver in objects.objects if ver is not None}
        parsed = _Payload(payload, objects, self.registry.for_client(versions))
        if len(self._payloads) >= _PAYLOAD_CACHE:
            self._payloads.clear()
        self._payloads[bytes(payload)] = parsed
        return parsed

    def _parse_payload(self, request: Request) -> RegistrationObjects | Response:
        size = len(request.payload)
        if size > MAX_REGISTRATION_PAYLOAD:
            self.stats.too_large += 1
            if self.stats.too_large & 0x3F == 1:  # the first and then every 64th, not every one
                log.warning(
                    "registration refused: payload too large",
                    extra={"peer": str(request.peer), "bytes": size, "limit": MAX_REGISTRATION_PAYLOAD},
                )
            response = _diagnostic(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"a registration payload of {size} bytes exceeds the {MAX_REGISTRATION_PAYLOAD}-byte limit",
            )
            response.size1 = MAX_REGISTRATION_PAYLOAD
            return response
        fmt = request.content_format
        if fmt is not None and fmt != ContentFormat.LINK:
            return self._bad(request, f"the payload must be link-format (40), not content format {fmt}", False)
        try:
            return parse_registration(request.payload)
        except CodecError as exc:
            return self._bad(request, f"bad object links: {exc}", False)

    def _bad(self, request: Request, message: str, precondition: bool) -> Response:
        self.stats.bad_requests += 1
        log.warning("registration refused", extra={"peer": str(request.peer), "reason": message})
        return _diagnostic(Code.PRECONDITION_FAILED if precondition else Code.BAD_REQUEST, message)

    def _forbidden(self, endpoint: str, peer: Peer, reason: str) -> Response:
        self.stats.forbidden += 1
        log.warning("registration forbidden", extra={"endpoint": endpoint, "peer": str(peer), "reason": reason})
        return _diagnostic(Code.FORBIDDEN, reason)

    async def _check_identity(self, endpoint: str, peer: Peer) -> Response | None:
        """4.03 unless the peer's DTLS identity is the one stored for ``endpoint``, or the peer's
        certificate CN is ``endpoint`` (None = allowed)."""
        if peer.identity is not None and self.certificate_peer is not None and self.certificate_peer(peer):
            if peer.identity != endpoint:
                return self._forbidden(endpoint, peer, "the certificate's CN is not this endpoint name")
            return None
        if self.psk_cache is not None:
            expected = self.psk_cache.identity_of(endpoint)
        else:
            info = await self.store.get_security(endpoint, SecurityScope.SERVER)
            expected = None if info is None else info.psk_identity
        if peer.identity is None:
            if expected is not None:
                return self._forbidden(endpoint, peer, "this endpoint has DTLS credentials; plain CoAP refused")
            return None
        if expected != peer.identity:
            return self._forbidden(endpoint, peer, "the DTLS identity does not belong to this endpoint")
        return None

    def _model(self, registration: Registration) -> ClientModel:
        return self.registry.for_client(registration.object_versions)

    def _install(self, session: ClientSession) -> None:
        registration = session.registration
        self._sessions[registration.endpoint] = session
        self._by_id[registration.registration_id] = registration.endpoint
        self._by_peer[session.peer] = registration.endpoint
        self._schedule(session, registration)

    def _uninstall(self, session: ClientSession) -> None:
        registration = session.registration
        if self._sessions.get(registration.endpoint) is session:
            del self._sessions[registration.endpoint]
        self._by_id.pop(registration.registration_id, None)
        if self._by_peer.get(session.peer) == registration.endpoint:
            del self._by_peer[session.peer]

    def _emit(self, kind: RegistrationEvent, session: ClientSession) -> None:
        for listener in self.listeners:
            try:
                listener(kind, session)
            except Exception:
                log.exception("registration listener failed", extra={"event": kind, "endpoint": session.endpoint})

    # -- expiry -----------------------------------------------------------------------------------------

    def _schedule(self, session: ClientSession, registration: Registration) -> None:
        deadline = registration.last_update.timestamp() + registration.lifetime
        session.deadline = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, registration.endpoint, registration.registration_id))
        if deadline < self._next_wake:
            self._wake()
        if len(self._heap) > 2 * len(self._sessions) + 1024:
            self._compact()

    def _compact(self) -> None:
        self._heap = [
            (s.deadline, i, s.endpoint, s.registration.registration_id) for i, s in enumerate(self._sessions.values())
        ]
        heapq.heapify(self._heap)

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _expiry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                _, _, endpoint, registration_id = heapq.heappop(self._heap)
                session = self._sessions.get(endpoint)
                if (
                    session is not None
                    and session.registration.registration_id == registration_id
                    and session.deadline <= now
                ):
                    await self._expire(session)
            heap = self._heap
            delay = min(heap[0][0] - now, _MAX_SLEEP) if heap else _MAX_SLEEP
            self._next_wake = now + delay
            self._wakeup = waiter = loop.create_future()
            timer = loop.call_later(max(delay, 0.0), _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._wakeup = None

    async def _expire(self, session: ClientSession) -> None:
        self._uninstall(session)
        if self.cluster is not None:
            try:
                if not await self.cluster.still_current(session.registration):
                    return  # the client registered with another node meanwhile: not ours to delete
            except Exception:
                log.exception("could not check an expiring registration", extra={"endpoint": session.endpoint})
                return
        try:
            await self.store.delete_registration(session.endpoint)
        except Exception:
            log.exception("could not delete an expired registration", extra={"endpoint": session.endpoint})
        self.stats.expired += 1
        log.info(
            "registration expired",
            extra={"endpoint": session.endpoint, "registration_id": session.registration.registration_id},
        )
        self._emit("expired", session)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _version_unsupported(request: Request) -> bool:
    """Whether the Register names an LwM2M version we do not support (4.12 rather than 4.00)."""
    for item in request.query:
        name, _, value = item.partition("=")
        if name == "lwm2m":
            return value not in SUPPORTED_LWM2M_VERSIONS
    return False
