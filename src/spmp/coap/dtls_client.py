"""The DTLS 1.2 client transport: one PSK or X.509 session to one server (python-mbedtls, memory BIOs).

Used by SPMP's device simulators and tests as an LwM2M client would use DTLS: connect with an identity
and key, exchange CoAP datagrams, accept requests the server sends over the same session.

* A refused handshake fails fast with :class:`~spmp.coap.dtls.DtlsHandshakeError` naming the alert the
  server sent (bad_record_mac for a wrong key, unknown_psk_identity); a server that never answers fails
  after ``handshake_timeout`` with a message saying where and how long; an ICMP port-unreachable during
  the handshake fails at once.
* Lost flights are retransmitted by an asyncio timer that mirrors mbedtls' (mbedtls keeps the clock but
  with memory buffers nothing wakes it up): ``retransmit_timeout`` first, doubling.
* The server is the only peer. Its :class:`~spmp.coap.transport.Peer` carries ``identity`` = the PSK
  identity of this session (ours): both ends of a session then name it the same way, and
  ``peer.secure`` is true. (A PSK server proves no identity of its own, only knowledge of our key.)
  In certificate mode (``certificates=X509Credentials(...)``) the server must present a certificate
  chaining to one of our trusted CAs, and ``identity`` is its subject CN; with ``server_name`` mbedtls
  also checks that name against the certificate's CN/SAN.
* A session the server lost (restart, eviction: it answers our records with a plaintext fatal alert, or
  sent close_notify) is handshaken again on the next send, so the CoAP layer's retransmission finds a
  session (rate-limited: the alert is not authenticated).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from mbedtls import tls
from mbedtls.exceptions import TLSError

from spmp.coap.dtls import (
    CERTIFICATE_CIPHERS,
    CONTENT_ALERT,
    DEFAULT_PSK_CIPHERS,
    PEER_CLOSE_NOTIFY_ERR,
    TIMEOUT_ERR,
    TIMER_MARGIN,
    DtlsError,
    DtlsHandshakeError,
    X509Credentials,
    alert_name,
    first_record,
    handshake_step,
    log_event,
    log_safe,
    new_buffer,
    plaintext_alert,
    split_datagrams,
    subject_cn,
    take_outgoing,
    tls_error_code,
    tls_error_reason,
)
from spmp.coap.transport import DatagramHandler, Peer

logger = logging.getLogger(__name__)

RECV_CHUNK = 16384
_MAX_STEPS = 64
REHANDSHAKE_INTERVAL = 1.0
"""At least this many seconds between automatic re-handshakes (5 times as long after a failed one). A
trigger, a plaintext alert, is not authenticated: the limit bounds what forged ones can cost (a
handshake each; nothing leaks)."""

_ALERT_HINTS: dict[int, str] = {
    20: "wrong pre-shared key?",
    51: "wrong pre-shared key?",
    40: "no cipher suite or credentials in common?",
    42: "the server refused our certificate",
    48: "the server does not trust the CA of our certificate",
}


class _State(enum.Enum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSED = "closed"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: DtlsClientTransport) -> None:
        self.owner = owner
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        self.owner._on_socket_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DtlsClientTransport:
    """A DTLS 1.2 PSK client session; implements :class:`~spmp.coap.transport.DatagramTransport`.

    Create with :meth:`connect`; :meth:`reconnect` runs a fresh handshake on the same socket (after a
    close_notify from the server, an eviction, or whenever the caller wants new keys).
    """

    def __init__(
        self,
        host: str,
        port: int,
        identity: str | None,
        key: bytes | None,
        *,
        certificates: X509Credentials | None = None,
        server_name: str | None = None,
        handshake_timeout: float,
        retransmit_timeout: float,
        ciphers: tuple[str, ...],
        mtu: int,
    ) -> None:
        if certificates is None:
            if not identity:
                raise ValueError("a PSK identity must not be empty")
            if not key:
                raise ValueError("a pre-shared key must not be empty")
        if not 0 < retransmit_timeout <= handshake_timeout:
            raise ValueError("need 0 < retransmit_timeout <= handshake_timeout")
        self._host = host
        self._port = port
        self._identity = identity
        self._certificates = certificates
        self._server_certificate = b""
        self._server_name = server_name
        self._handshake_timeout = handshake_timeout
        self._rto_initial = retransmit_timeout
        self._mtu = mtu
        credentials: dict[str, object] = (
            certificates.tls_options()
            if certificates is not None
            else {"pre_shared_key": (identity, bytes(key or b"")), "validate_certificates": False}
        )
        config = tls.DTLSConfiguration(
            ciphers=ciphers,
            lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
            highest_supported_version=tls.DTLSVersion.DTLSv1_2,
            handshake_timeout_min=retransmit_timeout,
            handshake_timeout_max=handshake_timeout,
            **credentials,  # type: ignore[arg-type]  # DTLSConfiguration's PSK or X.509 fields
        )
        self._context = tls.ClientContext(config)
        self._buffer: tls.TLSWrappedBuffer | None = None
        self._state = _State.IDLE
        self._handler: DatagramHandler | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._peer = Peer(host, port, identity)
        self._local: tuple[str, int] = ("", 0)
        self._done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._rto = retransmit_timeout
        self._transmissions = 0
        self._answers = 0
        self._alert: tuple[int, int] | None = None
        self._rehandshake: asyncio.Task[None] | None = None
        self._next_rehandshake = 0.0
        self._resumable = False
        self.rehandshakes = 0
        """Sessions re-established on our own after the server said it no longer knew ours."""
        self.dropped_sends = 0
        """``send`` calls made while no session was established (the datagram was dropped)."""

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        identity: str | None = None,
        key: bytes | None = None,
        *,
        certificates: X509Credentials | None = None,
        server_name: str | None = None,
        handshake_timeout: float = 15.0,
        retransmit_timeout: float = 1.0,
        ciphers: tuple[str, ...] | None = None,
        mtu: int = 1400,
        local_address: tuple[str, int] | None = None,
    ) -> DtlsClientTransport:
        """Open a UDP socket to ``host``:``port`` and complete a PSK handshake as ``identity`` (or, with
        ``certificates``, a mutual X.509 handshake; ``ciphers`` then defaults to the certificate suites).

        Raises :class:`DtlsHandshakeError` if the server refuses (its alert is named), if nothing
        answers within ``handshake_timeout`` seconds (flights are resent after ``retransmit_timeout``,
        doubling), or if the port is unreachable.
        """
        if ciphers is None:
            ciphers = CERTIFICATE_CIPHERS if certificates is not None else DEFAULT_PSK_CIPHERS
        self = cls(
            host,
            port,
            identity,
            key,
            certificates=certificates,
            server_name=server_name,
            handshake_timeout=handshake_timeout,
            retransmit_timeout=retransmit_timeout,
            ciphers=ciphers,
            mtu=mtu,
        )
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), remote_addr=(host, port), local_addr=local_address
        )
        self._transport = transport
        self._protocol = protocol
        sockname = transport.get_extra_info("sockname")
        peername = transport.get_extra_info("peername")
        self._local = (sockname[0], sockname[1])
        self._peer = Peer(peername[0], peername[1], identity)
        try:
            await self._handshake()
        except BaseException:
            await self.close()
            raise
        return self

    # --- DatagramTransport ------------------------------------------------------------------------------

    def set_handler(self, handler: DatagramHandler) -> None:
        self._handler = handler

    @property
    def local_address(self) -> tuple[str, int]:
        return self._local

    def send(self, data: bytes, peer: Peer) -> None:
        """Encrypt ``data`` to the server; ``peer`` must be the server (:attr:`peer`).

        Without an established session the datagram is dropped (and counted in ``dropped_sends``), as
        UDP would lose it; call :meth:`reconnect` to get a session again.
        """
        if peer.address != self._peer.address:
            raise ValueError(f"this DTLS client only talks to {self._peer}, not {peer}")
        if self._state is not _State.ESTABLISHED or self._buffer is None:
            self.dropped_sends += 1
            logger.debug("DTLS send to %s dropped: no session", self._peer)
            if self._resumable and self._state is _State.IDLE:
                self._start_rehandshake()  # the CoAP layer's retransmission will find the new session
            return
        try:
            self._buffer.write(data)
        except TLSError as exc:
            self._lost(f"write failed: {tls_error_reason(exc)}")
            return
        self._flush()

    async def close(self) -> None:
        """Send close_notify if a session is established, then release the socket."""
        task, self._rehandshake = self._rehandshake, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, DtlsError):
                await task
        if self._state is _State.ESTABLISHED:
            self._close_notify()
        if self._done is not None and not self._done.done():
            self._done.set_exception(DtlsError("transport closed during the handshake"))
        self._state = _State.CLOSED
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()
        if self._protocol is not None:
            await self._protocol.closed

    async def abort(self) -> None:
        """Release the socket without close_notify, as a device losing power would (for simulators/tests)."""
        self._buffer = None
        self._state = _State.IDLE
        await self.close()

    # --- session control --------------------------------------------------------------------------------

    @property
    def peer(self) -> Peer:
        """The server, as handlers see it (``identity`` is this session's PSK identity)."""
        return self._peer

    @property
    def connected(self) -> bool:
        """Whether a session is established right now."""
        return self._state is _State.ESTABLISHED

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite, while connected."""
        if self._state is not _State.ESTABLISHED or self._buffer is None:
            return None
        return str(self._buffer.cipher())

    async def reconnect(self) -> None:
        """Run a new handshake on the same socket (close_notify first if a session is up)."""
        if self._state is _State.CLOSED and (self._transport is None or self._transport.is_closing()):
            raise DtlsError("transport closed")
        task = self._rehandshake
        if task is not None and not task.done():
            await asyncio.shield(task)  # an automatic re-handshake is under way: use its session
            if self._state is _State.ESTABLISHED:
                return
        if self._state is _State.HANDSHAKE:
            raise DtlsError("a handshake is already in progress")
        if self._state is _State.ESTABLISHED:
            self._close_notify()
        await self._handshake()

    # --- the handshake ----------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        loop = asyncio.get_running_loop()
        self._buffer = new_buffer(self._context, self._server_name)
        self._state = _State.HANDSHAKE
        self._alert = None
        self._rto = self._rto_initial
        self._transmissions = 0
        self._answers = 0
        done = self._done = loop.create_future()
        started = loop.time()
        self._drive(retransmission=False)
        try:
            await asyncio.wait_for(done, self._handshake_timeout)
        except TimeoutError:
            self._state = _State.IDLE
            self._buffer = None
            elapsed = loop.time() - started
            schedule = f"first retransmission after {self._rto_initial:g} s, doubling"
            if self._answers == 0:
                reason = f"no answer within {elapsed:.1f} s ({self._transmissions} ClientHellos sent, {schedule})"
            else:
                # Some servers (OpenSSL) silently drop a Finished they cannot verify instead of alerting.
                reason = (
                    f"not completed within {elapsed:.1f} s although the server answered "
                    f"({self._answers} datagrams, {schedule}): wrong pre-shared key?"
                )
            raise DtlsHandshakeError(self._host, self._port, reason) from None
        finally:
            self._cancel_timer()
            self._done = None
        if self._certificates is not None:
            self._name_server()
        log_event(
            logger,
            logging.INFO,
            "dtls session established",
            server=f"{self._host}:{self._port}",
            identity=log_safe(self._identity),
            cipher=self.cipher,
        )

    def _name_server(self) -> None:
        """Certificate mode: the server's identity is its certificate's subject CN (mbedtls verified it)."""
        der = self._server_certificate
        cn = subject_cn(der) if der else None
        if cn is None:
            self._close_notify()
            error = DtlsHandshakeError(self._host, self._port, "the server certificate has no single subject CN")
            self._fail(error)
            raise error
        self._identity = cn
        self._peer = Peer(self._peer.host, self._peer.port, cn)

    def _drive(self, *, retransmission: bool) -> None:
        buffer = self._buffer
        assert buffer is not None
        step_before = handshake_step(buffer)
        try:
            for _ in range(_MAX_STEPS):
                if handshake_step(buffer) == "HANDSHAKE_OVER":
                    break
                try:
                    buffer.do_handshake()
                except tls.WantWriteError:
                    continue
                except tls.WantReadError:
                    break
            else:
                raise DtlsError("DTLS handshake made no progress")
        except TLSError as exc:
            self._flush()
            self._fail(self._failure(exc))
            return
        sent = self._flush()
        if handshake_step(buffer) == "HANDSHAKE_OVER":
            self._cancel_timer()
            if self._certificates is not None:
                # Kept now: the server may close the session right behind its Finished.
                self._server_certificate = buffer.getpeercert(binary_form=True)
            self._state = _State.ESTABLISHED
            if self._done is not None and not self._done.done():
                self._done.set_result(None)
            self._read()  # the server may send data right behind its Finished
            return
        if sent:
            # Mirror mbedtls' clock: a new flight starts at the initial timeout, a timer-driven resend
            # doubles it, and a resend prompted by the peer repeating itself keeps it.
            if retransmission:
                self._rto = min(self._rto * 2, self._handshake_timeout)
                self._transmissions += 1
            elif handshake_step(buffer) != step_before:
                self._rto = self._rto_initial
                self._transmissions = 1
            else:
                self._transmissions += 1
            self._arm(self._rto)
        elif retransmission:
            self._arm(max(0.05, self._rto / 4))  # mbedtls disagrees with our mirror; look again

    def _failure(self, exc: TLSError) -> DtlsHandshakeError:
        if self._alert is not None:
            description = self._alert[1]
            reason = f"the server refused it with alert {alert_name(description)}"
            hint = _ALERT_HINTS.get(description)
            if description == 115:
                hint = f"the server does not know identity {log_safe(self._identity)!r}"
            if hint:
                reason += f": {hint}"
            return DtlsHandshakeError(self._host, self._port, reason, alert=description)
        if tls_error_code(exc) == TIMEOUT_ERR:
            return DtlsHandshakeError(self._host, self._port, f"no answer within {self._handshake_timeout:g} s")
        return DtlsHandshakeError(self._host, self._port, tls_error_reason(exc))

    def _fail(self, error: DtlsHandshakeError) -> None:
        self._cancel_timer()
        self._state = _State.IDLE
        self._buffer = None
        log_event(
            logger,
            logging.WARNING,
            "dtls handshake failed",
            server=f"{error.host}:{error.port}",
            identity=log_safe(self._identity),
            reason=error.reason,
        )
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay + TIMER_MARGIN, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._state is _State.HANDSHAKE:
            self._drive(retransmission=True)

    # --- incoming ---------------------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer is None or self._state not in (_State.HANDSHAKE, _State.ESTABLISHED):
            return
        if self._state is _State.HANDSHAKE:
            self._answers += 1
            alert = plaintext_alert(data)
            if alert is not None:
                self._alert = alert  # mbedtls says only "fatal alert received"; we want to say which
            else:
                record = first_record(data)
                if record is not None and record[0] == CONTENT_ALERT and record[1] > 0:
                    # An alert we cannot decrypt, before the handshake is over: the server has keys
                    # that differ from ours.
                    self._fail(
                        DtlsHandshakeError(
                            self._host,
                            self._port,
                            "the server sent an encrypted alert during the handshake: wrong pre-shared key?",
                        )
                    )
                    return
            buffer.receive_from_network(data)
            self._drive(retransmission=False)
        else:
            alert = plaintext_alert(data)
            if alert is not None and alert[0] == 2:
                self._server_lost_session(alert[1])
                return
            buffer.receive_from_network(data)
            self._read()

    def _server_lost_session(self, description: int) -> None:
        """A plaintext fatal alert while established: the server has no session for us any more
        (restarted, or evicted us). Handshake again right away, so the CoAP layer's retransmissions
        reach it, instead of waiting for timeouts and a registration Update."""
        self._lost(f"the server no longer knows this session (plaintext alert {alert_name(description)})")
        self._resumable = True
        self._start_rehandshake()

    def _start_rehandshake(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_rehandshake or self._state is _State.CLOSED:
            return
        if self._rehandshake is not None and not self._rehandshake.done():
            return
        self._next_rehandshake = loop.time() + REHANDSHAKE_INTERVAL
        self._rehandshake = loop.create_task(self._rehandshake_now())

    async def _rehandshake_now(self) -> None:
        if self._state is not _State.IDLE:
            return  # someone else reconnected meanwhile
        try:
            await self._handshake()
        except DtlsError as exc:
            self._next_rehandshake = asyncio.get_running_loop().time() + 5 * REHANDSHAKE_INTERVAL
            logger.info("dtls re-handshake failed: %s", exc)
            return
        self.rehandshakes += 1

    def _read(self) -> None:
        buffer = self._buffer
        assert buffer is not None
        chunk = bytearray(RECV_CHUNK)
        records: list[bytes] = []
        while True:
            try:
                n = buffer.readinto(chunk, RECV_CHUNK)  # type: ignore[arg-type]  # stub says bytes
            except (tls.WantReadError, tls.WantWriteError):
                break
            except tls.RaggedEOF:
                self._lost("the server closed the session")
                break
            except TLSError as exc:
                if tls_error_code(exc) == PEER_CLOSE_NOTIFY_ERR:
                    self._lost("the server closed the session")
                else:
                    self._lost(tls_error_reason(exc))
                break
            records.append(bytes(chunk[:n]))
        self._flush()
        for record in records:
            if self._handler is None:
                continue
            try:
                self._handler(record, self._peer)
            except Exception:
                logger.exception("dtls datagram handler failed", extra={"peer": str(self._peer)})

    def _on_socket_error(self, exc: Exception) -> None:
        if self._state is _State.HANDSHAKE and isinstance(exc, ConnectionRefusedError):
            # ICMP port unreachable: nothing listens there; waiting out the retransmissions helps nobody.
            self._fail(DtlsHandshakeError(self._host, self._port, "port unreachable: no DTLS server listening"))
        else:
            logger.debug("DTLS client socket error towards %s: %s", self._peer, exc)

    def _lost(self, reason: str) -> None:
        log_event(logger, logging.INFO, "dtls session ended", server=str(self._peer), reason=reason)
        self._state = _State.IDLE
        self._buffer = None
        self._resumable = True  # the next send handshakes again (see send)

    # --- plumbing ---------------------------------------------------------------------------------------

    def _close_notify(self) -> None:
        if self._buffer is None:
            return
        with contextlib.suppress(TLSError):
            self._buffer.shutdown()
        self._flush()
        self._state = _State.IDLE

    def _flush(self) -> int:
        if self._buffer is None:
            return 0
        data = take_outgoing(self._buffer)
        if not data or self._transport is None or self._transport.is_closing():
            return 0
        datagrams = split_datagrams(data, self._mtu)
        for datagram in datagrams:
            self._transport.sendto(datagram)
        return len(datagrams)
