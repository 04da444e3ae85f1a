"""The storage interface of the bootstrap and management servers: records, errors and the `Store` protocol.

One asyncio API, several engines: :class:`~spmp.store.memory.MemoryStore` for tests and demos,
:class:`~spmp.store.sqlite.SqliteStore` as the embedded default, :class:`~spmp.store.postgres.PostgresStore`
for fleets where several management servers share one database (docs/store.md).

Conventions every engine keeps (the contract suite in ``tests/test_store.py`` checks them):

* Every datetime is timezone-aware; records normalise them to UTC at millisecond resolution, the
  resolution the engines store, so a record reads back equal to what was saved.
* Paths are LwM2M path text (``"/3/0/1"``); a telemetry ``path_prefix`` matches whole levels
  (``"/3/0"`` matches ``"/3/0/1"`` but not ``"/3/01"``).
* ``get_*`` answers None when nothing matches; ``delete_*`` of something absent raises :class:`NotFound`;
  a save that would break a uniqueness rule (a registration id or PSK identity owned by another
  endpoint, an API token already issued under another name) raises :class:`Conflict`.
* Telemetry may be buffered: ``append_telemetry`` returns once points are queued, ``flush`` forces
  them out, ``close`` flushes before closing, and queries see every point appended before them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

# ---------------------------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Any storage failure. The message says where (the database), what failed, and what to do."""


class NotFound(StoreError):  # noqa: N818 - the brief's name; "NotFoundError" would read worse at call sites
    """The record to delete or update does not exist."""


class Conflict(StoreError):  # noqa: N818
    """The write would break a uniqueness rule (the message names the record holding the value)."""


# ------------------------------------------------------------------------------------------- helpers

TelemetryValue = int | float | bool | str | bytes
"""What a telemetry point carries; Objlnk travels as its text (``"3:0"``), Time as Unix seconds."""

DEFAULT_ENDPOINT = "*"
"""The endpoint name of the bootstrap configuration used for endpoints without their own."""


def utc_ms(value: datetime) -> datetime:
    """``value`` in UTC, truncated to milliseconds; naive datetimes are refused (their zone is a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone; use an aware datetime (UTC)")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def utc_now() -> datetime:
    return utc_ms(datetime.now(UTC))


def to_epoch_ms(value: datetime) -> int:
    """Milliseconds since the Unix epoch, exact (no float rounding) for any aware datetime."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored for an API token; the token itself is never stored.

    API tokens are long random secrets, so a fast unsalted hash is enough: there is nothing to
    brute-force, and it lets ``verify`` look the hash up by index.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def _set(obj: object, name: str, value: object) -> None:
    # Frozen dataclasses normalise their own fields in __post_init__ through object.__setattr__.
    object.__setattr__(obj, name, value)


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Registration:
    """A client's registration with the management server (TS Transport §6.2.1 register parameters)."""

    registration_id: str
    endpoint: str
    lifetime: int
    """seconds; the registration expires ``lifetime`` after the last register/update"""
    lwm2m_version: str = "1.0"
    binding: str = "U"
    queue_mode: bool = False
    sms_number: str | None = None
    object_links: str = ""
    """the registration payload as sent (CoRE link format)"""
    object_versions: dict[int, str] = field(default_factory=dict)
    """object id -> version the client announced (``</3411>;ver=1.1``); absent means the default"""
    instances: tuple[str, ...] = ()
    """object and object-instance paths the client announced (``"/3/0"``)"""
    content_formats: tuple[int, ...] = ()
    host: str = ""
    port: int = 0
    dtls_identity: str | None = None
    registered_at: datetime = field(default_factory=utc_now)
    last_update: datetime = field(default_factory=utc_now)
    node_id: str = ""
    """the management server node holding this client's session (several nodes may share a store)"""
    discovered: str | None = None
    """the last Discover result (link format), None until one was made"""

    def __post_init__(self) -> None:
        if self.lifetime < 0:
            raise ValueError(f"registration {self.endpoint!r}: lifetime {self.lifetime} is negative")
        _set(self, "registered_at", utc_ms(self.registered_at))
        _set(self, "last_update", utc_ms(self.last_update))
        _set(self, "instances", tuple(self.instances))
        _set(self, "content_formats", tuple(self.content_formats))
        _set(self, "object_versions", dict(self.object_versions))

    @property
    def expires_at(self) -> datetime:
        return self.last_update + timedelta(seconds=self.lifetime)


@dataclass(frozen=True, slots=True)
class Observation:
    """An observation the server holds on a client; ``paths`` has several entries when ``composite``."""

    endpoint: str
    registration_id: str
    token: bytes
    paths: tuple[str, ...]
    content_format: int | None = None
    created_at: datetime = field(default_factory=utc_now)
    composite: bool = False

    def __post_init__(self) -> None:
        _set(self, "token", bytes(self.token))
        _set(self, "paths", tuple(self.paths))
        _set(self, "created_at", utc_ms(self.created_at))
        if not self.paths:
            raise ValueError(f"observation {self.token.hex()} of {self.endpoint!r} has no path")


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """One value of one resource at one time; ``type_name`` is the LwM2M type (``"Float"``, ``"Objlnk"``…)."""

    endpoint: str
    path: str
    timestamp: datetime
    value: TelemetryValue
    type_name: str

    def __post_init__(self) -> None:
        _set(self, "timestamp", utc_ms(self.timestamp))


class SecurityScope(StrEnum):
    """Whose credentials: the management server's or the bootstrap server's (kept apart, as in /0)."""

    SERVER = "server"
    BOOTSTRAP = "bootstrap"


@dataclass(frozen=True, slots=True, repr=False)
class SecurityInfo:
    """The PSK an endpoint uses towards one server; ``repr`` never shows the key."""

    endpoint: str
    psk_identity: str
    psk_key: bytes

    def __repr__(self) -> str:
        return (
            f"SecurityInfo(endpoint={self.endpoint!r}, psk_identity={self.psk_identity!r}, "
            f"psk_key=<{len(self.psk_key)} bytes hidden>)"
        )


class SecurityMode(IntEnum):
    """LwM2M Security object resource 2 (Security Mode)."""

    PSK = 0
    RPK = 1
    CERTIFICATE = 2
    NO_SEC = 3
    CERTIFICATE_EST = 4


@dataclass(frozen=True, slots=True, repr=False)
class ServerAccount:
    """One management server the bootstrap server provisions: a /0 instance plus its /1 instance."""

    short_server_id: int
    uri: str
    security_mode: SecurityMode = SecurityMode.NO_SEC
    psk_identity: str | None = None
    psk_key: bytes | None = None
    lifetime: int = 86_400
    default_pmin: int | None = None
    default_pmax: int | None = None
    binding: str = "U"
    notification_storing: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.short_server_id <= 65534:
            raise ValueError(f"short server id {self.short_server_id} is outside 1..65534")
        _set(self, "security_mode", SecurityMode(self.security_mode))
        # PSK with neither identity nor key means "the bootstrap server supplies the endpoint's
        # server-scope PSK, generating one if the store has none" (docs/bootstrap.md); half of a pair is an error.
        if self.security_mode is SecurityMode.PSK and (
            (self.psk_identity is None) != (self.psk_key is None) or self.psk_key == b"" or self.psk_identity == ""
        ):
            raise ValueError(
                f"server {self.short_server_id} ({self.uri}) uses PSK: give both identity and key, or neither "
                "(the bootstrap server then provides a per-endpoint PSK)"
            )

    def __repr__(self) -> str:
        key = "None" if self.psk_key is None else f"<{len(self.psk_key)} bytes hidden>"
        return (
            f"ServerAccount(short_server_id={self.short_server_id}, uri={self.uri!r}, "
            f"security_mode={self.security_mode.name}, psk_identity={self.psk_identity!r}, psk_key={key}, "
            f"lifetime={self.lifetime}, default_pmin={self.default_pmin}, default_pmax={self.default_pmax}, "
            f"binding={self.binding!r}, notification_storing={self.notification_storing})"
        )


@dataclass(frozen=True, slots=True)
class BootstrapWrite:
    """An extra Bootstrap-Write of one resource, after the server accounts (for example /3/0/14 UTC offset)."""

    path: str
    value: TelemetryValue
    type_name: str


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """What the bootstrap server writes to one endpoint (``endpoint == "*"``: to any endpoint without its own)."""

    endpoint: str
    servers: tuple[ServerAccount, ...] = ()
    delete_existing: bool = True
    """send Bootstrap-Delete of /0 and /1 first (keeping the bootstrap account, as the TS requires)"""
    writes: tuple[BootstrapWrite, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "servers", tuple(self.servers))
        _set(self, "writes", tuple(self.writes))
        ids = [s.short_server_id for s in self.servers]
        if len(ids) != len(set(ids)):
            raise ValueError(f"bootstrap config {self.endpoint!r} repeats a short server id: {ids}")


@dataclass(frozen=True, slots=True)
class CalibrationBackup:
    """A calibration value saved before it is changed, so it can be restored (one per endpoint and path)."""

    endpoint: str
    path: str
    value: float
    saved_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        _set(self, "saved_at", utc_ms(self.saved_at))


# ------------------------------------------------------------------------------------------ protocol


class Store(Protocol):
    """Everything the bootstrap and management servers persist. All methods are coroutines.

    Use as ``async with store: ...`` or call ``open``/``close``; every other method needs an open store.
    """

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    async def close(self) -> None:
        """Flush buffered telemetry, then release the database; closing twice is harmless."""

    async def flush(self) -> None:
        """Write buffered telemetry now."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    # registrations: one per endpoint; saving a new registration id for an endpoint replaces the old one
    # (a client that registers again) and drops the old registration's observations with it.
    async def save_registration(self, registration: Registration) -> None: ...
    async def get_registration(self, endpoint: str) -> Registration | None: ...
    async def get_registration_by_id(self, registration_id: str) -> Registration | None: ...
    async def list_registrations(self, offset: int = 0, limit: int = 100) -> list[Registration]:
        """Ordered by endpoint name."""
        ...

    async def delete_registration(self, endpoint: str) -> None:
        """Also deletes the registration's observations."""

    async def expired_registrations(self, now: datetime) -> list[Registration]:
        """Registrations with ``expires_at <= now``, soonest expired first."""
        ...

    # observations, keyed by (endpoint, token)
    async def save_observation(self, observation: Observation) -> None: ...
    async def get_observation(self, endpoint: str, token: bytes) -> Observation | None: ...
    async def list_observations(self, endpoint: str | None = None) -> list[Observation]: ...
    async def delete_observation(self, endpoint: str, token: bytes) -> None: ...
    async def delete_observations(self, endpoint: str) -> int:
        """Delete every observation of an endpoint; returns how many there were."""
        ...

    # telemetry: a point per (endpoint, path, timestamp); a second point at the same millisecond replaces it
    async def append_telemetry(self, points: Sequence[TelemetryPoint]) -> None: ...
    async def query_telemetry(
        self,
        endpoint: str,
        path_prefix: str = "/",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        *,
        descending: bool = False,
    ) -> list[TelemetryPoint]:
        """Points with ``since <= timestamp < until``, by timestamp then path (newest first if descending)."""
        ...

    async def latest_values(self, endpoint: str) -> dict[str, TelemetryPoint]:
        """The newest point of every path of an endpoint, by path."""
        ...

    # PSK credentials per scope; a PSK identity belongs to one endpoint per scope
    async def put_security(self, info: SecurityInfo, scope: SecurityScope = SecurityScope.SERVER) -> None: ...
    async def get_security(self, endpoint: str, scope: SecurityScope = SecurityScope.SERVER) -> SecurityInfo | None: ...
    async def get_security_by_identity(
        self, psk_identity: str, scope: SecurityScope = SecurityScope.SERVER
    ) -> SecurityInfo | None: ...
    async def delete_security(self, endpoint: str, scope: SecurityScope = SecurityScope.SERVER) -> None: ...
    async def list_security(self, scope: SecurityScope = SecurityScope.SERVER) -> list[SecurityInfo]: ...

    # bootstrap provisioning
    async def put_bootstrap_config(self, config: BootstrapConfig) -> None: ...
    async def get_bootstrap_config(self, endpoint: str) -> BootstrapConfig | None:
        """The endpoint's own configuration, else the default (``endpoint == "*"``), else None."""
        ...

    async def delete_bootstrap_config(self, endpoint: str) -> None: ...
    async def list_bootstrap_configs(self) -> list[BootstrapConfig]: ...

    # API tokens (only their SHA-256 is stored)
    async def put_api_token(self, name: str, token: str) -> None:
        """Issue ``token`` under ``name``, replacing the name's previous token."""

    async def verify_api_token(self, token: str) -> str | None:
        """The name the token was issued under, or None."""
        ...

    async def delete_api_token(self, name: str) -> None: ...
    async def list_api_tokens(self) -> list[str]: ...

    # calibration backups
    async def put_calibration_backup(self, backup: CalibrationBackup) -> None:
        """Save (or replace) the backup of one endpoint's path."""

    async def list_calibration_backups(self, endpoint: str) -> list[CalibrationBackup]:
        """Ordered by path."""
        ...


# ------------------------------------------------------------------------------ optional capabilities


class Listener(Protocol):
    """The messages of one channel: an async iterator of payloads, and an async context manager.

    ``async with notifier.listen(channel) as messages: async for payload in messages: ...``; entering
    subscribes (what is sent afterwards is delivered), leaving (or ``aclose``) unsubscribes. When
    messages may have been lost (connection lost, reader too slow) the iteration raises StoreError.
    """

    def __aiter__(self) -> Self: ...
    async def __anext__(self) -> str: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class Notifier(Protocol):
    """An optional capability of a store: short messages between the servers sharing its database.

    Only :class:`~spmp.store.postgres.PostgresStore` has it (PostgreSQL ``LISTEN``/``NOTIFY``), so it
    is not part of :class:`Store`: the memory and SQLite stores serve one process, where an in-process
    queue would look like delivery between servers while reaching none. Test with
    ``isinstance(store, Notifier)``. Messages reach only the listeners subscribed when they are sent
    (nothing is kept), in order per sender; send identifiers, and read the data from the store.
    """

    async def notify(self, channel: str, payload: str = "") -> None: ...
    def listen(self, channel: str) -> Listener: ...


def path_matches(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it, level-wise (``"/3/0"`` covers ``"/3/0/1"``, not ``"/3/01"``)."""
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def check_page(offset: int, limit: int) -> None:
    if offset < 0 or limit < 0:
        raise ValueError(f"offset {offset} and limit {limit} must not be negative")
