"""LwM2M Connectivity Monitoring object (4), version 1.2 as defined for LwM2M 1.1 (TS Core 1.1.1, E.5).

The charger's uplink (usually cellular backhaul at the site). Resource 13 (Coverage Enhancement
Level) of the registry's version 1.3 is not part of 1.2.
"""

from __future__ import annotations

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import INTEGER, READ, STRING, define_object, res

__all__ = ["CONNECTIVITY_MONITORING"]

CONNECTIVITY_MONITORING = define_object(
    ids.CONNECTIVITY_MONITORING,
    "Connectivity Monitoring",
    version="1.2",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=False,
    description="Network parameters and link quality of the device's connection.",
    resources=[
        res(
            0,
            "Network Bearer",
            READ,
            INTEGER,
            mandatory=True,
            range="0..50",
            description="Bearer in use: 0 GSM, 1 TD-SCDMA, 2 WCDMA, 3 CDMA2000, 4 WiMAX, 5 LTE-TDD, 6 LTE-FDD, "
            "7 NB-IoT, 21 WLAN, 22 Bluetooth, 23 IEEE 802.15.4, 41 Ethernet, 42 DSL, 43 PLC; "
            "others reserved.",
        ),
        res(
            1,
            "Available Network Bearer",
            READ,
            INTEGER,
            multiple=True,
            mandatory=True,
            range="0..50",
            description="Bearers the device can use, coded as Network Bearer.",
        ),
        res(
            2,
            "Radio Signal Strength",
            READ,
            INTEGER,
            mandatory=True,
            units="dBm",
            description="Average received signal strength of the serving cell or access point "
            "(RSSI, RSCP or RSRP by bearer).",
        ),
        res(
            3,
            "Link Quality",
            READ,
            INTEGER,
            description="Bearer-specific link quality, e.g. RSRQ (LTE), Ec/No (UMTS) or LQI (802.15.4).",
        ),
        res(
            4,
            "IP Addresses",
            READ,
            STRING,
            multiple=True,
            mandatory=True,
            description="IP addresses assigned to the connectivity interface.",
        ),
        res(5, "Router IP Addresses", READ, STRING, multiple=True, description="IP addresses of the next-hop routers."),
        res(
            6,
            "Link Utilization",
            READ,
            INTEGER,
            range="0..100",
            units="/100",
            description="Average utilisation of the link in percent.",
        ),
        res(7, "APN", READ, STRING, multiple=True, description="Access point names in use (cellular bearers)."),
        res(8, "Cell ID", READ, INTEGER, description="Serving cell id (3GPP TS 23.003)."),
        res(9, "SMNC", READ, INTEGER, range="0..999", description="Serving mobile network code."),
        res(10, "SMCC", READ, INTEGER, range="0..999", description="Serving mobile country code."),
        res(
            11,
            "SignalSNR",
            READ,
            INTEGER,
            units="dB",
            description="Signal to interference plus noise ratio of the serving cell.",
        ),
        res(12, "LAC", READ, INTEGER, description="Location area code (cellular bearers)."),
    ],
)
