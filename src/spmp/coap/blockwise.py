"""Block-wise transfer (RFC 7959) state for the serving side; the client side lives in the endpoint.

* :class:`Block1Assembler` collects a large request body block by block (answering 2.31 Continue),
  capped at a maximum size (4.13 past it) and a maximum number of concurrent partial bodies.
* :class:`Block2Cache` keeps a large response for a short time so that the follow-up requests for
  blocks 1..n are served by slicing instead of running the handler again.
* :func:`slice_block2` cuts one block out of a full response and labels it (Block2, Size2, ETag).

Both stores key a transfer by peer and the request's options minus the block-wise ones, as RFC 7959
§2.4 describes (tokens may differ between the requests of one transfer).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

from spmp.coap.message import Block, Code, Option, Request, Response, uint_bytes
from spmp.coap.transport import Peer

TransferKey = tuple[Peer, int, tuple[tuple[int, bytes], ...]]

_NOT_IN_KEY = frozenset((Option.BLOCK1, Option.BLOCK2, Option.SIZE1, Option.SIZE2, Option.OBSERVE))


def transfer_key(request: Request) -> TransferKey:
    assert request.peer is not None
    opts = tuple([o for o in request.options if o[0] not in _NOT_IN_KEY])
    return (request.peer, request.method, opts)


@dataclass(slots=True)
class _Partial:
    body: bytearray
    expires: float


class Block1Assembler:
    """Reassembles Block1 request bodies, bounded in size, count and age."""

    def __init__(self, max_body: int, max_transfers: int = 1024, lifetime: float = 60.0) -> None:
        self.max_body = max_body
        self.max_transfers = max_transfers
        self.lifetime = lifetime
        self._partials: dict[TransferKey, _Partial] = {}

    def feed(self, request: Request, block: Block) -> bytes | Response:
        """Add one block. Returns the whole body after the last block, else the response to send now."""
        key = transfer_key(request)
        now = time.monotonic()
        size1 = request.size1
        if size1 is not None and size1 > self.max_body:
            self._partials.pop(key, None)
            return _too_large(self.max_body)
        partial = self._partials.get(key)
        if block.num == 0:
            if partial is None:
                self._evict(now)
            partial = self._partials[key] = _Partial(bytearray(), now + self.lifetime)
        elif partial is None or partial.expires < now or block.offset != len(partial.body):
            self._partials.pop(key, None)
            return Response(Code.REQUEST_ENTITY_INCOMPLETE, b"block out of sequence")
        if block.more and len(request.payload) != block.size:
            self._partials.pop(key, None)
            return Response(Code.BAD_REQUEST, b"block payload does not match its size")
        partial.body += request.payload
        partial.expires = now + self.lifetime
        if len(partial.body) > self.max_body:
            del self._partials[key]
            return _too_large(self.max_body)
        if block.more:
            return Response(Code.CONTINUE, options=[(Option.BLOCK1, block.encode())])
        del self._partials[key]
        return bytes(partial.body)

    def _evict(self, now: float) -> None:
        partials = self._partials
        for key in [k for k, p in partials.items() if p.expires < now]:
            del partials[key]
        while len(partials) >= self.max_transfers:
            del partials[next(iter(partials))]  # dicts keep insertion order: drop the oldest

    def __len__(self) -> int:
        return len(self._partials)


def _too_large(limit: int) -> Response:
    return Response(
        Code.REQUEST_ENTITY_TOO_LARGE,
        f"body larger than {limit} bytes".encode(),
        options=[(Option.SIZE1, uint_bytes(limit))],
    )


class Block2Cache:
    """Full responses of ongoing Block2 transfers, for a short time and a bounded count."""

    def __init__(self, max_entries: int = 1024, lifetime: float = 30.0) -> None:
        self.max_entries = max_entries
        self.lifetime = lifetime
        self._entries: dict[TransferKey, tuple[Response, float]] = {}

    def get(self, key: TransferKey) -> Response | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: TransferKey, response: Response) -> None:
        entries = self._entries
        entries.pop(key, None)
        while len(entries) >= self.max_entries:
            del entries[next(iter(entries))]
        entries[key] = (response, time.monotonic() + self.lifetime)

    def drop(self, key: TransferKey) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def slice_block2(response: Response, num: int, szx: int) -> Response | None:
    """Block ``num`` of ``response`` at size 2**(szx+4), or None if ``num`` lies past the end.

    The first block carries Size2 (the whole length); every block carries an ETag (the handler's, or
    a CRC of the body) so a client notices when the representation changes mid-transfer.
    """
    payload = response.payload
    size = 1 << (szx + 4)
    offset = num * size
    if offset >= len(payload) and num > 0:
        return None
    end = offset + size
    part = response.copy()
    part.payload = payload[offset:end]
    part.block2 = Block(num, end < len(payload), szx)
    if num == 0:
        part.size2 = len(payload)
    if part.etag is None:
        part.etag = zlib.crc32(payload).to_bytes(4, "big")
    return part
