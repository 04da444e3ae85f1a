"""Several management servers on one PostgreSQL database (docs/cluster.md).

Every node runs a :class:`~spmp.server.server.ManagementServer` on the same
:class:`~spmp.store.PostgresStore` with its own ``node_id``. A device's UDP/DTLS session lives on one
node (the one a load balancer with source-address affinity sends its datagrams to); its stored
:class:`~spmp.store.Registration` names that node. :class:`ClusterRouter` makes the nodes one server:

* **Downlink forwarding.** An operation on a device another node holds goes to that node as a request
  message over PostgreSQL ``NOTIFY`` (channel ``spmp.node.<node id>``): the CoAP request the asking
  node built (method, options, payload), or for Observe and Cancel-Observation the operation itself.
  The holding node acknowledges at once, runs it through its own session (queue mode included) and
  answers on the asking node's channel: the CoAP response, or the error (``DeviceError``,
  ``DeviceTimeout``...). No acknowledgement within ``ack_timeout``: :class:`DeviceTimeout` naming
  the node. Messages above the 7999-byte NOTIFY limit travel in parts.
* **One view of the fleet.** Each node keeps the registrations the others hold (loaded at start,
  refreshed by their registration events, re-read periodically), so ``registrations()``,
  ``registration()`` and ``model_for()`` answer for the whole cluster without a query.
* **Events.** Every event a node publishes (registrations, notifications, Send...) is also sent, in
  batches, on channel ``spmp.cluster``; the other nodes publish it on their own event hub with
  ``"node"`` added to its data, so an SSE stream on any node shows every device.
* **Takeover.** A device registering on node B while node A holds it (A died, or the balancer moved
  it): B's registration replaces A's in the store, B carries the old registration's observations over
  under the new registration id before answering 2.01, so notifications the device stored while it
  could not reach A, sent right after registering under the old tokens, are adopted and stored; the
  ones not heard of within ``takeover_grace`` are observed again. A, when alive, sees B's
  "registered" event and drops its in-memory session (without touching the store).
* **Orphans.** Registrations of a node that went away expire on any node: a periodic sweep deletes
  registrations expired more than ``sweep_grace`` ago and publishes "expired".

Messages are JSON (ASCII); nodes travel in a compact tagged form (:func:`encode_node`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import hashlib
import json
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, get_args

from spmp.coap.message import Request, Response
from spmp.coap.transport import Peer
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.model import ModelLookup, ResourceType
from spmp.lwm2m.node import MultipleResource, Node, Object, ObjectInstance, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import ObjectLink, Value
from spmp.server.errors import (
    ClientNotRegistered,
    DeviceError,
    DeviceTimeout,
    InvalidArgument,
    QueueFull,
    ServerError,
)
from spmp.server.events import EventHub, EventKind
from spmp.server.observations import ObservationInfo
from spmp.server.registrations import ClientSession
from spmp.store import Listener, NotFound, Notifier, Registration, Store, StoreError
from spmp.store import Observation as StoredObservation
from spmp.store.interface import utc_now

if TYPE_CHECKING:
    from spmp.server.server import ManagementServer

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "spmp.cluster"
"""Where every node publishes its events (and "node stopping" notices)."""

MAX_MESSAGE = 7000
"""Largest NOTIFY payload we send in one piece (PostgreSQL's limit is 7999 bytes); longer ones go in parts."""

_REGISTRATION_KINDS = frozenset({"registered", "updated", "deregistered", "expired"})
_EVENT_KINDS = frozenset(get_args(EventKind))

_serving: contextvars.ContextVar[bool] = contextvars.ContextVar("spmp_cluster_serving", default=False)
"""Set while this node runs an operation another node forwarded: never forward it again."""


def node_channel(node_id: str) -> str:
    """The NOTIFY channel of one node (channel names are at most 63 bytes: long node ids are hashed)."""
    channel = f"spmp.node.{node_id}"
    if len(channel.encode()) <= 63:
        return channel
    return "spmp.node.#" + hashlib.sha256(node_id.encode()).hexdigest()[:40]


# ----------------------------------------------------------------------------------- node codec


def _value(value: Value) -> Any:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return {"l": [value.object_id, value.instance_id]}


def _unvalue(data: Any) -> Value:
    if not isinstance(data, dict):
        if isinstance(data, bool | int | float | str):
            return data
        raise ValueError(f"not a value: {data!r}")
    if "f" in data:
        return float(data["f"])
    if "b" in data:
        return base64.b64decode(data["b"])
    if "t" in data:
        return datetime.fromisoformat(data["t"])
    object_id, instance_id = data["l"]
    return ObjectLink(int(object_id), int(instance_id))


def encode_node(node: Node) -> list[Any]:
    """A node as compact JSON: ``["o", id, [instances]]``, ``["i", id, [resources]]``,
    ``["s", id, type, value]``, ``["m", id, type, {ri: value}]``, ``["r", id, type, value]``; values keep
    their Python type (bytes, datetime, ObjectLink, non-finite floats are tagged objects)."""
    if isinstance(node, Object):
        return ["o", node.id, [encode_node(i) for i in node.instances.values()]]
    if isinstance(node, ObjectInstance):
        return ["i", node.id, [encode_node(r) for r in node.resources.values()]]
    if isinstance(node, MultipleResource):
        return ["m", node.id, node.type.value, {str(k): _value(v) for k, v in node.instances.items()}]
    tag = "s" if isinstance(node, SingleResource) else "r"
    return [tag, node.id, node.type.value, _value(node.value)]


def decode_node(data: Any) -> Node:
    """The inverse of :func:`encode_node`; raises ValueError on anything else."""
    try:
        tag = data[0]
        if tag == "o":
            instances = [decode_node(i) for i in data[2]]
            return Object(
                int(data[1]), {i.id: i for i in instances if isinstance(i, ObjectInstance) and i.id is not None}
            )
        if tag == "i":
            resources = [decode_node(r) for r in data[2]]
            return ObjectInstance(
                None if data[1] is None else int(data[1]),
                {r.id: r for r in resources if isinstance(r, SingleResource | MultipleResource)},
            )
        kind = ResourceType(data[2])
        if tag == "m":
            return MultipleResource(int(data[1]), {int(k): _unvalue(v) for k, v in data[3].items()}, kind)
        if tag == "s":
            return SingleResource(int(data[1]), _unvalue(data[3]), kind)
        if tag == "r":
            return ResourceInstance(int(data[1]), _unvalue(data[3]), kind)
    except (IndexError, KeyError, TypeError, ValueError, Lwm2mError) as exc:
        raise ValueError(f"not an encoded node: {exc}") from None
    raise ValueError(f"not an encoded node: tag {tag!r}")


def _options(options: Iterable[tuple[int, bytes]]) -> list[list[Any]]:
    return [[number, value.hex()] for number, value in options]


def _unoptions(data: Any) -> list[tuple[int, bytes]]:
    return [(int(number), bytes.fromhex(value)) for number, value in data]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------------- errors


def encode_error(exc: BaseException) -> dict[str, Any]:
    """An error of :mod:`spmp.server.errors` as a JSON object (anything else becomes a ServerError)."""
    if isinstance(exc, ClientNotRegistered):
        return {"k": "not_registered", "ep": exc.endpoint}
    if isinstance(exc, DeviceError):
        return {"k": "device", "code": int(exc.code), "msg": exc.message}
    if isinstance(exc, DeviceTimeout):
        detail = str(exc).partition(" s (")[2].removesuffix(")")
        return {"k": "timeout", "ep": exc.endpoint, "path": exc.path, "s": exc.seconds, "d": detail}
    if isinstance(exc, QueueFull):
        return {"k": "queue_full", "ep": exc.endpoint, "limit": exc.limit}
    if isinstance(exc, InvalidArgument):
        return {"k": "invalid", "msg": str(exc)}
    return {"k": "server", "msg": str(exc) or type(exc).__name__}


def decode_error(data: dict[str, Any], node: str) -> ServerError:
    kind = data.get("k")
    if kind == "not_registered":
        return ClientNotRegistered(str(data.get("ep")))
    if kind == "device":
        return DeviceError(int(data["code"]), str(data.get("msg", "")))
    if kind == "timeout":
        detail = str(data.get("d") or "")
        detail = f"{detail}; via node {node!r}" if detail else f"via node {node!r}"
        return DeviceTimeout(str(data.get("ep")), str(data.get("path")), float(data.get("s", 0.0)), detail)
    if kind == "queue_full":
        return QueueFull(str(data.get("ep")), int(data.get("limit", 0)))
    if kind == "invalid":
        return InvalidArgument(str(data.get("msg")))
    return ServerError(f"node {node!r}: {data.get('msg')}")


class _NotHeld(Exception):  # noqa: N818 - internal signal, never escapes
    """The node asked does not hold the device (any more)."""


# ----------------------------------------------------------------------------------- router


@dataclass(slots=True)
class ClusterStats:
    forwarded: int = 0
    """operations this node sent to another node"""
    served: int = 0
    """operations other nodes sent to this node"""
    forward_timeouts: int = 0
    events_sent: int = 0
    events_received: int = 0
    events_dropped: int = 0
    """events not sent to the other nodes (the outgoing queue overflowed, or NOTIFY failed)"""
    takeovers: int = 0
    """registrations this node took over from another node"""
    released: int = 0
    """sessions this node dropped because the device registered on another node"""
    swept: int = 0
    """expired registrations of other nodes this node deleted"""


class _Pending:
    __slots__ = ("acked", "endpoint", "node", "path", "result")

    def __init__(self, node: str, endpoint: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.node = node
        self.endpoint = endpoint
        self.path = path
        self.acked: asyncio.Future[None] = loop.create_future()
        self.result: asyncio.Future[Any] = loop.create_future()


class ClusterEventHub(EventHub):
    """The node's :class:`EventHub`: what is published here also goes to the other nodes."""

    def __init__(self, router: ClusterRouter, queue_size: int) -> None:
        super().__init__(queue_size)
        self._router = router

    def publish(self, kind: EventKind, endpoint: str, data: dict[str, Any] | None = None) -> None:
        super().publish(kind, endpoint, data)
        self._router.outgoing_event(kind, endpoint, data)

    @property
    def subscribers(self) -> int:
        """Local subscribers, plus one standing for the other nodes when they get data events (the
        notification path builds event data only when someone listens)."""
        forwarded = not self._router.event_kinds.isdisjoint(("notification", "send"))
        return super().subscribers + forwarded

    def publish_remote(self, kind: EventKind, endpoint: str, data: dict[str, Any]) -> None:
        """Publish an event another node sent, locally only."""
        super().publish(kind, endpoint, data)


class ClusterRouter:
    """See the module docstring. The :class:`ManagementServer` creates one when its store is a
    :class:`~spmp.store.Notifier` and it has a ``node_id``; tunables are plain attributes."""

    def __init__(
        self,
        server: ManagementServer,
        store: Store,
        node_id: str,
        *,
        ack_timeout: float = 3.0,
        reply_margin: float = 5.0,
        takeover_grace: float = 5.0,
        resync_interval: float = 60.0,
        sweep_interval: float = 60.0,
        sweep_grace: float = 60.0,
        event_kinds: Iterable[str] | None = None,
        max_outgoing: int = 10_000,
    ) -> None:
        if not node_id:
            raise ValueError("a cluster node needs a node id")
        if not isinstance(store, Notifier):
            raise ValueError(f"{store!r} cannot carry messages between servers (LISTEN/NOTIFY): use PostgreSQL")
        self.server = server
        self.store = store
        self.notifier: Notifier = store
        self.node_id = node_id
        self.channel = node_channel(node_id)
        self.ack_timeout = ack_timeout
        """seconds the holding node has to acknowledge a forwarded operation (else: it is not running)"""
        self.reply_margin = reply_margin
        """added to an operation's timeout while waiting for the holding node's answer"""
        self.takeover_grace = takeover_grace
        """after a takeover, seconds to wait for notifications under the old tokens before observing again"""
        self.resync_interval = resync_interval
        self.sweep_interval = sweep_interval
        self.sweep_grace = sweep_grace
        self.event_kinds: frozenset[str] = frozenset(event_kinds) if event_kinds is not None else _EVENT_KINDS
        """event kinds sent to the other nodes (registration events always are: they keep the views right)"""
        self.stats = ClusterStats()
        self._remote: dict[str, Registration] = {}
        self._remote_sessions: dict[str, ClientSession] = {}
        self._pending: dict[str, _Pending] = {}
        self._parts: OrderedDict[str, list[str | None]] = OrderedDict()
        self._outgoing: deque[str] = deque(maxlen=max_outgoing)
        self._outgoing_wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main_tasks: list[asyncio.Task[Any]] = []
        self._subscriptions: dict[str, Listener] = {}
        self._running = False

    def event_hub(self, queue_size: int) -> ClusterEventHub:
        return ClusterEventHub(self, queue_size)

    # -------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Subscribe to the channels, load the other nodes' registrations, start the background tasks."""
        if self._running:
            return
        self._running = True
        node_sub = self.notifier.listen(self.channel)
        events_sub = self.notifier.listen(EVENTS_CHANNEL)
        await node_sub.__aenter__()
        try:
            await events_sub.__aenter__()
        except BaseException:
            await node_sub.aclose()
            raise
        self._subscriptions = {self.channel: node_sub, EVENTS_CHANNEL: events_sub}
        await self._load_view()
        self.server.registrations_manager.listeners.append(self._on_local_registration)
        loop = asyncio.get_running_loop()
        self._main_tasks = [
            loop.create_task(self._listen(self.channel), name="spmp-cluster-node"),
            loop.create_task(self._listen(EVENTS_CHANNEL), name="spmp-cluster-events"),
            loop.create_task(self._send_events(), name="spmp-cluster-send"),
            loop.create_task(self._maintain(), name="spmp-cluster-maintain"),
        ]
        log.info("cluster node started", extra={"node": self.node_id, "remote_registrations": len(self._remote)})

    async def stop(self) -> None:
        """Tell the other nodes we stop, send what events wait (briefly), stop everything."""
        if not self._running:
            return
        self._running = False
        with contextlib.suppress(ValueError):
            self.server.registrations_manager.listeners.remove(self._on_local_registration)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush_events(), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send(EVENTS_CHANNEL, {"t": "down", "n": self.node_id}), 1.0)
        tasks = [*self._main_tasks, *self._tasks]
        self._main_tasks = []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            with contextlib.suppress(Exception):
                await subscription.aclose()
        for pending in list(self._pending.values()):
            _fail(pending, ServerError("the server is stopping"))
        self._pending.clear()

    # -------------------------------------------------------------------------------- the view

    def remote_registrations(self) -> list[Registration]:
        """Registrations other nodes hold (as last heard)."""
        local = self.server.registrations_manager
        return [r for r in self._remote.values() if local.get(r.endpoint) is None]

    def remote_registration(self, endpoint: str) -> Registration | None:
        return self._remote.get(endpoint)

    def remote_model(self, endpoint: str) -> ModelLookup | None:
        session = self.remote_session(endpoint)
        return None if session is None else session.model

    def remote_session(self, endpoint: str) -> ClientSession | None:
        """A stand-in session for a device another node holds (None while serving a forwarded call)."""
        if _serving.get():
            return None
        registration = self._remote.get(endpoint)
        if registration is None:
            return None
        cached = self._remote_sessions.get(endpoint)
        if cached is not None and cached.registration is registration:
            return cached
        peer = Peer(registration.host, registration.port, registration.dtls_identity)
        model = self.server.registry.for_client(registration.object_versions)
        session = ClientSession(registration, peer, None, model)
        self._remote_sessions[endpoint] = session
        return session

    def is_remote(self, session: ClientSession) -> bool:
        return self.server.registrations_manager.get(session.endpoint) is not session

    def _on_local_registration(self, kind: str, session: ClientSession) -> None:
        if kind == "registered":
            self._set_remote(None, session.endpoint)  # ours now

    def _set_remote(self, registration: Registration | None, endpoint: str) -> None:
        if registration is None or registration.node_id == self.node_id:
            self._remote.pop(endpoint, None)
            self._remote_sessions.pop(endpoint, None)
        else:
            self._remote[endpoint] = registration

    async def _load_view(self) -> None:
        remote: dict[str, Registration] = {}
        offset = 0
        while True:
            page = await self.store.list_registrations(offset, 1000)
            for registration in page:
                if registration.node_id != self.node_id:
                    remote[registration.endpoint] = registration
            if len(page) < 1000:
                break
            offset += len(page)
        self._remote = remote
        self._remote_sessions = {e: s for e, s in self._remote_sessions.items() if e in remote}

    async def _refresh(self, endpoint: str) -> Registration | None:
        registration = await self.store.get_registration(endpoint)
        self._set_remote(registration, endpoint)
        return registration

    # ------------------------------------------------------------------- hooks of RegistrationManager

    def owns(self, registration: Registration) -> bool:
        """Whether a stored registration is this node's to load at start."""
        return registration.node_id == self.node_id

    async def carried(self, endpoint: str) -> list[StoredObservation]:
        """Observations to carry over when ``endpoint`` registers here without a session here: those of
        its stored registration, if another node holds it (a takeover)."""
        previous = await self.store.get_registration(endpoint)
        if previous is None or previous.node_id == self.node_id:
            return []
        self.stats.takeovers += 1
        log.info("taking a registration over", extra={"endpoint": endpoint, "node": previous.node_id})
        return await self.store.list_observations(endpoint)

    async def taken_over(self, session: ClientSession) -> None:
        """Called before the 2.01 of a takeover goes out: keep the carried observations under the new
        registration, so notifications the device sends under their tokens are adopted, and observe
        again, after ``takeover_grace``, those the device did not send anything for."""
        carried, session.carried = session.carried, []
        registration_id = session.registration.registration_id
        kept: list[StoredObservation] = []
        for stored in carried:
            moved = dataclasses.replace(stored, registration_id=registration_id)
            try:
                await self.store.save_observation(moved)
            except StoreError as exc:
                log.warning("cannot carry an observation over", extra={"endpoint": stored.endpoint, "error": str(exc)})
                continue
            kept.append(moved)
        if kept:
            self._spawn(self._settle_takeover(session, kept))

    async def _settle_takeover(self, session: ClientSession, kept: list[StoredObservation]) -> None:
        await asyncio.sleep(self.takeover_grace)
        server = self.server
        if server.registrations_manager.get(session.endpoint) is not session:
            return
        live = {live.token for live in server.observations.find(session.endpoint)}
        remaining = [s for s in kept if s.token not in live]
        if remaining:
            log.info(
                "observing again after takeover", extra={"endpoint": session.endpoint, "observations": len(remaining)}
            )
            session.carried = remaining + session.carried
            await server._reobserve(session, delete_old=True)

    async def still_current(self, registration: Registration) -> bool:
        """Whether ``registration`` is still the stored one (not replaced by another node's)."""
        stored = await self.store.get_registration(registration.endpoint)
        return stored is not None and stored.registration_id == registration.registration_id

    # ------------------------------------------------------------------------------ forwarding

    async def request(self, session: ClientSession, request: Request, path: str, timeout: float | None) -> Response:
        """Send a CoAP request through the node holding ``session``'s device; its response."""
        args = {"m": request.method, "o": _options(request.options), "p": _b64(request.payload), "path": path}
        result = await self._forward(session, "request", args, path, timeout)
        return Response(int(result["c"]), base64.b64decode(result["p"]), options=_unoptions(result["o"]))

    async def observe(
        self, session: ClientSession, paths: Sequence[Path], *, composite: bool, fmt: int | None, timeout: float | None
    ) -> ObservationInfo:
        args = {"paths": [str(p) for p in paths], "c": composite, "f": fmt}
        where = str(paths[0]) if len(paths) == 1 else "/"
        result = await self._forward(session, "observe", args, where, timeout)
        nodes: dict[Path, Node | None] = {}
        for text, encoded in result["nodes"]:
            nodes[Path.parse(text)] = None if encoded is None else decode_node(encoded)
        return ObservationInfo(
            session.endpoint,
            str(result["token"]),
            tuple(Path.parse(p) for p in result["paths"]),
            bool(result["c"]),
            result["f"],
            nodes,
        )

    async def cancel(self, session: ClientSession, path: Path, *, active: bool, timeout: float | None) -> None:
        await self._forward(session, "cancel", {"path": str(path), "active": active}, str(path), timeout)

    async def cancel_composite(
        self, session: ClientSession, paths: Iterable[Path], *, active: bool, timeout: float | None
    ) -> int:
        args = {"paths": [str(p) for p in paths], "active": active}
        return int(await self._forward(session, "cancel_composite", args, "/", timeout))

    async def _forward(
        self, session: ClientSession, op: str, args: dict[str, Any], path: str, timeout: float | None
    ) -> Any:
        registration = session.registration
        endpoint = session.endpoint
        for attempt in range(2):
            holder = registration.node_id
            if not holder:
                raise ServerError(f"{endpoint!r} is registered, but no node holds its session")
            if holder == self.node_id:
                raise ServerError(f"{endpoint!r} moved to this node meanwhile; try again")
            try:
                return await self._call_node(holder, registration, op, args, path, timeout)
            except _NotHeld:
                fresh = await self._refresh(endpoint)
                if fresh is None:
                    raise ClientNotRegistered(endpoint) from None
                if attempt or fresh.node_id == holder:
                    raise ClientNotRegistered(endpoint) from None
                log.info("device moved, forwarding again", extra={"endpoint": endpoint, "node": fresh.node_id})
                registration = fresh
        raise AssertionError("unreachable")

    async def _call_node(  # noqa: PLR0917 - private
        self,
        holder: str,
        registration: Registration,
        op: str,
        args: dict[str, Any],
        path: str,
        timeout: float | None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        endpoint = registration.endpoint
        request_id = secrets.token_hex(8)
        pending = _Pending(holder, endpoint, path)
        self._pending[request_id] = pending
        self.stats.forwarded += 1
        started = loop.time()
        message = {
            "t": "req",
            "id": request_id,
            "from": self.node_id,
            "ep": endpoint,
            "op": op,
            "a": args,
            "to": timeout,
        }
        try:
            await self._send(node_channel(holder), message)
            try:
                await asyncio.wait_for(asyncio.shield(pending.acked), self.ack_timeout)
            except TimeoutError:
                self.stats.forward_timeouts += 1
                raise DeviceTimeout(
                    endpoint,
                    path,
                    loop.time() - started,
                    f"node {holder!r}, which holds its session, did not answer: is it running?",
                ) from None
            wait = (timeout if timeout is not None else self.server.queue_timeout) + self.reply_margin
            try:
                return await asyncio.wait_for(asyncio.shield(pending.result), wait)
            except TimeoutError:
                self.stats.forward_timeouts += 1
                raise DeviceTimeout(
                    endpoint, path, loop.time() - started, f"node {holder!r} took the request but did not answer"
                ) from None
        finally:
            self._pending.pop(request_id, None)
            for future in (pending.acked, pending.result):
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: no "exception was never retrieved" warnings

    async def _serve(self, message: dict[str, Any]) -> None:
        """Run an operation another node forwarded, and answer it."""
        asker = str(message["from"])
        request_id = message["id"]
        reply = node_channel(asker)
        await self._send(reply, {"t": "ack", "id": request_id})
        self.stats.served += 1
        _serving.set(True)  # this task's context only
        answer: dict[str, Any]
        try:
            result = await self._execute(str(message["ep"]), str(message["op"]), message["a"], message.get("to"))
            answer = {"t": "res", "id": request_id, "r": result}
        except _NotHeld:
            answer = {"t": "res", "id": request_id, "e": {"k": "not_held"}}
        except ServerError as exc:
            answer = {"t": "res", "id": request_id, "e": encode_error(exc)}
        except (Lwm2mError, ValueError, KeyError, TypeError) as exc:
            answer = {"t": "res", "id": request_id, "e": {"k": "invalid", "msg": f"bad forwarded request: {exc}"}}
        except Exception as exc:
            log.exception("forwarded operation failed", extra={"endpoint": message.get("ep"), "node": asker})
            answer = {"t": "res", "id": request_id, "e": {"k": "server", "msg": str(exc) or type(exc).__name__}}
        await self._send(reply, answer)

    async def _execute(self, endpoint: str, op: str, args: dict[str, Any], timeout: float | None) -> Any:
        server = self.server
        session = server.registrations_manager.get(endpoint)
        if session is None:
            raise _NotHeld
        if op == "request":
            request = Request(int(args["m"]), options=_unoptions(args["o"]), payload=base64.b64decode(args["p"]))
            response = await server._request(session, request, str(args["path"]), timeout)
            return {"c": response.code, "o": _options(response.options), "p": _b64(response.payload)}
        if op == "observe":
            paths = [Path.parse(p) for p in args["paths"]]
            fmt = None if args["f"] is None else ContentFormat.of(int(args["f"]))
            if args["c"]:
                info = await server.observe_composite(endpoint, paths, content_format=fmt, timeout=timeout)
            else:
                info = await server.observe(endpoint, paths[0], content_format=fmt, timeout=timeout)
            return {
                "token": info.token,
                "paths": [str(p) for p in info.paths],
                "c": info.composite,
                "f": info.content_format,
                "nodes": [[str(p), None if n is None else encode_node(n)] for p, n in info.nodes.items()],
            }
        if op == "cancel":
            await server.cancel_observation(endpoint, args["path"], active=bool(args["active"]), timeout=timeout)
            return None
        if op == "cancel_composite":
            return await server.cancel_composite_observation(
                endpoint, args["paths"], active=bool(args["active"]), timeout=timeout
            )
        raise InvalidArgument(f"unknown forwarded operation {op!r}")

    def _on_reply(self, message: dict[str, Any]) -> None:
        pending = self._pending.get(str(message.get("id")))
        if pending is None:
            return  # the caller gave up
        if not pending.acked.done():
            pending.acked.set_result(None)
        if message["t"] == "ack" or pending.result.done():
            return
        error = message.get("e")
        if error is None:
            pending.result.set_result(message.get("r"))
        elif error.get("k") == "not_held":
            pending.result.set_exception(_NotHeld())
        else:
            pending.result.set_exception(decode_error(error, pending.node))

    # --------------------------------------------------------------------------------- events

    def outgoing_event(self, kind: str, endpoint: str, data: dict[str, Any] | None) -> None:
        """Queue a local event for the other nodes (called by the event hub, never blocks)."""
        if kind not in self.event_kinds and kind not in _REGISTRATION_KINDS:
            return
        try:
            item = json.dumps([kind, endpoint, time.time(), data or {}], separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            self.stats.events_dropped += 1
            return
        if len(self._outgoing) == self._outgoing.maxlen:
            self.stats.events_dropped += 1
        self._outgoing.append(item)
        self._outgoing_wakeup.set()

    async def _send_events(self) -> None:
        while True:
            await self._outgoing_wakeup.wait()
            self._outgoing_wakeup.clear()
            try:
                await self._flush_events()
            except StoreError as exc:
                log.warning("could not send events to the other nodes", extra={"error": str(exc)})
                await asyncio.sleep(0.5)

    async def _flush_events(self) -> None:
        head = '{"t":"ev","n":' + json.dumps(self.node_id) + ',"e":['
        while self._outgoing:
            batch: list[str] = []
            size = len(head) + 2
            while self._outgoing and (not batch or size + len(self._outgoing[0]) + 1 <= MAX_MESSAGE):
                item = self._outgoing.popleft()
                batch.append(item)
                size += len(item) + 1
            try:
                await self._send_text(EVENTS_CHANNEL, head + ",".join(batch) + "]}")
            except StoreError:
                self.stats.events_dropped += len(batch)
                raise
            self.stats.events_sent += len(batch)

    def _on_events(self, message: dict[str, Any]) -> None:
        origin = str(message.get("n"))
        if origin == self.node_id:
            return  # our own, heard back
        if message["t"] == "down":
            log.info("cluster node stopped", extra={"node": origin})
            for pending in list(self._pending.values()):
                if pending.node == origin:
                    detail = f"node {origin!r}, holding its session, stopped"
                    _fail(pending, DeviceTimeout(pending.endpoint, pending.path, 0.0, detail))
            return
        hub = self.server.events
        for kind, endpoint, _sent, data in message.get("e", ()):
            if kind not in _EVENT_KINDS or not isinstance(endpoint, str) or not isinstance(data, dict):
                continue
            self.stats.events_received += 1
            if kind in _REGISTRATION_KINDS:
                self._on_registration(kind, endpoint, data, origin)
            data["node"] = origin
            if isinstance(hub, ClusterEventHub):
                hub.publish_remote(kind, endpoint, data)
            else:
                hub.publish(kind, endpoint, data)

    def _on_registration(self, kind: str, endpoint: str, data: dict[str, Any], origin: str) -> None:
        registration_id = data.get("registration_id")
        if kind in ("registered", "updated"):
            local = self.server.registrations_manager.get(endpoint)
            if local is not None and local.registration.registration_id != registration_id:
                self._release(local, origin)
                if isinstance(registration_id, str) and endpoint not in self._remote:
                    # Until the refresh below has read the new registration: the device is the other
                    # node's, never "not registered" (an API call in between would answer 404).
                    self._set_remote(
                        dataclasses.replace(local.registration, registration_id=registration_id, node_id=origin),
                        endpoint,
                    )
            self._spawn(self._refresh(endpoint))
        else:
            known = self._remote.get(endpoint)
            if known is not None and known.registration_id == registration_id:
                self._set_remote(None, endpoint)

    def _release(self, session: ClientSession, node: str) -> None:
        """The device registered on ``node``: forget our session (the store is the new node's now)."""
        server = self.server
        endpoint = session.endpoint
        server.registrations_manager.release(session)
        server.observations.drop_endpoint(endpoint)
        server._dormant.pop(endpoint, None)
        server._fail_queue(session, ServerError(f"{endpoint!r} moved to node {node!r}; try again"))
        self.stats.released += 1
        log.info("device moved to another node", extra={"endpoint": endpoint, "node": node})

    # ------------------------------------------------------------------------------ plumbing

    async def _send(self, channel: str, message: dict[str, Any]) -> None:
        await self._send_text(channel, json.dumps(message, separators=(",", ":")))

    async def _send_text(self, channel: str, text: str) -> None:
        if len(text) <= MAX_MESSAGE:
            await self.notifier.notify(channel, text)
            return
        message_id = secrets.token_hex(8)
        size = MAX_MESSAGE - 100
        count = math.ceil(len(text) / size)
        for index in range(count):
            part = {"t": "part", "m": message_id, "i": index, "n": count, "d": text[index * size : (index + 1) * size]}
            await self.notifier.notify(channel, json.dumps(part, separators=(",", ":")))

    async def _listen(self, channel: str) -> None:
        while True:
            try:
                async for payload in self._subscriptions[channel]:
                    self._receive(channel, payload)
                return  # unsubscribed: the store is closing
            except StoreError as exc:
                log.warning("cluster channel lost; listening again", extra={"channel": channel, "error": str(exc)})
            while True:
                await asyncio.sleep(1.0)
                try:
                    subscription = self.notifier.listen(channel)
                    await subscription.__aenter__()
                    self._subscriptions[channel] = subscription
                    await self._load_view()  # what we missed
                    break
                except StoreError as exc:
                    log.warning("cannot listen again yet", extra={"channel": channel, "error": str(exc)})

    def _receive(self, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("t") == "part":
                whole = self._reassemble(message)
                if whole is None:
                    return
                message = json.loads(whole)
            kind = message.get("t")
            if kind == "req":
                self._spawn(self._serve(message))
            elif kind in ("ack", "res"):
                self._on_reply(message)
            elif kind in ("ev", "down"):
                self._on_events(message)
        except Exception:
            log.exception("bad cluster message", extra={"channel": channel, "payload": payload[:200]})

    def _reassemble(self, part: dict[str, Any]) -> str | None:
        message_id, index, count = str(part["m"]), int(part["i"]), int(part["n"])
        parts = self._parts.get(message_id)
        if parts is None:
            parts = self._parts[message_id] = [None] * count
            while len(self._parts) > 1000:  # parts of messages whose rest never came
                self._parts.popitem(last=False)
        parts[index] = str(part["d"])
        if any(p is None for p in parts):
            return None
        del self._parts[message_id]
        return "".join(p for p in parts if p is not None)

    async def _maintain(self) -> None:
        """Re-read the other nodes' registrations now and then; expire registrations nobody expires."""
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync_interval
        next_sweep = loop.time() + self.sweep_interval
        while True:
            await asyncio.sleep(max(0.05, min(next_resync, next_sweep) - loop.time()))
            try:
                if loop.time() >= next_resync:
                    next_resync = loop.time() + self.resync_interval
                    await self._load_view()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_interval
                    await self.sweep()
            except StoreError as exc:
                log.warning("cluster maintenance failed", extra={"error": str(exc)})

    async def sweep(self) -> int:
        """Delete other nodes' registrations expired more than ``sweep_grace`` ago (their node is gone:
        it would have expired them itself); publishes "expired" for each. Returns how many."""
        limit = utc_now() - timedelta(seconds=self.sweep_grace)
        count = 0
        for registration in await self.store.expired_registrations(limit):
            if registration.node_id == self.node_id:
                continue  # ours: the registration manager expires them
            current = await self.store.get_registration(registration.endpoint)
            if current is None or current.registration_id != registration.registration_id:
                continue
            try:
                await self.store.delete_registration(registration.endpoint)
            except NotFound:
                continue
            self._set_remote(None, registration.endpoint)
            count += 1
            self.stats.swept += 1
            log.info("expired registration of another node deleted", extra={"endpoint": registration.endpoint})
            self.server.events.publish(
                "expired",
                registration.endpoint,
                {"registration_id": registration.registration_id, "node_id": registration.node_id},
            )
        return count

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("cluster task failed", extra={"error": repr(exc)})


def _fail(pending: _Pending, error: Exception) -> None:
    if not pending.acked.done():
        pending.acked.set_result(None)
    if not pending.result.done():
        pending.result.set_exception(error)


__all__ = [
    "EVENTS_CHANNEL",
    "ClusterEventHub",
    "ClusterRouter",
    "ClusterStats",
    "decode_node",
    "encode_node",
    "node_channel",
]
