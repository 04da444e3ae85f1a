"""The LwM2M management server (issue 3): registrations, device management, information reporting.

Entry point: :class:`ManagementServer`. See :mod:`spmp.server.server` for the API, and
:mod:`spmp.server.registrations`, :mod:`spmp.server.observations` for the uplink side.
"""

from __future__ import annotations

from spmp.server.errors import (
    ClientNotRegistered,
    DeviceError,
    DeviceTimeout,
    InvalidArgument,
    QueueFull,
    ServerError,
)
from spmp.server.events import Event, EventHub, Subscription
from spmp.server.observations import ObservationInfo
from spmp.server.psk import StorePskCache
from spmp.server.registrations import ClientSession, RegistrationManager
from spmp.server.server import ManagementServer, ReadResult

__all__ = [
    "ClientNotRegistered",
    "ClientSession",
    "DeviceError",
    "DeviceTimeout",
    "Event",
    "EventHub",
    "InvalidArgument",
    "ManagementServer",
    "ObservationInfo",
    "QueueFull",
    "ReadResult",
    "RegistrationManager",
    "ServerError",
    "StorePskCache",
    "Subscription",
]
