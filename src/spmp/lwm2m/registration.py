"""Registration, Update and Bootstrap-Request parameters (TS Transport §6.4 / Core §6.2), pure.

The query parameters of ``POST /rd?ep=…&lt=…&lwm2m=…&b=…&sms=…&Q``, ``POST /rd/{id}?…`` and
``POST /bs?ep=…&pct=…``: parsing with defaults and precise errors, and building them back.
Decisions where the TS leaves room are written next to the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from spmp.lwm2m.errors import Lwm2mError

DEFAULT_LIFETIME = 86400
"""Seconds; the TS default when a client omits ``lt``."""

MIN_LIFETIME = 1
MAX_LIFETIME = 0xFFFFFFFF
MAX_ENDPOINT_LENGTH = 255
"""We cap endpoint names at 255 bytes: the TS sets no limit, but names end up in URIs, logs and keys."""

SUPPORTED_LWM2M_VERSIONS = ("1.0", "1.1", "1.2")
BINDING_LETTERS = frozenset("UMHTSN")
"""1.2 bindings: UDP, MQTT, HTTP, TCP, SMS, Non-IP. A 1.0 client may also append Q (queue mode)."""


class InvalidRegistrationError(Lwm2mError, ValueError):
    """A Register, Update or Bootstrap-Request carries a bad parameter (answered with 4.00)."""


@dataclass(frozen=True, slots=True)
class RegistrationParams:
    endpoint: str
    lifetime: int = DEFAULT_LIFETIME
    lwm2m_version: str = "1.0"
    binding: str = "U"
    queue_mode: bool = False
    sms_number: str | None = None

    def to_query(self) -> list[str]:
        # 1.0 signals queue mode by appending Q to the binding; 1.1 and later by a bare Q parameter.
        legacy_queue = self.queue_mode and self.lwm2m_version == "1.0"
        query = [
            f"ep={quote(self.endpoint, safe='')}",
            f"lt={self.lifetime}",
            f"lwm2m={self.lwm2m_version}",
            f"b={self.binding}{'Q' if legacy_queue else ''}",
        ]
        if self.sms_number:
            query.append(f"sms={quote(self.sms_number, safe='+')}")
        if self.queue_mode and not legacy_queue:
            query.append("Q")
        return query


@dataclass(frozen=True, slots=True)
class UpdateParams:
    """An Update carries only what changed; None means unchanged."""

    lifetime: int | None = None
    binding: str | None = None
    queue_mode: bool | None = None
    sms_number: str | None = None

    def to_query(self) -> list[str]:
        query: list[str] = []
        if self.lifetime is not None:
            query.append(f"lt={self.lifetime}")
        if self.binding is not None:
            query.append(f"b={self.binding}")
        if self.sms_number is not None:
            query.append(f"sms={quote(self.sms_number, safe='+')}")
        if self.queue_mode:
            query.append("Q")
        return query


@dataclass(frozen=True, slots=True)
class BootstrapRequestParams:
    endpoint: str
    preferred_content_format: int | None = None

    def to_query(self) -> list[str]:
        query = [f"ep={quote(self.endpoint, safe='')}"]
        if self.preferred_content_format is not None:
            query.append(f"pct={self.preferred_content_format}")
        return query


def _split(queries: Iterable[str], allowed: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for item in queries:
        name, sep, value = item.partition("=")
        if name not in allowed:
            # The TS lets servers ignore unknown parameters; we do too, so newer clients still register.
            continue
        if name in found:
            raise InvalidRegistrationError(f"parameter {name!r} appears twice")
        found[name] = unquote(value, errors="strict") if sep else None
    return found


def _endpoint(value: str | None) -> str:
    if not value:
        raise InvalidRegistrationError("the endpoint name (ep) is missing or empty")
    if len(value.encode()) > MAX_ENDPOINT_LENGTH:
        raise InvalidRegistrationError(f"the endpoint name is longer than {MAX_ENDPOINT_LENGTH} bytes")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidRegistrationError("the endpoint name contains control characters")
    return value


def _lifetime(value: str | None) -> int:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 10:
        raise InvalidRegistrationError(f"lifetime (lt) {value!r} is not a whole number of seconds")
    lifetime = int(value)
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise InvalidRegistrationError(f"lifetime (lt) {lifetime} is outside {MIN_LIFETIME}..{MAX_LIFETIME}")
    return lifetime


def _binding(value: str | None) -> tuple[str, bool]:
    if not value:
        raise InvalidRegistrationError("binding (b) is empty")
    queue = value.endswith("Q") or "Q" in value
    letters = value.replace("Q", "")
    if not letters or any(ch not in BINDING_LETTERS for ch in letters) or len(set(letters)) != len(letters):
        raise InvalidRegistrationError(f"binding (b) {value!r} is not made of distinct letters from U M H T S N (Q)")
    return letters, queue


def _sms(value: str | None) -> str:
    if not value or not all(ch.isdigit() or ch == "+" for ch in value) or len(value) > 20:
        raise InvalidRegistrationError(f"sms number {value!r} is not an MSISDN")
    return value


def parse_register(queries: Iterable[str]) -> RegistrationParams:
    """Parse the query of a Register request; raises InvalidRegistrationError saying what is wrong."""
    try:
        found = _split(queries, ("ep", "lt", "lwm2m", "b", "sms", "Q"))
    except UnicodeDecodeError:
        raise InvalidRegistrationError("a registration parameter is not valid UTF-8") from None
    endpoint = _endpoint(found.get("ep"))
    lifetime = _lifetime(found["lt"]) if "lt" in found else DEFAULT_LIFETIME
    version = found.get("lwm2m") or "1.0"
    if version not in SUPPORTED_LWM2M_VERSIONS:
        raise InvalidRegistrationError(
            f"LwM2M version {version!r} is not supported (supported: {', '.join(SUPPORTED_LWM2M_VERSIONS)})"
        )
    binding, queue = _binding(found["b"]) if "b" in found else ("U", False)
    if "Q" in found:
        if found["Q"] is not None:
            raise InvalidRegistrationError("the queue mode parameter Q takes no value")
        queue = True
    sms = _sms(found["sms"]) if "sms" in found else None
    return RegistrationParams(endpoint, lifetime, version, binding, queue, sms)


def parse_update(queries: Iterable[str]) -> UpdateParams:
    try:
        found = _split(queries, ("lt", "b", "sms", "Q"))
    except UnicodeDecodeError:
        raise InvalidRegistrationError("an update parameter is not valid UTF-8") from None
    lifetime = _lifetime(found["lt"]) if "lt" in found else None
    binding: str | None = None
    queue: bool | None = None
    if "b" in found:
        binding, queue = _binding(found["b"])
    if "Q" in found:
        queue = True
    sms = _sms(found["sms"]) if "sms" in found else None
    return UpdateParams(lifetime, binding, queue, sms)


def parse_bootstrap_request(queries: Iterable[str]) -> BootstrapRequestParams:
    try:
        found = _split(queries, ("ep", "pct"))
    except UnicodeDecodeError:
        raise InvalidRegistrationError("a bootstrap parameter is not valid UTF-8") from None
    endpoint = _endpoint(found.get("ep"))
    pct_text = found.get("pct")
    pct: int | None = None
    if pct_text is not None:
        if not pct_text.isascii() or not pct_text.isdigit() or int(pct_text) > 65535:
            raise InvalidRegistrationError(f"preferred content format (pct) {pct_text!r} is not a number")
        pct = int(pct_text)
    return BootstrapRequestParams(endpoint, pct)
