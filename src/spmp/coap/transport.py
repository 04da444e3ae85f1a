"""The datagram transport interface between the CoAP endpoint and UDP or DTLS.

The endpoint sees only datagrams and peers; whether bytes were encrypted on the way is the
transport's business. A DTLS transport reports the authenticated PSK identity in :class:`Peer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote CoAP endpoint: its address and, when secured, the identity it proved."""

    host: str
    port: int
    identity: str | None = None
    """The DTLS PSK identity (or certificate subject) the peer authenticated with; None over plain UDP."""

    @property
    def secure(self) -> bool:
        return self.identity is not None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        who = f" ({self.identity})" if self.identity is not None else ""
        return f"{host}:{self.port}{who}"


DatagramHandler = Callable[[bytes, Peer], None]
"""Called by a transport for every datagram (decrypted, for DTLS) that arrives."""


class DatagramTransport(Protocol):
    """What the CoAP endpoint needs from UDP or DTLS."""

    def set_handler(self, handler: DatagramHandler) -> None:
        """Route incoming datagrams to ``handler``; set once before traffic flows."""

    def send(self, data: bytes, peer: Peer) -> None:
        """Send one datagram (encrypting it over the peer's session, for DTLS). Never blocks."""

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound (host, port)."""

    async def close(self) -> None:
        """Stop receiving, close sessions (DTLS close_notify) and release the socket."""
