"""The CoAP Content-Format numbers LwM2M uses, in one place (IANA CoAP Content-Formats registry)."""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.errors import UnsupportedContentFormatError


class ContentFormat(IntEnum):
    TEXT = 0
    """text/plain;charset=utf-8 (a single resource or resource instance)"""
    LINK = 40
    """application/link-format (registration payloads, Discover)"""
    OPAQUE = 42
    """application/octet-stream (a single Opaque resource)"""
    CBOR = 60
    """application/cbor (a single resource value, LwM2M 1.1)"""
    SENML_JSON = 110
    SENML_CBOR = 112
    TLV = 11542
    """application/vnd.oma.lwm2m+tlv"""
    LWM2M_JSON = 11543
    """application/vnd.oma.lwm2m+json (the LwM2M 1.0 JSON format)"""
    LWM2M_CBOR = 11544
    """application/vnd.oma.lwm2m+cbor (LwM2M 1.2)"""
    OLD_TLV = 1542
    """pre-registration number some 1.0 clients still send for TLV"""
    OLD_JSON = 1543
    """pre-registration number some 1.0 clients still send for LwM2M JSON"""

    @classmethod
    def of(cls, number: int) -> ContentFormat:
        try:
            return cls(number)
        except ValueError:
            raise UnsupportedContentFormatError(f"content format {number} is not one LwM2M uses") from None

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


_MEDIA_TYPES = {
    ContentFormat.TEXT: "text/plain;charset=utf-8",
    ContentFormat.LINK: "application/link-format",
    ContentFormat.OPAQUE: "application/octet-stream",
    ContentFormat.CBOR: "application/cbor",
    ContentFormat.SENML_JSON: "application/senml+json",
    ContentFormat.SENML_CBOR: "application/senml+cbor",
    ContentFormat.TLV: "application/vnd.oma.lwm2m+tlv",
    ContentFormat.LWM2M_JSON: "application/vnd.oma.lwm2m+json",
    ContentFormat.LWM2M_CBOR: "application/vnd.oma.lwm2m+cbor",
    ContentFormat.OLD_TLV: "application/vnd.oma.lwm2m+tlv",
    ContentFormat.OLD_JSON: "application/vnd.oma.lwm2m+json",
}
