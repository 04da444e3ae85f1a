"""SPMP Port object (26241): one instance per switchable port of the charger, tying its objects together.

The seed's Port table lists only links; a port's data live in the objects they point to:
its on/off control (Digital Output, 3201), its telemetry (Port Status, 26242), its raw voltage and
current sensors (3316, 3317) and, for a port feeding a smart load, the load's configuration and
status (Smart Load (BTS), 26244).

Decisions where the seed is vague:

* Smart Load Configuration and Smart Load Status both link to Smart Load (BTS) instances: the
  first holds the configuration the server wants the load to run (NETCONF "config"), the second the
  configuration the charger last read back from the load (NETCONF "state"). The seed calls the latter
  "link to lwm2m object mapping": it is the load's own state mapped into an LwM2M object.
* Current (6) is an SPMP addition next to the seed's Voltage link, so that both raw sensors of a
  port can be found from the port.
"""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import OBJLNK, READ, READ_WRITE, STRING, define_object, res

__all__ = ["PORT", "PortResource"]


class PortResource(IntEnum):
    """Resource ids of the Port object."""

    NAME = 0
    CONTROL = 1
    STATUS = 2
    SMART_LOAD_CONFIGURATION = 3
    SMART_LOAD_STATUS = 4
    VOLTAGE = 5
    CURRENT = 6


PORT = define_object(
    ids.PORT,
    "Port",
    version="1.0",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=False,
    description="One switchable port of the charger (load, PV input or battery connection). It names the "
    "port and links to the objects that control, measure and configure it.",
    resources=[
        res(
            PortResource.NAME,
            "Name",
            READ,
            STRING,
            mandatory=True,
            range="0..64",
            description="Name of the port as marked on the charger, e.g. 'LOAD1'; fixed by the firmware.",
        ),
        res(
            PortResource.CONTROL,
            "Control",
            READ,
            OBJLNK,
            mandatory=True,
            description="Link to the Digital Output (3201) instance that switches this port on and off.",
        ),
        res(
            PortResource.STATUS,
            "Status",
            READ,
            OBJLNK,
            mandatory=True,
            description="Link to the Port Status (26242) instance carrying this port's averaged telemetry.",
        ),
        res(
            PortResource.SMART_LOAD_CONFIGURATION,
            "Smart Load Configuration",
            READ_WRITE,
            OBJLNK,
            description="Link to the Smart Load (BTS) (26244) instance holding the configuration the server "
            "wants the load on this port to run; the null link 65535:65535 means no smart load.",
        ),
        res(
            PortResource.SMART_LOAD_STATUS,
            "Smart Load Status",
            READ_WRITE,
            OBJLNK,
            description="Link to the Smart Load (BTS) (26244) instance in which the charger mirrors the "
            "configuration it last read back from the load (over NETCONF).",
        ),
        res(
            PortResource.VOLTAGE,
            "Voltage",
            READ,
            OBJLNK,
            description="Link to the Voltage (3316) instance measuring this port's raw voltage.",
        ),
        res(
            PortResource.CURRENT,
            "Current",
            READ,
            OBJLNK,
            description="SPMP addition: link to the Current (3317) instance measuring this port's raw current.",
        ),
    ],
)
