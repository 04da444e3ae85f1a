"""The LwM2M client engine: bootstrap, then one registration session per management server.

``Lwm2mClient(endpoint_name, tree, registry)``; ``await client.start()`` returns at once and the
work goes on in tasks; ``await client.stop()`` de-registers everywhere and closes every socket.

Start-up, from the Security (0) and Server (1) objects in the tree:

1. usable management server accounts → a :class:`ServerSession` for each (own transport, own
   DTLS session, own state);
2. else a Bootstrap-Server account → client-initiated bootstrap (``POST /bs``), retried with
   doubling backoff until the bootstrap server finishes, then step 1;
3. else, with ``listen=(host, port)``, server-initiated bootstrap: the client sends nothing and
   waits on that address for the bootstrap server to write the accounts and finish. The bootstrap
   server must be told the client's address by the operator (``spmp`` CLI / configuration): a
   device that sends nothing cannot be discovered. The listener speaks DTLS with the bootstrap
   account's PSK (or ``listen_psk``), plain UDP only when neither exists.

The Server object's executable resources are wired to the engine: Registration Update Trigger
(/1/x/8), Bootstrap-Request Trigger (/1/x/9) and Disable (/1/x/4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from spmp.client.accounts import AccountError, ServerAccount, bootstrap_account, management_accounts
from spmp.client.bootstrap import BootstrapFailedError, BootstrapInterface, request_bootstrap
from spmp.client.objects import StoredObject
from spmp.client.registration import ClientOptions, RegistrationError, ServerSession, open_endpoint
from spmp.client.tree import SERVER_OBJECT, ObjectTree
from spmp.coap.dtls import InMemoryPskStore
from spmp.coap.dtls_server import DtlsServerTransport
from spmp.coap.endpoint import Endpoint
from spmp.coap.errors import CoapError
from spmp.coap.transport import DatagramTransport
from spmp.coap.udp import UdpTransport
from spmp.lwm2m.codecs import TimestampedNodes
from spmp.lwm2m.model import ModelRegistry
from spmp.lwm2m.node import Node
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode

log = logging.getLogger(__name__)

__all__ = ["ClientOptions", "ClientState", "Lwm2mClient", "RegistrationError"]


class ClientState(StrEnum):
    STOPPED = "stopped"
    BOOTSTRAPPING = "bootstrapping"
    WAITING_FOR_BOOTSTRAP = "waiting-for-bootstrap"
    RUNNING = "running"
    FAILED = "failed"


class Lwm2mClient:
    """An LwM2M 1.1 client over CoAP/UDP and CoAP/DTLS (PSK); see the module docstring."""

    def __init__(
        self,
        endpoint_name: str,
        tree: ObjectTree,
        registry: ModelRegistry,
        *,
        options: ClientOptions | None = None,
        listen: tuple[str, int] | None = None,
        listen_psk: tuple[str, bytes] | None = None,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.tree = tree
        self.registry = registry
        self.options = options if options is not None else ClientOptions()
        self.listen = listen
        self.listen_psk = listen_psk
        self.state = ClientState.STOPPED
        self.sessions: dict[int, ServerSession] = {}
        self.bootstraps = 0
        """Completed bootstrap sequences (client- or server-initiated)."""
        self.listener: Endpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._listener_finished = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("client already started")
        self.tree.listeners.append(self._on_tree_change)
        self._wire_server_object()
        if self.listen is not None:
            self.listener = await self._open_listener(self.listen)
        self._task = asyncio.get_running_loop().create_task(self._main(), name="lwm2m-client")

    async def stop(self) -> None:
        """De-register from every server, stop all tasks, close all transports."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_sessions()
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        with contextlib.suppress(ValueError):
            self.tree.listeners.remove(self._on_tree_change)
        self.state = ClientState.STOPPED

    async def __aenter__(self) -> Lwm2mClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_running(self, timeout: float | None = None) -> None:
        """Until bootstrap (if any) is done and the registration sessions are started."""
        await asyncio.wait_for(self._running.wait(), timeout)

    async def wait_registered(self, ssid: int | None = None, timeout: float | None = 10.0) -> None:
        """Until the session of ``ssid`` (or every session) is registered."""

        async def wait() -> None:
            await self._running.wait()
            sessions = [self.sessions[ssid]] if ssid is not None else list(self.sessions.values())
            for session in sessions:
                await session.wait_registered()

        await asyncio.wait_for(wait(), timeout)

    def session(self, ssid: int) -> ServerSession:
        return self.sessions[ssid]

    # -- start-up ------------------------------------------------------------------------------------------

    async def _main(self) -> None:
        if self._usable_accounts():
            self._start_sessions()
            return
        account = bootstrap_account(self.tree)
        if account is not None:
            await self._bootstrap_until_done(account)
            return
        if self.listener is not None:
            self.state = ClientState.WAITING_FOR_BOOTSTRAP
            log.info("waiting for server-initiated bootstrap", extra={"listen": self.listener.transport.local_address})
            return
        self.state = ClientState.FAILED
        log.error("no usable server account and no bootstrap account: nothing to connect to")

    def _usable_accounts(self) -> list[ServerAccount]:
        usable = []
        for account in management_accounts(self.tree):
            try:
                account.check()
            except AccountError as exc:
                log.warning("server account skipped", extra={"reason": str(exc)})
                continue
            usable.append(account)
        return usable

    def _start_sessions(self) -> None:
        for account in self._usable_accounts():
            assert account.short_server_id is not None
            session = ServerSession(self.endpoint_name, self.tree, self.registry, account, self.options)
            self.sessions[account.short_server_id] = session
            session.start()
        self.state = ClientState.RUNNING
        self._running.set()

    async def _stop_sessions(self) -> None:
        sessions = list(self.sessions.values())
        self.sessions.clear()
        self._running.clear()
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)

    # -- bootstrap -------------------------------------------------------------------------------------------

    async def _bootstrap_until_done(self, account: ServerAccount) -> None:
        self.state = ClientState.BOOTSTRAPPING
        delay = self.options.retry_initial
        if account.hold_off:
            await asyncio.sleep(account.hold_off)
        while True:
            try:
                await self._bootstrap_once(account)
                break
            except (BootstrapFailedError, CoapError, OSError, TimeoutError, AccountError) as exc:
                log.warning(
                    "bootstrap failed, retrying", extra={"error": str(exc) or type(exc).__name__, "retry_in": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.retry_max)
        self.bootstraps += 1
        self._start_sessions()

    async def _bootstrap_once(self, account: ServerAccount) -> None:
        account.check()
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def on_finish() -> None:
            if not finished.done():
                finished.set_result(None)

        interface = BootstrapInterface(self.tree, self.registry, on_finish)
        endpoint, peer, _ = await open_endpoint(account, self.options, interface.handle)
        try:
            log.info("Bootstrap-Request", extra={"server": account.uri})
            await request_bootstrap(endpoint, peer, self.endpoint_name)
            await asyncio.wait_for(finished, self.options.bootstrap_timeout)
            log.info("bootstrap finished", extra={"server": account.uri, "requests": interface.requests})
            # Keep the endpoint a moment so a retransmitted Bootstrap-Finish still finds its cached 2.04.
            await asyncio.sleep(min(0.2, self.options.coap.ack_timeout))
        finally:
            await endpoint.close()

    async def rebootstrap(self) -> None:
        """Bootstrap-Request Trigger: leave every server, bootstrap again, register with the result."""
        await self._stop_sessions()
        account = bootstrap_account(self.tree)
        if account is None:
            log.error("Bootstrap-Request Trigger without a bootstrap account")
            self.state = ClientState.FAILED
            return
        await self._bootstrap_until_done(account)

    async def _open_listener(self, address: tuple[str, int]) -> Endpoint:
        psk = self.listen_psk
        account = bootstrap_account(self.tree)
        if psk is None and account is not None and account.identity and account.secret_key:
            psk = (account.identity.decode("utf-8", "replace"), account.secret_key)
        transport: DatagramTransport
        if psk is not None:
            transport = await DtlsServerTransport.bind(
                address[0],
                address[1],
                InMemoryPskStore({psk[0]: psk[1]}),
                handshake_timeout=self.options.handshake_timeout,
                retransmit_timeout=min(self.options.dtls_retransmit, self.options.handshake_timeout),
            )
        else:
            log.warning("bootstrap listener without DTLS: anyone who reaches it can provision this client")
            transport = await UdpTransport.bind(address[0], address[1])
        interface = BootstrapInterface(self.tree, self.registry, self._server_initiated_finish)
        return Endpoint(transport, interface.handle, params=self.options.coap)

    def _server_initiated_finish(self) -> None:
        self.bootstraps += 1
        self._listener_finished.set()
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._restart_sessions(), name="lwm2m-restart")

    async def _restart_sessions(self) -> None:
        await self._stop_sessions()
        self._start_sessions()

    # -- the Server object's executables and tree changes ------------------------------------------------

    def _wire_server_object(self) -> None:
        try:
            enabler = self.tree.enabler(SERVER_OBJECT)
        except OperationError:
            return
        if not isinstance(enabler, StoredObject):
            return
        enabler.set_executor(8, lambda iid, _args: self._for_server_instance(iid, ServerSession.trigger_update))
        enabler.set_executor(4, lambda iid, _args: self._for_server_instance(iid, ServerSession.disable))
        enabler.set_executor(9, lambda _iid, _args: self._spawn_rebootstrap())

    def _for_server_instance(self, instance_id: int, action: Callable[[ServerSession], None]) -> None:
        for session in self.sessions.values():
            if session.account.server_instance == instance_id:
                action(session)
                return
        raise OperationError(ResponseCode.NOT_FOUND, f"no active session for /1/{instance_id}")

    def _spawn_rebootstrap(self) -> None:
        # Runs after the Execute's 2.04 is on its way; the old task is replaced.
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self.rebootstrap(), name="lwm2m-rebootstrap")

    def _on_tree_change(self, path: Path) -> None:
        for session in list(self.sessions.values()):
            session.on_tree_change(path)

    # -- Send ------------------------------------------------------------------------------------------------

    async def send(self, ssid: int, paths: Iterable[Path | str]) -> None:
        """Send (1.1) the current values of ``paths`` to server ``ssid``, timestamped now."""
        session = self.sessions[ssid]
        nodes: dict[Path, Node | None] = {}
        for item in paths:
            path = item if isinstance(item, Path) else Path.parse(item)
            nodes[path] = self.tree.read(path, session.caller)
        await session.send([TimestampedNodes(datetime.now(UTC).replace(microsecond=0), nodes)])

    async def send_series(self, ssid: int, series: Sequence[tuple[datetime, Mapping[Path, Node]]]) -> None:
        """Send a batch of timestamped values (telemetry collected offline) in one request."""
        await self.sessions[ssid].send([TimestampedNodes(stamp, dict(nodes)) for stamp, nodes in series])
