"""LwM2M response codes and the error that carries one (TS Core §6, Transport §6.4 code tables).

Device-management logic on either side raises :class:`OperationError` with the code the TS assigns
to the failure; the CoAP layer renders it as a response with that code and the message as a
diagnostic payload. Codes are written as CoAP's ``class.detail`` numbers (``0x84`` = 4.04).
"""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.errors import Lwm2mError


class ResponseCode(IntEnum):
    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    CONTINUE = 0x5F
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88
    CONFLICT = 0x89
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D
    UNSUPPORTED_CONTENT_FORMAT = 0x8F
    INTERNAL_SERVER_ERROR = 0xA0
    NOT_IMPLEMENTED = 0xA1
    SERVICE_UNAVAILABLE = 0xA3
    GATEWAY_TIMEOUT = 0xA4

    @property
    def dotted(self) -> str:
        """``"4.04"``: the form people read in logs and specs."""
        return f"{self.value >> 5}.{self.value & 0x1F:02d}"

    @property
    def is_success(self) -> bool:
        return self.value >> 5 == 2

    @classmethod
    def from_dotted(cls, text: str) -> ResponseCode:
        major, _, minor = text.partition(".")
        return cls((int(major) << 5) | int(minor))


class OperationError(Lwm2mError):
    """A device-management operation failed with a definite LwM2M response code."""

    def __init__(self, code: ResponseCode, message: str) -> None:
        self.code = code
        self.reason = message
        super().__init__(f"{code.dotted} {code.name.replace('_', ' ').title()}: {message}")


def not_found(message: str) -> OperationError:
    return OperationError(ResponseCode.NOT_FOUND, message)


def bad_request(message: str) -> OperationError:
    return OperationError(ResponseCode.BAD_REQUEST, message)


def method_not_allowed(message: str) -> OperationError:
    return OperationError(ResponseCode.METHOD_NOT_ALLOWED, message)
