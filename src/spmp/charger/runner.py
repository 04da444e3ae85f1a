"""Running a charger: its device objects, the LwM2M client engine and the sampler, together.

``ChargerRunner(endpoint, device, accounts, registry)``: ``await start()`` starts the client engine
(bootstrap or direct registration, from the Security/Server objects in ``accounts``) and the
device's sampler task; ``await stop()`` stops sampling and de-registers. Used by ``spmp charger``,
``spmp demo`` and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from spmp.charger.clock import SimClock
from spmp.charger.device import ChargerDevice, SiteSource
from spmp.charger.site import Site
from spmp.client.engine import Lwm2mClient
from spmp.client.objects import StoredObject
from spmp.client.registration import ClientOptions
from spmp.client.tree import ObjectTree
from spmp.lwm2m.model import ModelRegistry

__all__ = ["ChargerRunner", "simulated_charger"]

log = logging.getLogger(__name__)


def simulated_charger(
    registry: ModelRegistry,
    *,
    lat: float = 0.0,
    lon: float = 0.0,
    seed: int = 0,
    speed: float = 60.0,
    start: datetime | None = None,
    serial: str = "0000",
    length_s: int = 60,
    sample_interval: float = 5.0,
    manual: bool = False,
    soc: float = 0.8,
) -> ChargerDevice:
    """A 48 V simulated site (``Site.default_48v``) as a charger device on an accelerated clock.

    The default start is today 08:00 local solar time at ``lon`` (the sun is up: a demo shows the day).
    """
    if start is None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today.replace(hour=int((8 - lon / 15.0) % 24))
    site = Site.default_48v(lat, lon, seed, start=start, soc=soc)
    clock = SimClock(start, speed, manual=manual)
    return ChargerDevice(
        SiteSource(site), clock, registry, serial=serial, length_s=length_s, sample_interval=sample_interval, seed=seed
    )


class ChargerRunner:
    """One charger: device objects + client engine + sampler task; see the module docstring."""

    def __init__(
        self,
        endpoint: str,
        device: ChargerDevice,
        accounts: tuple[StoredObject, StoredObject],
        registry: ModelRegistry,
        *,
        options: ClientOptions | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.device = device
        self.tree = ObjectTree(registry)
        for enabler in (*accounts, *device.enablers()):
            self.tree.add(enabler)
        self.client = Lwm2mClient(endpoint, self.tree, registry, options=options)
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.device.step()  # the first reading before anyone can read the objects
        self._sampler = asyncio.get_running_loop().create_task(self.device.run(), name=f"sampler-{self.endpoint}")
        await self.client.start()

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        await self.client.stop()

    async def __aenter__(self) -> ChargerRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
