"""LwM2M paths: ``/``, ``/o``, ``/o/i``, ``/o/i/r`` and ``/o/i/r/ri``.

Identifiers are 16-bit unsigned integers; 65535 is reserved by the TS (it means "no instance" in
Object links) and is therefore rejected in paths. Paths are immutable, hashable and ordered the
way a tree is walked: a parent sorts before its children, siblings by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from spmp.lwm2m.errors import PathError

MAX_ID = 65534
"""Largest identifier usable in a path; 65535 is reserved (TS Core §7.2, Objlnk 'no instance')."""


class PathLevel(IntEnum):
    """How deep a path points into the data model."""

    ROOT = 0
    OBJECT = 1
    OBJECT_INSTANCE = 2
    RESOURCE = 3
    RESOURCE_INSTANCE = 4


@dataclass(frozen=True, slots=True, order=True)
class Path:
    """An LwM2M path as a tuple of up to four identifiers.

    >>> Path.parse("/3/0/1")
    Path('/3/0/1')
    >>> Path.parse("/3/0/1").resource_id
    1
    """

    ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ids) > 4:
            raise PathError(f"a path has at most 4 levels, got {len(self.ids)}: {self.ids!r}")
        for position, value in enumerate(self.ids):
            if type(value) is not int:
                raise PathError(f"path level {position + 1} must be an integer, got {value!r}")
            if not 0 <= value <= MAX_ID:
                raise PathError(f"path level {position + 1} is {value}, outside 0..{MAX_ID}")

    @classmethod
    def _trusted(cls, ids: tuple[int, ...]) -> Path:
        """A path from identifiers the caller has already range-checked (codecs, after their own checks).

        Skips ``__post_init__``; passing anything but a tuple of at most 4 ints in 0..MAX_ID breaks the
        invariants every other method relies on.
        """
        path = _new_path(cls)
        _set_ids(path, "ids", ids)
        return path

    @classmethod
    def of(cls, *ids: int) -> Path:
        """Build a path from identifiers: ``Path.of(3, 0, 1)``."""
        return cls(tuple(ids))

    @classmethod
    def parse(cls, text: str) -> Path:
        """Parse ``"/3/0/1"`` (a leading slash is required; ``"/"`` is the root)."""
        if not isinstance(text, str):
            raise PathError(f"a path must be a string, got {type(text).__name__}")
        if not text.startswith("/"):
            raise PathError(f"invalid path {text!r}: it must start with '/'")
        body = text[1:]
        if body.endswith("/"):
            body = body[:-1]
        if body == "":
            return ROOT
        parts = body.split("/")
        if len(parts) > 4:
            raise PathError(f"invalid path {text!r}: at most 4 levels (/o/i/r/ri)")
        ids: list[int] = []
        for position, part in enumerate(parts):
            if not part.isascii() or not part.isdigit():
                raise PathError(f"invalid path {text!r}: level {position + 1} {part!r} is not a number")
            if len(part) > 1 and part[0] == "0":
                raise PathError(f"invalid path {text!r}: level {position + 1} {part!r} has a leading zero")
            if len(part) > 5:
                raise PathError(f"invalid path {text!r}: level {position + 1} is larger than {MAX_ID}")
            ids.append(int(part))
        if max(ids) <= MAX_ID:  # every other check is done above
            return cls._trusted(tuple(ids))
        return cls(tuple(ids))  # raises, naming the level out of range

    @property
    def level(self) -> PathLevel:
        return PathLevel(len(self.ids))

    def _id(self, index: int) -> int | None:
        return self.ids[index] if len(self.ids) > index else None

    @property
    def object_id(self) -> int | None:
        return self._id(0)

    @property
    def instance_id(self) -> int | None:
        return self._id(1)

    @property
    def resource_id(self) -> int | None:
        return self._id(2)

    @property
    def resource_instance_id(self) -> int | None:
        return self._id(3)

    @property
    def is_root(self) -> bool:
        return not self.ids

    @property
    def is_object(self) -> bool:
        return len(self.ids) == 1

    @property
    def is_object_instance(self) -> bool:
        return len(self.ids) == 2

    @property
    def is_resource(self) -> bool:
        return len(self.ids) == 3

    @property
    def is_resource_instance(self) -> bool:
        return len(self.ids) == 4

    def child(self, child_id: int) -> Path:
        """The path one level down: ``Path.of(3, 0).child(1) == Path.of(3, 0, 1)``."""
        return Path((*self.ids, child_id))

    @property
    def parent(self) -> Path:
        if not self.ids:
            raise PathError("the root path has no parent")
        return Path._trusted(self.ids[:-1])  # a prefix of valid ids

    def starts_with(self, prefix: Path) -> bool:
        """True when this path equals ``prefix`` or lies below it."""
        return self.ids[: len(prefix.ids)] == prefix.ids

    def __str__(self) -> str:
        return "/" + "/".join(str(i) for i in self.ids)

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"


_new_path = object.__new__
_set_ids = object.__setattr__

ROOT = Path(())
