"""Smart load end to end: a simulated site, the charger's rules engine, a real BTS over NETCONF/SSH on loopback.

The battery (30 Ah, no sun: the site starts at local midnight) drains under the BTS and the backhaul
radio; the charger samples it on a manual clock; the default rules fire in order; each fires an
edit-config over a real SSH session to the real BTS server; the BTS's draw (its state leaf read
back over NETCONF) falls, and with it the current of the charger's BTS load port. Then the bank is
charged (a generator visit) and everything is restored in reverse.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path as FilePath

from spmp.bts import BtsDevice, BtsNetconfServer, load_or_create_host_key
from spmp.bts.model import FACTORY_CONFIG
from spmp.charger.clock import SimClock
from spmp.charger.device import ChargerDevice, SiteSource
from spmp.charger.netconf.scenario import scenario_site
from spmp.charger.runner import BtsLink, ChargerRunner
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.lwm2m.objects import default_registry

REGISTRY = default_registry()
USER, PASSWORD = "charger", "e2e-secret"


def test_voltage_falls_rules_shed_the_bts_over_netconf_and_restore(tmp_path: FilePath) -> None:
    data = tmp_path / "bts"
    bts = BtsDevice(data)
    server = BtsNetconfServer(bts, host_key=load_or_create_host_key(data), port=0, users={USER: PASSWORD})
    server.start()
    try:
        asyncio.run(asyncio.wait_for(_scenario(bts, server.port), 120))
    finally:
        server.close()


async def _scenario(bts: BtsDevice, port: int) -> None:
    site = scenario_site(capacity_ah=30.0, soc=0.3, pv_wp=400.0)
    clock = SimClock(site.now, manual=True)
    device = ChargerDevice(SiteSource(site), clock, REGISTRY, sample_interval=30.0, adc_error=0.0)
    accounts = direct_servers([ServerSpec("coap://127.0.0.1:9")])  # never started: no LwM2M traffic here
    # The NETCONF path: the load port draws the state leaf power-draw-watts read over SSH.
    link = BtsLink("127.0.0.1", port, username=USER, password=PASSWORD, refresh_interval=0.5)
    runner = ChargerRunner("e2e", device, accounts, REGISTRY, bts=link, rules="default")
    bridge = runner.bridge
    assert bridge is not None
    smart = runner.smart_load
    try:
        await device.step()
        assert await bridge.refresh()
        assert runner.install_default_rules() == 6
        load1 = device.port_index("LOAD1")
        start_power = bridge.power_draw_watts
        assert start_power is not None and abs(start_power - 38.12) < 0.01
        fired: list[int] = []
        active: set[int] = set()

        async def advance(seconds: float) -> None:
            nonlocal active
            clock.advance(timedelta(seconds=seconds))
            await device.step()
            await smart.executor.settle()
            now = {r.id for r in smart.engine.rules() if smart.engine.is_active(r.id)}
            fired.extend(sorted(now - active, key=lambda i: smart.engine.rules().index(smart.engine.rule(i))))
            active = now

        await advance(30)
        start_current = device.current_sensors[load1].value
        assert start_current is not None and start_current > 0.7  # ~38 W at ~48 V
        assert not active
        # Down: until every rule is active (the bank is small; hours of night).
        for _ in range(2000):
            await advance(30)
            if len(active) == 6:
                break
        assert len(active) == 6, f"only {sorted(active)} fired, battery at {site.battery.voltage_v:.2f} V"
        order = [r.id for r in smart.engine.rules()]  # by threshold, highest first
        assert fired == order
        assert not smart.executor.alert and not bridge.unreachable
        # What the BTS has now, read back over NETCONF.
        assert await bridge.refresh()
        assert bridge.value(0, 11) == 30.0  # 33 dBm − 3 dB on both chains
        assert bridge.value(0, 5) is False and bridge.value(0, 6) is False
        assert bridge.value(0, 1) is False  # the switchable chain off
        assert bridge.value(0, 9) is True  # emergency calls only
        config = bts.config
        assert [c.rf_power_output_dbm for c in config.chains] == [Decimal("30.0"), Decimal("30.0")]
        assert [c.enabled for c in config.chains] == [True, False] and config.emergency_calls_only
        assert site.ports["LOAD2"].switch_on is False  # the non-priority port shed
        shed_power = bridge.power_draw_watts
        assert shed_power is not None and shed_power < 0.6 * start_power
        assert shed_power == bts.power_draw_watts
        assert site.loads["LOAD1"].demand().power_w == shed_power  # the port draws what the BTS draws
        await advance(30)
        shed_current = device.current_sensors[load1].value
        assert shed_current is not None and shed_current < 0.7 * start_current
        assert bts.state().on_air  # still serving emergency calls

        # Up: a generator fills the bank; the rules clear in reverse and everything comes back.
        site.battery.charge_ah = site.battery.capacity_ah
        cleared: list[int] = []
        for _ in range(2000):
            before = set(active)
            await advance(30)
            cleared.extend(sorted(before - active, key=lambda i: -smart.engine.rules().index(smart.engine.rule(i))))
            if not active and not smart.engine.pending():
                break
        assert not active
        assert cleared == list(reversed(order))
        assert bts.config == FACTORY_CONFIG
        assert site.ports["LOAD2"].switch_on is True
        assert await bridge.refresh()
        assert bridge.power_draw_watts == start_power
        await advance(30)
        restored_current = device.current_sensors[load1].value
        assert restored_current is not None and restored_current > shed_current * 1.4
    finally:
        await runner.stop()
