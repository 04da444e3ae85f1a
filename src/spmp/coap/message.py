"""CoAP messages (RFC 7252, with the Observe and Block options of RFC 7641/7959): model and codec. No I/O.

A :class:`Message` is the wire view (type, code, message id, token, options, payload); :class:`Request`
and :class:`Response` are the application views the endpoint hands to handlers and callers. All three
keep options as one ordered list of ``(number, raw bytes)`` and read typed values from it on demand, so
decoding never builds per-option objects nobody asks for.

The codec is written for the server's hot path (≈10k notifications/s): one ``struct`` unpack for the
header, byte indexing and slices for options, and a ``b"".join`` for encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple, overload

from spmp.coap.errors import CoapMessageError

if TYPE_CHECKING:
    from spmp.coap.transport import Peer

__all__ = [
    "Block",
    "Code",
    "Message",
    "Option",
    "Request",
    "Response",
    "Type",
    "code_str",
    "decode",
    "encode",
    "uint_bytes",
]


class Type(IntEnum):
    """Message type (RFC 7252 §3)."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class Code(IntEnum):
    """Method and response codes; the value is the wire byte ``class << 5 | detail``."""

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    PATCH = 6
    IPATCH = 7

    CREATED = 65
    DELETED = 66
    VALID = 67
    CHANGED = 68
    CONTENT = 69
    CONTINUE = 95

    BAD_REQUEST = 128
    UNAUTHORIZED = 129
    BAD_OPTION = 130
    FORBIDDEN = 131
    NOT_FOUND = 132
    METHOD_NOT_ALLOWED = 133
    NOT_ACCEPTABLE = 134
    REQUEST_ENTITY_INCOMPLETE = 136
    CONFLICT = 137
    PRECONDITION_FAILED = 140
    REQUEST_ENTITY_TOO_LARGE = 141
    UNSUPPORTED_CONTENT_FORMAT = 143
    UNPROCESSABLE_ENTITY = 150
    TOO_MANY_REQUESTS = 157

    INTERNAL_SERVER_ERROR = 160
    NOT_IMPLEMENTED = 161
    BAD_GATEWAY = 162
    SERVICE_UNAVAILABLE = 163
    GATEWAY_TIMEOUT = 164
    PROXYING_NOT_SUPPORTED = 165

    @property
    def is_request(self) -> bool:
        return 1 <= self < 32

    @property
    def is_response(self) -> bool:
        return self >= 64

    @property
    def is_success(self) -> bool:
        return 64 <= self < 96

    def __str__(self) -> str:
        return f"{code_str(self)} {self.name}"


def code_str(code: int) -> str:
    """``"2.05"`` for 69: the dotted form of any code byte, known to :class:`Code` or not."""
    return f"{code >> 5}.{code & 31:02d}"


class Option(IntEnum):
    """Option numbers this stack knows (RFC 7252 §5.10, RFC 7641, RFC 7959)."""

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60


KNOWN_OPTIONS = frozenset(int(o) for o in Option)
"""Option numbers the endpoint understands; an unknown *critical* (odd) option in a request gets 4.02."""

# Wire-level constants for the hot path (IntEnum members compare more slowly than plain ints).
_CON, _NON, _ACK, _RST = 0, 1, 2, 3
_HEADER = struct.Struct("!BBH")
_BYTE = [bytes((i,)) for i in range(256)]
# Code byte -> Code member, or the plain int for codes this stack does not name (still valid on the wire).
_CODE_OF: list[int] = list(range(256))
for _c in Code:
    _CODE_OF[_c] = _c


def uint_bytes(value: int) -> bytes:
    """Minimal-length big-endian encoding of an unsigned option value (0 is the empty string)."""
    if value < 0:
        raise ValueError(f"negative uint option value {value}")
    return value.to_bytes((value.bit_length() + 7) >> 3, "big")


class Block(NamedTuple):
    """A Block1/Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        return self.num << (self.szx + 4)

    @property
    def value(self) -> int:
        return (self.num << 4) | (8 if self.more else 0) | self.szx

    @classmethod
    def from_value(cls, value: int) -> Block:
        szx = value & 7
        if szx == 7:
            # SZX 7 is reserved (BERT, only for CoAP over TCP, RFC 8323).
            raise CoapMessageError("reserved block size exponent 7")
        if value >> 24:
            raise CoapMessageError("block option longer than 3 bytes")
        return cls(value >> 4, bool(value & 8), szx)

    @classmethod
    def for_size(cls, num: int, more: bool, size: int) -> Block:
        """Build from a byte size (16, 32, … 1024)."""
        return cls(num, more, size_to_szx(size))

    def encode(self) -> bytes:
        if not 0 <= self.num < 1 << 20 or not 0 <= self.szx < 7:
            raise ValueError(f"block value out of range: {self}")
        return uint_bytes(self.value)


def size_to_szx(size: int) -> int:
    """Block size (a power of two from 16 to 1024) to its SZX exponent."""
    szx = size.bit_length() - 5
    if size < 16 or size > 1024 or size & (size - 1):
        raise ValueError(f"block size must be a power of two in 16..1024, not {size}")
    return szx


# ---------------------------------------------------------------------------------------------------
# Typed option accessors, shared by Message, Request and Response.


class _UintOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _UintOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> int | None: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> int | _UintOpt | None:
        if obj is None:
            return self
        number = self.number
        for n, v in obj.options:
            if n == number:
                return int.from_bytes(v, "big")
        return None

    def __set__(self, obj: _HasOptions, value: int | None) -> None:
        obj.set_option(self.number, None if value is None else uint_bytes(value))


class _StrListOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _StrListOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> tuple[str, ...]: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> tuple[str, ...] | _StrListOpt:
        if obj is None:
            return self
        number = self.number
        try:
            return tuple([v.decode() for n, v in obj.options if n == number])
        except UnicodeDecodeError:
            raise CoapMessageError(f"option {number} is not valid UTF-8") from None

    def __set__(self, obj: _HasOptions, value: Iterable[str]) -> None:
        obj.set_options(self.number, [s.encode() for s in value])


class _StrOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _StrOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> str | None: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> str | _StrOpt | None:
        if obj is None:
            return self
        raw = obj.get_option(self.number)
        if raw is None:
            return None
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise CoapMessageError(f"option {self.number} is not valid UTF-8") from None

    def __set__(self, obj: _HasOptions, value: str | None) -> None:
        obj.set_option(self.number, None if value is None else value.encode())


class _BytesListOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _BytesListOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> tuple[bytes, ...]: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> tuple[bytes, ...] | _BytesListOpt:
        if obj is None:
            return self
        number = self.number
        return tuple([v for n, v in obj.options if n == number])

    def __set__(self, obj: _HasOptions, value: Iterable[bytes]) -> None:
        obj.set_options(self.number, list(value))


class _BytesOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _BytesOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> bytes | None: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> bytes | _BytesOpt | None:
        if obj is None:
            return self
        return obj.get_option(self.number)

    def __set__(self, obj: _HasOptions, value: bytes | None) -> None:
        obj.set_option(self.number, value)


class _FlagOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _FlagOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> bool: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> bool | _FlagOpt:
        if obj is None:
            return self
        return obj.get_option(self.number) is not None

    def __set__(self, obj: _HasOptions, value: bool) -> None:
        obj.set_option(self.number, b"" if value else None)


class _BlockOpt:
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    @overload
    def __get__(self, obj: None, owner: type) -> _BlockOpt: ...
    @overload
    def __get__(self, obj: _HasOptions, owner: type) -> Block | None: ...
    def __get__(self, obj: _HasOptions | None, owner: type) -> Block | _BlockOpt | None:
        if obj is None:
            return self
        raw = obj.get_option(self.number)
        if raw is None:
            return None
        return Block.from_value(int.from_bytes(raw, "big"))

    def __set__(self, obj: _HasOptions, value: Block | None) -> None:
        obj.set_option(self.number, None if value is None else value.encode())


class _HasOptions:
    """Mixin: an ordered ``options`` list plus typed accessors for every option this stack knows.

    The list stays sorted by option number (stable for repeated options), which is what the wire needs;
    the setters below keep it so.
    """

    __slots__ = ()
    options: list[tuple[int, bytes]]

    if_match = _BytesListOpt(Option.IF_MATCH)
    uri_host = _StrOpt(Option.URI_HOST)
    etag = _BytesOpt(Option.ETAG)
    if_none_match = _FlagOpt(Option.IF_NONE_MATCH)
    observe = _UintOpt(Option.OBSERVE)
    uri_port = _UintOpt(Option.URI_PORT)
    location_path = _StrListOpt(Option.LOCATION_PATH)
    uri_path = _StrListOpt(Option.URI_PATH)
    content_format = _UintOpt(Option.CONTENT_FORMAT)
    max_age = _UintOpt(Option.MAX_AGE)
    uri_query = _StrListOpt(Option.URI_QUERY)
    accept = _UintOpt(Option.ACCEPT)
    location_query = _StrListOpt(Option.LOCATION_QUERY)
    block2 = _BlockOpt(Option.BLOCK2)
    block1 = _BlockOpt(Option.BLOCK1)
    size2 = _UintOpt(Option.SIZE2)
    proxy_uri = _StrOpt(Option.PROXY_URI)
    size1 = _UintOpt(Option.SIZE1)

    def get_option(self, number: int) -> bytes | None:
        """The first value of option ``number``, or None."""
        for n, v in self.options:
            if n == number:
                return v
        return None

    def get_options(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def set_option(self, number: int, value: bytes | None) -> None:
        """Replace every occurrence of ``number`` with one ``value`` (or remove it, for None)."""
        self.set_options(number, () if value is None else (value,))

    def set_options(self, number: int, values: Sequence[bytes]) -> None:
        """Replace every occurrence of ``number`` with ``values``, in that order, keeping the list sorted."""
        opts = self.options
        kept = [o for o in opts if o[0] != number]
        i = 0
        while i < len(kept) and kept[i][0] < number:
            i += 1
        kept[i:i] = [(number, v) for v in values]
        opts[:] = kept

    def add_option(self, number: int, value: bytes) -> None:
        """Append one more occurrence of ``number`` (after any existing ones)."""
        opts = self.options
        i = len(opts)
        while i > 0 and opts[i - 1][0] > number:
            i -= 1
        opts.insert(i, (number, value))


# ---------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=True)
class Message(_HasOptions):
    """One CoAP message as on the wire. ``code`` is a :class:`Code` member or a plain int for unnamed codes."""

    type: int = Type.CON
    code: int = Code.EMPTY
    mid: int = 0
    token: bytes = b""
    options: list[tuple[int, bytes]] = field(default_factory=list)
    payload: bytes = b""

    def __repr__(self) -> str:
        t = Type(self.type).name if 0 <= self.type <= 3 else str(self.type)
        opts = ", ".join(f"{n}={v.hex() or '-'}" for n, v in self.options)
        return (
            f"<Message {t} {code_str(self.code)} mid={self.mid} token={self.token.hex() or '-'}"
            f" [{opts}] {len(self.payload)} B>"
        )


def _ext_len(value: int) -> tuple[int, bytes]:
    """The 4-bit nibble and extension bytes for an option delta or length (RFC 7252 §3.1)."""
    if value < 13:
        return value, b""
    if value < 269:
        return 13, _BYTE[value - 13]
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError(f"option delta/length {value} too large")


def encode(message: Message) -> bytes:
    """Serialize ``message``. Options are written in number order (stable for repeated options)."""
    token = message.token
    tkl = len(token)
    if tkl > 8:
        raise ValueError(f"token longer than 8 bytes: {tkl}")
    parts = [_HEADER.pack(0x40 | (message.type << 4) | tkl, message.code, message.mid), token]
    append = parts.append
    options = message.options
    if options:
        last = 0
        prev = -1
        for number, _ in options:
            # Only sort when needed; lists built through the setters already are sorted.
            if number < prev:
                options = sorted(options, key=_first)
                break
            prev = number
        for number, value in options:
            delta = number - last
            length = len(value)
            if delta < 13 and length < 13:
                append(_BYTE[(delta << 4) | length])
            else:
                dn, dx = _ext_len(delta)
                ln, lx = _ext_len(length)
                append(_BYTE[(dn << 4) | ln])
                append(dx)
                append(lx)
            append(value)
            last = number
    payload = message.payload
    if payload:
        append(b"\xff")
        append(payload)
    return b"".join(parts)


def _first(option: tuple[int, bytes]) -> int:
    return option[0]


def decode(data: bytes) -> Message:
    """Parse one datagram. Raises :class:`CoapMessageError` for anything that is not a valid message."""
    n = len(data)
    if n < 4:
        raise CoapMessageError("short header")
    b0, code, mid = _HEADER.unpack_from(data)
    if b0 >> 6 != 1:
        # Unknown versions must be silently ignored, so the error deliberately names no header fields.
        raise CoapMessageError(f"unsupported version {b0 >> 6}")
    mtype = (b0 >> 4) & 3
    tkl = b0 & 15
    if tkl > 8:
        raise CoapMessageError(f"token length {tkl}", message_type=mtype, mid=mid)
    pos = 4 + tkl
    if pos > n:
        raise CoapMessageError("truncated token", message_type=mtype, mid=mid)
    token = data[4:pos]
    if code == 0:
        # RFC 7252 §4.1: an Empty message is the 4-byte header only.
        if tkl or pos != n:
            raise CoapMessageError("empty message with token, options or payload", message_type=mtype, mid=mid)
        if mtype == _NON:
            raise CoapMessageError("empty NON message", message_type=mtype, mid=mid)
        return Message(mtype, 0, mid, b"", [], b"")
    if mtype == _RST:
        raise CoapMessageError("RST carrying a code", message_type=mtype, mid=mid, token=token)
    if mtype == _ACK and code < 64:
        raise CoapMessageError("ACK carrying a request", message_type=mtype, mid=mid, token=token)
    options: list[tuple[int, bytes]] = []
    payload = b""
    number = 0
    try:
        while pos < n:
            b = data[pos]
            pos += 1
            if b == 0xFF:
                if pos == n:
                    raise CoapMessageError(
                        "payload marker with empty payload", message_type=mtype, mid=mid, token=token
                    )
                payload = data[pos:]
                break
            delta = b >> 4
            length = b & 15
            if delta >= 13:
                if delta == 13:
                    delta = data[pos] + 13
                    pos += 1
                elif delta == 14:
                    delta = ((data[pos] << 8) | data[pos + 1]) + 269
                    pos += 2
                else:
                    raise CoapMessageError(
                        "option delta 15 without payload marker", message_type=mtype, mid=mid, token=token
                    )
            if length >= 13:
                if length == 13:
                    length = data[pos] + 13
                    pos += 1
                elif length == 14:
                    length = ((data[pos] << 8) | data[pos + 1]) + 269
                    pos += 2
                else:
                    raise CoapMessageError("option length 15", message_type=mtype, mid=mid, token=token)
            end = pos + length
            if end > n:
                raise CoapMessageError("truncated option value", message_type=mtype, mid=mid, token=token)
            number += delta
            options.append((number, data[pos:end]))
            pos = end
    except IndexError:
        raise CoapMessageError("truncated option header", message_type=mtype, mid=mid, token=token) from None
    return Message(mtype, _CODE_OF[code], mid, token, options, payload)


# ---------------------------------------------------------------------------------------------------
# Application views


def _path_segments(path: str | Sequence[str]) -> list[str]:
    if isinstance(path, str):
        return [s for s in path.split("/") if s]
    return list(path)


class Request(_HasOptions):
    """A request as a handler sees it (incoming) or a caller builds it (outgoing).

    ``path`` and ``query`` are the Uri-Path and Uri-Query options; other options live in ``options``.
    For incoming requests ``peer`` is who sent it and ``token`` its token (observations are keyed by it).
    """

    __slots__ = ("confirmable", "method", "options", "payload", "peer", "token")

    def __init__(
        self,
        method: int,
        path: str | Sequence[str] = (),
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        observe: int | None = None,
        confirmable: bool = True,
        options: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        self.method = method
        self.payload = payload
        self.confirmable = confirmable
        self.peer: Peer | None = None
        self.token = b""
        opts = list(options)
        opts.extend((Option.URI_PATH, s.encode()) for s in _path_segments(path))
        opts.extend((Option.URI_QUERY, q.encode()) for q in query)
        if content_format is not None:
            opts.append((Option.CONTENT_FORMAT, uint_bytes(content_format)))
        if accept is not None:
            opts.append((Option.ACCEPT, uint_bytes(accept)))
        if observe is not None:
            opts.append((Option.OBSERVE, uint_bytes(observe)))
        opts.sort(key=_first)
        self.options = opts

    @classmethod
    def from_message(cls, message: Message, peer: Peer | None) -> Request:
        """Wrap a decoded request message without copying options or payload."""
        self = cls.__new__(cls)
        self.method = message.code
        self.options = message.options
        self.payload = message.payload
        self.confirmable = message.type == _CON
        self.peer = peer
        self.token = message.token
        return self

    @property
    def path(self) -> tuple[str, ...]:
        return self.uri_path

    @property
    def query(self) -> tuple[str, ...]:
        return self.uri_query

    def copy(self) -> Request:
        """A shallow copy with its own option list (for follow-up block requests)."""
        other = Request.__new__(Request)
        other.method = self.method
        other.options = list(self.options)
        other.payload = self.payload
        other.confirmable = self.confirmable
        other.peer = self.peer
        other.token = self.token
        return other

    def __repr__(self) -> str:
        method = Code(self.method).name if self.method in _REQUEST_CODES else code_str(self.method)
        q = "?" + "&".join(self.uri_query) if self.get_option(Option.URI_QUERY) is not None else ""
        return f"<Request {method} /{'/'.join(self.uri_path)}{q} {len(self.payload)} B>"


_REQUEST_CODES = frozenset(range(1, 8))


class Response(_HasOptions):
    """A response (or notification): code, payload and options; ``peer`` is set on received responses."""

    __slots__ = ("code", "options", "payload", "peer")

    def __init__(
        self,
        code: int = Code.CONTENT,
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        observe: int | None = None,
        max_age: int | None = None,
        location_path: str | Sequence[str] | None = None,
        options: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        self.code = code
        self.payload = payload
        self.peer: Peer | None = None
        opts = list(options)
        if content_format is not None:
            opts.append((Option.CONTENT_FORMAT, uint_bytes(content_format)))
        if observe is not None:
            opts.append((Option.OBSERVE, uint_bytes(observe)))
        if max_age is not None:
            opts.append((Option.MAX_AGE, uint_bytes(max_age)))
        if location_path is not None:
            opts.extend((Option.LOCATION_PATH, s.encode()) for s in _path_segments(location_path))
        opts.sort(key=_first)
        self.options = opts

    @classmethod
    def from_message(cls, message: Message, peer: Peer | None) -> Response:
        """Wrap a decoded response message without copying options or payload."""
        self = cls.__new__(cls)
        self.code = message.code
        self.options = message.options
        self.payload = message.payload
        self.peer = peer
        return self

    @property
    def is_success(self) -> bool:
        return 64 <= self.code < 96

    def copy(self) -> Response:
        other = Response.__new__(Response)
        other.code = self.code
        other.options = list(self.options)
        other.payload = self.payload
        other.peer = self.peer
        return other

    def __repr__(self) -> str:
        try:
            name = Code(self.code).name
        except ValueError:
            name = ""
        return f"<Response {code_str(self.code)} {name} {len(self.payload)} B>"
