"""LwM2M Firmware Update object (5), version 1.1 (for LwM2M 1.1).

Push (Package) or pull (Package URI) delivery, state machine and result codes, plus the 1.1
additions: Cancel, Severity, Last State Change Time and Maximum Defer Period. Resource 14
(Automatic Upgrade at Download) of the registry's version 1.2 is not part of 1.1.
"""

from __future__ import annotations

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    EXECUTE,
    INTEGER,
    NO_TYPE,
    OPAQUE,
    READ,
    READ_WRITE,
    STRING,
    TIME,
    UNSIGNED,
    WRITE,
    define_object,
    res,
)

__all__ = ["FIRMWARE_UPDATE"]

FIRMWARE_UPDATE = define_object(
    ids.FIRMWARE_UPDATE,
    "Firmware Update",
    version="1.1",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=False,
    description="Installs a new firmware image: delivered by the server (Package) or fetched by the "
    "device (Package URI), then applied by executing Update.",
    resources=[
        res(
            0,
            "Package",
            WRITE,
            OPAQUE,
            mandatory=True,
            description="The firmware image, pushed by the server (block-wise); writing empty bytes resets the "
            "state machine.",
        ),
        res(
            1,
            "Package URI",
            READ_WRITE,
            STRING,
            mandatory=True,
            range="0..255",
            description="URI the device downloads the image from; writing an empty string resets the state machine.",
        ),
        res(
            2,
            "Update",
            EXECUTE,
            NO_TYPE,
            mandatory=True,
            description="Apply the downloaded image; allowed only in state 2 (Downloaded).",
        ),
        res(
            3,
            "State",
            READ,
            INTEGER,
            mandatory=True,
            range="0..3",
            description="0 Idle, 1 Downloading, 2 Downloaded, 3 Updating.",
        ),
        res(
            5,
            "Update Result",
            READ,
            INTEGER,
            mandatory=True,
            range="0..11",
            description="0 initial, 1 success, 2 not enough flash, 3 out of RAM, 4 connection lost, 5 integrity "
            "check failed, 6 unsupported package type, 7 invalid URI, 8 update failed, 9 unsupported "
            "protocol, 10 cancelled, 11 deferred.",
        ),
        res(6, "PkgName", READ, STRING, range="0..255", description="Name of the downloaded package."),
        res(7, "PkgVersion", READ, STRING, range="0..255", description="Version of the downloaded package."),
        res(
            8,
            "Firmware Update Protocol Support",
            READ,
            INTEGER,
            multiple=True,
            range="0..5",
            description="Protocols usable with Package URI: 0 CoAP, 1 CoAPS, 2 HTTP 1.1, 3 HTTPS 1.1, "
            "4 CoAP over TCP, 5 CoAP over TLS.",
        ),
        res(
            9,
            "Firmware Update Delivery Method",
            READ,
            INTEGER,
            mandatory=True,
            range="0..2",
            description="Delivery the device supports: 0 pull only, 1 push only, 2 both.",
        ),
        res(
            10,
            "Cancel",
            EXECUTE,
            NO_TYPE,
            description="Cancel a deferred or in-progress update; Update Result becomes 10.",
        ),
        res(
            11,
            "Severity",
            READ_WRITE,
            INTEGER,
            range="0..2",
            description="Urgency of the update: 0 critical, 1 mandatory, 2 optional (default 1).",
        ),
        res(12, "Last State Change Time", READ, TIME, description="When State last changed."),
        res(
            13,
            "Maximum Defer Period",
            READ_WRITE,
            UNSIGNED,
            units="s",
            description="How long the user may defer the update; 0 means it cannot be deferred.",
        ),
    ],
)
