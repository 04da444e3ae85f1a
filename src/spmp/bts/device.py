"""The simulated BTS: its running configuration (persisted), its state, and its power draw.

The NETCONF server edits the configuration through :meth:`BtsDevice.edit`; the charger's load port
reads :attr:`BtsDevice.power_draw_watts` and subscribes to changes with
:meth:`BtsDevice.on_power_change` (a plain callback, called in the thread that changed the
configuration) or iterates :meth:`BtsDevice.power_updates` from asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from spmp.bts.datastore import apply_edit, empty_datastore, normalise
from spmp.bts.errors import NetconfError
from spmp.bts.model import BTS_NS, FACTORY_CONFIG, NC_NS, BtsConfig, config_from_xml, config_to_xml
from spmp.bts.power import DEFAULT_DEMAND_USERS, power_draw_watts, serving_users

__all__ = ["RUNNING_FILE", "BtsDevice", "BtsState"]

log = logging.getLogger(__name__)

RUNNING_FILE = "running.xml"
PowerCallback = Callable[[float], None]


@dataclass(frozen=True)
class BtsState:
    """The config-false ``state`` container."""

    power_draw_watts: float
    on_air: bool
    serving_users: int
    uptime: int


class BtsDevice:
    """A BTS whose power draw follows its configuration.

    ``data_dir`` keeps the running configuration (``running.xml``, replaced atomically on every change);
    without it the configuration lives in memory only. A new data dir starts from the factory
    configuration (two chains at 33 dBm). A saved configuration that does not validate raises ValueError.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        demand_users: int = DEFAULT_DEMAND_USERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = data_dir
        self._demand = demand_users
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._callbacks: list[PowerCallback] = []
        self._running = self._load()
        self._config = config_from_xml(self._running.find(f"{{{BTS_NS}}}bts"))
        self._power = power_draw_watts(self._config, self._demand)

    # -------------------------------------------------------------------------------- configuration

    @property
    def config(self) -> BtsConfig:
        """The running configuration, typed."""
        return self._config

    def running(self) -> etree._Element:
        """A copy of the running datastore (a ``<data>`` element holding the ``<bts>`` configuration)."""
        with self._lock:
            return etree.fromstring(etree.tostring(self._running))

    def edit(self, config: etree._Element, default_operation: str = "merge") -> None:
        """Apply an edit-config ``<config>`` to the running datastore, persist it, tell the subscribers.

        Raises :class:`NetconfError` (and changes nothing) when the edit is invalid.
        """
        with self._lock:
            new = apply_edit(self._running, config, default_operation)
            self._commit(new)

    def set_config(self, config: BtsConfig) -> None:
        """Replace the running configuration with ``config`` (every leaf explicit)."""
        data = empty_datastore()
        data.append(config_to_xml(config))
        with self._lock:
            self._commit(normalise(data))

    def _commit(self, new: etree._Element) -> None:
        # Called with the lock held; the callbacks run after it is released would race a second edit,
        # so they run here, in order: a callback must not call edit() (it would deadlock).
        config = config_from_xml(new.find(f"{{{BTS_NS}}}bts"))
        self._save(new)
        self._running, self._config = new, config
        power = power_draw_watts(config, self._demand)
        if power != self._power:
            self._power = power
            for callback in list(self._callbacks):
                try:
                    callback(power)
                except Exception:
                    log.exception("power callback failed")

    # ------------------------------------------------------------------------------- state and power

    @property
    def power_draw_watts(self) -> float:
        """Average draw in watts with the running configuration (see :mod:`spmp.bts.power`)."""
        return self._power

    def state(self) -> BtsState:
        """The state container's values now."""
        config = self._config
        uptime = self._clock() - self._started
        on_air = not config.sleep and any(c.enabled for c in config.chains) and self._in_on_phase(config, uptime)
        users = serving_users(config, self._demand) if on_air else 0
        return BtsState(round(self._power, 2), on_air, users, int(uptime))

    @staticmethod
    def _in_on_phase(config: BtsConfig, uptime: float) -> bool:
        # In service for the first duty-cycle percent of every period, counted from start-up.
        phase = uptime % config.duty_cycle_period_s
        return phase < config.duty_cycle_period_s * config.duty_cycle_percent / 100

    def state_xml(self) -> etree._Element:
        """The ``<state>`` element for get."""
        state = self.state()
        elem = etree.Element(f"{{{BTS_NS}}}state", nsmap={None: BTS_NS})
        for name, text in (
            ("power-draw-watts", f"{state.power_draw_watts:.2f}"),
            ("on-air", "true" if state.on_air else "false"),
            ("serving-users", str(state.serving_users)),
            ("uptime", str(state.uptime)),
        ):
            etree.SubElement(elem, f"{{{BTS_NS}}}{name}").text = text
        return elem

    def on_power_change(self, callback: PowerCallback) -> Callable[[], None]:
        """Call ``callback(watts)`` whenever the power draw changes; returns a function that unsubscribes.

        The callback runs in the thread that changed the configuration (a NETCONF session's); from
        asyncio, hand over with ``loop.call_soon_threadsafe`` or use :meth:`power_updates`.
        """
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    async def power_updates(self) -> AsyncIterator[float]:
        """Yield the current power draw, then every new value, until the consumer stops iterating."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[float] = asyncio.Queue()

        def hand_over(watts: float) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, watts)

        unsubscribe = self.on_power_change(hand_over)
        try:
            yield self._power
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    # ---------------------------------------------------------------------------------- persistence

    def _load(self) -> etree._Element:
        data = empty_datastore()
        if self._dir is None:
            data.append(config_to_xml(FACTORY_CONFIG))
            return normalise(data)
        path = self._dir / RUNNING_FILE
        if not path.exists():
            data.append(config_to_xml(FACTORY_CONFIG))
            self._save(normalise(data))
            return data
        parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
        try:
            loaded = etree.parse(str(path), parser).getroot()
            if loaded.tag != f"{{{NC_NS}}}data":
                raise ValueError(f"{path}: not a saved running datastore")
            # Re-apply it as an edit so a hand-edited file is validated like any NETCONF edit.
            return apply_edit(data, loaded, "replace")
        except (etree.XMLSyntaxError, NetconfError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def _save(self, datastore: etree._Element) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        text = etree.tostring(datastore, pretty_print=True, xml_declaration=True, encoding="UTF-8")
        # Write a temporary file next to the target and rename it over: a crash leaves the old or the
        # new file, never half of one.
        fd, tmp = tempfile.mkstemp(prefix=".running-", dir=self._dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._dir / RUNNING_FILE)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
