"""One management server account at run time: its transport, the registration state machine, requests.

A :class:`ServerSession` owns one endpoint (one UDP socket, or one DTLS session: each server gets its
own) and runs::

    connect ─▶ Register (POST /rd?ep&lt&lwm2m=1.1&b=U, link-format objects) ─▶ registered
        ▲                                   │ ~90 % of the lifetime, Registration Update Trigger,
        │ backoff (doubling, capped)        │ objects/instances changed, lifetime changed,
        │                                   ▼ a notification went unacknowledged
        └──── failure ◀─────────────── Update (POST /rd/{loc}) ── 4.04 ─▶ Register again

and De-register (DELETE /rd/{loc}) on stop. While it is unreachable, notifications go to the
reporter's store and are delivered after the next successful Register or Update.

A DTLS handshake the server ends with an authentication alert (bad_record_mac, decrypt_error,
unknown_psk_identity, or a certificate alert) is not "unreachable": the state is ``auth-failed``; after
one quick retry (the server may be loading a key it just got) one ERROR says so (once per streak), and
retries follow the long ``auth_retry_*`` backoff (the server may be given our key later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from enum import StrEnum

from spmp.client.accounts import SECURITY_MODE_CERTIFICATE, SECURITY_MODE_PSK, ServerAccount, management_accounts
from spmp.client.dm import DeviceManagement
from spmp.client.reporting import DEFAULT_STORE_LIMIT, Reporter, ServerDefaults
from spmp.client.tree import Caller, ObjectTree
from spmp.coap.dtls import DtlsHandshakeError, X509Credentials
from spmp.coap.dtls_client import DtlsClientTransport
from spmp.coap.endpoint import CoapParameters, Endpoint, Handler
from spmp.coap.errors import CoapError
from spmp.coap.message import Code, Request
from spmp.coap.transport import Peer
from spmp.coap.udp import UdpTransport
from spmp.lwm2m import codecs
from spmp.lwm2m.codecs import TimestampedNodes
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.link import RegistrationObjects, format_registration
from spmp.lwm2m.model import ModelLookup
from spmp.lwm2m.path import Path
from spmp.lwm2m.registration import RegistrationParams, UpdateParams

log = logging.getLogger(__name__)

LWM2M_VERSION = "1.1"
SUPPORTED_FORMATS = (
    ContentFormat.CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.TLV,
    ContentFormat.LWM2M_JSON,
)
"""Announced with ``ct=`` on the root link (text, opaque and link-format are mandatory, not listed)."""
_NOT_REGISTERED = (0, 21)  # Security and OSCORE never appear in a registration (Core §6.2.1)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Tunables of the engine; tests shrink the timers."""

    coap: CoapParameters = field(default_factory=CoapParameters)
    local_host: str | None = None
    """Address to bind UDP sockets to; None: the wildcard address of the server's family."""
    handshake_timeout: float = 15.0
    dtls_retransmit: float = 1.0
    retry_initial: float = 2.0
    """First delay after a failed Register/Update/Bootstrap; doubles up to ``retry_max``."""
    retry_max: float = 300.0
    auth_retry_initial: float = 30.0
    """First delay after the server refused our credentials (DTLS alert); doubles up to ``auth_retry_max``.
    Long, since retrying with the same key only helps once the server has been given it."""
    auth_retry_max: float = 600.0
    bootstrap_timeout: float = 60.0
    """How long the bootstrap server has, after the Bootstrap-Request, to send Bootstrap-Finish."""
    deregister_timeout: float = 3.0
    min_update_margin: float = 2.0
    """An Update goes out at 90 % of the lifetime, but at least this many seconds before it ends."""
    store_limit: int = DEFAULT_STORE_LIMIT


class SessionState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    REGISTERED = "registered"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth-failed"
    """The server refused our DTLS credentials (wrong PSK, unknown identity, refused certificate)."""
    DISABLED = "disabled"
    STOPPED = "stopped"


class RegistrationError(Exception):
    """The server answered a Register/Update with an error code."""


_PSK_REFUSED = frozenset({20, 51, 115})
"""DTLS alerts that mean our PSK was refused: bad_record_mac (wrong key), decrypt_error, unknown_psk_identity."""
_CERTIFICATE_REFUSED = frozenset({42, 43, 44, 45, 46, 48})
"""bad_certificate, unsupported/revoked/expired/unknown certificate, unknown_ca."""


def auth_refusal(exc: BaseException) -> str | None:
    """What the server refused, if ``exc`` is a handshake it ended with an authentication alert."""
    if not isinstance(exc, DtlsHandshakeError) or exc.alert is None:
        return None
    if exc.alert in _PSK_REFUSED:
        return "wrong PSK or unknown identity"
    if exc.alert in _CERTIFICATE_REFUSED:
        return "certificate refused"
    return None


def update_delay(lifetime: int, margin: float) -> float:
    """Seconds after a Register/Update to send the next Update: ~90 % of the lifetime, keeping a margin."""
    return max(lifetime * 0.5, lifetime - max(lifetime * 0.1, margin))


def registration_objects(tree: ObjectTree) -> RegistrationObjects:
    versions = {
        oid: (model.version if model.version != "1.0" else None)
        for oid, model in tree.models().items()
        if oid not in _NOT_REGISTERED
    }
    instances = [p for p in tree.instance_paths() if p.object_id not in _NOT_REGISTERED and p.is_object_instance]
    return RegistrationObjects.create(versions, instances, content_formats=[int(f) for f in SUPPORTED_FORMATS])


async def open_endpoint(
    account: ServerAccount, options: ClientOptions, handler: Handler
) -> tuple[Endpoint, Peer, DtlsClientTransport | None]:
    """A fresh endpoint towards the account's server: plain UDP (NoSec), or a DTLS session (PSK, or
    X.509 with our certificate /0/x/3 and key /0/x/5, the server's certificate chaining to /0/x/4)."""
    where = account.endpoint
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(where.host, where.port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {where.host}")
    family, _, _, _, sockaddr = infos[0]
    host, port = str(sockaddr[0]), int(sockaddr[1])
    if account.security_mode == SECURITY_MODE_PSK:
        dtls = await DtlsClientTransport.connect(
            host,
            port,
            account.identity.decode("utf-8", "replace"),
            account.secret_key,
            handshake_timeout=options.handshake_timeout,
            retransmit_timeout=min(options.dtls_retransmit, options.handshake_timeout),
        )
        return Endpoint(dtls, handler, params=options.coap), dtls.peer, dtls
    if account.security_mode == SECURITY_MODE_CERTIFICATE:
        try:
            credentials = X509Credentials.from_bytes(account.identity, account.secret_key, account.server_public_key)
        except ValueError as exc:
            raise RegistrationError(f"{account.uri}: unusable certificate mode credentials: {exc}") from None
        dtls = await DtlsClientTransport.connect(
            host,
            port,
            certificates=credentials,
            handshake_timeout=options.handshake_timeout,
            retransmit_timeout=min(options.dtls_retransmit, options.handshake_timeout),
        )
        return Endpoint(dtls, handler, params=options.coap), dtls.peer, dtls
    local = options.local_host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    udp = await UdpTransport.bind(local, 0)
    return Endpoint(udp, handler, params=options.coap), Peer(host, port), None


class ServerSession:
    """Registration and device management with one LwM2M server; see the module docstring."""

    def __init__(
        self, endpoint_name: str, tree: ObjectTree, models: ModelLookup, account: ServerAccount, options: ClientOptions
    ) -> None:
        assert account.short_server_id is not None
        self.endpoint_name = endpoint_name
        self.tree = tree
        self.models = models
        self.account = account
        self.options = options
        self.ssid = account.short_server_id
        self.caller = Caller(short_server_id=self.ssid)
        self.reporter = Reporter(
            tree,
            models,
            self.caller,
            self._defaults,
            store_limit=options.store_limit,
            on_unreachable=self.trigger_update,
            name=account.uri,
        )
        self.dm = DeviceManagement(tree, models, self.caller, self.reporter)
        self.state = SessionState.IDLE
        self.endpoint: Endpoint | None = None
        self.peer: Peer | None = None
        self.location: tuple[str, ...] | None = None
        self.registrations = 0
        self.updates = 0
        self.failures = 0
        self._dtls: DtlsClientTransport | None = None
        self._handshake_needed = False
        self._sent_objects = ""
        self._registered_lifetime: int | None = None
        self._last_success = 0.0
        self._update_requested = False
        self._disable_requested = False
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lwm2m-session-{self.ssid}")

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop the state machine, De-register (best effort, bounded) and close the endpoint."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if deregister:
            await self._deregister()
        self.reporter.close()
        if self.endpoint is not None:
            await self.endpoint.close()
            self.endpoint = None
        self._set_state(SessionState.STOPPED)

    def trigger_update(self) -> None:
        """Registration Update Trigger (/1/x/8), or a hint that the server may be unreachable."""
        self._update_requested = True
        self._wake.set()

    def disable(self) -> None:
        """Disable (/1/x/4): De-register and stay away for the Disable Timeout."""
        self._disable_requested = True
        self._wake.set()

    def on_tree_change(self, path: Path) -> None:
        self.reporter.on_tree_change(path)
        # Instances created/deleted, or our own Server instance changed: maybe an Update is owed.
        if path.is_object_instance or (path.object_id == 1 and path.instance_id == self.account.server_instance):
            self._wake.set()

    async def wait_registered(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._registered.wait(), timeout)

    @property
    def registered(self) -> bool:
        return self.state is SessionState.REGISTERED

    @property
    def local_address(self) -> tuple[str, int] | None:
        return None if self.endpoint is None else self.endpoint.transport.local_address

    # -- the state machine ----------------------------------------------------------------------------

    def _set_state(self, state: SessionState) -> None:
        if state is not self.state:
            log.info("server session state", extra={"server": self.account.uri, "ssid": self.ssid, "state": str(state)})
        self.state = state
        if state is SessionState.REGISTERED:
            self._registered.set()
        else:
            self._registered.clear()

    def _defaults(self) -> ServerDefaults:
        account = self._current_account()
        return ServerDefaults(account.default_pmin, account.default_pmax, account.notification_storing)

    def _current_account(self) -> ServerAccount:
        """The account as the tree says now (a server may write its own lifetime or defaults)."""
        for account in management_accounts(self.tree):
            if account.short_server_id == self.ssid:
                return account
        return self.account

    async def _run(self) -> None:
        delay = self.options.retry_initial
        auth_delay = self.options.auth_retry_initial
        auth_refusals = 0  # consecutive ones
        loop = asyncio.get_running_loop()
        while True:
            if self._disable_requested:
                await self._disabled_period()
            try:
                await self._connect()
                if self.location is None:
                    await self._register()
                else:
                    await self._update()
            except (CoapError, RegistrationError, OSError) as exc:
                self.failures += 1
                self._handshake_needed = self._dtls is not None
                self.reporter.online = False
                refused = auth_refusal(exc)
                if refused is not None:
                    # Not a reachability problem. A server may refuse a key it has not loaded yet (its PSK
                    # cache looks a missing identity up in the store for the next attempt): one quick
                    # retry first. Refused again, it is an ERROR (once per streak), and the retries
                    # slow down to the authentication backoff: the server may be given our key later.
                    self._set_state(SessionState.AUTH_FAILED)
                    if auth_refusals == 0:
                        wait = self.options.retry_initial
                        log.warning(
                            "authentication refused, retrying once soon",
                            extra={"server": self.account.uri, "error": str(exc), "retry_in": round(wait, 3)},
                        )
                    else:
                        wait, auth_delay = auth_delay, min(auth_delay * 2, self.options.auth_retry_max)
                        extra = {"server": self.account.uri, "error": str(exc), "retry_in": round(wait, 3)}
                        if auth_refusals == 1:
                            log.error(f"authentication refused by {self.account.uri} ({refused})", extra=extra)
                        else:
                            log.info("authentication still refused", extra=extra)
                    auth_refusals += 1
                else:
                    wait, delay = delay, min(delay * 2, self.options.retry_max)
                    self._set_state(SessionState.UNREACHABLE)
                    log.warning(
                        "server unreachable, retrying",
                        extra={"server": self.account.uri, "error": str(exc), "retry_in": round(wait, 3)},
                    )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            delay = self.options.retry_initial
            auth_delay = self.options.auth_retry_initial
            auth_refusals = 0
            self._last_success = loop.time()
            self._set_state(SessionState.REGISTERED)
            self.reporter.resume()
            await self._wait_until_update_due()

    async def _connect(self) -> None:
        if self.endpoint is None:
            self._set_state(SessionState.CONNECTING)
            self.endpoint, self.peer, self._dtls = await open_endpoint(self.account, self.options, self.dm.handle)
            self.dm.endpoint = self.endpoint
            self._handshake_needed = False
        elif self._handshake_needed and self._dtls is not None:
            await self._dtls.reconnect()
            self._handshake_needed = False

    async def _request(self, request: Request) -> tuple[int, tuple[str, ...]]:
        assert self.endpoint is not None and self.peer is not None
        response = await self.endpoint.request(self.peer, request)
        return response.code, response.location_path

    async def _register(self) -> None:
        account = self._current_account()
        objects = format_registration(registration_objects(self.tree))
        params = RegistrationParams(self.endpoint_name, account.lifetime, LWM2M_VERSION, account.binding or "U")
        code, location = await self._request(
            Request(
                Code.POST, "rd", query=params.to_query(), payload=objects.encode(), content_format=ContentFormat.LINK
            )
        )
        if code != Code.CREATED or not location:
            raise RegistrationError(f"Register answered {code >> 5}.{code & 31:02d}")
        self.location = location
        self._sent_objects = objects
        self._registered_lifetime = account.lifetime
        self._update_requested = False
        self.registrations += 1
        log.info("registered", extra={"server": self.account.uri, "location": "/" + "/".join(location)})

    async def _update(self) -> None:
        assert self.location is not None
        account = self._current_account()
        objects = format_registration(registration_objects(self.tree))
        changed_objects = objects != self._sent_objects
        lifetime = account.lifetime if account.lifetime != self._registered_lifetime else None
        self._update_requested = False
        code, _ = await self._request(
            Request(
                Code.POST,
                self.location,
                query=UpdateParams(lifetime=lifetime).to_query(),
                payload=objects.encode() if changed_objects else b"",
                content_format=ContentFormat.LINK if changed_objects else None,
            )
        )
        if code == Code.NOT_FOUND:
            # The server forgot us (expired or restarted): register again (TS Core §6.2.2).
            log.info("Update answered 4.04, registering again", extra={"server": self.account.uri})
            self.location = None
            await self._register()
            return
        if code != Code.CHANGED:
            raise RegistrationError(f"Update answered {code >> 5}.{code & 31:02d}")
        self._sent_objects = objects
        self._registered_lifetime = account.lifetime
        self.updates += 1

    def _update_owed(self) -> bool:
        if self._update_requested or self._disable_requested:
            return True
        account = self._current_account()
        if account.lifetime != self._registered_lifetime:
            return True
        return format_registration(registration_objects(self.tree)) != self._sent_objects

    async def _wait_until_update_due(self) -> None:
        loop = asyncio.get_running_loop()
        lifetime = self._registered_lifetime or self.account.lifetime
        due = self._last_success + update_delay(lifetime, self.options.min_update_margin)
        while True:
            remaining = due - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            if self._update_owed():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _disabled_period(self) -> None:
        self._disable_requested = False
        await self._deregister()
        self.reporter.online = False  # notifications are stored (or dropped) as while offline
        self._set_state(SessionState.DISABLED)
        timeout = self._current_account().disable_timeout
        log.info("server disabled", extra={"server": self.account.uri, "seconds": timeout})
        await asyncio.sleep(timeout)

    async def _deregister(self) -> None:
        if self.location is None or self.endpoint is None or self.peer is None:
            return
        location, self.location = self.location, None
        try:
            await asyncio.wait_for(
                self.endpoint.request(self.peer, Request(Code.DELETE, location)), self.options.deregister_timeout
            )
            log.info("de-registered", extra={"server": self.account.uri})
        except (CoapError, TimeoutError) as exc:
            log.info("De-register not confirmed", extra={"server": self.account.uri, "error": str(exc)})

    # -- Send ------------------------------------------------------------------------------------------

    async def send(self, series: list[TimestampedNodes]) -> None:
        """Send (POST /dp) the series as SenML CBOR; raises RegistrationError unless 2.04."""
        if self._current_account().mute_send:
            raise RegistrationError(f"Mute Send is set for server {self.ssid}")
        if self.endpoint is None or self.peer is None or not self.registered:
            raise RegistrationError(f"not registered with server {self.ssid}")
        payload = codecs.encode_timestamped(series, ContentFormat.SENML_CBOR, self.models)
        code, _ = await self._request(
            Request(Code.POST, "dp", payload=payload, content_format=ContentFormat.SENML_CBOR)
        )
        if code != Code.CHANGED:
            raise RegistrationError(f"Send answered {code >> 5}.{code & 31:02d}")
