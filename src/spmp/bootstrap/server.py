"""The bootstrap server: answers Bootstrap-Request and runs each client's session (TS Core §6.1).

``POST /bs?ep=…[&pct=…]`` is answered 2.04 once the request is acceptable; then the session's
steps (:mod:`spmp.bootstrap.session`) go to the client as downlink requests over the same socket
and DTLS session the client used, one at a time, each with its own timeout. Every session ends in
a :class:`SessionResult` (finished, or failed with a reason) and is logged step by step.

Who may bootstrap (decided before answering 2.04):

* no configuration for the endpoint and no default ``"*"`` → 4.00 with a diagnostic (TS: unknown
  endpoint);
* over DTLS, the session's PSK identity must be the endpoint's bootstrap PSK identity → else 4.03;
* over plain CoAP (only with ``insecure=True``) an endpoint that has a bootstrap PSK is refused
  (4.03): anyone could claim its name and collect its management-server keys;
* a second request while the endpoint's session runs → 5.03 (sessions are bounded by their step
  timeouts, and the client retries).

Server-initiated bootstrap (:meth:`BootstrapServer.bootstrap_server_initiated`) runs the same
session towards a client at a known address without a Bootstrap-Request; over DTLS the bootstrap
server is then the DTLS client, with the endpoint's bootstrap PSK. It needs only the store, not the
listeners: on a server that was never started it opens a socket of its own for the session, which is
how ``spmp bootstrap start`` and ``POST /api/bootstrap/{endpoint}/start`` run it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from spmp.bootstrap.psk import BootstrapPskCache, ensure_server_psk
from spmp.bootstrap.session import (
    BootstrapPlanError,
    ExistingServer,
    PskCredentials,
    Step,
    StepKind,
    check_response,
    choose_content_format,
    discover_step,
    needs_generated_psk,
    parse_server_read,
    plan_session,
    read_step,
    wants_bootstrap_read,
)
from spmp.coap.dtls import DtlsClientTransport, DtlsError, DtlsServerTransport
from spmp.coap.endpoint import CoapParameters, Endpoint
from spmp.coap.errors import CoapError
from spmp.coap.message import Code, Request, Response, code_str
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.lwm2m import codecs
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.link import BootstrapDiscover, parse_bootstrap_discover
from spmp.lwm2m.model import ModelLookup
from spmp.lwm2m.registration import InvalidRegistrationError, parse_bootstrap_request
from spmp.store import BootstrapConfig, SecurityScope, Store

__all__ = ["BootstrapError", "BootstrapEvent", "BootstrapServer", "SessionResult", "StepResult", "parse_address"]

log = logging.getLogger(__name__)

DIAGNOSTIC_LIMIT = 200
"""Characters of a client's diagnostic payload kept in results and logs."""


class BootstrapError(Exception):
    """A bootstrap cannot start (no configuration, no bootstrap PSK, a session already running...)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    code: str | None
    """The dotted response code, or None when no response came."""
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class SessionResult:
    """How one bootstrap session went. ``reason`` says why it failed (None when it finished)."""

    endpoint: str
    peer: str
    initiated_by: str
    """``"client"`` (Bootstrap-Request) or ``"server"`` (server-initiated)."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    ok: bool = False
    reason: str | None = None
    content_format: int | None = None
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    existing_servers: list[ExistingServer] | None = None
    """The client's Server instances as Bootstrap-Read found them; None when /1 was not read."""

    def as_json(self) -> dict[str, Any]:
        """For the REST API and ``spmp bootstrap start --json`` (camelCase like the rest of the API)."""
        return {
            "endpoint": self.endpoint,
            "peer": self.peer,
            "initiatedBy": self.initiated_by,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": None if self.finished_at is None else self.finished_at.isoformat(),
            "ok": self.ok,
            "reason": self.reason,
            "contentFormat": self.content_format,
            "steps": [{"step": s.step, "code": s.code, "ok": s.ok, "detail": s.detail} for s in self.steps],
            "notes": list(self.notes),
            "existingServers": None
            if self.existing_servers is None
            else [
                {
                    "instanceId": e.instance_id,
                    "shortServerId": e.short_server_id,
                    "lifetime": e.lifetime,
                    "defaultPmin": e.default_pmin,
                    "defaultPmax": e.default_pmax,
                    "notificationStoring": e.notification_storing,
                    "binding": e.binding,
                }
                for e in self.existing_servers
            ],
        }


@dataclass(frozen=True, slots=True)
class BootstrapEvent:
    """What listeners see: ``started``, ``step``, ``finished`` or ``failed`` for an endpoint."""

    kind: str
    endpoint: str
    detail: str = ""
    code: str | None = None


def _diagnostic(response: Response) -> str:
    if response.is_success or not response.payload:
        return ""
    return response.payload[:DIAGNOSTIC_LIMIT].decode("utf-8", "replace")


class BootstrapServer:
    """Serves Bootstrap-Request on CoAP (``insecure`` only) and DTLS; see the module docstring.

    Port 0 picks an ephemeral port (read :attr:`coap_address` / :attr:`coaps_address` after
    :meth:`start`). ``step_timeout`` bounds each downlink request including its retransmissions;
    ``coap_params`` tunes CoAP retransmission, ``dtls_options`` go to the DTLS transports.
    """

    def __init__(
        self,
        store: Store,
        registry: ModelLookup,
        *,
        host: str = "127.0.0.1",
        coap_port: int = 5783,
        coaps_port: int = 5784,
        insecure: bool = False,
        step_timeout: float = 30.0,
        coap_params: CoapParameters | None = None,
        psk_reload_interval: float = 10.0,
        dtls_options: dict[str, Any] | None = None,
        history: int = 1000,
        bootstrap_read: bool = True,
    ) -> None:
        self.store = store
        self.registry = registry
        self.host = host
        self.coap_port = coap_port
        self.coaps_port = coaps_port
        self.insecure = insecure
        self.step_timeout = step_timeout
        self.coap_params = coap_params
        self.psk_reload_interval = psk_reload_interval
        self.dtls_options = dict(dtls_options or {})
        self.bootstrap_read = bootstrap_read
        """Bootstrap-Read /1 when the configuration keeps existing accounts (see :mod:`spmp.bootstrap.session`)."""
        self.psks = BootstrapPskCache(store)
        self.results: deque[SessionResult] = deque(maxlen=history)
        """Finished and failed sessions, oldest first."""
        self.listeners: list[Callable[[BootstrapEvent], None]] = []
        self._coap: Endpoint | None = None
        self._coaps: Endpoint | None = None
        self._sessions: dict[str, asyncio.Task[SessionResult]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_miss_reload = 0.0
        self._waiters: list[tuple[str, asyncio.Future[SessionResult]]] = []

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.psks.load()
        self.psks.on_miss = self._reload_soon
        try:
            transport = await DtlsServerTransport.bind(self.host, self.coaps_port, self.psks, **self.dtls_options)
            self._coaps = Endpoint(transport, self._handle, params=self.coap_params)
            if self.insecure:
                udp = await UdpTransport.bind(self.host, self.coap_port)
                self._coap = Endpoint(udp, self._handle, params=self.coap_params)
        except BaseException:
            await self.stop()
            raise
        self._spawn(self._reload_loop())
        log.info(
            "bootstrap server listening",
            extra={
                "coaps": _address(self.coaps_address),
                "coap": _address(self.coap_address),
                "insecure": self.insecure,
            },
        )

    async def stop(self) -> None:
        """Cancel running sessions (recorded as failed), then close the sockets."""
        tasks = list(self._sessions.values()) + list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in (self._coap, self._coaps):
            if endpoint is not None:
                await endpoint.close()
        self._coap = self._coaps = None

    async def __aenter__(self) -> BootstrapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def coap_address(self) -> tuple[str, int] | None:
        return self._coap.transport.local_address if self._coap is not None else None

    @property
    def coaps_address(self) -> tuple[str, int] | None:
        return self._coaps.transport.local_address if self._coaps is not None else None

    @property
    def active_sessions(self) -> list[str]:
        return sorted(self._sessions)

    async def wait_for_result(self, endpoint: str, timeout: float | None = None) -> SessionResult:
        """The result of the endpoint's next session to end (for tests and tools)."""
        future: asyncio.Future[SessionResult] = asyncio.get_running_loop().create_future()
        self._waiters.append((endpoint, future))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters = [(e, f) for e, f in self._waiters if f is not future]

    # -- Bootstrap-Request -----------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        if request.path != ("bs",):
            return Response(Code.NOT_FOUND, b"this is an LwM2M bootstrap server: POST /bs?ep=NAME")
        if request.method != Code.POST:
            return Response(Code.METHOD_NOT_ALLOWED, b"Bootstrap-Request is POST /bs")
        try:
            params = parse_bootstrap_request(request.query)
        except InvalidRegistrationError as exc:
            return Response(Code.BAD_REQUEST, str(exc).encode())
        peer = request.peer
        assert peer is not None
        ep = params.endpoint
        refusal = await self._refusal(ep, peer)
        if refusal is not None:
            log.warning("bootstrap refused", extra={"endpoint": ep, "peer": str(peer), "reason": refusal})
            return Response(Code.FORBIDDEN, refusal.encode())
        config = await self.store.get_bootstrap_config(ep)
        if config is None:
            reason = f"no bootstrap configuration for endpoint {ep!r} and no default ('*')"
            log.warning("bootstrap refused", extra={"endpoint": ep, "peer": str(peer), "reason": reason})
            return Response(Code.BAD_REQUEST, reason.encode())
        pct = params.preferred_content_format
        if pct is not None and not _known_format(pct):
            return Response(Code.UNSUPPORTED_CONTENT_FORMAT, f"content format {pct} is not supported".encode())
        if ep in self._sessions:
            return Response(Code.SERVICE_UNAVAILABLE, f"a bootstrap session for {ep!r} is running; retry".encode())
        endpoint = self._coaps if peer.secure else self._coap
        assert endpoint is not None
        # The task first runs after this handler returned and the endpoint sent the 2.04, so the
        # client sees its answer before the first downlink request.
        self._start_session(ep, config, endpoint, peer, pct=pct, by="client")
        return Response(Code.CHANGED)

    async def _refusal(self, endpoint: str, peer: Peer) -> str | None:
        info = await self.store.get_security(endpoint, SecurityScope.BOOTSTRAP)
        if peer.secure:
            if info is None or info.psk_identity != peer.identity:
                return f"PSK identity {peer.identity!r} is not the bootstrap identity of endpoint {endpoint!r}"
        elif info is not None:
            return f"endpoint {endpoint!r} has a bootstrap PSK: bootstrap over DTLS (coaps)"
        return None

    # -- server-initiated ------------------------------------------------------------------------

    async def bootstrap_server_initiated(
        self, endpoint: str, host: str, port: int, *, secure: bool = True
    ) -> SessionResult:
        """Bootstrap the client at ``host:port`` without waiting for its Bootstrap-Request.

        ``secure``: DTLS with the endpoint's bootstrap PSK, the bootstrap server being the DTLS
        client; else plain CoAP (only with ``insecure=True``) from the insecure listener, or, on a
        server that was not started, from a socket opened for this session. Raises
        :class:`BootstrapError` when it cannot start; otherwise returns the session's result (which
        may be a failure).
        """
        config = await self.store.get_bootstrap_config(endpoint)
        if config is None:
            raise BootstrapError(f"no bootstrap configuration for endpoint {endpoint!r} and no default ('*')")
        if endpoint in self._sessions:
            raise BootstrapError(f"a bootstrap session for {endpoint!r} is already running")
        if not secure:
            if not self.insecure:
                raise BootstrapError("plain CoAP bootstrap needs insecure=True (--insecure)")
            if self._coap is not None:
                task = self._start_session(endpoint, config, self._coap, Peer(host, port), pct=None, by="server")
                return await task
            udp = await UdpTransport.bind("::" if ":" in host else "0.0.0.0", 0)  # the device may be anywhere
            plain = Endpoint(udp, self._handle, params=self.coap_params)
            try:
                return await self._start_session(endpoint, config, plain, Peer(host, port), pct=None, by="server")
            finally:
                await plain.close()
        info = await self.store.get_security(endpoint, SecurityScope.BOOTSTRAP)
        if info is None:
            raise BootstrapError(f"endpoint {endpoint!r} has no bootstrap PSK: add one, or use secure=False")
        try:
            transport = await DtlsClientTransport.connect(host, port, info.psk_identity, info.psk_key)
        except DtlsError as exc:
            result = SessionResult(endpoint, f"{host}:{port}", "server")
            self._end(result, f"DTLS handshake failed: {exc}")
            return result
        dtls = Endpoint(transport, self._handle, params=self.coap_params)
        try:
            return await self._start_session(endpoint, config, dtls, transport.peer, pct=None, by="server")
        finally:
            await dtls.close()

    # -- sessions --------------------------------------------------------------------------------

    def _start_session(
        self, ep: str, config: BootstrapConfig, endpoint: Endpoint, peer: Peer, *, pct: int | None, by: str
    ) -> asyncio.Task[SessionResult]:
        task = asyncio.get_running_loop().create_task(self._session(ep, config, endpoint, peer, pct=pct, by=by))
        self._sessions[ep] = task
        task.add_done_callback(lambda _: self._sessions.pop(ep, None) if self._sessions.get(ep) is task else None)
        return task

    async def _session(
        self, ep: str, config: BootstrapConfig, endpoint: Endpoint, peer: Peer, *, pct: int | None, by: str
    ) -> SessionResult:
        result = SessionResult(ep, str(peer), by)
        self._emit(BootstrapEvent("started", ep, f"{by}-initiated with {peer}"))
        log.info("bootstrap started", extra={"endpoint": ep, "peer": str(peer), "initiated_by": by})
        try:
            discovered = await self._discover(result, endpoint, peer)
            generated: PskCredentials | None = None
            if needs_generated_psk(config):
                generated, created = await ensure_server_psk(self.store, ep)
                result.notes.append(
                    f"server PSK {'generated' if created else 'reused'} for identity {generated.identity!r}"
                )
                if not peer.secure:
                    log.warning("sending a server psk over plain coap", extra={"endpoint": ep, "peer": str(peer)})
            existing: tuple[ExistingServer, ...] | None = None
            if self.bootstrap_read and wants_bootstrap_read(config, discovered):
                assert discovered is not None
                fmt = choose_content_format(pct, discovered.lwm2m_version)
                existing = await self._read_servers(result, endpoint, peer, read_step(fmt))
            plan = plan_session(
                config,
                discovered,
                self.registry,
                preferred_format=pct,
                generated_psk=generated,
                existing_servers=existing,
            )
            result.content_format = int(plan.content_format)
            result.notes.extend(plan.notes)
            for step in plan.steps:
                reason = await self._run_step(result, endpoint, peer, step)
                if reason is not None:
                    self._end(result, reason)
                    return result
            self._end(result, None)
        except asyncio.CancelledError:
            self._end(result, "the bootstrap server stopped")
            raise
        except _StepError as exc:
            self._end(result, str(exc))
        except BootstrapPlanError as exc:
            self._end(result, f"the configuration cannot be written: {exc}")
        except Exception as exc:  # a bug: record it against the session rather than lose it in a task
            log.exception("bootstrap session crashed", extra={"endpoint": ep})
            self._end(result, f"internal error: {exc!r}")
        return result

    async def _discover(self, result: SessionResult, endpoint: Endpoint, peer: Peer) -> BootstrapDiscover | None:
        step = discover_step()
        response = await self._send(result, endpoint, peer, step)
        if response.code != Code.CONTENT:
            return None  # a client without Bootstrap-Discover: plan for 1.0 (the plan notes it)
        try:
            return parse_bootstrap_discover(response.payload)
        except Lwm2mError as exc:
            result.notes.append(f"unreadable Bootstrap-Discover answer ({exc}); assuming LwM2M 1.0")
            return None

    async def _read_servers(
        self, result: SessionResult, endpoint: Endpoint, peer: Peer, step: Step
    ) -> tuple[ExistingServer, ...] | None:
        """Bootstrap-Read of /1; a refusal or an unreadable answer is noted, not fatal (Discover suffices)."""
        response = await self._send(result, endpoint, peer, step)
        if response.code != Code.CONTENT:
            result.notes.append(f"Bootstrap-Read of /1 answered {code_str(response.code)}; going on with Discover")
            return None
        try:
            existing = parse_server_read(
                response.payload, response.content_format or int(step.accept or 0), self.registry
            )
        except Lwm2mError as exc:
            result.notes.append(f"unreadable Bootstrap-Read answer ({exc}); going on with Discover")
            return None
        result.existing_servers = list(existing)
        return existing

    async def _run_step(self, result: SessionResult, endpoint: Endpoint, peer: Peer, step: Step) -> str | None:
        response = await self._send(result, endpoint, peer, step)
        return check_response(step, response.code, _diagnostic(response))

    async def _send(self, result: SessionResult, endpoint: Endpoint, peer: Peer, step: Step) -> Response:
        request = Request(
            Code[step.method],
            step.uri_path,
            payload=step.payload,
            content_format=step.content_format,
            accept=step.accept,
        )
        try:
            response = await asyncio.wait_for(endpoint.request(peer, request), self.step_timeout)
        except TimeoutError:
            self._record(result, step, None, False, f"no answer within {self.step_timeout:g} s")
            raise _StepError(f"{step}: no answer within {self.step_timeout:g} s") from None
        except CoapError as exc:
            self._record(result, step, None, False, str(exc))
            raise _StepError(f"{step}: {exc}") from None
        code = code_str(response.code)
        ok = step.kind is StepKind.DISCOVER or check_response(step, response.code) is None
        self._record(result, step, code, ok, _diagnostic(response))
        return response

    def _record(self, result: SessionResult, step: Step, code: str | None, ok: bool, detail: str) -> None:
        result.steps.append(StepResult(str(step), code, ok, detail))
        self._emit(BootstrapEvent("step", result.endpoint, str(step), code))
        log.info(
            "bootstrap step",
            extra={"endpoint": result.endpoint, "step": str(step), "code": code or "none", "detail": detail},
        )

    def _end(self, result: SessionResult, reason: str | None) -> None:
        result.finished_at = datetime.now(UTC)
        result.ok = reason is None
        result.reason = reason
        self.results.append(result)
        if reason is None:
            self._emit(BootstrapEvent("finished", result.endpoint, f"{len(result.steps)} steps"))
            log.info("bootstrap finished", extra={"endpoint": result.endpoint, "steps": len(result.steps)})
        else:
            self._emit(BootstrapEvent("failed", result.endpoint, reason))
            log.warning("bootstrap failed", extra={"endpoint": result.endpoint, "reason": reason})
        for endpoint, future in self._waiters:
            if endpoint == result.endpoint and not future.done():
                future.set_result(result)

    def _emit(self, event: BootstrapEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("bootstrap event listener failed")

    # -- PSK cache refresh -----------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.psk_reload_interval)
            await self._reload()

    async def _reload(self) -> None:
        try:
            await self.psks.load()
        except Exception:
            log.exception("bootstrap psk reload failed")

    def _reload_soon(self, identity: str) -> None:
        # An unknown identity may have been added since the last load (by `spmp bootstrap psk add`):
        # reload at most once a second, so the device's next handshake attempt can succeed.
        now = asyncio.get_running_loop().time()
        if now - self._last_miss_reload >= 1.0:
            self._last_miss_reload = now
            self._spawn(self._reload())


class _StepError(Exception):
    """A step got no usable answer (timeout, RST, transport closed); the message is the reason."""


def _known_format(number: int) -> bool:
    return any(int(fmt) == number for fmt in codecs.supported_formats())


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port); raises ValueError saying what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"give the device's address as HOST:PORT (for example 192.0.2.7:56830), not {text!r}")
    return host, int(port_text)


def _address(address: tuple[str, int] | None) -> str | None:
    return None if address is None else f"{address[0]}:{address[1]}"
