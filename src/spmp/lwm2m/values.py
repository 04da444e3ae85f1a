"""Values of the LwM2M data model and their checks against a resource model.

Python types per LwM2M type: String and Corelnk ``str``; Integer and Unsigned Integer ``int``;
Float ``float``; Boolean ``bool``; Opaque ``bytes``; Time an aware ``datetime`` (second
resolution, as the TS defines Time as whole seconds since the Unix epoch); Objlnk :class:`ObjectLink`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from spmp.lwm2m.errors import InvalidValueError
from spmp.lwm2m.model import INT64_MAX, INT64_MIN, UINT64_MAX, ResourceModel, ResourceType


@dataclass(frozen=True, slots=True, order=True)
class ObjectLink:
    """An Objlnk value: ``object_id:instance_id``; 65535:65535 is the null link."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for name, value in (("object id", self.object_id), ("instance id", self.instance_id)):
            if type(value) is not int or not 0 <= value <= 65535:
                raise InvalidValueError(f"object link {name} {value!r} is not in 0..65535")

    @classmethod
    def _trusted(cls, object_id: int, instance_id: int) -> ObjectLink:
        """A link from two ints the caller knows are in 0..65535 (codecs); skips ``__post_init__``."""
        link = _new_link(cls)
        _set_field(link, "object_id", object_id)
        _set_field(link, "instance_id", instance_id)
        return link

    @classmethod
    def parse(cls, text: str) -> ObjectLink:
        """Parse ``"3:0"`` as written in plain text and JSON formats."""
        object_text, colon, instance_text = text.partition(":")
        if (
            not colon
            or not 0 < len(object_text) <= 5
            or not 0 < len(instance_text) <= 5
            or not object_text.isdigit()
            or not instance_text.isdigit()
            or not text.isascii()
        ):
            raise InvalidValueError(f"object link {text!r} is not of the form OBJECT:INSTANCE")
        object_id, instance_id = int(object_text), int(instance_text)
        if object_id <= 65535 and instance_id <= 65535:
            return cls._trusted(object_id, instance_id)
        return cls(object_id, instance_id)  # raises, naming the part out of range

    @property
    def is_null(self) -> bool:
        return self.object_id == 65535 and self.instance_id == 65535

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"


_new_link = object.__new__
_set_field = object.__setattr__

Value = str | int | float | bool | bytes | datetime | ObjectLink


def time_from_seconds(seconds: int) -> datetime:
    """A Time value from Unix seconds; raises InvalidValueError outside what datetime can hold."""
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidValueError(f"time {seconds} is outside the representable range") from exc


def time_to_seconds(value: datetime) -> int:
    return int(value.timestamp())


def coerce(value: object, kind: ResourceType, *, path: str | None = None) -> Value:
    """Check ``value`` against ``kind`` and return it in its canonical Python type.

    Lenient only where no information is lost (an ``int`` for a Float, Unix seconds for a Time, a
    ``bytearray`` for an Opaque); everything else is an :class:`InvalidValueError`.
    """
    if kind is ResourceType.STRING or kind is ResourceType.CORELNK:
        if isinstance(value, str):
            return value
    elif kind is ResourceType.INTEGER:
        if type(value) is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidValueError(f"integer {value} does not fit in 64 bits", path=path)
            return value
    elif kind is ResourceType.UNSIGNED_INTEGER:
        if type(value) is int:
            if not 0 <= value <= UINT64_MAX:
                raise InvalidValueError(f"unsigned integer {value} is outside 0..2^64-1", path=path)
            return value
    elif kind is ResourceType.FLOAT:
        if type(value) is float:
            return value
        if type(value) is int:
            as_float = float(value)
            if as_float != value:
                raise InvalidValueError(f"integer {value} cannot be represented as a float", path=path)
            return as_float
    elif kind is ResourceType.BOOLEAN:
        if type(value) is bool:
            return value
    elif kind is ResourceType.OPAQUE:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
    elif kind is ResourceType.TIME:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise InvalidValueError("a Time value must be timezone-aware (UTC)", path=path)
            return value.astimezone(UTC).replace(microsecond=0)
        if type(value) is int:
            return time_from_seconds(value)
    elif kind is ResourceType.OBJLNK:
        if isinstance(value, ObjectLink):
            return value
    elif kind is ResourceType.NONE:
        raise InvalidValueError("an executable resource carries no value", path=path)
    raise InvalidValueError(f"{type(value).__name__} value {value!r} is not a valid {kind.value}", path=path)


def check_range(value: Value, model: ResourceModel, *, path: str | None = None) -> None:
    """Enforce the model's range or enumeration (a length range for String and Opaque)."""
    if not model.range.enforced:
        return
    if isinstance(value, str | bytes) and model.type in (ResourceType.STRING, ResourceType.OPAQUE):
        length = len(value.encode()) if isinstance(value, str) else len(value)
        if model.range.choices is None and not model.range.contains(length):
            raise InvalidValueError(f"length {length} is outside {model.range.text!r}", path=path)
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and math.isnan(value):
        raise InvalidValueError("NaN is outside any range", path=path)
    if not model.range.contains(value):
        raise InvalidValueError(f"{value!r} is outside {model.range.text!r}", path=path)
