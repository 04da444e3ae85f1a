"""The fleet simulator: many lightweight LwM2M devices in one process, for load tests (docs/fleet.md)."""

from spmp.fleet.simulator import (
    DEFAULT_SECRET,
    Fleet,
    FleetConfig,
    FleetError,
    FleetStats,
    device_key,
    endpoint_name,
    provision,
)

__all__ = [
    "DEFAULT_SECRET",
    "Fleet",
    "FleetConfig",
    "FleetError",
    "FleetStats",
    "device_key",
    "endpoint_name",
    "provision",
]
