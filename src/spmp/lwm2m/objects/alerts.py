"""SPMP Alerts object (26243): the alarm conditions of one port, one Boolean resource each.

Every alert is optional: the firmware instantiates the ones its hardware can detect (seed).
An alert resource is true while its condition is present and false otherwise, so that observing
the instance (or a resource) reports both raising and clearing. Two alerts describe events rather
than conditions and are defined so that they still read as a state:

* Low Voltage Disconnect is true while the port is switched off because the battery voltage fell
  below the disconnect threshold.
* Low Voltage Reconnect becomes true when the port is switched back on automatically after such a
  disconnect (the battery recovered above the reconnect threshold), and false again at the next
  low-voltage disconnect: a false→true transition is the reconnection event.

Resources 5–12 are SPMP additions, the conditions a solar charge controller commonly detects.
Resource 13 (Smart Load Fault) is an SPMP addition for the smart-load rules (docs/smart-load.md):
true while a rule's target refuses or does not answer the charger's writes.
Timestamp reuses the IPSO common resource 5518.
"""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import BOOLEAN, READ, TIME, define_object, res

__all__ = ["ALERTS", "AlertsResource"]


class AlertsResource(IntEnum):
    """Resource ids of the Alerts object."""

    SHORT_CIRCUIT = 0
    OVER_VOLTAGE = 1
    OVER_CURRENT = 2
    LOW_VOLTAGE_DISCONNECT = 3
    LOW_VOLTAGE_RECONNECT = 4
    OVER_TEMPERATURE = 5
    UNDER_TEMPERATURE = 6
    REVERSE_POLARITY = 7
    HIGH_VOLTAGE_DISCONNECT = 8
    OPEN_CIRCUIT = 9
    GROUND_FAULT = 10
    SENSOR_FAULT = 11
    OVERLOAD = 12
    SMART_LOAD_FAULT = 13
    TIMESTAMP = 5518


ALERTS = define_object(
    ids.ALERTS,
    "Alerts",
    version="1.0",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=False,
    description="Alarm conditions of one port. Each Boolean is true while its condition is present; the "
    "firmware instantiates only the alerts its hardware can detect.",
    resources=[
        res(
            AlertsResource.SHORT_CIRCUIT,
            "Short Circuit",
            READ,
            BOOLEAN,
            description="The port output is short-circuited; the charger has switched it off to protect itself.",
        ),
        res(
            AlertsResource.OVER_VOLTAGE,
            "Over-Voltage",
            READ,
            BOOLEAN,
            description="The port voltage is above its maximum rating.",
        ),
        res(
            AlertsResource.OVER_CURRENT,
            "Over-Current",
            READ,
            BOOLEAN,
            description="The port current exceeds its instantaneous limit (trip).",
        ),
        res(
            AlertsResource.LOW_VOLTAGE_DISCONNECT,
            "Low Voltage Disconnect",
            READ,
            BOOLEAN,
            description="The port is off because the battery voltage fell below the low-voltage disconnect "
            "(LVD) threshold.",
        ),
        res(
            AlertsResource.LOW_VOLTAGE_RECONNECT,
            "Low Voltage Reconnect",
            READ,
            BOOLEAN,
            description="The port was switched back on after a low-voltage disconnect because the battery "
            "rose above the reconnect (LVR) threshold; false again at the next disconnect.",
        ),
        res(
            AlertsResource.OVER_TEMPERATURE,
            "Over-Temperature",
            READ,
            BOOLEAN,
            description="SPMP addition: the charger or battery is too hot; charging or the port is derated or off.",
        ),
        res(
            AlertsResource.UNDER_TEMPERATURE,
            "Under-Temperature",
            READ,
            BOOLEAN,
            description="SPMP addition: the battery is too cold to charge safely (e.g. lithium below 0 °C); "
            "charging is suspended.",
        ),
        res(
            AlertsResource.REVERSE_POLARITY,
            "Reverse Polarity",
            READ,
            BOOLEAN,
            description="SPMP addition: the conductors on this port are connected with reversed polarity.",
        ),
        res(
            AlertsResource.HIGH_VOLTAGE_DISCONNECT,
            "High Voltage Disconnect",
            READ,
            BOOLEAN,
            description="SPMP addition: the port is off because the battery voltage rose above the high-voltage "
            "disconnect threshold (protects loads).",
        ),
        res(
            AlertsResource.OPEN_CIRCUIT,
            "Open Circuit",
            READ,
            BOOLEAN,
            description="SPMP addition: nothing is connected although the port is on (broken wire, blown "
            "external fuse, missing battery or panel).",
        ),
        res(
            AlertsResource.GROUND_FAULT,
            "Ground Fault",
            READ,
            BOOLEAN,
            description="SPMP addition: leakage current to ground detected on this port.",
        ),
        res(
            AlertsResource.SENSOR_FAULT,
            "Sensor Fault",
            READ,
            BOOLEAN,
            description="SPMP addition: a voltage, current or temperature sensor of this port reads implausibly "
            "or not at all; its measurements are unreliable.",
        ),
        res(
            AlertsResource.OVERLOAD,
            "Overload",
            READ,
            BOOLEAN,
            description="SPMP addition: the port current has stayed above its continuous rating long enough to "
            "trip the thermal (I²t) protection, as opposed to an instantaneous Over-Current.",
        ),
        res(
            AlertsResource.SMART_LOAD_FAULT,
            "Smart Load Fault",
            READ,
            BOOLEAN,
            description="SPMP addition: the charger cannot apply a smart-load rule to the load on this port (the "
            "BTS is unreachable or refuses the edit, or the output refuses the switch); it keeps "
            "retrying with backoff and clears the alert once every pending write succeeded.",
        ),
        res(
            AlertsResource.TIMESTAMP,
            "Timestamp",
            READ,
            TIME,
            description="When an alert of this instance last changed (IPSO common resource 5518).",
        ),
    ],
)
