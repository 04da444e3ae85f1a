"""LwM2M Server object (1), version 1.1 as defined for LwM2M 1.1 (TS Core 1.1.1, Appendix E.2).

One instance per LwM2M Server account: lifetime, notification defaults, binding and the 1.1
communication-retry and registration-order resources. Resources 24–27 of the registry's version
1.2 (alternate APNs, supported server versions, default notification mode, profile id hash) are
not part of 1.1.
"""

from __future__ import annotations

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    BOOLEAN,
    EXECUTE,
    INTEGER,
    NO_TYPE,
    OBJLNK,
    READ,
    READ_WRITE,
    STRING,
    TIME,
    UNSIGNED,
    define_object,
    res,
)

__all__ = ["SERVER"]

SERVER = define_object(
    ids.SERVER,
    "LwM2M Server",
    version="1.1",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=True,
    description="Data related to one LwM2M Server account: registration lifetime, notification "
    "defaults, binding, and how the client retries and orders its registrations.",
    resources=[
        res(
            0,
            "Short Server ID",
            READ,
            INTEGER,
            mandatory=True,
            range="1..65534",
            description="Links this instance to the Security object instance of the same server.",
        ),
        res(
            1,
            "Lifetime",
            READ_WRITE,
            INTEGER,
            mandatory=True,
            units="s",
            description="Registration lifetime: the client must send a Registration Update before it expires.",
        ),
        res(
            2,
            "Default Minimum Period",
            READ_WRITE,
            INTEGER,
            units="s",
            description="Default pmin for observations of this server when none is set; absent means 0.",
        ),
        res(
            3,
            "Default Maximum Period",
            READ_WRITE,
            INTEGER,
            units="s",
            description="Default pmax for observations of this server when none is set; absent means none.",
        ),
        res(
            4,
            "Disable",
            EXECUTE,
            NO_TYPE,
            description="Deregister and stay disabled for Disable Timeout, storing notifications meanwhile "
            "if so configured.",
        ),
        res(
            5,
            "Disable Timeout",
            READ_WRITE,
            INTEGER,
            units="s",
            description="How long the server stays disabled after Disable; default 86400 s.",
        ),
        res(
            6,
            "Notification Storing When Disabled or Offline",
            READ_WRITE,
            BOOLEAN,
            mandatory=True,
            description="True: store notifications while disabled or offline and send them later; false: drop them.",
        ),
        res(
            7,
            "Binding",
            READ_WRITE,
            STRING,
            mandatory=True,
            description="Transport bindings the client uses with this server (U, T, S, N, Q ... as in the TS).",
        ),
        res(
            8,
            "Registration Update Trigger",
            EXECUTE,
            NO_TYPE,
            mandatory=True,
            description="Makes the client send a Registration Update (or register again) to this server now.",
        ),
        res(
            9,
            "Bootstrap-Request Trigger",
            EXECUTE,
            NO_TYPE,
            description="Makes the client start a client-initiated bootstrap.",
        ),
        res(
            10,
            "APN Link",
            READ_WRITE,
            OBJLNK,
            description="Link to the APN Connection Profile (11) instance to use for this server.",
        ),
        res(
            11,
            "TLS-DTLS Alert Code",
            READ,
            UNSIGNED,
            range="0..255",
            description="The last (D)TLS alert code received from or sent to this server.",
        ),
        res(
            12,
            "Last Bootstrapped",
            READ,
            TIME,
            description="When the client was last bootstrapped with this server account.",
        ),
        res(
            13,
            "Registration Priority Order",
            READ,
            UNSIGNED,
            description="Order in which the client registers to its servers; lower values first.",
        ),
        res(
            14,
            "Initial Registration Delay Timer",
            READ_WRITE,
            UNSIGNED,
            units="s",
            description="Delay before registering to this server once the previous one in priority order succeeded.",
        ),
        res(
            15,
            "Registration Failure Block",
            READ,
            BOOLEAN,
            description="True: a failed registration to this server blocks registrations to lower-priority servers.",
        ),
        res(
            16,
            "Bootstrap on Registration Failure",
            READ,
            BOOLEAN,
            description="True (default): fall back to bootstrap when all registration attempts to this server failed.",
        ),
        res(
            17,
            "Communication Retry Count",
            READ_WRITE,
            UNSIGNED,
            description="Registration attempts per retry sequence (default 5).",
        ),
        res(
            18,
            "Communication Retry Timer",
            READ_WRITE,
            UNSIGNED,
            units="s",
            description="Base delay between registration attempts; doubled after each failure (default 60 s).",
        ),
        res(
            19,
            "Communication Sequence Delay Timer",
            READ_WRITE,
            UNSIGNED,
            units="s",
            description="Delay between retry sequences (default 86400 s).",
        ),
        res(
            20,
            "Communication Sequence Retry Count",
            READ_WRITE,
            UNSIGNED,
            description="Number of retry sequences before giving up on this server (default 1).",
        ),
        res(
            21,
            "Trigger",
            READ_WRITE,
            BOOLEAN,
            description="Whether the server may wake the client with a trigger message (SMS or other).",
        ),
        res(
            22,
            "Preferred Transport",
            READ_WRITE,
            STRING,
            description="Transport binding the client prefers for this server (one letter, as in Binding).",
        ),
        res(
            23,
            "Mute Send",
            READ_WRITE,
            BOOLEAN,
            description="True: the client must not use the Send operation towards this server.",
        ),
    ],
)
