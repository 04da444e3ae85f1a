"""SPMP Port Status object (26242): a port's averaged telemetry, updated once per averaging window.

The charger averages voltage and current over Length seconds and then updates Voltage Average,
Amperage Average and Timestamp together, so an observer of the whole instance gets one consistent
record per window. Timestamp reuses the IPSO common resource 5518 (same meaning: when the values
were measured); the rest are object-specific ids.

Decisions where the seed is vague: Length is limited to 1..86400 s (one day) because a longer
window would hide a whole solar day; Amperage Average is signed, with current
positive out of the charger into the load (and into the battery on a battery port).
"""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import FLOAT, INTEGER, OBJLNK, READ, READ_WRITE, STRING, TIME, define_object, res

__all__ = ["PORT_STATUS", "PortStatusResource"]


class PortStatusResource(IntEnum):
    """Resource ids of the Port Status object."""

    NAME = 0
    VOLTAGE_AVERAGE = 1
    AMPERAGE_AVERAGE = 2
    LENGTH = 3
    ALERTS = 4
    TIMESTAMP = 5518


PORT_STATUS = define_object(
    ids.PORT_STATUS,
    "Port Status",
    version="1.0",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=False,
    description="Averaged telemetry of one port: mean voltage and current over the last averaging window, "
    "when it ended, and a link to the port's alerts. One instance per port.",
    resources=[
        res(
            PortStatusResource.NAME,
            "Name",
            READ_WRITE,
            STRING,
            mandatory=True,
            range="0..64",
            description="Operator's name for the port, e.g. 'BTS' or 'backhaul radio'; free to change.",
        ),
        res(
            PortStatusResource.VOLTAGE_AVERAGE,
            "Voltage Average",
            READ,
            FLOAT,
            units="V",
            description="Mean port voltage over the last completed averaging window.",
        ),
        res(
            PortStatusResource.AMPERAGE_AVERAGE,
            "Amperage Average",
            READ,
            FLOAT,
            units="A",
            description="Mean port current over the last completed averaging window; positive when flowing "
            "out of the charger into the port.",
        ),
        res(
            PortStatusResource.LENGTH,
            "Length",
            READ_WRITE,
            INTEGER,
            mandatory=True,
            range="1..86400",
            units="s",
            description="Length of the averaging window; the averages and Timestamp are updated once per "
            "window. Writing it starts a new window.",
        ),
        res(
            PortStatusResource.TIMESTAMP,
            "Timestamp",
            READ,
            TIME,
            mandatory=True,
            description="End of the averaging window the averages cover (IPSO common resource 5518).",
        ),
        res(
            PortStatusResource.ALERTS,
            "Alerts",
            READ,
            OBJLNK,
            description="Link to the Alerts (26243) instance of this port.",
        ),
    ],
)
