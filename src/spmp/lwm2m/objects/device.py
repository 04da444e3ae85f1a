"""LwM2M Device object (3), version 1.1 as defined for LwM2M 1.1 (TS Core 1.1.1, Appendix E.4).

Identity, power sources, errors, time and reboot of the charger itself. Version 1.1 enumerates
error codes 0–8 and gives Battery Level in percent; the registry's version 1.2 widens Error Code
to 0–32 and writes the unit as ``/100``, with the same resources otherwise.
"""

from __future__ import annotations

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    EXECUTE,
    INTEGER,
    NO_TYPE,
    OBJLNK,
    READ,
    READ_WRITE,
    STRING,
    TIME,
    define_object,
    res,
)

__all__ = ["DEVICE"]

DEVICE = define_object(
    ids.DEVICE,
    "Device",
    version="1.1",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=True,
    description="Information about the device (manufacturer, versions, power sources, errors, time) and "
    "its reboot and factory-reset functions.",
    resources=[
        res(0, "Manufacturer", READ, STRING, description="Human-readable manufacturer name."),
        res(1, "Model Number", READ, STRING, description="Model identifier chosen by the manufacturer."),
        res(2, "Serial Number", READ, STRING, description="Serial number of the device."),
        res(3, "Firmware Version", READ, STRING, description="Current firmware version of the device."),
        res(4, "Reboot", EXECUTE, NO_TYPE, mandatory=True, description="Reboot the device."),
        res(
            5,
            "Factory Reset",
            EXECUTE,
            NO_TYPE,
            description="Reset the device to its factory state, after which it bootstraps again.",
        ),
        res(
            6,
            "Available Power Sources",
            READ,
            INTEGER,
            multiple=True,
            range="0..7",
            description="Power sources, one per resource instance: 0 DC, 1 internal battery, 2 external "
            "battery, 3 fuel cell, 4 PoE, 5 USB, 6 AC mains, 7 solar. The same instance id is "
            "used in Power Source Voltage and Power Source Current.",
        ),
        res(
            7,
            "Power Source Voltage",
            READ,
            INTEGER,
            multiple=True,
            units="mV",
            description="Present voltage of each available power source, in millivolts.",
        ),
        res(
            8,
            "Power Source Current",
            READ,
            INTEGER,
            multiple=True,
            units="mA",
            description="Present current of each available power source, in milliamperes.",
        ),
        res(
            9,
            "Battery Level",
            READ,
            INTEGER,
            range="0..100",
            units="%",
            description="Charge of the device's internal battery in percent (only with power source 1).",
        ),
        res(
            10,
            "Memory Free",
            READ,
            INTEGER,
            units="KiB",
            description="Estimated free storage for data and software, in kilobytes.",
        ),
        res(
            11,
            "Error Code",
            READ,
            INTEGER,
            multiple=True,
            mandatory=True,
            range="0..8",
            description="Current errors, one per instance: 0 none, 1 low battery, 2 external power off, "
            "3 GPS failure, 4 low signal, 5 out of memory, 6 SMS failure, 7 IP connectivity "
            "failure, 8 peripheral malfunction. A single instance 0 with value 0 means no error.",
        ),
        res(
            12,
            "Reset Error Code",
            EXECUTE,
            NO_TYPE,
            description="Clear all error codes and re-evaluate the current error conditions.",
        ),
        res(
            13,
            "Current Time",
            READ_WRITE,
            TIME,
            description="Current Unix time of the device; the server may write it to synchronise the clock.",
        ),
        res(14, "UTC Offset", READ_WRITE, STRING, description="UTC offset in effect, as UTC+X (ISO 8601)."),
        res(15, "Timezone", READ_WRITE, STRING, description="Time zone of the device (IANA tz database name)."),
        res(
            16,
            "Supported Binding and Modes",
            READ,
            STRING,
            mandatory=True,
            description="Transport bindings and modes the client supports (letters as in the TS).",
        ),
        res(17, "Device Type", READ, STRING, description="Kind of device, chosen by the manufacturer."),
        res(18, "Hardware Version", READ, STRING, description="Current hardware version."),
        res(
            19,
            "Software Version",
            READ,
            STRING,
            description="Current software version (software above the firmware, if the device splits them).",
        ),
        res(
            20,
            "Battery Status",
            READ,
            INTEGER,
            range="0..6",
            description="State of the internal battery: 0 normal, 1 charging, 2 charge complete, 3 damaged, "
            "4 low, 5 not installed, 6 unknown.",
        ),
        res(
            21,
            "Memory Total",
            READ,
            INTEGER,
            units="KiB",
            description="Total storage for data and software, in kilobytes.",
        ),
        res(
            22,
            "ExtDevInfo",
            READ,
            OBJLNK,
            multiple=True,
            description="Links to Device object instances describing external devices, e.g. a host device.",
        ),
    ],
)
