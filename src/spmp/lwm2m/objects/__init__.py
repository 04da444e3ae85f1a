"""SPMP's own definitions of every LwM2M object it uses, and the registry holding them.

The standard objects (OMA 0, 1, 3, 4, 5 in their LwM2M 1.1 versions; IPSO 3201, 3303, 3316, 3317,
3328, 3331, 3411) are written out in Python rather than loaded from OMA's XML at run time, so that the
system does not depend on files outside the package and every definition is reviewable; a test
checks them against the OMA definition files. The SPMP objects (26241–26246) are defined here only.
Ids live in :mod:`spmp.lwm2m.objects.ids`; ``docs/objects.md`` is generated from this registry by
:mod:`spmp.lwm2m.objects.docs`.
"""

from __future__ import annotations

from spmp.lwm2m.model import ModelRegistry, ObjectModel
from spmp.lwm2m.objects.alerts import ALERTS
from spmp.lwm2m.objects.connectivity_monitoring import CONNECTIVITY_MONITORING
from spmp.lwm2m.objects.device import DEVICE
from spmp.lwm2m.objects.firmware_update import FIRMWARE_UPDATE
from spmp.lwm2m.objects.ipso import BATTERY, CURRENT, DIGITAL_OUTPUT, ENERGY, POWER, TEMPERATURE, VOLTAGE
from spmp.lwm2m.objects.port import PORT
from spmp.lwm2m.objects.port_status import PORT_STATUS
from spmp.lwm2m.objects.security import SECURITY
from spmp.lwm2m.objects.server import SERVER
from spmp.lwm2m.objects.smart_load import SMART_LOAD_BTS, SMART_LOAD_RULES
from spmp.lwm2m.objects.spmp_battery import SPMP_BATTERY

__all__ = ["ALL_OBJECTS", "SPMP_OBJECTS", "STANDARD_OBJECTS", "default_registry"]

#: The OMA and IPSO objects SPMP uses, as SPMP defines them.
STANDARD_OBJECTS: tuple[ObjectModel, ...] = (
    SECURITY,
    SERVER,
    DEVICE,
    CONNECTIVITY_MONITORING,
    FIRMWARE_UPDATE,
    DIGITAL_OUTPUT,
    TEMPERATURE,
    VOLTAGE,
    CURRENT,
    POWER,
    ENERGY,
    BATTERY,
)

#: The objects SPMP defines itself (vendor ids 26241..).
SPMP_OBJECTS: tuple[ObjectModel, ...] = (PORT, PORT_STATUS, ALERTS, SMART_LOAD_BTS, SMART_LOAD_RULES, SPMP_BATTERY)

ALL_OBJECTS: tuple[ObjectModel, ...] = STANDARD_OBJECTS + SPMP_OBJECTS


def default_registry() -> ModelRegistry:
    """A new registry with every object SPMP defines (callers may add more, e.g. from DDF files)."""
    return ModelRegistry(ALL_OBJECTS)
