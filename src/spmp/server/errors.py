"""Errors the management server's Python API raises (the REST API maps them to HTTP statuses).

ServerError                 base of everything below
├── InvalidArgument         the caller's input is wrong (bad path, node that does not fit the model)
├── ClientNotRegistered     no registration for that endpoint name
├── DeviceError             the client answered with an LwM2M error code (4.xx/5.xx)
├── DeviceTimeout           no answer in time (also: a queued request the client never woke up for)
└── QueueFull               a queue-mode client already has too many requests waiting
"""

from __future__ import annotations

from spmp.lwm2m.response import ResponseCode


class ServerError(Exception):
    """Base of every error of :mod:`spmp.server`."""


class InvalidArgument(ServerError, ValueError):  # noqa: N818 - reads better at call sites
    """The caller asked for something malformed (a path that does not parse, a node the model rejects)."""


class ClientNotRegistered(ServerError):  # noqa: N818
    """The endpoint has no current registration."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"client {endpoint!r} is not registered")


class DeviceError(ServerError):
    """The client answered an operation with an error response code."""

    def __init__(self, code: ResponseCode | int, message: str) -> None:
        try:
            self.code: ResponseCode | int = ResponseCode(code)
        except ValueError:
            self.code = code
        self.message = message
        dotted = f"{int(code) >> 5}.{int(code) & 0x1F:02d}"
        super().__init__(f"client answered {dotted}" + (f": {message}" if message else ""))


class DeviceTimeout(ServerError):  # noqa: N818
    """No response from the client within ``seconds`` (sent directly, or waiting in its queue)."""

    def __init__(self, endpoint: str, path: str, seconds: float, detail: str = "") -> None:
        self.endpoint = endpoint
        self.path = path
        self.seconds = seconds
        extra = f" ({detail})" if detail else ""
        super().__init__(f"no response from {endpoint!r} for {path} after {seconds:.1f} s{extra}")


class QueueFull(ServerError):  # noqa: N818
    """A queue-mode client has ``limit`` requests waiting already; try again after it wakes up."""

    def __init__(self, endpoint: str, limit: int) -> None:
        self.endpoint = endpoint
        self.limit = limit
        super().__init__(f"client {endpoint!r} already has {limit} queued requests")
