"""How failures become HTTP answers: ``{"error": code_name, "message": "…"}`` with the right status.

One table here, so every handler can simply raise (a server, store, codec or JSON error) and the
operator always gets the same shape. Device errors keep the CoAP code the client answered
(``"coapCode": "4.04"``): 4.04 → 404, 4.05 → 405, 4.06 → 406, 4.15 → 415, 4.09 → 409, 4.00 → 400,
4.01/4.03 → 403; any other code → 502, because then the device (not the caller) failed.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from spmp.api.json_nodes import JsonNodeError
from spmp.lwm2m.errors import (
    CodecError,
    InvalidAttributeError,
    InvalidValueError,
    PathError,
    UnsupportedContentFormatError,
)
from spmp.lwm2m.response import ResponseCode
from spmp.server.errors import ClientNotRegistered, DeviceError, DeviceTimeout, InvalidArgument, QueueFull, ServerError
from spmp.store import Conflict, NotFound

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers as is: ``status``, ``code`` (the JSON ``error``) and ``message``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        super().__init__(message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


_DEVICE_STATUS: dict[int, tuple[int, str]] = {
    ResponseCode.BAD_REQUEST: (400, "bad_request"),
    ResponseCode.UNAUTHORIZED: (403, "forbidden"),
    ResponseCode.FORBIDDEN: (403, "forbidden"),
    ResponseCode.NOT_FOUND: (404, "not_found"),
    ResponseCode.METHOD_NOT_ALLOWED: (405, "method_not_allowed"),
    ResponseCode.NOT_ACCEPTABLE: (406, "not_acceptable"),
    ResponseCode.CONFLICT: (409, "conflict"),
    ResponseCode.UNSUPPORTED_CONTENT_FORMAT: (415, "unsupported_content_format"),
}


def _dotted(code: int) -> str:
    return f"{int(code) >> 5}.{int(code) & 0x1F:02d}"


def to_response(exc: Exception) -> JSONResponse:
    """The JSON error answer for any exception a handler let through."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, **exc.extra)
    if isinstance(exc, DeviceError):
        status, code = _DEVICE_STATUS.get(int(exc.code), (502, "device_error"))
        name = exc.code.name if isinstance(exc.code, ResponseCode) else "UNKNOWN"
        message = exc.message or f"the client answered {_dotted(exc.code)} {name.replace('_', ' ').title()}"
        return error_response(status, code, message, coapCode=_dotted(exc.code), coapName=name)
    if isinstance(exc, ClientNotRegistered):
        return error_response(404, "client_not_found", str(exc))
    if isinstance(exc, DeviceTimeout):
        return error_response(504, "device_timeout", str(exc))
    if isinstance(exc, QueueFull):
        return error_response(503, "queue_full", str(exc), headers={"Retry-After": "30"})
    if isinstance(exc, UnsupportedContentFormatError):
        return error_response(406, "not_acceptable", str(exc))
    if isinstance(exc, JsonNodeError | PathError | InvalidValueError | InvalidAttributeError | InvalidArgument):
        return error_response(400, "bad_request", str(exc))
    if isinstance(exc, CodecError):
        # Our own input is checked before encoding, so a codec failure means the device's payload was bad.
        return error_response(502, "bad_device_payload", str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, ServerError):
        return error_response(502, "server_error", str(exc))
    log.exception("unexpected error in the REST API", exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has the details")


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler: every error, mapped by :func:`to_response`."""
    return to_response(exc)
