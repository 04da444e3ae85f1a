"""Information reporting towards one server (TS Core §6.4): Observe, notification attributes, storing.

One :class:`Reporter` per server account. It keeps

* the notification attributes that server wrote (Write-Attributes), per path;
* its observations, each with a :class:`~spmp.lwm2m.attributes.NotificationPolicy` over the
  effective attributes (resource instance ← resource ← instance ← object ← the Server object's
  default pmin/pmax) and a timer for the next pmin/pmax/epmin/epmax deadline;
* the notification store: notifications that could not be delivered while the server was
  unreachable, when its Server object says Notification Storing is on.

Tree changes (``ObjectTree.listeners``) schedule an evaluation of the observations they touch;
evaluations are coalesced with ``call_soon`` so a write of ten resources costs one evaluation.
Notifications are confirmable so that a delivery failure is known: the endpoint cancels the CoAP
observation when a CON notification is never acknowledged, and we then keep the LwM2M observation
alive (re-accepting it on the endpoint under the same token), mark the server offline and store
the notification that failed. Known limit: a notification that was *replaced* in transit by a newer
one (RFC 7641 §4.5.2) before the timeout is not stored; the newer one, carrying the latest state, is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from spmp.client.tree import Caller, ObjectTree
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.observe import ServedObservation
from spmp.lwm2m import codecs
from spmp.lwm2m.attributes import (
    NotificationAttributes,
    NotificationPolicy,
    NotificationState,
    effective,
    effective_for,
)
from spmp.lwm2m.model import ModelLookup
from spmp.lwm2m.node import Node, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode

log = logging.getLogger(__name__)

DEFAULT_STORE_LIMIT = 1000
_DROP_LOG_EVERY = 100


@dataclass(slots=True)
class ReportingStats:
    notifications_sent: int = 0
    stored: int = 0
    delivered_from_store: int = 0
    dropped_overflow: int = 0
    """Stored notifications discarded (oldest first) because the store was full."""
    dropped_not_storing: int = 0
    """Notifications discarded while offline because Notification Storing is off."""


@dataclass(frozen=True, slots=True)
class ServerDefaults:
    """What the Server object says about reporting for this server, read when needed."""

    default_pmin: int | None = None
    default_pmax: int | None = None
    storing: bool = True


class Observed:
    """One LwM2M observation (single or composite) of this server."""

    __slots__ = (
        "composite",
        "content_format",
        "deadline",
        "ended",
        "endpoint",
        "last_sent",
        "paths",
        "policy",
        "request",
        "scheduled",
        "served",
        "state",
        "timer",
    )

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        request: Request,
        served: ServedObservation,
        paths: tuple[Path, ...],
        composite: bool,
        content_format: int,
        policy: NotificationPolicy,
        state: NotificationState,
    ) -> None:
        self.endpoint = endpoint
        self.request = request
        self.served = served
        self.paths = paths
        self.composite = composite
        self.content_format = content_format
        self.policy = policy
        self.state = state
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self.scheduled = False
        self.ended = False
        self.last_sent: Response | None = None

    def touches(self, changed: Path) -> bool:
        return any(p.starts_with(changed) or changed.starts_with(p) for p in self.paths)


def value_of(nodes: Mapping[Path, Node | None]) -> object:
    """What the change conditions compare: a single value for one resource, else the nodes themselves."""
    if len(nodes) == 1:
        node = next(iter(nodes.values()))
        if isinstance(node, SingleResource | ResourceInstance):
            return node.value
        return node
    return tuple(nodes.items())


class Reporter:
    """Observations, attributes and stored notifications of one server; see the module docstring."""

    def __init__(
        self,
        tree: ObjectTree,
        models: ModelLookup,
        caller: Caller,
        defaults: Callable[[], ServerDefaults],
        *,
        store_limit: int = DEFAULT_STORE_LIMIT,
        on_unreachable: Callable[[], None] | None = None,
        name: str = "",
    ) -> None:
        if store_limit < 1:
            raise ValueError("store_limit must be at least 1")
        self._tree = tree
        self._models = models
        self._caller = caller
        self._defaults = defaults
        self._on_unreachable = on_unreachable
        self._loop = asyncio.get_running_loop()
        self.name = name
        self.store_limit = store_limit
        self.attributes: dict[Path, NotificationAttributes] = {}
        self.observations: dict[tuple[object, bytes], Observed] = {}
        self.online = True
        self.stats = ReportingStats()
        self._stored: deque[tuple[Observed, Response]] = deque()
        self._closed = False

    # -- reading ------------------------------------------------------------------------------------

    def read_nodes(self, paths: tuple[Path, ...], composite: bool) -> dict[Path, Node | None]:
        nodes: dict[Path, Node | None] = {}
        for path in paths:
            try:
                nodes[path] = self._tree.read(path, self._caller)
            except OperationError as exc:
                # A composite read reports an absent path as "no value"; a single one fails.
                if not composite or exc.code != ResponseCode.NOT_FOUND:
                    raise
                nodes[path] = None
        return nodes

    def encode(self, nodes: Mapping[Path, Node | None], composite: bool, content_format: int) -> bytes:
        if composite:
            return codecs.encode_nodes(nodes, content_format, self._models)
        path, node = next(iter(nodes.items()))
        assert node is not None
        return codecs.encode(node, path, content_format, self._models)

    # -- observations -------------------------------------------------------------------------------

    def observe(
        self, endpoint: Endpoint, request: Request, paths: tuple[Path, ...], composite: bool, content_format: int
    ) -> Response:
        """Serve a (composite) Observe: the first response, and the observation accepted on ``endpoint``.

        Errors (OperationError, CodecError) propagate before anything is accepted.
        """
        nodes = self.read_nodes(paths, composite)
        payload = self.encode(nodes, composite, content_format)
        served = endpoint.accept_observation(request, self._on_cancel)
        policy = NotificationPolicy(self._effective(paths, composite))
        observed = Observed(
            endpoint=endpoint,
            request=request,
            served=served,
            paths=paths,
            composite=composite,
            content_format=content_format,
            policy=policy,
            state=policy.start(value_of(nodes), self._loop.time()),
        )
        self.observations[(served.peer, served.token)] = observed
        self._arm(observed, policy.next_deadline(observed.state))
        return Response(Code.CONTENT, payload, content_format=content_format)

    def _effective(self, paths: tuple[Path, ...], composite: bool) -> NotificationAttributes:
        defaults = self._defaults()
        if composite or len(paths) != 1:
            return effective(
                NotificationAttributes(), default_pmin=defaults.default_pmin, default_pmax=defaults.default_pmax
            )
        return effective_for(
            paths[0], self.attributes, default_pmin=defaults.default_pmin, default_pmax=defaults.default_pmax
        )

    def attributes_changed(self) -> None:
        """Write-Attributes or the Server defaults changed: rebuild every policy, keep the states."""
        for observed in list(self.observations.values()):
            observed.policy = NotificationPolicy(self._effective(observed.paths, observed.composite))
            self._arm(observed, observed.policy.next_deadline(observed.state))

    def on_tree_change(self, path: Path) -> None:
        if path.object_id == 1:
            self.attributes_changed()  # default pmin/pmax may have changed
        for observed in self.observations.values():
            if not observed.scheduled and observed.touches(path):
                observed.scheduled = True
                self._loop.call_soon(self._evaluate, observed, None)

    def _arm(self, observed: Observed, deadline: float | None) -> None:
        if observed.timer is not None:
            observed.timer.cancel()
            observed.timer = None
        observed.deadline = deadline
        if deadline is not None and not observed.ended:
            observed.timer = self._loop.call_at(deadline, self._evaluate, observed, deadline)

    def _evaluate(self, observed: Observed, deadline: float | None) -> None:
        observed.scheduled = False
        if observed.ended or self._closed:
            return
        try:
            nodes = self.read_nodes(observed.paths, observed.composite)
        except OperationError as exc:
            # The observed node is gone (e.g. instance deleted): an error notification ends it.
            self._send(observed, Response(exc.code, exc.reason.encode()))
            self._drop(observed)
            return
        # asyncio may run a timer a hair before its time; never evaluate a deadline as not yet reached.
        now = self._loop.time() if deadline is None else max(self._loop.time(), deadline)
        decision = observed.policy.evaluate(observed.state, value_of(nodes), now)
        observed.state = decision.state
        if decision.notify:
            try:
                payload = self.encode(nodes, observed.composite, observed.content_format)
            except Exception:
                log.exception("cannot encode a notification", extra={"server": self.name})
                return
            self._send(observed, Response(Code.CONTENT, payload, content_format=observed.content_format))
        self._arm(observed, decision.next_deadline)

    def _send(self, observed: Observed, response: Response) -> None:
        if not self.online:
            if response.is_success:
                self._store(observed, response)
            return
        observed.last_sent = response
        self.stats.notifications_sent += 1
        observed.served.notify(response, confirmable=True)

    def _on_cancel(self, served: ServedObservation, reason: str) -> None:
        observed = self.observations.get((served.peer, served.token))
        if observed is None or observed.served is not served:
            return
        if reason == "timeout" and not self._closed:
            # The server did not acknowledge: it is unreachable, not uninterested. LwM2M keeps the
            # observation (TS §6.4: notifications are stored while offline), so re-accept it under
            # the same token and keep the notification that failed.
            observed.served = observed.endpoint.accept_observation(observed.request, self._on_cancel)
            observed.served.active = True
            failed, observed.last_sent = observed.last_sent, None
            self.went_offline()
            if failed is not None:
                self._store(observed, failed)
            return
        self._drop(observed)

    def _drop(self, observed: Observed) -> None:
        observed.ended = True
        self._arm(observed, None)
        key = (observed.served.peer, observed.served.token)
        if self.observations.get(key) is observed:
            del self.observations[key]

    def cancel_all(self) -> None:
        """Forget every observation (de-registration, or a new registration replacing the old one)."""
        for observed in list(self.observations.values()):
            observed.served.cancel()
            self._drop(observed)
        self._stored.clear()

    # -- reachability and the notification store --------------------------------------------------------

    def went_offline(self) -> None:
        if self.online:
            log.info("server unreachable, notifications are now stored", extra={"server": self.name})
        self.online = False
        if self._on_unreachable is not None:
            self._on_unreachable()

    def resume(self) -> None:
        """The server is reachable again (Register/Update succeeded): deliver stored notifications in order."""
        self.online = True
        delivered = 0
        while self._stored and self.online:
            observed, response = self._stored.popleft()
            if observed.ended:
                continue
            observed.last_sent = response
            observed.served.notify(response, confirmable=True)
            self.stats.notifications_sent += 1
            delivered += 1
        if delivered:
            self.stats.delivered_from_store += delivered
            log.info(
                "delivered stored notifications",
                extra={"server": self.name, "count": delivered, "dropped_overflow": self.stats.dropped_overflow},
            )

    def _store(self, observed: Observed, response: Response) -> None:
        if not self._defaults().storing:
            self.stats.dropped_not_storing += 1
            if self.stats.dropped_not_storing % _DROP_LOG_EVERY == 1:
                log.warning(
                    "server offline and notification storing is off: notifications dropped",
                    extra={"server": self.name, "dropped": self.stats.dropped_not_storing},
                )
            return
        if len(self._stored) >= self.store_limit:
            self._stored.popleft()
            self.stats.dropped_overflow += 1
            if self.stats.dropped_overflow % _DROP_LOG_EVERY == 1:
                log.warning(
                    "notification store full: oldest notifications dropped",
                    extra={"server": self.name, "limit": self.store_limit, "dropped": self.stats.dropped_overflow},
                )
        self._stored.append((observed, response))
        self.stats.stored += 1

    @property
    def stored_count(self) -> int:
        return len(self._stored)

    def close(self) -> None:
        self._closed = True
        for observed in list(self.observations.values()):
            self._drop(observed)
        if self._stored:
            log.warning(
                "stored notifications discarded at shutdown", extra={"server": self.name, "count": len(self._stored)}
            )
        self._stored.clear()
