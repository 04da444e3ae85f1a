"""The IPSO/OMNA common (reusable) resources SPMP's own objects borrow, with their registered meaning.

A reused id promises the registered meaning and type, so that generic tools (dashboards that know
5518 is a timestamp) read SPMP objects correctly. Tests check every SPMP object against this table;
the documentation lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

from spmp.lwm2m.model import ResourceType

__all__ = ["REUSED_RESOURCES", "ReusableResource"]


@dataclass(frozen=True, slots=True)
class ReusableResource:
    """A resource of the OMNA reusable-resource registry: id, registered name, type and meaning."""

    id: int
    name: str
    type: ResourceType
    meaning: str


REUSED_RESOURCES: dict[int, ReusableResource] = {
    resource.id: resource
    for resource in (
        ReusableResource(5518, "Timestamp", ResourceType.TIME, "time at which a measurement was taken"),
        ReusableResource(
            5828, "Duty Cycle", ResourceType.INTEGER, "share of time a load is active, 0..100 percent (Load Control)"
        ),
    )
}
