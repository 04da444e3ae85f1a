"""An asyncio NETCONF client over ncclient: one SSH session to the BTS, reconnect with backoff, typed errors.

ncclient is blocking: every operation here has a synchronous form (``*_sync``, for callers that must
answer at once, like an LwM2M write hook) and an async one that runs the synchronous form in a
worker thread (:func:`asyncio.to_thread`). One lock serialises them, so a session carries one RPC at
a time whatever thread asks.

Connection policy: :meth:`NetconfClient.ensure_connected` connects when there is no session, but not
before the backoff since the last failed attempt has passed (``backoff_initial`` doubling up to
``backoff_max``); until then it raises :class:`NetconfUnavailableError` at once, so a dead BTS costs
nothing per request. A session that breaks (transport error, closed by the BTS) is dropped; a
request that times out drops it too, because its reply might still arrive and be taken for the next
one's. Errors:

* :class:`NetconfUnavailableError`: no session (cannot connect, refused login, session lost);
* :class:`NetconfTimeoutError` (a NetconfUnavailableError): no reply within ``timeout``;
* :class:`NetconfRpcError`: the BTS answered ``<rpc-error>``; carries error-tag, error-type,
  error-path and error-message;
* :class:`NetconfHostKeyError` (a NetconfUnavailableError): the BTS's SSH host key is not the one
  trusted (``host_keys``, :mod:`spmp.charger.netconf.hostkeys`); nothing was sent to it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lxml import etree
from ncclient import manager  # type: ignore[import-untyped]
from ncclient.operations import RPCError, TimeoutExpiredError  # type: ignore[import-untyped]
from ncclient.transport import session as nc_session  # type: ignore[import-untyped]
from ncclient.transport.errors import TransportError  # type: ignore[import-untyped]
from paramiko.ssh_exception import SSHException

from spmp.charger.netconf.hostkeys import HostKeyError, HostKeyPolicy, probe_host_key

__all__ = [
    "NCCLIENT_TICK",
    "NetconfClient",
    "NetconfClientError",
    "NetconfHostKeyError",
    "NetconfRpcError",
    "NetconfTimeoutError",
    "NetconfUnavailableError",
]

log = logging.getLogger(__name__)

NCCLIENT_TICK = 0.01
"""ncclient's session thread sends queued requests only between ``select`` calls that wait up to
``ncclient.transport.session.TICK`` (0.1 s by default), so each RPC waits up to 100 ms before it
even leaves: a rule that edits the BTS, reads its state back and answers the LwM2M server would
spend most of its time idling, and a burst of restores would take seconds. 10 ms costs a wake-up
per 10 ms per open session (one per BTS), which is nothing next to a charger's sampling. The module
global is lowered once (never raised) when the first client is built."""


class NetconfClientError(Exception):
    """Base of the client's errors."""


class NetconfUnavailableError(NetconfClientError):
    """No session to the BTS: it does not answer, refuses the login, or the session broke."""


class NetconfHostKeyError(NetconfUnavailableError):
    """The BTS's SSH host key does not match the trusted one: the charger refuses to log in."""


class NetconfTimeoutError(NetconfUnavailableError):
    """The BTS did not answer a request in time (its outcome is unknown)."""


class NetconfRpcError(NetconfClientError):
    """The BTS answered ``<rpc-error>``."""

    def __init__(self, tag: str, message: str, *, error_type: str = "", path: str = "", app_tag: str = "") -> None:
        super().__init__(f"{tag}: {message}" if message else tag)
        self.tag = tag
        self.message = message
        self.error_type = error_type
        self.path = path
        self.app_tag = app_tag

    @classmethod
    def from_ncclient(cls, exc: Any) -> NetconfRpcError:
        def text(name: str) -> str:
            value = getattr(exc, name, None)
            return str(value).strip() if value else ""

        return cls(text("tag") or "operation-failed", text("message"), error_type=text("type"), path=text("path"))


def _lower_tick() -> None:
    nc_session.TICK = min(nc_session.TICK, NCCLIENT_TICK)


class NetconfClient:
    """One NETCONF session to ``host:port`` as ``username``; see the module docstring.

    Authentication is by ``password`` or by the private key in ``key_filename``. ``host_keys`` checks
    the BTS's host key before logging in (trust on first use in a known_hosts file, or a pinned
    fingerprint); without it (and without ``hostkey_verify``, ncclient's check against
    ``~/.ssh/known_hosts``) any key is accepted.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str,
        password: str | None = None,
        key_filename: str | None = None,
        hostkey_verify: bool = False,
        host_keys: HostKeyPolicy | None = None,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _lower_tick()
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self._key_filename = key_filename
        self._hostkey_verify = hostkey_verify
        self.host_keys = host_keys
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock
        self._lock = threading.RLock()
        self._manager: Any = None
        self._backoff = backoff_initial
        self._next_attempt = 0.0
        self._closed = False
        self.connects = 0
        """Sessions opened so far (a reconnect counts)."""
        self.last_error: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        m = self._manager
        return m is not None and bool(m.connected)

    # -- connection -------------------------------------------------------------------------------------
    def ensure_connected(self, *, force: bool = False) -> None:
        """Open a session unless one is up; NetconfUnavailableError when that fails or the backoff is running.

        ``force`` ignores the backoff (an operator asked explicitly).
        """
        with self._lock:
            if self._closed:
                raise NetconfUnavailableError("the NETCONF client is closed")
            if self.connected:
                return
            self._drop()
            now = self._clock()
            if not force and now < self._next_attempt:
                wait = self._next_attempt - now
                raise NetconfUnavailableError(
                    f"BTS {self.address} unreachable ({self.last_error}); next attempt in {wait:.1f} s"
                )
            try:
                verify: dict[str, Any] = {"hostkey_verify": self._hostkey_verify}
                if self.host_keys is not None:
                    key = probe_host_key(
                        self.host,
                        self.port,
                        timeout=self.connect_timeout,
                        key_types=self.host_keys.expected_types(self.host, self.port),
                    )
                    self.host_keys.check(self.host, self.port, key)
                    # The session must show exactly the key just checked.
                    verify = {
                        "hostkey_verify": True,
                        "hostkey_b64": key.get_base64(),
                        "unknown_host_cb": lambda _host, _fingerprint: False,
                    }
                self._manager = manager.connect(
                    host=self.host,
                    port=self.port,
                    username=self.username,
                    password=self._password,
                    key_filename=self._key_filename,
                    look_for_keys=False,
                    allow_agent=False,
                    timeout=self.connect_timeout,
                    manager_params={"timeout": self.timeout},
                    **verify,
                )
            except HostKeyError as exc:
                self.last_error = str(exc)
                self._next_attempt = self._clock() + self._backoff
                log.error("netconf host key refused", extra={"bts": self.address, "error": self.last_error})
                self._backoff = min(self._backoff * 2, self.backoff_max)
                raise NetconfHostKeyError(str(exc)) from None
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                self._next_attempt = self._clock() + self._backoff
                log.info(
                    "netconf connect failed",
                    extra={"bts": self.address, "error": self.last_error, "retry_in": self._backoff},
                )
                self._backoff = min(self._backoff * 2, self.backoff_max)
                raise NetconfUnavailableError(f"BTS {self.address} unreachable: {self.last_error}") from None
            self.connects += 1
            self.last_error = None
            self._backoff = self.backoff_initial
            self._next_attempt = 0.0
            log.info("netconf session open", extra={"bts": self.address, "session": self._manager.session_id})

    def _drop(self) -> None:
        """Forget the session (closing its transport without waiting for the BTS)."""
        m, self._manager = self._manager, None
        if m is None:
            return
        try:
            m._session.close()
        except Exception:
            log.debug("closing a broken netconf session failed", exc_info=True)

    def _lost(self, why: str) -> None:
        self.last_error = why
        self._drop()
        # The next connect may be tried at once: the session broke, the BTS may be fine.
        self._next_attempt = 0.0

    def close_sync(self) -> None:
        """Close the session politely (close-session) and refuse further requests."""
        with self._lock:
            self._closed = True
            m, self._manager = self._manager, None
            if m is None:
                return
            try:
                if m.connected:
                    m.close_session()
            except Exception:
                log.debug("close-session failed", exc_info=True)
            finally:
                try:
                    m._session.close()
                except Exception:
                    log.debug("closing the netconf transport failed", exc_info=True)
            thread = m._session
            if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
                thread.join(timeout=5)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    # -- operations ---------------------------------------------------------------------------------------
    def _call(self, what: str, operation: Callable[[Any], Any], *, connect: bool = True) -> Any:
        with self._lock:
            if connect:
                self.ensure_connected()
            elif not self.connected:
                raise NetconfUnavailableError(f"BTS {self.address}: no session ({self.last_error or 'not connected'})")
            try:
                return operation(self._manager)
            except RPCError as exc:
                raise NetconfRpcError.from_ncclient(exc) from None
            except TimeoutExpiredError:
                self._lost(f"{what} timed out")
                raise NetconfTimeoutError(
                    f"BTS {self.address}: no answer to {what} within {self.timeout:g} s"
                ) from None
            except (TransportError, SSHException, OSError) as exc:
                self._lost(str(exc) or type(exc).__name__)
                raise NetconfUnavailableError(f"BTS {self.address}: session lost during {what}: {exc}") from None

    def get_sync(self, subtree: etree._Element | None = None, *, connect: bool = True) -> etree._Element:
        """``<get>`` (configuration and state): the reply's ``<data>`` element."""
        flt = None if subtree is None else ("subtree", etree.tostring(subtree).decode())
        reply = self._call("get", lambda m: m.get(filter=flt), connect=connect)
        data: etree._Element = reply.data_ele
        return data

    def get_config_sync(self, subtree: etree._Element | None = None) -> etree._Element:
        """``<get-config>`` of running: the reply's ``<data>`` element."""
        flt = None if subtree is None else ("subtree", etree.tostring(subtree).decode())
        reply = self._call("get-config", lambda m: m.get_config(source="running", filter=flt))
        data: etree._Element = reply.data_ele
        return data

    def edit_config_sync(self, config: etree._Element, *, connect: bool = True) -> None:
        """``<edit-config>`` of running with default-operation merge; all of it or nothing (the BTS's
        rollback-on-error). ``connect=False``: only on an open session (NetconfUnavailableError otherwise),
        for callers that must not wait for an SSH handshake."""
        text = etree.tostring(config).decode()
        self._call(
            "edit-config",
            lambda m: m.edit_config(target="running", config=text, default_operation="merge"),
            connect=connect,
        )

    async def get(self, subtree: etree._Element | None = None) -> etree._Element:
        return await asyncio.to_thread(self.get_sync, subtree)

    async def get_config(self, subtree: etree._Element | None = None) -> etree._Element:
        return await asyncio.to_thread(self.get_config_sync, subtree)

    async def edit_config(self, config: etree._Element) -> None:
        await asyncio.to_thread(self.edit_config_sync, config)
