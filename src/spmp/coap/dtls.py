"""DTLS 1.2 for SPMP's CoAP stack: pre-shared keys per endpoint, over python-mbedtls.

The transports themselves live in :mod:`spmp.coap.dtls_server` (:class:`DtlsServerTransport`, one UDP
socket, many sessions) and :mod:`spmp.coap.dtls_client` (:class:`DtlsClientTransport`, one session to one
server); both implement :class:`spmp.coap.transport.DatagramTransport` and are re-exported here. This
module holds what they share: the errors, the :class:`PskStore` interface, and a little DTLS record
parsing that mbedtls does not expose (alert descriptions, datagram boundaries).

Security modes:

* PSK (RFC 4279) is the mode LwM2M devices use; the cipher suites LwM2M 1.1 mandates,
  ``TLS-PSK-WITH-AES-128-CCM-8`` and ``TLS-PSK-WITH-AES-128-CBC-SHA256``, are always offered.
* NoSec is plain UDP (:mod:`spmp.coap.udp`); nothing here falls back to it.
* X.509 (LwM2M security mode Certificate): :class:`X509Credentials` gives a transport its own
  certificate and key and the CA certificates it trusts. The server then requires a client certificate
  signed by one of those CAs (chain, signatures and validity dates are checked by mbedtls) and names the
  peer by the certificate's subject CN; the client checks the server's certificate the same way. The
  ECDHE-ECDSA suites (``TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8`` first, as LwM2M asks) are offered.
* Raw public keys (RFC 7250) are not supported: mbedtls 2.28 does not implement them.

mbedtls is kept behind this interface (the binding targets mbedtls 2.28, out of upstream support since
end-2024) so it can be swapped without touching the CoAP endpoint.
"""

from __future__ import annotations

import importlib
import logging
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import mbedtls._tls as _mbedtls_tls
from mbedtls import pk, tls, x509

from spmp.coap.errors import CoapError

if TYPE_CHECKING:  # pragma: no cover - re-exports for type checkers; runtime uses __getattr__ below
    from spmp.coap.dtls_client import DtlsClientTransport
    from spmp.coap.dtls_server import DtlsServerStats, DtlsServerTransport

__all__ = [
    "CERTIFICATE_CIPHERS",
    "DEFAULT_PSK_CIPHERS",
    "LWM2M_PSK_CIPHERS",
    "DtlsClientTransport",
    "DtlsError",
    "DtlsHandshakeError",
    "DtlsServerStats",
    "DtlsServerTransport",
    "InMemoryPskStore",
    "PskStore",
    "X509Credentials",
    "subject_cn",
]

LWM2M_PSK_CIPHERS: tuple[str, ...] = ("TLS-PSK-WITH-AES-128-CCM-8", "TLS-PSK-WITH-AES-128-CBC-SHA256")
"""The PSK suites LwM2M 1.1 (§7.1.7 of the transport spec) requires; first is preferred."""

DEFAULT_PSK_CIPHERS: tuple[str, ...] = (
    *LWM2M_PSK_CIPHERS,
    "TLS-PSK-WITH-AES-128-GCM-SHA256",
    "TLS-PSK-WITH-AES-128-CCM",
    "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256",
)
"""What both transports offer by default: the LwM2M pair plus common PSK suites other stacks pick."""

CERTIFICATE_CIPHERS: tuple[str, ...] = (
    "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8",
    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-CBC-SHA256",
)
"""Offered in certificate mode: LwM2M's ECDHE-ECDSA suite (CCM-8) first, common ones after; the RSA ones
serve RSA certificates."""


class DtlsError(CoapError):
    """Base of DTLS transport errors."""


class DtlsHandshakeError(DtlsError):
    """A DTLS handshake failed: refused by the peer (alert), failed locally, or timed out.

    ``reason`` is a short human-readable cause; ``alert`` the TLS alert description number when the
    peer sent one (20 bad_record_mac for a wrong key, 115 unknown_psk_identity), else None.
    """

    def __init__(self, host: str, port: int, reason: str, *, alert: int | None = None) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        self.alert = alert
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"DTLS handshake with {where} failed: {reason}")


class PskStore(Protocol):
    """Where a DTLS server finds the pre-shared key of an endpoint.

    ``lookup`` is called synchronously inside the handshake, on the event loop: it must be fast and
    never block (serve from memory; the server's persistent store keeps a cache). Return None for an
    unknown identity. Exceptions are logged and treated as an unknown identity.
    """

    def lookup(self, identity: str) -> bytes | None:
        """The key for ``identity``, or None."""


class InMemoryPskStore:
    """A :class:`PskStore` held in a dict; thread-safe for updates from another thread.

    Its ``repr`` lists identities only, never keys.
    """

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()
        for identity, key in (keys or {}).items():
            self.set(identity, key)

    def set(self, identity: str, key: bytes) -> None:
        """Add or replace the key of ``identity``. Sessions already established keep their keys."""
        if not identity:
            raise ValueError("a PSK identity must not be empty")
        if not key:
            raise ValueError(f"the key of {identity!r} must not be empty")
        with self._lock:
            self._keys[identity] = bytes(key)

    def remove(self, identity: str) -> None:
        """Forget ``identity`` (no error if unknown)."""
        with self._lock:
            self._keys.pop(identity, None)

    def lookup(self, identity: str) -> bytes | None:
        return self._keys.get(identity)

    def __contains__(self, identity: object) -> bool:
        return identity in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"InMemoryPskStore(identities={sorted(self._keys)!r})"


# --- X.509 ---------------------------------------------------------------------------------------------


def _pem_blocks(data: bytes, label: bytes) -> list[bytes]:
    blocks: list[bytes] = []
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    pos = data.find(begin)
    while pos >= 0:
        stop = data.find(end, pos)
        if stop < 0:
            break
        blocks.append(data[pos : stop + len(end)])
        pos = data.find(begin, stop)
    return blocks


def load_certificates(data: bytes) -> list[bytes]:
    """DER certificates from PEM text (every CERTIFICATE block, in order) or from one DER certificate."""
    if b"-----BEGIN" in data:
        ders = [x509.CRT.from_PEM(block.decode("ascii")).to_DER() for block in _pem_blocks(data, b"CERTIFICATE")]
        if not ders:
            raise ValueError("no CERTIFICATE block in the PEM data")
        return ders
    try:
        return [x509.CRT.from_DER(data).to_DER()]
    except Exception as exc:
        raise ValueError(f"not a DER or PEM certificate: {exc}") from None


def load_private_key(data: bytes) -> bytes:
    """A private key (EC or RSA; PKCS#8, SEC1 or PKCS#1; PEM or DER) as DER. Never logged or printed."""
    for kind in (pk.ECC, pk.RSA):
        try:
            key = kind.from_buffer(data)
        except Exception:
            continue
        if key._has_private():
            return key.export_key("DER")
    raise ValueError("not an unencrypted EC or RSA private key (PEM or DER)")


def _private_key(der: bytes) -> pk.ECC | pk.RSA:
    try:
        return pk.ECC.from_DER(der)
    except Exception:
        return pk.RSA.from_DER(der)


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    while start < end:
        item = _der_item(data, start)
        items.append(item)
        start = item[2]
    return items


_OID_COMMON_NAME = bytes((0x55, 0x04, 0x03))
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def subject_cn(der: bytes) -> str | None:
    """The subject CN of a DER certificate, or None if it has none or several (ambiguous identity).

    Parsed from the DER itself rather than from mbedtls' one-line subject string, which does not escape
    commas: a CN of ``x, CN=y`` must not read as two names.
    """
    try:
        _, cert_start, cert_end = _der_item(der, 0)
        _, tbs_start, tbs_end = _der_children(der, cert_start, cert_end)[0]
        fields = _der_children(der, tbs_start, tbs_end)
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        _, subject_start, subject_end = fields[4]  # serial, signature, issuer, validity, subject
        names: list[str] = []
        for _, set_start, set_end in _der_children(der, subject_start, subject_end):
            for _, attr_start, attr_end in _der_children(der, set_start, set_end):
                (_, oid_start, oid_end), (tag, value_start, value_end) = _der_children(der, attr_start, attr_end)[:2]
                if der[oid_start:oid_end] == _OID_COMMON_NAME:
                    names.append(der[value_start:value_end].decode(_STRING_TAGS.get(tag, "utf-8")))
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return names[0] if len(names) == 1 and names[0] else None


@dataclass(frozen=True, slots=True)
class X509Credentials:
    """Certificate mode: our certificate chain (DER, own certificate first), our private key (DER), and
    the CA certificates (DER) a peer's certificate must chain to. ``repr`` shows no key."""

    chain: tuple[bytes, ...]
    private_key: bytes
    trusted: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("certificate mode needs our own certificate")
        if not self.private_key:
            raise ValueError("certificate mode needs our private key")
        if not self.trusted:
            raise ValueError("certificate mode needs at least one trusted CA certificate")

    @classmethod
    def from_bytes(cls, certificate: bytes, private_key: bytes, trusted: bytes | Sequence[bytes]) -> X509Credentials:
        """From PEM or DER data (``trusted``: a PEM bundle, or DER certificates); checks they parse."""
        chain = tuple(load_certificates(certificate))
        key = load_private_key(private_key)
        anchors: list[bytes] = []
        for item in [trusted] if isinstance(trusted, bytes) else trusted:
            anchors.extend(load_certificates(item))
        if not pk.check_pair(x509.CRT.from_DER(chain[0]).subject_public_key, _private_key(key)):
            raise ValueError("the private key does not belong to the certificate")
        return cls(chain, key, tuple(anchors))

    @classmethod
    def from_files(cls, certificate: str | Path, private_key: str | Path, ca: str | Path) -> X509Credentials:
        """From PEM (or DER) files: our certificate (plus intermediates), our key, the trusted CA(s)."""
        return cls.from_bytes(Path(certificate).read_bytes(), Path(private_key).read_bytes(), Path(ca).read_bytes())

    @property
    def identity(self) -> str | None:
        """Our own certificate's subject CN."""
        return subject_cn(self.chain[0])

    def tls_options(self) -> dict[str, Any]:
        """The certificate part of an mbedtls ``DTLSConfiguration``."""
        certificates = tuple(x509.CRT.from_DER(der) for der in self.chain)
        return {
            "certificate_chain": (certificates, _private_key(self.private_key)),
            "trust_store": tls.TrustStore([x509.CRT.from_DER(der) for der in self.trusted]),
            "validate_certificates": True,
        }

    def __repr__(self) -> str:
        return f"X509Credentials(identity={self.identity!r}, chain={len(self.chain)}, trusted={len(self.trusted)})"


# --- mbedtls buffers ------------------------------------------------------------------------------------

BUFFER_CAPACITY = 16384
"""Bytes per mbedtls ring buffer (two per session). The binding's default, 32 KiB, makes a session cost
~99 KiB; 16 KiB holds any PSK flight and any CoAP-sized record. Larger datagrams are dropped."""


TIMER_MARGIN = 0.003
"""Seconds our retransmission timers wait beyond mbedtls' timeout: mbedtls counts whole milliseconds on
the wall clock, asyncio on the monotonic one, so an exact deadline can arrive a hair too early."""


def new_buffer(context: tls.ServerContext | tls.ClientContext, hostname: str | None = None) -> tls.TLSWrappedBuffer:
    """Wrap ``context`` in memory buffers of :data:`BUFFER_CAPACITY` bytes.

    The binding reads the capacity from a module global when a buffer is created, so it is set around
    the creation and restored (single-threaded: nothing else creates buffers meanwhile).
    """
    saved = getattr(_mbedtls_tls, "TLS_BUFFER_CAPACITY")  # noqa: B009 - not in the binding's stubs
    setattr(_mbedtls_tls, "TLS_BUFFER_CAPACITY", BUFFER_CAPACITY)  # noqa: B010
    try:
        if isinstance(context, tls.ClientContext):
            return context.wrap_buffers(hostname)
        return context.wrap_buffers()
    finally:
        setattr(_mbedtls_tls, "TLS_BUFFER_CAPACITY", saved)  # noqa: B010


def tls_error_code(exc: Exception) -> int:
    """The positive mbedtls error code of a TLSError (0 if none); the binding's stubs omit ``err``."""
    code = getattr(exc, "err", 0)
    return code if isinstance(code, int) else 0


def tls_error_reason(exc: Exception) -> str:
    """A short, key-free reason for a TLSError."""
    return reason_for(tls_error_code(exc), str(getattr(exc, "msg", "") or exc))


def handshake_step(buffer: tls.TLSWrappedBuffer) -> str:
    """The name of the buffer's handshake state (``"HANDSHAKE_OVER"`` when done).

    Names, because the binding's stubs type the HandshakeStep members as ints.
    """
    return buffer._handshake_state.name


def take_outgoing(buffer: tls.TLSWrappedBuffer) -> bytes:
    """Everything mbedtls has written, removed from its output buffer."""
    data = buffer.peek_outgoing(BUFFER_CAPACITY)
    if data:
        buffer.consume_outgoing(len(data))
    return data


# --- DTLS record helpers -------------------------------------------------------------------------------
# mbedtls with memory buffers gives us a byte stream of records, not datagrams, and it does not say which
# alert a peer sent. These few lines of RFC 6347 §4.1 parsing fill both gaps.

RECORD_HEADER = struct.Struct("!BHHIHH")  # type, version, epoch, seq (48 bits as 32+16), length
RECORD_HEADER_LEN = 13
CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
HANDSHAKE_CLIENT_HELLO = 1

ALERT_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    90: "user_canceled",
    115: "unknown_psk_identity",
}

# mbedtls error codes (positive, as TLSError.err reports them) with the reason we log.
MBEDTLS_REASONS: dict[int, str] = {
    0x7180: "bad record MAC: wrong pre-shared key",
    0x7E80: "bad Finished: wrong pre-shared key",
    0x6C80: "unknown PSK identity",
    0x7780: "the peer sent a fatal alert",
    0x6800: "handshake timed out",
    0x7880: "the peer closed the session",
    0x7200: "invalid record from the peer",
    0x7900: "bad ClientHello",
    0x7980: "bad ServerHello",
    0x7C00: "bad ClientKeyExchange",
    0x7E00: "bad ChangeCipherSpec",
    0x7380: "no cipher suite in common",
    0x6E80: "unsupported protocol version",
    0x2700: "certificate verification failed: not signed by a trusted CA, expired, or not yet valid",
    0x7480: "no client certificate: certificate mode requires one",
    0x7A00: "bad certificate message",
    0x7600: "the certificate does not fit the negotiated cipher suite",
}

UNKNOWN_IDENTITY_ERR = 0x6C80
BAD_MAC_ERR = 0x7180
BAD_FINISHED_ERR = 0x7E80
PEER_CLOSE_NOTIFY_ERR = 0x7880
FATAL_ALERT_ERR = 0x7780
TIMEOUT_ERR = 0x6800
CERTIFICATE_ERRS = frozenset({0x2700, 0x7480, 0x7A00, 0x7600})
"""mbedtls errors meaning the peer's certificate was missing, unusable or not trusted."""


def reason_for(err: int, fallback: str) -> str:
    """A short, key-free reason for an mbedtls error code."""
    return MBEDTLS_REASONS.get(err, fallback or f"mbedtls error -0x{err:04X}")


def split_datagrams(stream: bytes, mtu: int) -> list[bytes]:
    """Cut mbedtls' outgoing byte stream back into datagrams of whole records, each at most ``mtu``.

    Several flights' records may sit in the buffer together; sending them as one jumbo datagram works on
    loopback but fragments at the IP layer on real links. A record larger than ``mtu`` goes alone. If the
    stream does not parse as records (it always should), it is sent as one datagram.
    """
    datagrams: list[bytes] = []
    current = bytearray()
    pos = 0
    while pos < len(stream):
        if len(stream) - pos < RECORD_HEADER_LEN:
            return [stream]
        length = int.from_bytes(stream[pos + 11 : pos + 13], "big")
        end = pos + RECORD_HEADER_LEN + length
        if end > len(stream):
            return [stream]
        if current and len(current) + (end - pos) > mtu:
            datagrams.append(bytes(current))
            current.clear()
        current += stream[pos:end]
        pos = end
    if current:
        datagrams.append(bytes(current))
    return datagrams


def first_record(datagram: bytes) -> tuple[int, int, bytes] | None:
    """(content type, epoch, fragment) of the first record in ``datagram``, or None if it is not DTLS."""
    if len(datagram) < RECORD_HEADER_LEN:
        return None
    content_type, version, epoch, _, _, length = RECORD_HEADER.unpack_from(datagram)
    if content_type not in (20, 21, 22, 23) or version >> 8 != 0xFE:
        return None
    return content_type, epoch, datagram[RECORD_HEADER_LEN : RECORD_HEADER_LEN + length]


def is_client_hello(datagram: bytes) -> bool:
    """Whether ``datagram`` starts a handshake: an epoch-0 handshake record holding a ClientHello."""
    record = first_record(datagram)
    return (
        record is not None
        and record[0] == CONTENT_HANDSHAKE
        and record[1] == 0
        and len(record[2]) > 0
        and record[2][0] == HANDSHAKE_CLIENT_HELLO
    )


def client_random(datagram: bytes) -> bytes:
    """The 32-byte random of the ClientHello starting ``datagram`` (call after :func:`is_client_hello`).

    A client keeps its random across the cookie exchange and retransmissions (RFC 6347 §4.2.1), so a
    different random from the same address means the client started over.
    """
    start = RECORD_HEADER_LEN + 12 + 2  # record header, handshake header, client_version
    return datagram[start : start + 32]


def plaintext_alert(datagram: bytes) -> tuple[int, int] | None:
    """(level, description) if ``datagram`` starts with an unencrypted (epoch 0) alert record."""
    record = first_record(datagram)
    if record is None or record[0] != CONTENT_ALERT or record[1] != 0 or len(record[2]) != 2:
        return None
    return record[2][0], record[2][1]


def alert_name(description: int) -> str:
    return f"{ALERT_NAMES.get(description, 'alert')} ({description})"


def fatal_alert_record(description: int, answering: bytes) -> bytes:
    """An unencrypted epoch-0 fatal alert refusing the peer that sent the record ``answering``.

    It reuses the record sequence number of the peer's record, as a stateless HelloVerifyRequest does
    (RFC 6347 §4.2.1): a fixed number would look like a replay of our earlier HelloVerifyRequest to the
    peer's anti-replay window and be dropped.
    """
    seq_high, seq_low = RECORD_HEADER.unpack_from(answering)[3:5] if len(answering) >= RECORD_HEADER_LEN else (0, 0)
    return RECORD_HEADER.pack(CONTENT_ALERT, 0xFEFD, 0, seq_high, seq_low, 2) + bytes((2, description))


def log_safe(identity: str | None, limit: int = 64) -> str | None:
    """An identity fit for a log field: bounded (the peer chose it; formatters escape it)."""
    if identity is None or len(identity) <= limit:
        return identity
    return identity[:limit] + "…"


def log_event(logger: logging.Logger, level: int, event: str, **facts: object) -> None:
    """Log ``event`` with ``facts`` as ``extra`` fields (SPMP's structured-logging convention).

    Callers pass peers, identities and reasons, never keys; ``spmp.logging``'s SecretFilter would mask
    secret-named fields anyway.
    """
    logger.log(level, event, extra=facts)


def __getattr__(name: str) -> Any:
    # The transports import this module, so they are loaded lazily here (PEP 562) to avoid a cycle.
    if name in ("DtlsServerTransport", "DtlsServerStats"):
        return getattr(importlib.import_module("spmp.coap.dtls_server"), name)
    if name == "DtlsClientTransport":
        return importlib.import_module("spmp.coap.dtls_client").DtlsClientTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
