"""The exception tree of SPMP's CoAP stack.

    CoapError
    ├── CoapMessageError   bytes that are not a well-formed CoAP message (decode), or a bad option value
    ├── ResponseError      raised by a resource handler; the endpoint answers with its code and diagnostic
    ├── RequestTimeout     no response after all retransmissions (or the configured wait)
    ├── PeerReset          the peer answered with RST
    ├── BlockwiseError     a block-wise transfer could not be completed (too large, inconsistent)
    └── TransportClosed    the endpoint or its transport was closed while the operation was pending

Handlers raise :class:`ResponseError` the way aiocoap handlers raise its error classes: the error *is*
the response, so resource code never builds error responses by hand.
"""

from __future__ import annotations

from spmp.coap.transport import Peer


class CoapError(Exception):
    """Base of every error raised by the CoAP stack."""


class CoapMessageError(CoapError):
    """A datagram is not a valid CoAP message (or an option value is malformed).

    ``message_type``, ``mid`` and ``token`` are filled in as far as the header could be read, so an
    endpoint can answer a malformed confirmable message with RST (RFC 7252 §4.2). They stay None when
    the version is unknown: such messages must be silently ignored (RFC 7252 §3).
    """

    def __init__(
        self,
        reason: str,
        *,
        message_type: int | None = None,
        mid: int | None = None,
        token: bytes | None = None,
    ) -> None:
        self.reason = reason
        self.message_type = message_type
        self.mid = mid
        self.token = token
        where = f" (mid {mid})" if mid is not None else ""
        super().__init__(f"{reason}{where}")


class ResponseError(CoapError):
    """Raise in a handler to answer with ``code`` and ``message`` as the diagnostic payload.

    ``code`` is a response code (4.xx or 5.xx, usually a :class:`spmp.coap.message.Code` member).
    """

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code >> 5}.{code & 31:02d} {message}".rstrip())


class RequestTimeout(CoapError):  # noqa: N818 - the name the rest of SPMP uses
    """No response arrived: the confirmable request was retransmitted and never acknowledged/answered."""

    def __init__(self, peer: Peer, seconds: float, detail: str = "") -> None:
        self.peer = peer
        self.seconds = seconds
        extra = f" ({detail})" if detail else ""
        super().__init__(f"no response from {peer} after {seconds:.1f} s{extra}")


class PeerReset(CoapError):  # noqa: N818
    """The peer rejected our message with a Reset (RST)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        super().__init__(f"{peer} answered with RST")


class BlockwiseError(CoapError):
    """A block-wise (RFC 7959) transfer failed: the body exceeds the size cap or blocks do not fit together."""


class TransportClosed(CoapError):  # noqa: N818
    """The endpoint or transport is closed."""
