"""The DTLS 1.2 server transport: many PSK or X.509 sessions on one UDP socket (python-mbedtls, memory BIOs).

Life of a peer::

    unknown --ClientHello--> doorman (stateless cookie exchange: HelloVerifyRequest, nothing stored)
            --ClientHello with valid cookie--> HANDSHAKE (a session: retransmission timer, deadline)
            --Finished ok--> ESTABLISHED (application data both ways, idle eviction)
            --error / timeout / idle / close--> removed

* A session is only created once the peer has echoed a cookie, so spoofed ClientHellos cost no memory
  and the ``max_sessions`` cap counts only peers that own their address.
* mbedtls with memory buffers keeps its retransmission timer but never wakes up by itself: each
  session carries an asyncio timer mirroring mbedtls' one (initial ``retransmit_timeout``, doubling);
  when it fires we step the handshake and mbedtls resends the flight if its own timer agrees.
* The PSK store is asked synchronously from inside mbedtls (during ClientKeyExchange). The adapter
  notes which identity was asked and whether it was known, because mbedtls reports neither: that is
  how a failure is logged with its identity and counted as "unknown identity" vs "wrong key".
* A failed handshake sends the alert mbedtls produced (bad_record_mac for a wrong key,
  unknown_psk_identity), logs one warning line ``peer=… identity=… reason=…`` (never a key), counts it
  in :attr:`DtlsServerTransport.stats`, and forgets the peer at once.
* Certificate mode (``certificates=X509Credentials(...)``, alone or next to a PSK store): the client
  must present a certificate chaining to one of the trusted CAs (mbedtls checks chain, signatures and
  dates); the peer's identity is then its certificate's subject CN (a certificate without exactly one
  CN is refused). A refused certificate is logged with its reason and counted in
  ``stats.certificate_refused``; mbedtls tells the client with an alert (unknown_ca, bad_certificate).
* Errors are contained per peer: whatever one peer sends, other sessions carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mbedtls import tls
from mbedtls.exceptions import TLSError

from spmp.coap.dtls import (
    BAD_FINISHED_ERR,
    BAD_MAC_ERR,
    BUFFER_CAPACITY,
    CERTIFICATE_CIPHERS,
    CERTIFICATE_ERRS,
    CONTENT_APPLICATION_DATA,
    DEFAULT_PSK_CIPHERS,
    PEER_CLOSE_NOTIFY_ERR,
    TIMER_MARGIN,
    PskStore,
    X509Credentials,
    client_random,
    fatal_alert_record,
    first_record,
    handshake_step,
    is_client_hello,
    log_event,
    log_safe,
    new_buffer,
    split_datagrams,
    subject_cn,
    take_outgoing,
    tls_error_code,
    tls_error_reason,
)
from spmp.coap.transport import DatagramHandler, Peer

logger = logging.getLogger(__name__)

Address = tuple[str, int]

RECV_CHUNK = 16384
ALERT_INTERNAL_ERROR = 80
ALERT_UNEXPECTED_MESSAGE = 10
UNKNOWN_SESSION_ALERT_INTERVAL = 1.0
"""At most one "unknown session" alert per address per this many seconds (it is never larger than what
provoked it, so it cannot amplify; the limit only keeps a chatty lost client from costing much)."""
GARBAGE_LOG_INTERVAL = 60.0
"""At most one WARNING about garbage datagrams per this many seconds (the next one says how many came)."""
_PRE_COOKIE_STATES = frozenset({"HELLO_REQUEST", "CLIENT_HELLO", "SERVER_HELLO"})
_MAX_STEPS = 64  # a handshake has ~20 steps; a bound turns an unexpected mbedtls loop into an error


@dataclass(slots=True)
class DtlsServerStats:
    """Counters of a :class:`DtlsServerTransport` (live object; read it, do not write it)."""

    handshakes_ok: int = 0
    handshakes_failed: int = 0
    """Every handshake that did not complete: wrong key, unknown identity, refused certificate, timeout,
    protocol error."""
    certificate_refused: int = 0
    """Of the failed handshakes, those whose client certificate was missing, untrusted (another CA),
    expired, or had no single subject CN."""
    unknown_identity: int = 0
    """Of the failed handshakes, those whose PSK identity the store did not know."""
    handshake_timeouts: int = 0
    """Of the failed handshakes, those abandoned after ``handshake_timeout``."""
    handshakes_in_progress: int = 0
    sessions_open: int = 0
    """Established sessions right now."""
    evicted: int = 0
    """Established sessions closed for being idle longer than ``idle_timeout``."""
    refused_max_sessions: int = 0
    """New handshakes refused because ``max_sessions`` sessions existed."""
    sessions_reset: int = 0
    """Established sessions dropped after a fatal error or undecodable traffic from their peer."""
    hello_verify_requests: int = 0
    dropped_datagrams: int = 0
    """Datagrams ignored: not DTLS, no session and no ClientHello, oversize, or no handler."""
    dropped_sends: int = 0
    """``send`` calls for a peer without an established session (or with a different identity)."""
    unknown_session_alerts: int = 0
    """Encrypted records from addresses without a session (a client of a previous run, typically) answered
    with a plaintext fatal alert, so the client knows at once to handshake again."""
    garbage: int = 0
    """Of the dropped datagrams, those that were no DTLS at all (or oversize), or a ClientHello mbedtls
    could not parse: logged as a WARNING at most once per ``GARBAGE_LOG_INTERVAL`` seconds, with counts."""


def _where(addr: Address) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSED = "closed"


class _Session:
    """One peer's DTLS session: the mbedtls buffer plus what mbedtls does not track for us."""

    __slots__ = (
        "addr",
        "buffer",
        "client_random",
        "identity",
        "last_activity",
        "mode",
        "peer",
        "psk_problem",
        "rto",
        "started",
        "state",
        "timer",
    )

    def __init__(self, addr: Address, buffer: tls.TLSWrappedBuffer, now: float, rto: float) -> None:
        self.addr = addr
        self.buffer = buffer
        self.state = _State.HANDSHAKE
        self.identity: str | None = None
        self.mode: str | None = None
        self.psk_problem: str | None = None
        self.peer: Peer | None = None
        self.started = now
        self.last_activity = now
        self.rto = rto
        self.timer: asyncio.TimerHandle | None = None
        self.client_random = b""

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _PskMapping(Mapping[str, bytes]):
    """The Mapping mbedtls consults for keys, adapting a :class:`PskStore` and noting each lookup.

    mbedtls calls ``__getitem__`` synchronously from inside ``do_handshake``; the transport sets
    ``current`` to the session being stepped so the identity and outcome land on the right session.
    """

    def __init__(self, store: PskStore) -> None:
        self.store = store
        self.current: _Session | None = None

    def __getitem__(self, identity: str) -> bytes:
        session = self.current
        if session is not None:
            session.identity = identity
        try:
            key = self.store.lookup(identity)
        except Exception:
            # mbedtls would swallow this as "unknown identity": log it here, where it is visible.
            logger.exception("psk store lookup failed", extra={"identity": log_safe(identity)})
            if session is not None:
                session.psk_problem = "PSK store error"
            raise KeyError(identity) from None
        if key is None:
            if session is not None:
                session.psk_problem = "unknown PSK identity"
            raise KeyError(identity)
        return key

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:  # an empty-looking Mapping must still count as "a store is configured"
        return True


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: DtlsServerTransport) -> None:
        self.owner = owner
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable) for some earlier datagram; nothing to do per session.
        logger.debug("DTLS server socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DtlsServerTransport:
    """A DTLS 1.2 PSK server on one UDP socket; implements :class:`~spmp.coap.transport.DatagramTransport`.

    Create with :meth:`bind`. Incoming application data reaches the handler as
    ``Peer(host, port, identity=<PSK identity>)``; :meth:`send` encrypts over the peer's session (so
    the server can send requests to a client over the session the client opened).
    """

    def __init__(
        self,
        psk_store: PskStore | None,
        *,
        certificates: X509Credentials | None = None,
        max_sessions: int,
        handshake_timeout: float,
        idle_timeout: float,
        retransmit_timeout: float,
        ciphers: tuple[str, ...],
        mtu: int,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if not 0 < retransmit_timeout <= handshake_timeout:
            raise ValueError("need 0 < retransmit_timeout <= handshake_timeout")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if psk_store is None and certificates is None:
            raise ValueError("a DTLS server needs a PSK store, certificates, or both")
        self._psk = _PskMapping(psk_store) if psk_store is not None else None
        self._certificates = certificates
        self._max_sessions = max_sessions
        self._handshake_timeout = handshake_timeout
        self._idle_timeout = idle_timeout
        self._rto_initial = retransmit_timeout
        self._mtu = mtu
        x509_options: dict[str, object] = (
            certificates.tls_options() if certificates is not None else {"validate_certificates": False}
        )
        config = tls.DTLSConfiguration(
            pre_shared_key_store=self._psk if self._psk is not None else {},
            ciphers=ciphers,
            lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
            highest_supported_version=tls.DTLSVersion.DTLSv1_2,
            handshake_timeout_min=retransmit_timeout,
            handshake_timeout_max=handshake_timeout,
            **x509_options,  # type: ignore[arg-type]  # the keys of DTLSConfiguration's X.509 fields
        )
        self._context = tls.ServerContext(config)
        # The doorman answers ClientHellos without a valid cookie; it holds no per-peer state after that.
        self._doorman = new_buffer(self._context)
        self._sessions: dict[Address, _Session] = {}
        self._established_count = 0
        self._handler: DatagramHandler | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._local: Address = ("", 0)
        self._closing = False
        self._alerted: dict[Address, float] = {}
        self.stats = DtlsServerStats()
        self._garbage_logged = 0
        self._garbage_quiet_until = 0.0

    @classmethod
    async def bind(
        cls,
        host: str,
        port: int,
        psk_store: PskStore | None,
        *,
        certificates: X509Credentials | None = None,
        max_sessions: int = 10_000,
        handshake_timeout: float = 30.0,
        idle_timeout: float = 1800.0,
        retransmit_timeout: float = 1.0,
        ciphers: tuple[str, ...] | None = None,
        mtu: int = 1400,
    ) -> DtlsServerTransport:
        """Listen for DTLS on ``host``:``port`` (0 for an ephemeral port), keys from ``psk_store`` and/or
        X.509 ``certificates`` (then a client certificate is required for a certificate handshake).

        ``ciphers`` defaults to the PSK suites (with a PSK store) plus the certificate suites (with
        certificates).
        ``max_sessions`` caps sessions (handshaking and established) before new handshakes are refused;
        ``handshake_timeout`` abandons a handshake still unfinished after that many seconds;
        ``idle_timeout`` evicts an established session with no traffic either way for that long;
        ``retransmit_timeout`` is the first flight retransmission delay (RFC 6347: 1 s, doubling);
        ``mtu`` bounds the datagrams the handshake's records are packed into.
        """
        if ciphers is None:
            ciphers = (DEFAULT_PSK_CIPHERS if psk_store is not None else ()) + (
                CERTIFICATE_CIPHERS if certificates is not None else ()
            )
        self = cls(
            psk_store,
            certificates=certificates,
            max_sessions=max_sessions,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            retransmit_timeout=retransmit_timeout,
            ciphers=ciphers,
            mtu=mtu,
        )
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(host, port))
        self._transport = transport
        self._protocol = protocol
        sockname = transport.get_extra_info("sockname")
        self._local = (sockname[0], sockname[1])
        self._schedule_sweep()
        log_event(logger, logging.INFO, "dtls server listening", address=f"{self._local[0]}:{self._local[1]}")
        return self

    # --- DatagramTransport ------------------------------------------------------------------------------

    def set_handler(self, handler: DatagramHandler) -> None:
        self._handler = handler

    @property
    def local_address(self) -> tuple[str, int]:
        return self._local

    def send(self, data: bytes, peer: Peer) -> None:
        """Encrypt ``data`` as one record to ``peer`` over its established session.

        Without an established session (never connected, evicted, or still handshaking) the datagram is
        dropped and counted, as UDP would lose it: the server cannot open sessions towards clients. If
        ``peer.identity`` is set and differs from the session's identity the datagram is dropped too,
        so a request meant for one device never reaches another that took over its address.
        """
        session = self._sessions.get(peer.address)
        if session is None or session.state is not _State.ESTABLISHED:
            self.stats.dropped_sends += 1
            logger.debug("DTLS send to %s dropped: no established session", peer)
            return
        if peer.identity is not None and peer.identity != session.identity:
            self.stats.dropped_sends += 1
            log_event(
                logger,
                logging.WARNING,
                "dtls send dropped: identity mismatch",
                peer=_where(session.addr),
                identity=log_safe(session.identity),
                wanted_identity=log_safe(peer.identity),
            )
            return
        try:
            session.buffer.write(data)
        except TLSError as exc:
            self._reset_session(session, tls_error_reason(exc))
            return
        session.last_activity = self._now()
        self._flush(session)

    async def close(self) -> None:
        """Send close_notify on every established session, then release the socket."""
        if self._closing:
            if self._protocol is not None:
                await self._protocol.closed
            return
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self._sessions.values()):
            if session.state is _State.ESTABLISHED:
                self._close_notify(session)
            self._remove(session)
        if self._transport is not None:
            self._transport.close()
        if self._protocol is not None:
            await self._protocol.closed

    # --- introspection ---------------------------------------------------------------------------------

    def session_identity(self, address: tuple[str, int]) -> str | None:
        """The identity (PSK identity or certificate CN) of the established session with ``address``, or None."""
        session = self._sessions.get(address)
        if session is None or session.state is not _State.ESTABLISHED:
            return None
        return session.identity

    def session_mode(self, address: tuple[str, int]) -> str | None:
        """``"psk"`` or ``"certificate"``: how the established session with ``address`` authenticated."""
        session = self._sessions.get(address)
        if session is None or session.state is not _State.ESTABLISHED:
            return None
        return session.mode

    def established_peers(self) -> list[Peer]:
        """Peers with an established session."""
        return [s.peer for s in self._sessions.values() if s.peer is not None and s.state is _State.ESTABLISHED]

    # --- incoming datagrams -----------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if self._closing:
            return
        if len(data) > BUFFER_CAPACITY:
            self.stats.dropped_datagrams += 1
            self._garbage(addr, f"oversize datagram ({len(data)} bytes)")
            return
        session = self._sessions.get(addr)
        try:
            if session is None:
                self._accept(data, addr, None)
            elif is_client_hello(data) and (
                session.state is _State.ESTABLISHED or client_random(data) != session.client_random
            ):
                # The client lost its session (rebooted, or gave up a handshake) and starts over from the
                # same address. The old session stays until the new ClientHello carries a valid cookie,
                # so a spoofed ClientHello cannot tear down a live session. (A ClientHello with the
                # session's own random is a retransmission: mbedtls answers it within the session.)
                self._accept(data, addr, session)
            else:
                self._feed(session, data)
        except Exception:
            # One peer's trouble must not reach the event loop or other peers: drop it and its session.
            logger.exception("dtls datagram handling failed; session dropped", extra={"peer": _where(addr)})
            stale = self._sessions.get(addr)
            if stale is not None:
                self._remove(stale)
            self._doorman = new_buffer(self._context)

    def _accept(self, data: bytes, addr: Address, replacing: _Session | None) -> None:
        """Run a ClientHello through the doorman: answer HelloVerifyRequest, or start a session."""
        if not is_client_hello(data):
            self.stats.dropped_datagrams += 1
            logger.debug("DTLS: datagram from %s:%d without a session and not a ClientHello, dropped", *addr)
            if first_record(data) is None:
                self._garbage(addr, "not a DTLS record")
            self._unknown_session(data, addr)
            return
        door = self._doorman
        door.setcookieparam(f"{addr[0]}:{addr[1]}".encode())  # the cookie binds the client's address
        door.receive_from_network(data)
        if self._psk is not None:
            self._psk.current = None
        try:
            for _ in range(_MAX_STEPS):
                state = handshake_step(door)
                if state == "SERVER_HELLO_VERIFY_REQUEST_SENT":
                    self._send_raw(take_outgoing(door), addr)
                    self.stats.hello_verify_requests += 1
                    with contextlib.suppress(tls.HelloVerifyRequest):
                        door.do_handshake()  # reports HelloVerifyRequest and resets the doorman
                    return
                if state not in _PRE_COOKIE_STATES:
                    break  # the cookie was valid: mbedtls went on to ServerHello
                try:
                    door.do_handshake()
                except tls.WantWriteError:
                    continue
                except tls.WantReadError:
                    take_outgoing(door)  # an incomplete or invalid hello: nothing to answer
                    return
            else:
                raise RuntimeError("doorman did not reach a decision")
        except tls.HelloVerifyRequest:
            self._send_raw(take_outgoing(door), addr)
            self.stats.hello_verify_requests += 1
            return
        except TLSError as exc:
            # A malformed hello from an unverified address: no answer, and a fresh doorman so no
            # half-parsed state carries over to the next peer.
            logger.debug("DTLS: bad ClientHello from %s:%d: %s", *addr, tls_error_reason(exc))
            self.stats.dropped_datagrams += 1
            self._garbage(addr, f"bad ClientHello: {tls_error_reason(exc)}")
            self._doorman = new_buffer(self._context)
            return

        # The peer proved it receives at its address; the doorman's context becomes its session.
        self._doorman = new_buffer(self._context)
        if replacing is not None:
            log_event(
                logger,
                logging.INFO,
                "dtls client restarted its session",
                peer=_where(addr),
                identity=log_safe(replacing.identity),
            )
            self._remove(replacing)
        if len(self._sessions) >= self._max_sessions:
            self.stats.refused_max_sessions += 1
            self.stats.handshakes_failed += 1
            self._send_raw(fatal_alert_record(ALERT_INTERNAL_ERROR, data), addr)
            log_event(
                logger,
                logging.WARNING,
                "dtls handshake refused",
                peer=_where(addr),
                identity=None,
                reason=f"max_sessions ({self._max_sessions}) reached",
            )
            return
        session = _Session(addr, door, self._now(), self._rto_initial)
        session.client_random = client_random(data)
        self._sessions[addr] = session
        self._count_sessions()
        self._drive(session, retransmission=False)

    def _garbage(self, addr: Address, reason: str) -> None:
        """Count a datagram that is no DTLS we can use; a WARNING naming the peer and the reason at most
        once per :data:`GARBAGE_LOG_INTERVAL` seconds, saying how many came since the last one."""
        self.stats.garbage += 1
        now = self._now()
        if now < self._garbage_quiet_until:
            return
        count = self.stats.garbage - self._garbage_logged
        self._garbage_logged = self.stats.garbage
        self._garbage_quiet_until = now + GARBAGE_LOG_INTERVAL
        log_event(
            logger, logging.WARNING, "dtls: garbage datagrams dropped", peer=_where(addr), reason=reason, count=count
        )

    def _unknown_session(self, data: bytes, addr: Address) -> None:
        """Answer an encrypted record from an address without a session (its client still holds a
        session this server lost, by a restart or an eviction) with a plaintext fatal alert:
        SPMP's DTLS client then handshakes again at once instead of waiting for CoAP timeouts."""
        record = first_record(data)
        if record is None or record[1] == 0 or record[0] != CONTENT_APPLICATION_DATA:
            return
        now = self._now()
        last = self._alerted.get(addr)
        if last is not None and now - last < UNKNOWN_SESSION_ALERT_INTERVAL:
            return
        if len(self._alerted) >= 4096:
            self._alerted.clear()
        self._alerted[addr] = now
        self.stats.unknown_session_alerts += 1
        self._send_raw(fatal_alert_record(ALERT_UNEXPECTED_MESSAGE, data), addr)
        logger.debug("DTLS: encrypted record from %s:%d without a session; alert sent", *addr)

    def _feed(self, session: _Session, data: bytes) -> None:
        session.buffer.receive_from_network(data)
        if session.state is _State.HANDSHAKE:
            self._drive(session, retransmission=False)
        else:
            self._read(session)

    # --- the handshake ----------------------------------------------------------------------------------

    def _drive(self, session: _Session, *, retransmission: bool) -> None:
        """Step the handshake as far as the input allows, send what mbedtls wrote, arm the timer."""
        buffer = session.buffer
        step_before = handshake_step(buffer)
        if self._psk is not None:
            self._psk.current = session
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
                raise RuntimeError("handshake made no progress")
        except TLSError as exc:
            self._handshake_failed(session, exc)
            return
        finally:
            if self._psk is not None:
                self._psk.current = None

        sent = self._flush(session)
        if handshake_step(buffer) == "HANDSHAKE_OVER":
            self._established(session)
            self._read(session)  # application data may share the datagram with the Finished
            return
        session.last_activity = self._now()
        if sent:
            # Mirror mbedtls' clock: a new flight starts at the initial timeout, a timer-driven resend
            # doubles it, and a resend prompted by the peer repeating its flight keeps it.
            if retransmission:
                session.rto = min(session.rto * 2, self._handshake_timeout)
            elif handshake_step(buffer) != step_before:
                session.rto = self._rto_initial
            self._arm(session, session.rto)
        elif retransmission:
            # mbedtls' clock disagrees with our mirror (it fired a hair early, or the peer's repeats
            # reset mbedtls' timer): look again soon, without spinning.
            self._arm(session, max(0.05, session.rto / 4))

    def _arm(self, session: _Session, delay: float) -> None:
        session.cancel_timer()
        session.timer = asyncio.get_running_loop().call_later(delay + TIMER_MARGIN, self._on_timer, session)

    def _on_timer(self, session: _Session) -> None:
        session.timer = None
        if self._sessions.get(session.addr) is not session or session.state is not _State.HANDSHAKE:
            return
        if self._now() - session.started >= self._handshake_timeout:
            self._handshake_timed_out(session)
            return
        try:
            self._drive(session, retransmission=True)
        except Exception:
            logger.exception("dtls retransmission failed; session dropped", extra={"peer": _where(session.addr)})
            self._remove(session)

    def _established(self, session: _Session) -> None:
        session.cancel_timer()
        if session.identity is not None:
            session.mode = "psk"
        else:
            # No PSK was asked for: a certificate handshake, the client's chain verified by mbedtls.
            cn = self._certificate_identity(session)
            if cn is None:
                self.stats.handshakes_failed += 1
                self.stats.certificate_refused += 1
                self._log_failure(session, "the client certificate has no single subject CN to name it by")
                self._close_notify(session)
                self._remove(session)
                return
            session.identity = cn
            session.mode = "certificate"
        session.state = _State.ESTABLISHED
        self._established_count += 1
        session.last_activity = self._now()
        session.peer = Peer(session.addr[0], session.addr[1], session.identity)
        self.stats.handshakes_ok += 1
        self._count_sessions()
        log_event(
            logger,
            logging.INFO,
            "dtls session established",
            peer=_where(session.addr),
            identity=log_safe(session.identity),
            cipher=str(session.buffer.cipher()),
        )

    def _certificate_identity(self, session: _Session) -> str | None:
        if self._certificates is None:
            return None
        try:
            der = session.buffer.getpeercert(binary_form=True)
        except (TLSError, ValueError):
            return None
        return subject_cn(der) if der else None

    def _handshake_failed(self, session: _Session, exc: TLSError) -> None:
        self._flush(session)  # the alert mbedtls wrote tells the client why, at once
        if session.psk_problem is not None:
            reason = session.psk_problem
        elif tls_error_code(exc) in (BAD_MAC_ERR, BAD_FINISHED_ERR):
            reason = "wrong pre-shared key (bad record MAC on Finished)"
        else:
            reason = tls_error_reason(exc)
        if tls_error_code(exc) in CERTIFICATE_ERRS:
            self.stats.certificate_refused += 1
            reason = f"client certificate refused: {reason}"
        self.stats.handshakes_failed += 1
        if session.psk_problem == "unknown PSK identity":
            self.stats.unknown_identity += 1
        self._log_failure(session, reason)
        self._remove(session)

    def _handshake_timed_out(self, session: _Session) -> None:
        self.stats.handshakes_failed += 1
        self.stats.handshake_timeouts += 1
        self._log_failure(session, f"handshake not finished after {self._handshake_timeout:g} s")
        self._remove(session)

    def _log_failure(self, session: _Session, reason: str) -> None:
        log_event(
            logger,
            logging.WARNING,
            "dtls handshake failed",
            peer=_where(session.addr),
            identity=log_safe(session.identity),
            reason=reason,
        )

    # --- established sessions ---------------------------------------------------------------------------

    def _read(self, session: _Session) -> None:
        """Decrypt every record mbedtls can give and hand each to the handler."""
        chunk = bytearray(RECV_CHUNK)
        records: list[bytes] = []
        while True:
            try:
                n = session.buffer.readinto(chunk, RECV_CHUNK)  # type: ignore[arg-type]  # stub says bytes
            except (tls.WantReadError, tls.WantWriteError):
                break
            except tls.RaggedEOF:
                self._peer_closed(session)
                return
            except TLSError as exc:
                if tls_error_code(exc) == PEER_CLOSE_NOTIFY_ERR:
                    self._peer_closed(session)
                else:
                    self._reset_session(session, tls_error_reason(exc))
                return
            records.append(bytes(chunk[:n]))
        # mbedtls may have answered a retransmitted Finished flight by resending its own last flight.
        self._flush(session)
        if records:
            session.last_activity = self._now()
        peer = session.peer
        for record in records:
            if self._handler is None or peer is None:
                self.stats.dropped_datagrams += 1
                continue
            try:
                self._handler(record, peer)
            except Exception:
                logger.exception("dtls datagram handler failed", extra={"peer": str(peer)})

    def _peer_closed(self, session: _Session) -> None:
        log_event(
            logger,
            logging.INFO,
            "dtls session closed by peer",
            peer=_where(session.addr),
            identity=log_safe(session.identity),
        )
        self._remove(session)

    def _reset_session(self, session: _Session, reason: str) -> None:
        self.stats.sessions_reset += 1
        log_event(
            logger,
            logging.WARNING,
            "dtls session reset",
            peer=_where(session.addr),
            identity=log_safe(session.identity),
            reason=reason,
        )
        self._flush(session)
        self._remove(session)

    def _close_notify(self, session: _Session) -> None:
        with contextlib.suppress(TLSError):
            session.buffer.shutdown()
        self._flush(session)

    # --- housekeeping -----------------------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        interval = max(0.02, min(5.0, self._idle_timeout / 4, self._handshake_timeout / 4))
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        now = self._now()
        for session in list(self._sessions.values()):
            if session.state is _State.HANDSHAKE and now - session.started >= self._handshake_timeout:
                self._handshake_timed_out(session)
            elif session.state is _State.ESTABLISHED and now - session.last_activity >= self._idle_timeout:
                self.stats.evicted += 1
                log_event(
                    logger,
                    logging.INFO,
                    "dtls session evicted",
                    peer=_where(session.addr),
                    identity=log_safe(session.identity),
                    idle_s=round(now - session.last_activity, 1),
                )
                self._close_notify(session)  # tells the client to handshake again before its next request
                self._remove(session)
        if not self._closing:
            self._schedule_sweep()

    # --- plumbing ---------------------------------------------------------------------------------------

    def _flush(self, session: _Session) -> int:
        """Send what mbedtls wrote for ``session``; returns the number of datagrams."""
        data = take_outgoing(session.buffer)
        if not data:
            return 0
        datagrams = split_datagrams(data, self._mtu)
        for datagram in datagrams:
            self._send_raw(datagram, session.addr)
        return len(datagrams)

    def _send_raw(self, data: bytes, addr: Address) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def _remove(self, session: _Session) -> None:
        session.cancel_timer()
        if self._sessions.get(session.addr) is session:
            del self._sessions[session.addr]
            if session.state is _State.ESTABLISHED:
                self._established_count -= 1
        session.state = _State.CLOSED
        self._count_sessions()

    def _count_sessions(self) -> None:
        self.stats.sessions_open = self._established_count
        self.stats.handshakes_in_progress = len(self._sessions) - self._established_count
