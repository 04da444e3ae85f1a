"""The management server's PSK cache: the Store's security table, served synchronously to DTLS.

The DTLS transport asks for a key from inside the handshake, on the event loop, so the lookup must
be a dict access. :class:`StorePskCache` loads every server-scope :class:`SecurityInfo` at start and
reloads periodically (``spmp psk add`` writes to the same database from another process); writes
through :meth:`put` / :meth:`remove` update the store and the cache together.
"""

from __future__ import annotations

import logging

from spmp.store import SecurityInfo, SecurityScope, Store

log = logging.getLogger(__name__)


class StorePskCache:
    """Implements :class:`spmp.coap.dtls.PskStore` over a :class:`Store` (server scope)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._by_identity: dict[str, SecurityInfo] = {}
        self._by_endpoint: dict[str, SecurityInfo] = {}

    async def load(self) -> None:
        """(Re)read the whole security table; the swap is atomic for the event loop."""
        infos = await self._store.list_security(SecurityScope.SERVER)
        self._by_identity = {info.psk_identity: info for info in infos}
        self._by_endpoint = {info.endpoint: info for info in infos}
        log.debug("psk cache loaded", extra={"count": len(infos)})

    # -- PskStore ----------------------------------------------------------------------------------

    def lookup(self, identity: str) -> bytes | None:
        info = self._by_identity.get(identity)
        return None if info is None else info.psk_key

    # -- for the registration security check ----------------------------------------------------

    def endpoint_of(self, identity: str) -> str | None:
        info = self._by_identity.get(identity)
        return None if info is None else info.endpoint

    def identity_of(self, endpoint: str) -> str | None:
        info = self._by_endpoint.get(endpoint)
        return None if info is None else info.psk_identity

    # -- writes ---------------------------------------------------------------------------------

    async def put(self, info: SecurityInfo) -> None:
        await self._store.put_security(info, SecurityScope.SERVER)
        old = self._by_endpoint.get(info.endpoint)
        if old is not None:
            self._by_identity.pop(old.psk_identity, None)
        self._by_endpoint[info.endpoint] = info
        self._by_identity[info.psk_identity] = info

    async def remove(self, endpoint: str) -> None:
        await self._store.delete_security(endpoint, SecurityScope.SERVER)
        old = self._by_endpoint.pop(endpoint, None)
        if old is not None:
            self._by_identity.pop(old.psk_identity, None)

    def __len__(self) -> int:
        return len(self._by_identity)

    def __repr__(self) -> str:
        return f"<StorePskCache {len(self._by_identity)} identities>"
