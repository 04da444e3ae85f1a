"""The exception tree of the pure LwM2M core.

Every error raised by ``spmp.lwm2m`` derives from :class:`Lwm2mError`, so callers can catch one type.
Each carries a human message plus *where* the problem is (a path, a byte offset, a file and line),
so that a server can answer with a precise CoAP error and an operator can read what to fix.

    Lwm2mError
    ├── PathError            a malformed or out-of-range LwM2M path
    ├── ModelError           an invalid object/resource model (DDF file errors name file and line)
    ├── ValueError_          a value that does not fit its resource model (see InvalidValueError)
    ├── InvalidAttributeError  an LwM2M attribute (pmin, gt, ...) that breaks the TS rules
    └── CodecError           malformed or unsupported payload bytes for a content format
        └── UnsupportedContentFormatError
"""

from __future__ import annotations


class Lwm2mError(Exception):
    """Base of every error raised by the LwM2M core."""


class PathError(Lwm2mError, ValueError):
    """A string or tuple is not a valid LwM2M path."""


class ModelError(Lwm2mError, ValueError):
    """An object or resource model is invalid (for example a DDF file that breaks the schema).

    ``source`` names the file (or other origin) and ``line`` the line number when known.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        self.reason = message
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")


class InvalidValueError(Lwm2mError, ValueError):
    """A value does not match the type, range or operations of its resource model."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.reason = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class InvalidAttributeError(Lwm2mError, ValueError):
    """An attribute (Write-Attributes query, Observe attribute, attribute set) breaks the TS rules.

    ``attribute`` names the attribute at fault when there is one (``"gt"``), ``path`` the target.
    """

    def __init__(self, message: str, *, attribute: str | None = None, path: str | None = None) -> None:
        self.reason = message
        self.attribute = attribute
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class CodecError(Lwm2mError, ValueError):
    """A payload cannot be decoded (or a node cannot be encoded) in a content format.

    ``where`` locates the problem: a byte offset (``"offset 12"``), a record index
    (``"record 3"``) or an LwM2M path. Decoders raise only this family for bad input.
    """

    def __init__(self, message: str, *, content_format: str | None = None, where: str | None = None) -> None:
        self.reason = message
        self.content_format = content_format
        self.where = where
        parts = [p for p in (content_format, where) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        super().__init__(f"{prefix}{message}")


class UnsupportedContentFormatError(CodecError):
    """The content format is unknown, or cannot carry the requested node or path."""
