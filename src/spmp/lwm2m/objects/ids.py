"""Every object id SPMP uses, in one place.

OMA objects (0–1023) and IPSO/OMA-extension objects (2048–10240) carry the numbers the OMNA
registry assigned. The SPMP objects the seed defines without numbers take ids from 26241–32768,
the range the OMNA registry leaves for vendor objects reused privately without registration
(URN ``urn:oma:lwm2m:x:<id>``). Numbering starts at the bottom of that range, in the order the seed
introduces the objects; new SPMP objects take the next free number here and nowhere else.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALERTS",
    "BATTERY",
    "CONNECTIVITY_MONITORING",
    "CURRENT",
    "DEVICE",
    "DIGITAL_OUTPUT",
    "ENERGY",
    "FIRMWARE_UPDATE",
    "PORT",
    "PORT_STATUS",
    "POWER",
    "SECURITY",
    "SERVER",
    "SMART_LOAD_BTS",
    "SMART_LOAD_RULES",
    "SPMP_BATTERY",
    "SPMP_OBJECT_IDS",
    "TEMPERATURE",
    "VENDOR_PRIVATE_RANGE",
    "VOLTAGE",
]

# OMA LwM2M core objects (TS Core, Appendix E).
SECURITY: Final = 0
SERVER: Final = 1
DEVICE: Final = 3
CONNECTIVITY_MONITORING: Final = 4
FIRMWARE_UPDATE: Final = 5

# IPSO Smart Objects.
DIGITAL_OUTPUT: Final = 3201
TEMPERATURE: Final = 3303
VOLTAGE: Final = 3316
CURRENT: Final = 3317
POWER: Final = 3328
ENERGY: Final = 3331
BATTERY: Final = 3411

# SPMP objects: vendor ids reused privately, not registered with OMNA.
PORT: Final = 26241
PORT_STATUS: Final = 26242
ALERTS: Final = 26243
SMART_LOAD_BTS: Final = 26244
SMART_LOAD_RULES: Final = 26245
SPMP_BATTERY: Final = 26246

#: Object ids the OMNA registry leaves to vendors for private reuse without registration.
VENDOR_PRIVATE_RANGE: Final = range(26241, 32769)

SPMP_OBJECT_IDS: Final = (PORT, PORT_STATUS, ALERTS, SMART_LOAD_BTS, SMART_LOAD_RULES, SPMP_BATTERY)
