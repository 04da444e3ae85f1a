"""A compact notation for writing object models in Python.

Our object definitions read like the tables of the TS: one :func:`res` call per resource row and
one :func:`define_object` per object. Short aliases for operations and types keep each row on one
line, so that a reviewer can compare it with the specification column by column.
"""

from __future__ import annotations

from collections.abc import Iterable

from spmp.lwm2m.errors import ModelError
from spmp.lwm2m.model import ObjectModel, Operations, ResourceModel, ResourceType, ValueRange

__all__ = [
    "BOOLEAN",
    "CORELNK",
    "EXECUTE",
    "FLOAT",
    "INTEGER",
    "NO_ACCESS",
    "NO_TYPE",
    "OBJLNK",
    "OPAQUE",
    "READ",
    "READ_WRITE",
    "STRING",
    "TIME",
    "UNSIGNED",
    "WRITE",
    "define_object",
    "res",
]

READ = Operations.R
WRITE = Operations.W
READ_WRITE = Operations.RW
EXECUTE = Operations.E
#: Resources of the Security object: only the bootstrap interface may touch them.
NO_ACCESS = Operations.NONE

STRING = ResourceType.STRING
INTEGER = ResourceType.INTEGER
UNSIGNED = ResourceType.UNSIGNED_INTEGER
FLOAT = ResourceType.FLOAT
BOOLEAN = ResourceType.BOOLEAN
OPAQUE = ResourceType.OPAQUE
TIME = ResourceType.TIME
OBJLNK = ResourceType.OBJLNK
CORELNK = ResourceType.CORELNK
NO_TYPE = ResourceType.NONE


def res(
    resource_id: int,
    name: str,
    operations: Operations,
    resource_type: ResourceType,
    *,
    mandatory: bool = False,
    multiple: bool = False,
    range: str = "",  # named after the TS column "Range or Enumeration"
    units: str = "",
    description: str = "",
) -> ResourceModel:
    """One resource row: id, name, operations, type; optional by default, single by default."""
    return ResourceModel(
        id=int(resource_id),  # a plain int even when an IntEnum member names the id
        name=name,
        operations=operations,
        multiple=multiple,
        mandatory=mandatory,
        type=resource_type,
        range=ValueRange.parse(range),
        units=units,
        description=description,
    )


def define_object(
    object_id: int,
    name: str,
    *,
    version: str,
    lwm2m_version: str,
    multiple: bool,
    mandatory: bool,
    description: str,
    resources: Iterable[ResourceModel],
) -> ObjectModel:
    """One object: its identity and instance rules, then its resources (ids must be unique)."""
    by_id: dict[int, ResourceModel] = {}
    for resource in resources:
        if resource.id in by_id:
            raise ModelError(f"object {object_id} ({name}) defines resource {resource.id} twice")
        by_id[resource.id] = resource
    return ObjectModel(
        id=object_id,
        name=name,
        resources=by_id,
        version=version,
        lwm2m_version=lwm2m_version,
        multiple=multiple,
        mandatory=mandatory,
        description=description,
    )
