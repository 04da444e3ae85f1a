"""LwM2M Security object (0), version 1.1 as defined for LwM2M 1.1 (TS Core 1.1.1, Appendix E.1).

The keying material a client uses for one (bootstrap-)server. No resource has operations: only
the bootstrap interface writes them and no management server may read them (TS Core 1.1.1 E.1).
Resources 18–30 of the registry's version 1.2 (TLS 1.3, MQTT, COSE, RDS) are not part of 1.1.
"""

from __future__ import annotations

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    BOOLEAN,
    INTEGER,
    NO_ACCESS,
    OBJLNK,
    OPAQUE,
    STRING,
    UNSIGNED,
    define_object,
    res,
)

__all__ = ["SECURITY"]

SECURITY = define_object(
    ids.SECURITY,
    "LWM2M Security",
    version="1.1",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=True,
    description=(
        "Keying material and addressing of one LwM2M Server or Bootstrap-Server account. Only the "
        "bootstrap interface may change these resources; no LwM2M Server may access them."
    ),
    resources=[
        res(
            0,
            "LWM2M Server URI",
            NO_ACCESS,
            STRING,
            mandatory=True,
            range="0..255",
            description="URI of the LwM2M Server or Bootstrap-Server (coap://, coaps://, ...; RFC 7252 section 6).",
        ),
        res(
            1,
            "Bootstrap-Server",
            NO_ACCESS,
            BOOLEAN,
            mandatory=True,
            description="True if this instance addresses a Bootstrap-Server, false for an ordinary LwM2M Server.",
        ),
        res(
            2,
            "Security Mode",
            NO_ACCESS,
            INTEGER,
            mandatory=True,
            range="0..4",
            description="Security of the UDP channel: 0 PSK, 1 raw public key, 2 certificate, 3 NoSec, "
            "4 certificate with EST.",
        ),
        res(
            3,
            "Public Key or Identity",
            NO_ACCESS,
            OPAQUE,
            mandatory=True,
            description="The client's certificate, raw public key or PSK identity, depending on Security Mode.",
        ),
        res(
            4,
            "Server Public Key",
            NO_ACCESS,
            OPAQUE,
            mandatory=True,
            description="The server's certificate, raw public key or trust anchor, depending on Security Mode "
            "and Certificate Usage.",
        ),
        res(
            5,
            "Secret Key",
            NO_ACCESS,
            OPAQUE,
            mandatory=True,
            description="The PSK or private key of the client for the chosen Security Mode.",
        ),
        res(
            6,
            "SMS Security Mode",
            NO_ACCESS,
            INTEGER,
            range="0..255",
            description="Security of the SMS binding: 1 DTLS device-terminated (PSK), 2 secure packet "
            "structure (TS 102.225/226), 3 NoSec, 4 reserved, 204..255 proprietary.",
        ),
        res(
            7,
            "SMS Binding Key Parameters",
            NO_ACCESS,
            OPAQUE,
            range="6",
            description="KIc, KID, SPI and TAR of the SMS binding (6 bytes).",
        ),
        res(
            8,
            "SMS Binding Secret Key(s)",
            NO_ACCESS,
            OPAQUE,
            range="16,32,48",
            description="The secret key(s) of the SMS binding.",
        ),
        res(
            9,
            "LwM2M Server SMS Number",
            NO_ACCESS,
            STRING,
            description="MSISDN the client sends SMS to for this server.",
        ),
        res(
            10,
            "Short Server ID",
            NO_ACCESS,
            INTEGER,
            range="1..65534",
            description="Short id of the LwM2M Server this instance belongs to; required when Bootstrap-Server "
            "is false.",
        ),
        res(
            11,
            "Client Hold Off Time",
            NO_ACCESS,
            INTEGER,
            units="s",
            description="Seconds to wait before starting a client-initiated bootstrap (Bootstrap-Server "
            "instances only).",
        ),
        res(
            12,
            "Bootstrap-Server Account Timeout",
            NO_ACCESS,
            INTEGER,
            units="s",
            description="Seconds after which the client purges this Bootstrap-Server account; 0 or absent means never.",
        ),
        res(
            13,
            "Matching Type",
            NO_ACCESS,
            UNSIGNED,
            range="0..3",
            description="How Server Public Key is presented: 0 exact match, 1 SHA-256, 2 SHA-384, 3 SHA-512 hash.",
        ),
        res(
            14,
            "SNI",
            NO_ACCESS,
            STRING,
            description="Server Name Indication to send in the (D)TLS handshake and to match the server's "
            "certificate or PSK identity against.",
        ),
        res(
            15,
            "Certificate Usage",
            NO_ACCESS,
            INTEGER,
            range="0..3",
            description="How Server Public Key constrains the server's certificate: 0 CA constraint, 1 service "
            "certificate constraint, 2 trust anchor assertion, 3 domain-issued certificate "
            "(default).",
        ),
        res(
            16,
            "DTLS/TLS Ciphersuite",
            NO_ACCESS,
            INTEGER,
            multiple=True,
            description="Ciphersuites to propose in the ClientHello, each as the 16-bit IANA value "
            "(e.g. 0xC0A8 for TLS_PSK_WITH_AES_128_CCM_8).",
        ),
        res(
            17,
            "OSCORE Security Mode",
            NO_ACCESS,
            OBJLNK,
            description="Link to the OSCORE object (21) instance to use with this server.",
        ),
    ],
)
