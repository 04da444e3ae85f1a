"""Running a charger: its device objects, the LwM2M client engine and the sampler, together.

``ChargerRunner(endpoint, device, accounts, registry)``: ``await start()`` starts the client engine
(bootstrap or direct registration, from the Security/Server objects in ``accounts``) and the
device's sampler task; ``await stop()`` stops sampling and de-registers. Used by ``spmp charger``,
``spmp demo`` and the end-to-end tests.

Smart load (docs/smart-load.md): every runner has the Smart Load Rules object (26245), its engine
fed with the battery voltage of every sample. With ``bts=BtsLink(...)`` the tree also has Smart Load
(BTS) 26244, bridged to the BTS over NETCONF (:mod:`spmp.charger.netconf.bridge`); the simulated
site's BTS load port then draws the BTS's power: the ``power-draw-watts`` state leaf read over
NETCONF, or, for a BTS in the same process (``BtsLink.device``, the demo), its
``power_draw_watts`` directly. ``rules="default"`` installs the default rule set
(:mod:`spmp.smartload.defaults`) at start, RF power steps relative to the BTS's own setting and the
port shed being the first switchable load port that is not the BTS's. Smart Load Fault (26243/<BTS
port>/13) is up while the BTS does not answer or a rule's target keeps failing.

With ``data_dir`` the runner keeps its state there: the rules engine's snapshot in ``smart-load.json``
(:mod:`spmp.smartload.state_file`: the rules, the targets they hold and the original values to
restore, written atomically after every change worth keeping and restored at the next start), and the
BTS's SSH host key in ``known_hosts`` (trust on first use, :mod:`spmp.charger.netconf.hostkeys`;
``BtsLink.host_key_fingerprint`` pins one instead). ``rules="default"`` seeds the default rule set
only when there is no saved state: after that the saved rules (as the operators left them) win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from spmp.charger.clock import SimClock
from spmp.charger.device import ChargerDevice, Reading, SiteSource
from spmp.charger.loads import BtsLoad
from spmp.charger.ports import PortKind
from spmp.charger.site import Site
from spmp.client.engine import Lwm2mClient
from spmp.client.objects import StoredObject
from spmp.client.registration import ClientOptions
from spmp.client.tree import ObjectTree
from spmp.lwm2m.model import ModelRegistry
from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.alerts import AlertsResource
from spmp.lwm2m.response import OperationError

if TYPE_CHECKING:
    from spmp.bts import BtsDevice
    from spmp.charger.netconf.bridge import SmartLoadBridge
    from spmp.charger.netconf.mapping import BtsMapping
    from spmp.smartload.objects import SmartLoad

__all__ = ["BtsLink", "ChargerRunner", "simulated_charger"]

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


@dataclass
class BtsLink:
    """Where the charger's BTS answers NETCONF, and how (see the module docstring)."""

    host: str
    port: int
    username: str = "spmp"
    password: str | None = None
    key_filename: str | None = None
    mapping: BtsMapping | None = None
    """None: the SPMP BTS's (maps/spmp-bts.toml)."""
    refresh_interval: float = 5.0
    """Wall seconds between two reads of the BTS's state."""
    timeout: float = 5.0
    device: BtsDevice | None = None
    """The BTS when it runs in this process: its draw feeds the load port without a NETCONF round trip."""
    load_port: str | None = None
    """The port the BTS hangs on (default: the port whose load is a BtsLoad, else the first load port)."""
    known_hosts: FilePath | None = None
    """Trust-on-first-use file for the BTS's SSH host key (default: ``known_hosts`` in the runner's data dir)."""
    host_key_fingerprint: str | None = None
    """Pin the BTS's host key (``SHA256:...``) instead of trusting the first one seen."""


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
        bts: BtsLink | None = None,
        rules: str | None = None,
        smart_load_options: dict[str, Any] | None = None,
        data_dir: FilePath | None = None,
    ) -> None:
        if rules not in (None, "none", "default"):
            raise ValueError(f"rules must be 'default' or 'none', not {rules!r}")
        self.endpoint = endpoint
        self.device = device
        self.tree = ObjectTree(registry)
        for enabler in (*accounts, *device.enablers()):
            self.tree.add(enabler)
        self.bts = bts
        self.rules = rules
        self.data_dir = data_dir
        self.rules_restored = False
        """The rules engine started from saved state (so ``rules="default"`` does not seed again)."""
        self.bridge: SmartLoadBridge | None = None
        self.bts_port: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        if bts is not None:
            self.bridge = self._attach_bts(bts)
        self.smart_load: SmartLoad = self._install_rules(dict(smart_load_options or {}))
        self.client = Lwm2mClient(endpoint, self.tree, registry, options=options)
        self._sampler: asyncio.Task[None] | None = None

    # -- smart load --------------------------------------------------------------------------------
    def _bts_port_name(self, link: BtsLink | None) -> str | None:
        if link is not None and link.load_port is not None:
            return link.load_port
        site = self.device.source.site if isinstance(self.device.source, SiteSource) else None
        if site is not None:
            for name, load in site.loads.items():
                if isinstance(load, BtsLoad):
                    return name
        return next((p.name for p in self.device.ports if p.kind is PortKind.LOAD), None)

    def _attach_bts(self, link: BtsLink) -> SmartLoadBridge:
        from spmp.charger.netconf.bridge import SmartLoadBridge  # noqa: PLC0415 - ncclient only with a BTS
        from spmp.charger.netconf.client import NetconfClient  # noqa: PLC0415
        from spmp.charger.netconf.hostkeys import HostKeyPolicy  # noqa: PLC0415
        from spmp.charger.netconf.mapping import load_builtin_mapping  # noqa: PLC0415

        known_hosts = link.known_hosts
        if known_hosts is None and self.data_dir is not None:
            known_hosts = self.data_dir / "known_hosts"
        policy = None
        if known_hosts is not None or link.host_key_fingerprint is not None:
            policy = HostKeyPolicy(known_hosts=known_hosts, pinned=link.host_key_fingerprint)
        else:
            log.warning("BTS host key not checked (no data directory, no pinned fingerprint)", extra={"bts": link.host})
        client = NetconfClient(
            link.host,
            link.port,
            username=link.username,
            password=link.password,
            key_filename=link.key_filename,
            host_keys=policy,
            timeout=link.timeout,
        )
        bridge = SmartLoadBridge(
            client,
            link.mapping or load_builtin_mapping(),
            refresh_interval=link.refresh_interval,
            on_fault=lambda _raised: self._alert_changed(),
        )
        self.tree.add(bridge)
        self.bts_port = self._bts_port_name(link)
        source = self.device.source
        if isinstance(source, SiteSource) and self.bts_port is not None:
            load = source.site.loads.get(self.bts_port)
            if isinstance(load, BtsLoad):
                fallback = load.power_w
                if link.device is not None:
                    device = link.device
                    load.draw = lambda: device.power_draw_watts
                else:
                    load.draw = lambda: bridge.power_draw_watts if bridge.power_draw_watts is not None else fallback
        return bridge

    def _install_rules(self, options: dict[str, Any]) -> SmartLoad:
        from spmp.smartload.objects import install_smart_load  # noqa: PLC0415

        remote = {}
        if self.bridge is not None:
            from spmp.charger.netconf.bridge import NetconfTargetWriter  # noqa: PLC0415

            remote[ids.SMART_LOAD_BTS] = NetconfTargetWriter(self.bridge)
        clock = self.device.clock
        options.setdefault("clock", lambda: clock.now().timestamp())
        if self.data_dir is not None and "persist" not in options:
            from spmp.smartload.state_file import STATE_FILE_NAME, StateFile, rebase  # noqa: PLC0415

            state_file = StateFile(self.data_dir / STATE_FILE_NAME)
            state = state_file.load()
            if state is not None:
                options.setdefault("state", rebase(state, options["clock"]()))
            options["persist"] = state_file.save
        if options.get("state") is not None:
            self.rules_restored = True
        smart = install_smart_load(
            self.tree, remote_writers=remote, on_alert=lambda _raised: self._alert_changed(), **options
        )
        if self.bridge is not None:
            self.bridge.on_external_write = smart.executor.external_write
        if self.bts_port is None:
            self.bts_port = self._bts_port_name(None)

        def sampled(reading: Reading) -> None:
            if reading.battery_voltage_v is not None:
                smart.executor.sample(reading.battery_voltage_v)

        self.device.sample_listeners.append(sampled)
        alerts = self.device.objects.get(ids.ALERTS)
        if alerts is not None and self.bts_port is not None:
            alerts.set_live(
                self.device.port_index(self.bts_port), int(AlertsResource.SMART_LOAD_FAULT), self.smart_load_fault
            )
        return smart

    def smart_load_fault(self) -> bool:
        """Smart Load Fault: the BTS does not answer, or a rule's target keeps failing."""
        bridge_down = self.bridge is not None and self.bridge.unreachable
        smart = getattr(self, "smart_load", None)
        return bridge_down or (smart is not None and smart.executor.alert)

    def _alert_changed(self) -> None:
        alerts = self.device.objects.get(ids.ALERTS)
        if alerts is not None:
            alerts.refresh()

    def install_default_rules(self) -> int:
        """Create the default rule set in 26245 (those whose targets this charger has); returns how many.

        The thresholds come from the site's bank (chemistry, cells) and the LVD of the BTS's port; the
        RF rule steps down from what the BTS transmits now (left out while that is unknown).
        """
        from spmp.smartload.defaults import default_rules  # noqa: PLC0415

        rf: float | None = None
        if self.bridge is not None and isinstance(rf_now := self.bridge.value(0, 11), float):
            rf = rf_now  # the rules step down from what this BTS transmits
        elif self.bridge is not None:
            log.warning("BTS RF power unknown (BTS not read yet): the default RF rule is left out")
        chemistry, cells, lvd = "agm", 24, None
        source = self.device.source
        if isinstance(source, SiteSource):
            battery = source.site.battery
            chemistry, cells = battery.chemistry.value, battery.cells
            bts_port = source.site.ports.get(self.bts_port or "")
            lvd = bts_port.limits.lvd_v if bts_port is not None else None
        shed = next(
            (
                index
                for index, port in enumerate(self.device.ports)
                if port.kind is PortKind.LOAD and port.switchable and port.name != self.bts_port
            ),
            None,
        )
        try:
            rules = default_rules(rf_power_dbm=rf, chemistry=chemistry, cells=cells, lvd_v=lvd, shed_port=shed)
        except ValueError as exc:  # an LVD too high to leave room for the steps
            log.error("no default smart-load rules", extra={"error": str(exc)})
            return 0
        rules_object = self.smart_load.rules
        installed = 0
        for rule in rules:
            iid = max(rules_object.instance_ids(), default=-1) + 1
            try:
                rules_object.add_instance(iid, _resources(rule.resources()))
            except OperationError as exc:  # e.g. no BTS: no 26244 to target
                log.info("default rule skipped", extra={"rule": rule.purpose, "error": exc.reason})
                continue
            installed += 1
        return installed

    async def start(self) -> None:
        await self.device.step()  # the first reading before anyone can read the objects
        loop = asyncio.get_running_loop()
        if self.bridge is not None:
            await self.bridge.refresh()  # the BTS's state before anyone reads 26244 (down: retried)
            self._tasks.append(loop.create_task(self.bridge.run(), name=f"bts-{self.endpoint}"))
        if self.rules == "default" and not self.rules_restored:
            self.install_default_rules()
        self._tasks.append(loop.create_task(self.smart_load.executor.run(), name=f"smartload-{self.endpoint}"))
        self._sampler = loop.create_task(self.device.run(), name=f"sampler-{self.endpoint}")
        await self.client.start()

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.client.stop()
        if self.bridge is not None:
            await self.bridge.close()

    async def __aenter__(self) -> ChargerRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _resources(values: dict[int, Any]) -> dict[int, Any]:
    from spmp.lwm2m.node import SingleResource  # noqa: PLC0415
    from spmp.lwm2m.objects.smart_load import SMART_LOAD_RULES  # noqa: PLC0415

    return {rid: SingleResource(rid, value, SMART_LOAD_RULES.resources[rid].type) for rid, value in values.items()}
