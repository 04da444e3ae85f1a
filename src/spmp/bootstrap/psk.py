"""PSKs of the bootstrap server: the bootstrap-scope cache for DTLS, and per-endpoint server PSKs.

Two kinds of key live in the Store's security table (kept apart by scope, as /0 keeps them apart):

* ``SecurityScope.BOOTSTRAP``: the factory PSK a device uses towards *this* server. DTLS asks for it
  synchronously inside the handshake, so :class:`BootstrapPskCache` serves it from memory, reloaded
  periodically and soon after an unknown identity was asked for (``spmp bootstrap psk add`` writes
  from another process).
* ``SecurityScope.SERVER``: the PSK a device uses towards its management servers. When a bootstrap
  configuration says PSK without a key, :func:`ensure_server_psk` reuses the endpoint's stored one or
  generates one (identity = endpoint name, 16 random bytes) and stores it where the management server
  reads it, so a device goes from factory credentials to registered with nothing typed by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from spmp.bootstrap.session import PskCredentials
from spmp.store import SecurityInfo, SecurityScope, Store

log = logging.getLogger(__name__)

GENERATED_KEY_BYTES = 16


class BootstrapPskCache:
    """Implements :class:`spmp.coap.dtls.PskStore` over the Store's bootstrap-scope PSKs."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys: dict[str, bytes] = {}
        self.on_miss: Callable[[str], None] | None = None
        """Called (synchronously, from the handshake) with an identity the cache did not know."""

    async def load(self) -> None:
        """(Re)read every bootstrap-scope PSK; the swap is atomic for the event loop."""
        infos = await self._store.list_security(SecurityScope.BOOTSTRAP)
        self._keys = {info.psk_identity: info.psk_key for info in infos}
        log.debug("bootstrap psk cache loaded", extra={"count": len(infos)})

    def lookup(self, identity: str) -> bytes | None:
        key = self._keys.get(identity)
        if key is None and self.on_miss is not None:
            self.on_miss(identity)
        return key

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<BootstrapPskCache {len(self._keys)} identities>"


async def ensure_server_psk(store: Store, endpoint: str) -> tuple[PskCredentials, bool]:
    """The endpoint's management-server PSK: the stored one, else a new one; and whether it is new.

    Reusing a stored key keeps a re-bootstrap from breaking a device that already works (if the
    session failed half-way, the device still holds the old key). To rotate a key, delete the
    endpoint's server-scope PSK and bootstrap the device again.
    """
    existing = await store.get_security(endpoint, SecurityScope.SERVER)
    if existing is not None:
        return PskCredentials(existing.psk_identity, existing.psk_key), False
    credentials = PskCredentials(endpoint, os.urandom(GENERATED_KEY_BYTES))
    await store.put_security(SecurityInfo(endpoint, credentials.identity, credentials.key), SecurityScope.SERVER)
    log.info("server psk generated", extra={"endpoint": endpoint, "identity": credentials.identity})
    return credentials, True
