"""Plain UDP implementation of :class:`~spmp.coap.transport.DatagramTransport` on asyncio.

CPython's selector datagram transport calls ``recvfrom(self.max_size)`` with a class default of 256 KiB,
which makes glibc mmap/munmap a fresh buffer for every datagram. Setting the instance's ``max_size``
below glibc's mmap threshold (128 KiB) keeps the buffer on the heap. Measured here (CPython 3.11.7,
loopback echo, 32 in flight): 256 KiB ~21k/s; 64 KiB, 16 KiB, 4 KiB and 2 KiB all ~85k/s. So the default
is 64 KiB: as fast as a small buffer and large enough for any UDP datagram, so nothing is truncated.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from spmp.coap.errors import TransportClosed
from spmp.coap.transport import DatagramHandler, Peer

log = logging.getLogger(__name__)

READ_SIZE = 65536
"""Bytes read per datagram (see module docstring for why it is not asyncio's 256 KiB)."""

SERVER_RECV_BUFFER = 4 << 20
"""Socket receive buffer a server asks for (``recv_buffer``). At 10k datagrams/s the default (~208 KiB,
a few hundred small datagrams once kernel overhead is counted) overflows during a 30 ms pause of the
event loop (a store commit, a garbage collection) and the kernel drops datagrams (RcvbufErrors); the
kernel caps the value at ``net.core.rmem_max``."""

_PEER_CACHE_MAX = 200_000
"""Peers are cached per address so the hot path does not build a new Peer per datagram; bounded."""


def _drop(data: bytes, peer: Peer) -> None:
    """Handler in place until the endpoint sets its own."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        owner = self._owner
        peers = owner._peers
        key = (addr[0], addr[1])
        peer = peers.get(key)
        if peer is None:
            if len(peers) >= _PEER_CACHE_MAX:
                peers.clear()
            peer = peers[key] = Peer(key[0], key[1])
        # An exception escaping here would make asyncio close the transport: contain it.
        try:
            owner._handler(data, peer)
        except Exception:
            log.exception("datagram handler failed for %s", peer)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable from a peer that went away) surface here; they are not fatal.
        log.debug("UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._closed.set()


class UdpTransport:
    """CoAP over plain UDP on one bound socket (IPv4 or IPv6). Create with :meth:`bind`."""

    def __init__(self) -> None:
        self._handler: DatagramHandler = _drop
        self._peers: dict[tuple[str, int], Peer] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = asyncio.Event()
        self._local: tuple[str, int] = ("", 0)

    @classmethod
    async def bind(
        cls, host: str = "127.0.0.1", port: int = 0, *, read_size: int = READ_SIZE, recv_buffer: int | None = None
    ) -> UdpTransport:
        """Bind ``host:port`` (port 0 picks a free one; see :attr:`local_address`); ``recv_buffer`` sets
        SO_RCVBUF (see :data:`SERVER_RECV_BUFFER`), None keeps the system default."""
        self = cls()
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(host, port), family=family
        )
        # `max_size` is an undocumented attribute of the selector transport; set it only where it exists.
        if hasattr(transport, "max_size"):
            transport.max_size = read_size
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if recv_buffer is not None and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
            except OSError as exc:
                log.warning("cannot set the UDP receive buffer to %d bytes: %s", recv_buffer, exc)
        sockname = transport.get_extra_info("sockname")
        self._local = (sockname[0], sockname[1])
        return self

    def set_handler(self, handler: DatagramHandler) -> None:
        self._handler = handler

    def send(self, data: bytes, peer: Peer) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise TransportClosed(f"UDP transport {self._local} is closed")
        transport.sendto(data, (peer.host, peer.port))

    @property
    def local_address(self) -> tuple[str, int]:
        return self._local

    async def close(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
        await self._closed.wait()

    def __repr__(self) -> str:
        return f"<UdpTransport {self._local[0]}:{self._local[1]}>"
