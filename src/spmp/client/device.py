"""A ready-made Device (3) object: identity, battery level, current time and a Reboot executable.

Used by ``spmp client`` and as the base the charger extends. Current Time is read live from the
clock (a server may write it; the written offset is then kept), Battery Level from a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from spmp.client.objects import StoredObject
from spmp.lwm2m.node import instance_from_model
from spmp.lwm2m.objects.device import DEVICE
from spmp.lwm2m.values import Value


def device_object(
    *,
    manufacturer: str = "SPMP",
    model: str = "SPMP-CC1",
    serial: str = "0000",
    firmware: str = "0.1",
    battery_level: Callable[[], int] | int = 100,
    on_reboot: Callable[[], None] | None = None,
) -> StoredObject:
    """The Device object with one instance (/3/0)."""
    device = StoredObject(DEVICE)
    values: dict[int, Value | Mapping[int, Value]] = {
        0: manufacturer,
        1: model,
        2: serial,
        3: firmware,
        6: {0: 1},  # internal battery
        11: {0: 0},  # no error
        16: "U",
    }
    device.add_instance(0, instance_from_model(DEVICE, 0, values))
    offset = timedelta()

    def current_time(_iid: int) -> Value:
        return (datetime.now(UTC) + offset).replace(microsecond=0)

    def time_written(_iid: int, resource: object) -> None:
        nonlocal offset
        value = getattr(resource, "value", None)
        if isinstance(value, datetime):
            offset = value - datetime.now(UTC)

    def level(_iid: int) -> Value:
        return battery_level() if callable(battery_level) else battery_level

    def reboot(_iid: int, _arguments: Mapping[int, str | None]) -> None:
        if on_reboot is not None:
            on_reboot()

    device.set_reader(13, current_time)
    device.set_write_hook(13, time_written)
    device.set_reader(9, level)
    device.set_executor(4, reboot)
    return device
