"""The management server's PSK cache: the Store's security table, served synchronously to DTLS.

The DTLS transport asks for a key from inside the handshake, on the event loop, so the lookup must
be a dict access. :class:`StorePskCache` loads every server-scope :class:`SecurityInfo` at start and
reloads periodically (``spmp psk add`` writes to the same database from another process); writes
through :meth:`put` / :meth:`remove` update the store and the cache together.

An identity the cache does not know may have been added a moment ago by another process (typically
a bootstrap server on the same database that just generated a device's PSK). The handshake cannot
wait for the store, so that attempt is refused, and :meth:`lookup` schedules a look-up of that one
identity in the store: when it is found, the device's next attempt (its registration retry) succeeds,
seconds rather than a reload period later. Identities the store does not know either go into a
negative cache for ``negative_ttl`` seconds, and at most ``max_pending`` look-ups run at once, so a
flood of made-up identities costs at most one query per identity and period, never a query per
handshake.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from spmp.store import SecurityInfo, SecurityScope, Store

log = logging.getLogger(__name__)


class StorePskCache:
    """Implements :class:`spmp.coap.dtls.PskStore` over a :class:`Store` (server scope)."""

    def __init__(
        self, store: Store, *, negative_ttl: float = 5.0, max_negative: int = 10_000, max_pending: int = 32
    ) -> None:
        self._store = store
        self._by_identity: dict[str, SecurityInfo] = {}
        self._by_endpoint: dict[str, SecurityInfo] = {}
        self.negative_ttl = negative_ttl
        """Seconds an identity the store did not know is refused without asking the store again."""
        self.max_negative = max_negative
        self.max_pending = max_pending
        self._negative: OrderedDict[str, float] = OrderedDict()  # identity → loop time it expires
        self._pending: dict[str, asyncio.Task[None]] = {}
        self.store_lookups = 0
        """Look-ups of single identities sent to the store (for tests and metrics)."""

    async def load(self) -> None:
        """(Re)read the whole security table; the swap is atomic for the event loop."""
        infos = await self._store.list_security(SecurityScope.SERVER)
        self._by_identity = {info.psk_identity: info for info in infos}
        self._by_endpoint = {info.endpoint: info for info in infos}
        self._negative.clear()
        log.debug("psk cache loaded", extra={"count": len(infos)})

    # -- PskStore ----------------------------------------------------------------------------------

    def lookup(self, identity: str) -> bytes | None:
        info = self._by_identity.get(identity)
        if info is None:
            self._refresh_soon(identity)
            return None
        return info.psk_key

    # -- unknown identities ---------------------------------------------------------------------

    def _refresh_soon(self, identity: str) -> None:
        """Schedule a store look-up of ``identity`` unless one runs, it failed recently, or too many run."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a synchronous caller): nothing to schedule
        if identity in self._pending:
            return
        expires = self._negative.get(identity)
        if expires is not None:
            if loop.time() < expires:
                return
            del self._negative[identity]
        if len(self._pending) >= self.max_pending:
            log.debug("psk look-up skipped: too many running", extra={"pending": len(self._pending)})
            return
        task = loop.create_task(self._refresh(identity))
        self._pending[identity] = task
        task.add_done_callback(lambda _: self._pending.pop(identity, None))

    async def _refresh(self, identity: str) -> None:
        self.store_lookups += 1
        try:
            info = await self._store.get_security_by_identity(identity, SecurityScope.SERVER)
        except Exception:
            log.exception("psk look-up failed", extra={"identity": identity[:64]})
            info = None
        if info is None:
            self._negative[identity] = asyncio.get_running_loop().time() + self.negative_ttl
            self._negative.move_to_end(identity)
            while len(self._negative) > self.max_negative:
                self._negative.popitem(last=False)
            return
        self._insert(info)
        log.info("psk found in the store", extra={"endpoint": info.endpoint, "identity": info.psk_identity})

    async def wait_refreshed(self) -> None:
        """Wait for the store look-ups scheduled so far (for tests)."""
        if self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)

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
        self._insert(info)

    def _insert(self, info: SecurityInfo) -> None:
        old = self._by_endpoint.get(info.endpoint)
        if old is not None:
            self._by_identity.pop(old.psk_identity, None)
        self._by_endpoint[info.endpoint] = info
        self._by_identity[info.psk_identity] = info
        self._negative.pop(info.psk_identity, None)

    async def remove(self, endpoint: str) -> None:
        await self._store.delete_security(endpoint, SecurityScope.SERVER)
        old = self._by_endpoint.pop(endpoint, None)
        if old is not None:
            self._by_identity.pop(old.psk_identity, None)

    async def close(self) -> None:
        """Cancel running look-ups (the server calls this when it stops)."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._by_identity)

    def __repr__(self) -> str:
        return f"<StorePskCache {len(self._by_identity)} identities>"
