"""CoRE Link Format (RFC 6690) and the three LwM2M payloads written in it.

:func:`parse_links` / :func:`format_links` handle the generic format::

    Link            = link-value-list
    link-value-list = [ link-value *[ "," link-value ]]
    link-value      = "<" URI-Reference ">" *( ";" link-param )
    link-extension  = ( parmname [ "=" ( ptoken / quoted-string ) ] ) / ( ext-name-star "=" ext-value )

A :class:`Link` keeps its parameters in order as ``(name, value)`` pairs: a value-less parameter
(``;obs``) has the value None, a quoted value is kept unquoted and unescaped, and a repeated name
(``rt=a;rt=b``) stays repeated. Space-separated lists inside quotes (``ct="60 110"``) are one value;
:meth:`Link.tokens` splits them.

Leniency, on purpose: whitespace is accepted around ``,`` and ``;`` and at both ends, because the
TS's own examples write ``</1/0>, </3/0>``. Everything else follows the ABNF; errors are
:class:`CodecError` with ``where="offset N"`` (a byte offset for bytes input).

On top of it, the LwM2M uses (TS Core 1.1/1.2, Transport §6.4 for the alternate path):

* Register / Update payload: :class:`RegistrationObjects` (:func:`parse_registration`,
  :func:`format_registration`);
* Discover responses: :class:`DiscoverLink` (:func:`parse_discover`, :func:`format_discover`);
* Bootstrap-Discover responses: :class:`BootstrapDiscover` (:func:`parse_bootstrap_discover`,
  :func:`format_bootstrap_discover`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from spmp.lwm2m.attributes import NOTIFICATION_ATTRIBUTES, NotificationAttributes
from spmp.lwm2m.errors import CodecError, InvalidAttributeError, PathError
from spmp.lwm2m.path import MAX_ID, Path, PathLevel

FORMAT = "link-format"

Attribute = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """Bounds the parser enforces so that a hostile payload cannot exhaust memory or time."""

    max_payload_bytes: int = 256 * 1024
    max_links: int = 8192
    max_attributes: int = 64
    """Parameters on one link."""


LINK_LIMITS = LinkLimits()

_ALPHA_DIGIT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PARMNAME_CHARS = frozenset(_ALPHA_DIGIT + "!#$&+-.^_`|~")  # RFC 5987 attr-char
_PTOKEN_CHARS = frozenset(_ALPHA_DIGIT + "!#$%&'()*+-./:<=>?@[]^_`{|}~")  # RFC 6690 ptokenchar
_URI_CHARS = frozenset(_ALPHA_DIGIT + "-._~:/?#[]@!$&'()*+,;=%")  # RFC 3986 unreserved, reserved, '%'
_HEX = frozenset("0123456789abcdefABCDEF")
_WHITESPACE = " \t\r\n"
_ALWAYS_QUOTED = frozenset({"rt", "if", "anchor", "title", "uri"})
"""Written quoted even when a ptoken would do: the ABNF (title, anchor) or TS usage (rt, uri) says so."""


def _error(message: str, where: str | None = None) -> CodecError:
    return CodecError(message, content_format=FORMAT, where=where)


@dataclass(frozen=True, slots=True, init=False)
class Link:
    """One link-value: ``Link("/3/0", {"pmin": "10"})`` or ``Link("/", [("rt", "oma.lwm2m")])``.

    Values are text, an int (written in decimal) or None (a parameter without value).
    """

    target: str
    attributes: tuple[Attribute, ...]

    def __init__(
        self,
        target: str,
        attributes: Mapping[str, str | int | None] | Iterable[tuple[str, str | int | None]] = (),
    ) -> None:
        pairs = attributes.items() if isinstance(attributes, Mapping) else attributes
        normalized = tuple((name, _attribute_text(name, value)) for name, value in pairs)
        if not isinstance(target, str) or any(c not in _URI_CHARS for c in target):
            raise _error(f"link target {target!r} is not a URI-Reference")
        _check_percent(target, 0)
        for name, value in normalized:
            if not _valid_name(name):
                raise _error(f"parameter name {name!r} is not an RFC 5987 parmname")
            if value is not None and any(_is_control(c) for c in value):
                raise _error(f"parameter {name} has a control character")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "attributes", normalized)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.attributes)

    def get(self, name: str) -> str | None:
        """The first value of ``name``; None when absent or value-less (tell them apart with :meth:`has`)."""
        return next((v for n, v in self.attributes if n == name), None)

    def values(self, name: str) -> tuple[str | None, ...]:
        return tuple(v for n, v in self.attributes if n == name)

    def tokens(self, name: str) -> tuple[str, ...]:
        """Every value of ``name`` split on spaces: ``ct="60 110";ct=112`` gives ``("60", "110", "112")``."""
        return tuple(token for v in self.values(name) if v is not None for token in v.split())

    def __str__(self) -> str:
        parts = [f"<{self.target}>"]
        for name, value in self.attributes:
            if value is None:
                parts.append(name)
            elif name in _ALWAYS_QUOTED or not value or any(c not in _PTOKEN_CHARS for c in value):
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                parts.append(f'{name}="{escaped}"')
            else:
                parts.append(f"{name}={value}")
        return ";".join(parts)


def _attribute_text(name: str, value: str | int | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _error(f"parameter {name} value must be text, an int or None, got {type(value).__name__}")


def _is_control(char: str) -> bool:
    """C0 controls but HTAB, and DEL: not TEXT in RFC 2616, so never in a value."""
    return (ord(char) < 0x20 and char != "\t") or char == "\x7f"


def _valid_name(name: object) -> bool:
    if not isinstance(name, str):
        return False
    base = name[:-1] if name.endswith("*") else name  # ext-name-star (RFC 5987 title*=...)
    return bool(base) and all(c in _PARMNAME_CHARS for c in base)


def _check_percent(text: str, offset: int) -> None:
    for index, char in enumerate(text):
        if char == "%" and not (len(text) > index + 2 and text[index + 1] in _HEX and text[index + 2] in _HEX):
            raise _error("'%' must be followed by two hex digits", f"offset {offset + index}")


def format_links(links: Iterable[Link]) -> str:
    """The link-format text of ``links`` (no whitespace, parameters in their order)."""
    return ",".join(str(link) for link in links)


def parse_links(payload: bytes | bytearray | str, limits: LinkLimits = LINK_LIMITS) -> list[Link]:
    """Parse an application/link-format payload. An empty payload is an empty list."""
    if isinstance(payload, bytes | bytearray):
        if len(payload) > limits.max_payload_bytes:
            raise _error(f"payload of {len(payload)} bytes exceeds the {limits.max_payload_bytes}-byte limit")
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _error("payload is not UTF-8", f"offset {exc.start}") from None
        return _Parser(text, limits, byte_offsets=True).links()
    if not isinstance(payload, str):
        raise _error(f"payload must be bytes or str, got {type(payload).__name__}")
    if len(payload) > limits.max_payload_bytes:
        raise _error(f"payload of {len(payload)} characters exceeds the {limits.max_payload_bytes}-byte limit")
    return _Parser(payload, limits, byte_offsets=False).links()


class _Parser:
    """A single-pass scanner over the decoded text; ``pos`` always points at the next character."""

    def __init__(self, text: str, limits: LinkLimits, *, byte_offsets: bool) -> None:
        self.text = text
        self.limits = limits
        self.byte_offsets = byte_offsets
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> CodecError:
        at = self.pos if pos is None else pos
        offset = len(self.text[:at].encode("utf-8", "surrogatepass")) if self.byte_offsets else at
        return _error(message, f"offset {offset}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def links(self) -> list[Link]:
        out: list[Link] = []
        self.skip_whitespace()
        if not self.peek():
            return out
        while True:
            out.append(self.link())
            if len(out) > self.limits.max_links:
                raise self.fail(f"more than {self.limits.max_links} links")
            self.skip_whitespace()
            char = self.peek()
            if not char:
                return out
            if char != ",":
                raise self.fail(f"expected ',' between links, got {char!r}")
            self.pos += 1
            self.skip_whitespace()

    def link(self) -> Link:
        if self.peek() != "<":
            raise self.fail(f"expected '<' to open a link, got {self.peek()!r}" if self.peek() else "expected a link")
        start = self.pos + 1
        end = self.text.find(">", start)
        if end < 0:
            raise self.fail("link target has no closing '>'")
        for index in range(start, end):
            char = self.text[index]
            if char not in _URI_CHARS:
                raise self.fail(f"character {char!r} is not allowed in a link target", index)
            if char == "%" and not (index + 2 < end and {self.text[index + 1], self.text[index + 2]} <= _HEX):
                raise self.fail("'%' in a link target must be followed by two hex digits", index)
        target = self.text[start:end]
        self.pos = end + 1
        attributes: list[Attribute] = []
        while True:
            self.skip_whitespace()
            if self.peek() != ";":
                break
            self.pos += 1
            self.skip_whitespace()
            attributes.append(self.parameter())
            if len(attributes) > self.limits.max_attributes:
                raise self.fail(f"more than {self.limits.max_attributes} parameters on one link")
        return Link(target, attributes)

    def parameter(self) -> Attribute:
        start = self.pos
        while self.peek() and self.peek() in _PARMNAME_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a parameter name")
        if self.peek() == "*":  # ext-name-star: RFC 5987 extended value follows
            self.pos += 1
        name = self.text[start : self.pos]
        if self.peek() != "=":
            if name.endswith("*"):
                raise self.fail(f"parameter {name} needs a value")
            return name, None
        self.pos += 1
        if self.peek() == '"':
            return name, self.quoted_string()
        value_start = self.pos
        while self.peek() and self.peek() in _PTOKEN_CHARS:
            self.pos += 1
        if self.pos == value_start:
            raise self.fail(f"parameter {name} has an empty value")
        return name, self.text[value_start : self.pos]

    def quoted_string(self) -> str:
        """RFC 2616 quoted-string: ``"`` *( qdtext / ``\\`` CHAR ) ``"``; returns the unescaped text."""
        opening = self.pos
        self.pos += 1
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail("quoted string is not closed", opening)
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\":
                self.pos += 1
                char = self.peek()
                if not char:
                    raise self.fail("quoted string ends in a lone '\\'", opening)
            if _is_control(char):
                raise self.fail(f"control character {char!r} in a quoted string")
            chars.append(char)
            self.pos += 1


# --- LwM2M paths in links ------------------------------------------------------------------------


def _normalize_alternate_path(text: str) -> str:
    """``"/lwm2m/"`` → ``"/lwm2m"``; the alternate path MUST NOT have numerical segments (Transport)."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise _error(f"alternate path {text!r} must start with '/'")
    stripped = text.rstrip("/")
    for segment in stripped[1:].split("/") if stripped else ():
        if not segment or segment.isdigit() or any(c not in _URI_CHARS or c in "?#%" for c in segment):
            raise _error(f"alternate path {text!r} must have non-empty, non-numerical segments")
    return stripped or "/"


def _lwm2m_path(target: str, alternate_path: str, where: str) -> Path:
    """The LwM2M path of a link target, with the alternate path prefix removed when present."""
    body = target
    if alternate_path != "/" and (target == alternate_path or target.startswith(alternate_path + "/")):
        body = target[len(alternate_path) :] or "/"
    try:
        return Path.parse(body)
    except PathError as exc:
        raise _error(f"link target {target!r} is not an LwM2M path: {exc}", where) from None


def _link_target(path: Path, alternate_path: str) -> str:
    if alternate_path == "/":
        return str(path)
    return alternate_path if path.is_root else alternate_path + str(path)


_VERSION_RE = re.compile(r"[0-9]{1,5}\.[0-9]{1,5}")


def _version(link: Link, name: str, where: str) -> str | None:
    if not link.has(name):
        return None
    value = link.get(name)
    if value is None or not _VERSION_RE.fullmatch(value):
        raise _error(f"{name}={value!r} is not MAJOR.MINOR", where)
    return value


def _cardinal(link: Link, name: str, where: str, low: int, high: int) -> int | None:
    if not link.has(name):
        return None
    value = link.get(name)
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 5 or not low <= int(value) <= high:
        raise _error(f"{name}={value!r} is not an integer in {low}..{high}", where)
    return int(value)


# --- Register / Update -----------------------------------------------------------------------------

_EXCLUDED_OBJECTS = frozenset({0, 21})
"""Security and OSCORE: the TS says they MUST NOT be in the list; received ones are ignored."""


@dataclass(frozen=True, slots=True)
class RegistrationObjects:
    """The "Objects and Object Instances" of a Register or Update (Core §6.2.1, Transport §6.4.1).

    ``objects`` pairs each supported object id with the version the client announced (``ver=``),
    or None when it announced none (the TS default: the version of its enabler release, or 1.0).
    """

    objects: tuple[tuple[int, str | None], ...] = ()
    instances: tuple[Path, ...] = ()
    alternate_path: str = "/"
    content_formats: tuple[int, ...] = ()
    """``ct=`` on the root link: formats the client supports beyond the mandatory ones."""

    @classmethod
    def create(
        cls,
        objects: Mapping[int, str | None] | Iterable[int] = (),
        instances: Iterable[Path | str] = (),
        *,
        alternate_path: str = "/",
        content_formats: Iterable[int] = (),
    ) -> RegistrationObjects:
        """Build one, adding the objects that ``instances`` imply: ``create({3: "1.1"}, ["/3/0", "/1/0"])``."""
        versions: dict[int, str | None] = dict(objects) if isinstance(objects, Mapping) else dict.fromkeys(objects)
        paths = sorted({p if isinstance(p, Path) else Path.parse(p) for p in instances})
        for path in paths:
            if path.object_id is not None:
                versions.setdefault(path.object_id, None)
        return cls(
            objects=tuple(sorted(versions.items())),
            instances=tuple(paths),
            alternate_path=_normalize_alternate_path(alternate_path),
            content_formats=tuple(content_formats),
        )

    def __post_init__(self) -> None:
        ids = [object_id for object_id, _ in self.objects]
        if len(set(ids)) != len(ids):
            raise _error("an object appears twice")
        for object_id, version in self.objects:
            if object_id in _EXCLUDED_OBJECTS:
                raise _error(f"object {object_id} must not be registered (Core §6.2.1)")
            if not 0 <= object_id <= MAX_ID:
                raise _error(f"object id {object_id} is outside 0..{MAX_ID}")
            if version is not None and not _VERSION_RE.fullmatch(version):
                raise _error(f"object {object_id} version {version!r} is not MAJOR.MINOR")
        for path in self.instances:
            if path.level is not PathLevel.OBJECT_INSTANCE or path.object_id not in ids:
                raise _error(f"{path} is not an instance of a listed object")
        for number in self.content_formats:
            if not 0 <= number <= 65535:
                raise _error(f"content format {number} is outside 0..65535")

    @property
    def versions(self) -> dict[int, str | None]:
        return dict(self.objects)

    def instances_of(self, object_id: int) -> list[int]:
        return [p.ids[1] for p in self.instances if p.object_id == object_id]

    def to_links(self) -> list[Link]:
        """Root link (only when needed), then per object ``</o>;ver=`` (when versioned) and its instances.

        ``rt="oma.lwm2m"`` is written only with an alternate path (Transport); a plain root
        link just carries ``ct=`` (Core: ``</>;ct=110``, several as ``ct="60 110 112"``).
        """
        links: list[Link] = []
        root: list[Attribute] = []
        if self.alternate_path != "/":
            root.append(("rt", "oma.lwm2m"))
        if self.content_formats:
            root.append(("ct", " ".join(str(n) for n in self.content_formats)))
        if root:
            links.append(Link(self.alternate_path, root))
        for object_id, version in self.objects:
            instances = self.instances_of(object_id)
            if version is not None or not instances:
                ver: list[Attribute] = [("ver", version)] if version is not None else []
                links.append(Link(_link_target(Path.of(object_id), self.alternate_path), ver))
            links.extend(Link(_link_target(Path.of(object_id, i), self.alternate_path)) for i in instances)
        return links


def format_registration(registration: RegistrationObjects) -> str:
    return format_links(registration.to_links())


def parse_registration(payload: bytes | bytearray | str, limits: LinkLimits = LINK_LIMITS) -> RegistrationObjects:
    """Parse a Register/Update payload, e.g. ``</>;rt="oma.lwm2m";ct=11543,</1/0>,</3>;ver=1.1,</3/0>``.

    The root link is the one with ``rt="oma.lwm2m"`` (its target is the alternate path) or the
    one targeting ``/``; its ``ct`` values are the content formats. Every other link must be an
    object or object instance, with or without the alternate-path prefix. A ``ver`` on an instance
    link versions its object (Core §7.2.2 example ``</44/0>;ver=2.2``). Links to objects 0 and 21
    are ignored, unknown parameters too (Core: "MUST NOT be interpreted as an error").
    """
    links = parse_links(payload, limits)
    root_indexes = [i for i, link in enumerate(links) if "oma.lwm2m" in link.tokens("rt")]
    if len(root_indexes) > 1:
        raise _error('more than one rt="oma.lwm2m" link', f"link {root_indexes[1]}")
    alternate_path = _normalize_alternate_path(links[root_indexes[0]].target) if root_indexes else "/"
    root_indexes += [i for i, link in enumerate(links) if link.target == "/" and i not in root_indexes]
    content_formats: list[int] = []
    for index in root_indexes:
        for token in links[index].tokens("ct"):
            if not token.isascii() or not token.isdigit() or len(token) > 5 or int(token) > 65535:
                raise _error(f"ct value {token[:20]!r} is not a content format number", f"link {index}")
            if int(token) not in content_formats:
                content_formats.append(int(token))
    versions: dict[int, str | None] = {}
    instances: set[Path] = set()
    for index, link in enumerate(links):
        if index in root_indexes:
            continue
        where = f"link {index}"
        path = _lwm2m_path(link.target, alternate_path, where)
        if path.level not in (PathLevel.OBJECT, PathLevel.OBJECT_INSTANCE):
            raise _error(f"{link.target!r} is neither an object nor an object instance", where)
        object_id = path.ids[0]
        if object_id in _EXCLUDED_OBJECTS:
            continue
        version = _version(link, "ver", where)
        known = versions.setdefault(object_id, version)
        if version is not None and known not in (None, version):
            raise _error(f"object {object_id} announced as version {known} and {version}", where)
        if version is not None:
            versions[object_id] = version
        if path.is_object_instance:
            instances.add(path)
    return RegistrationObjects.create(
        versions, instances, alternate_path=alternate_path, content_formats=content_formats
    )


# --- Discover ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoverLink:
    """One link of a Discover response: a path with its ``ver``, ``dim`` and notification attributes."""

    path: Path
    attributes: NotificationAttributes = field(default_factory=NotificationAttributes)
    dim: int | None = None
    """Number of instances of a multiple resource (0..255)."""
    version: str | None = None
    """``ver=`` of an object (Core §7.2.2)."""
    extra: tuple[Attribute, ...] = field(default=())
    """Parameters the TS does not define for Discover, kept as received."""

    def to_link(self, alternate_path: str = "/") -> Link:
        """Parameters in the TS order: ver, dim, then pmin, pmax, gt, lt, st, epmin, epmax, edge, con, hqmax."""
        params: list[Attribute] = []
        if self.version is not None:
            params.append(("ver", self.version))
        if self.dim is not None:
            params.append(("dim", str(self.dim)))
        params.extend(self.attributes.to_pairs())
        params.extend(self.extra)
        return Link(_link_target(self.path, alternate_path), params)

    @classmethod
    def from_link(cls, link: Link, alternate_path: str = "/", where: str | None = None) -> DiscoverLink:
        where = where or "link"
        path = _lwm2m_path(link.target, alternate_path, where)
        if path.is_root:
            raise _error("a Discover response has no root link", where)
        notification: list[tuple[str, str]] = []
        extra: list[Attribute] = []
        for name, value in link.attributes:
            if name in NOTIFICATION_ATTRIBUTES:
                if value is None:
                    raise _error(f"{name} has no value", where)
                notification.append((name, value))
            elif name not in ("ver", "dim"):
                extra.append((name, value))
        try:
            attributes = NotificationAttributes.from_pairs(notification)
        except InvalidAttributeError as exc:
            raise _error(exc.reason, where) from None
        for name in ("ver", "dim"):
            if len(link.values(name)) > 1:
                raise _error(f"{name} given twice", where)
        return cls(
            path=path,
            attributes=attributes,
            dim=_cardinal(link, "dim", where, 0, 255),
            version=_version(link, "ver", where),
            extra=tuple(extra),
        )


def format_discover(entries: Iterable[DiscoverLink], *, alternate_path: str = "/") -> str:
    return format_links(entry.to_link(alternate_path) for entry in entries)


def parse_discover(
    payload: bytes | bytearray | str, *, alternate_path: str = "/", limits: LinkLimits = LINK_LIMITS
) -> list[DiscoverLink]:
    """Parse a Discover response such as ``</3/0>;pmin=10,</3/0/1>,</3/0/7>;dim=2;gt=50;lt=42.2``."""
    alternate_path = _normalize_alternate_path(alternate_path)
    return [
        DiscoverLink.from_link(link, alternate_path, f"link {i}") for i, link in enumerate(parse_links(payload, limits))
    ]


# --- Bootstrap-Discover --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapDiscoverLink:
    """An object or object instance in a Bootstrap-Discover response (Core §6.1.7.1 / 1.2 §6.1.8.1)."""

    path: Path
    version: str | None = None
    ssid: int | None = None
    """Short Server ID on Security, Server and OSCORE instances (none for the Bootstrap-Server account)."""
    uri: str | None = None
    """LwM2M Server URI on Security instances (1.1+)."""
    extra: tuple[Attribute, ...] = ()

    def to_link(self) -> Link:
        params: list[Attribute] = []
        if self.version is not None:
            params.append(("ver", self.version))
        if self.ssid is not None:
            params.append(("ssid", str(self.ssid)))
        if self.uri is not None:
            params.append(("uri", self.uri))
        params.extend(self.extra)
        return Link(str(self.path), params)


@dataclass(frozen=True, slots=True)
class BootstrapDiscover:
    """A whole Bootstrap-Discover response: ``</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://...",</0/1>``."""

    lwm2m_version: str | None = None
    links: tuple[BootstrapDiscoverLink, ...] = ()

    def to_links(self) -> list[Link]:
        root = [Link("/", [("lwm2m", self.lwm2m_version)])] if self.lwm2m_version is not None else []
        return root + [link.to_link() for link in self.links]


def format_bootstrap_discover(response: BootstrapDiscover) -> str:
    return format_links(response.to_links())


def parse_bootstrap_discover(payload: bytes | bytearray | str, limits: LinkLimits = LINK_LIMITS) -> BootstrapDiscover:
    """Parse a Bootstrap-Discover response.

    The enabler version sits on the ``</>`` link. The TS notes that older examples wrote it with
    no link at all (``lwm2m=1.0,</0/0>;ssid=101``) and that servers MAY accept that; we do.
    """
    if isinstance(payload, bytes | bytearray) and payload.lstrip(_WHITESPACE.encode()).startswith(b"lwm2m="):
        payload = b"</>;" + payload.lstrip(_WHITESPACE.encode())
    elif isinstance(payload, str) and payload.lstrip(_WHITESPACE).startswith("lwm2m="):
        payload = "</>;" + payload.lstrip(_WHITESPACE)
    version: str | None = None
    entries: list[BootstrapDiscoverLink] = []
    for index, link in enumerate(parse_links(payload, limits)):
        where = f"link {index}"
        path = _lwm2m_path(link.target, "/", where)
        if path.is_root:
            if version is not None or entries:
                raise _error("the root link must come first, once", where)
            version = _version(link, "lwm2m", where)
            continue
        if path.level not in (PathLevel.OBJECT, PathLevel.OBJECT_INSTANCE):
            raise _error(f"{link.target!r} is neither an object nor an object instance", where)
        for name in ("ver", "ssid", "uri"):
            if len(link.values(name)) > 1:
                raise _error(f"{name} given twice", where)
        if link.has("uri") and link.get("uri") is None:
            raise _error("uri has no value", where)
        entries.append(
            BootstrapDiscoverLink(
                path=path,
                version=_version(link, "ver", where),
                ssid=_cardinal(link, "ssid", where, 1, 65534),
                uri=link.get("uri"),
                extra=tuple((n, v) for n, v in link.attributes if n not in ("ver", "ssid", "uri")),
            )
        )
    return BootstrapDiscover(version, tuple(entries))
