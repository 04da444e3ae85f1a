"""Object and resource models (what a DDF file describes) and a registry holding several versions.

Models are immutable. The registry answers "which model of object N does this client speak?":
by default the newest version it holds, or the version a client announced in its registration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from spmp.lwm2m.errors import ModelError


class Operations(Enum):
    """Operations allowed on a resource, as DDF files spell them."""

    NONE = ""
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @property
    def readable(self) -> bool:
        return self in (Operations.R, Operations.RW)

    @property
    def writable(self) -> bool:
        return self in (Operations.W, Operations.RW)

    @property
    def executable(self) -> bool:
        return self is Operations.E


class ResourceType(Enum):
    """Data types of the LwM2M data model (TS Core, Appendix C), spelled as in DDF files."""

    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED_INTEGER = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "none"

    @classmethod
    def from_ddf(cls, text: str) -> ResourceType:
        """Parse the ``<Type>`` of a DDF file; case-insensitive, empty means NONE (executables)."""
        wanted = text.strip().lower()
        if wanted == "":
            return cls.NONE
        for member in cls:
            if member.value.lower() == wanted:
                return member
        raise ModelError(f"unknown resource type {text!r}")


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class ValueRange:
    """A parsed ``<RangeEnumeration>``: an inclusive numeric range, a length range, or an enumeration.

    ``"0..100"`` is a numeric range (for strings and opaques: a length range), ``"1,2,5"`` or
    ``"1-3,7"`` an enumeration of integers. Anything else is kept as text only (``text``) and not
    enforced: DDF files use free prose there too.
    """

    text: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: frozenset[int] | None = None

    @classmethod
    def parse(cls, text: str | None) -> ValueRange:
        raw = (text or "").strip()
        if raw == "":
            return cls()
        compact = raw.replace(" ", "")
        match = re.fullmatch(r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\.\.(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", compact)
        if match:
            low, high = float(match.group(1)), float(match.group(2))
            if low > high:
                raise ModelError(f"range {raw!r} has its minimum above its maximum")
            return cls(text=raw, minimum=low, maximum=high)
        if re.fullmatch(r"-?\d+(?:-\d+)?(?:,-?\d+(?:-\d+)?)*", compact):
            choices: set[int] = set()
            for part in compact.split(","):
                bounds = re.fullmatch(r"(-?\d+)-(\d+)", part)
                if bounds:
                    low_i, high_i = int(bounds.group(1)), int(bounds.group(2))
                    if high_i - low_i > 65535 or low_i > high_i:
                        return cls(text=raw)
                    choices.update(range(low_i, high_i + 1))
                else:
                    choices.add(int(part))
            return cls(text=raw, choices=frozenset(choices))
        return cls(text=raw)

    @property
    def enforced(self) -> bool:
        return self.minimum is not None or self.choices is not None

    def contains(self, number: float) -> bool:
        if self.choices is not None:
            if isinstance(number, float) and not number.is_integer():
                return False
            return int(number) in self.choices
        if self.minimum is not None and self.maximum is not None:
            return not math.isnan(number) and self.minimum <= number <= self.maximum
        return True


@dataclass(frozen=True, slots=True)
class ResourceModel:
    """One ``<Item>`` of a DDF file."""

    id: int
    name: str
    operations: Operations
    multiple: bool
    mandatory: bool
    type: ResourceType
    range: ValueRange = field(default_factory=ValueRange)
    units: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 65534:
            raise ModelError(f"resource id {self.id} outside 0..65534 ({self.name!r})")
        if self.operations is Operations.E and self.type is not ResourceType.NONE:
            # DDFs in the wild give executables a type now and then; the TS says they have none.
            object.__setattr__(self, "type", ResourceType.NONE)


@dataclass(frozen=True, slots=True)
class ObjectModel:
    """One ``<Object>`` of a DDF file: identity, instance rules and its resources by id."""

    id: int
    name: str
    resources: Mapping[int, ResourceModel]
    version: str = "1.0"
    lwm2m_version: str = "1.0"
    multiple: bool = True
    mandatory: bool = False
    urn: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 65534:
            raise ModelError(f"object id {self.id} outside 0..65534 ({self.name!r})")
        if not re.fullmatch(r"\d+\.\d+", self.version):
            raise ModelError(f"object {self.id} version {self.version!r} is not MAJOR.MINOR")
        for key, resource in self.resources.items():
            if key != resource.id:
                raise ModelError(f"object {self.id}: resource keyed {key} has id {resource.id}")
        if not self.urn:
            suffix = "" if self.version == "1.0" else f":{self.version}"
            object.__setattr__(self, "urn", f"{_urn_prefix(self.id)}:{self.id}{suffix}")

    def resource(self, resource_id: int) -> ResourceModel | None:
        return self.resources.get(resource_id)

    @property
    def version_key(self) -> tuple[int, int]:
        major, minor = self.version.split(".")
        return int(major), int(minor)


def _urn_prefix(object_id: int) -> str:
    """URN namespace by id range, as the OMNA LwM2M registry assigns them (x: 10241 and above)."""
    if object_id < 1024:
        return "urn:oma:lwm2m:oma"
    if object_id < 2048:
        return "urn:oma:lwm2m:reserved"
    if object_id < 10241:
        return "urn:oma:lwm2m:ext"
    return "urn:oma:lwm2m:x"


class ModelLookup(Protocol):
    """What codecs need: the model of an object for the peer at hand, or None if unknown."""

    def object_model(self, object_id: int) -> ObjectModel | None: ...


class ModelRegistry:
    """Every object model known to this process, possibly several versions per object id.

    ``object_model(id)`` answers the newest version; :meth:`for_client` builds a lookup that answers
    the version a client announced (``</3411>;ver=1.1``), falling back to the newest.
    """

    def __init__(self, models: Iterable[ObjectModel] = ()) -> None:
        self._by_id: dict[int, dict[str, ObjectModel]] = {}
        self._newest: dict[int, ObjectModel] = {}
        """The answer of :meth:`object_model` per id, kept current by :meth:`add` (codecs ask per record)."""
        for model in models:
            self.add(model)

    def add(self, model: ObjectModel, *, replace: bool = False) -> None:
        versions = self._by_id.setdefault(model.id, {})
        if model.version in versions and not replace and versions[model.version] != model:
            raise ModelError(f"object {model.id} version {model.version} is already registered")
        versions[model.version] = model
        self._newest[model.id] = max(versions.values(), key=lambda m: m.version_key)

    def object_model(self, object_id: int) -> ObjectModel | None:
        return self._newest.get(object_id)

    def get(self, object_id: int, version: str | None = None) -> ObjectModel | None:
        if version is None:
            return self.object_model(object_id)
        return self._by_id.get(object_id, {}).get(version)

    def versions(self, object_id: int) -> list[str]:
        models = self._by_id.get(object_id, {}).values()
        return [m.version for m in sorted(models, key=lambda m: m.version_key)]

    def object_ids(self) -> list[int]:
        return sorted(self._by_id)

    def __iter__(self) -> Iterator[ObjectModel]:
        for object_id in sorted(self._by_id):
            yield from sorted(self._by_id[object_id].values(), key=lambda m: m.version_key)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._by_id

    def for_client(self, announced_versions: Mapping[int, str]) -> ClientModel:
        return ClientModel(self, announced_versions)


class ClientModel:
    """A :class:`ModelLookup` pinned to the object versions one client announced."""

    def __init__(self, registry: ModelRegistry, announced_versions: Mapping[int, str]) -> None:
        self._registry = registry
        self._versions = dict(announced_versions)

    def object_model(self, object_id: int) -> ObjectModel | None:
        version = self._versions.get(object_id)
        if version is not None:
            model = self._registry.get(object_id, version)
            if model is not None:
                return model
        return self._registry.object_model(object_id)
