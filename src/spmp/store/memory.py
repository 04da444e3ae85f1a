"""`MemoryStore`: the Store interface in plain dicts, for tests and demos. Nothing survives the process.

It keeps the same rules as the SQLite store (uniqueness, NotFound on deleting the absent, ms
timestamps), so code tested against it behaves the same on a real database. Queries scan: fine for
the thousands of records a test or a demo holds, not for a fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

from spmp.store.interface import (
    DEFAULT_ENDPOINT,
    BootstrapConfig,
    CalibrationBackup,
    Conflict,
    NotFound,
    Observation,
    Registration,
    SecurityInfo,
    SecurityScope,
    StoreError,
    TelemetryPoint,
    check_page,
    hash_token,
    path_matches,
    to_epoch_ms,
    utc_ms,
)


class MemoryStore:
    """A Store held in memory (``memory://``)."""

    def __init__(self) -> None:
        self._open = False
        self._registrations: dict[str, Registration] = {}  # by endpoint
        self._observations: dict[tuple[str, bytes], Observation] = {}
        # endpoint -> path -> epoch ms -> point: a repeated timestamp replaces, as in SQLite
        self._telemetry: dict[str, dict[str, dict[int, TelemetryPoint]]] = {}
        self._security: dict[tuple[SecurityScope, str], SecurityInfo] = {}
        self._bootstrap: dict[str, BootstrapConfig] = {}
        self._tokens: dict[str, str] = {}  # name -> sha256 hex
        self._calibration: dict[tuple[str, str], CalibrationBackup] = {}

    def __repr__(self) -> str:
        return "MemoryStore()"

    # ------------------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def flush(self) -> None:
        self._check()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _check(self) -> None:
        if not self._open:
            raise StoreError("memory store is not open: call `await store.open()` (or use `async with store`) first")

    # -------------------------------------------------------------------------- registrations

    async def save_registration(self, registration: Registration) -> None:
        self._check()
        for other in self._registrations.values():
            if other.registration_id == registration.registration_id and other.endpoint != registration.endpoint:
                raise Conflict(
                    f"registration id {registration.registration_id!r} already belongs to endpoint "
                    f"{other.endpoint!r}; generate a fresh id for {registration.endpoint!r}"
                )
        previous = self._registrations.get(registration.endpoint)
        if previous is not None and previous.registration_id != registration.registration_id:
            self._drop_observations(previous.endpoint, previous.registration_id)
        self._registrations[registration.endpoint] = registration

    async def get_registration(self, endpoint: str) -> Registration | None:
        self._check()
        return self._registrations.get(endpoint)

    async def get_registration_by_id(self, registration_id: str) -> Registration | None:
        self._check()
        return next((r for r in self._registrations.values() if r.registration_id == registration_id), None)

    async def list_registrations(self, offset: int = 0, limit: int = 100) -> list[Registration]:
        self._check()
        check_page(offset, limit)
        ordered = sorted(self._registrations.values(), key=lambda r: r.endpoint)
        return ordered[offset : offset + limit]

    async def delete_registration(self, endpoint: str) -> None:
        self._check()
        registration = self._registrations.pop(endpoint, None)
        if registration is None:
            raise NotFound(f"no registration for endpoint {endpoint!r}")
        self._drop_observations(endpoint, registration.registration_id)

    async def expired_registrations(self, now: datetime) -> list[Registration]:
        self._check()
        now = utc_ms(now)
        expired = [r for r in self._registrations.values() if r.expires_at <= now]
        return sorted(expired, key=lambda r: (r.expires_at, r.endpoint))

    def _drop_observations(self, endpoint: str, registration_id: str) -> None:
        for key, observation in list(self._observations.items()):
            if key[0] == endpoint and observation.registration_id == registration_id:
                del self._observations[key]

    # --------------------------------------------------------------------------- observations

    async def save_observation(self, observation: Observation) -> None:
        self._check()
        self._observations[(observation.endpoint, observation.token)] = observation

    async def get_observation(self, endpoint: str, token: bytes) -> Observation | None:
        self._check()
        return self._observations.get((endpoint, bytes(token)))

    async def list_observations(self, endpoint: str | None = None) -> list[Observation]:
        self._check()
        found = [o for o in self._observations.values() if endpoint is None or o.endpoint == endpoint]
        return sorted(found, key=lambda o: (o.endpoint, o.created_at, o.token))

    async def delete_observation(self, endpoint: str, token: bytes) -> None:
        self._check()
        if self._observations.pop((endpoint, bytes(token)), None) is None:
            raise NotFound(f"no observation with token {bytes(token).hex()} on endpoint {endpoint!r}")

    async def delete_observations(self, endpoint: str) -> int:
        self._check()
        keys = [key for key in self._observations if key[0] == endpoint]
        for key in keys:
            del self._observations[key]
        return len(keys)

    # ------------------------------------------------------------------------------ telemetry

    async def append_telemetry(self, points: Sequence[TelemetryPoint]) -> None:
        self._check()
        for point in points:
            paths = self._telemetry.setdefault(point.endpoint, {})
            paths.setdefault(point.path, {})[to_epoch_ms(point.timestamp)] = point

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
        self._check()
        check_page(0, limit)
        low = None if since is None else utc_ms(since)
        high = None if until is None else utc_ms(until)
        found = [
            point
            for path, series in self._telemetry.get(endpoint, {}).items()
            if path_matches(path, path_prefix)
            for point in series.values()
            if (low is None or point.timestamp >= low) and (high is None or point.timestamp < high)
        ]
        found.sort(key=lambda p: (p.timestamp, p.path), reverse=descending)
        return found[:limit]

    async def latest_values(self, endpoint: str) -> dict[str, TelemetryPoint]:
        self._check()
        return {path: series[max(series)] for path, series in sorted(self._telemetry.get(endpoint, {}).items())}

    # ------------------------------------------------------------------------------- security

    async def put_security(self, info: SecurityInfo, scope: SecurityScope = SecurityScope.SERVER) -> None:
        self._check()
        holder = await self.get_security_by_identity(info.psk_identity, scope)
        if holder is not None and holder.endpoint != info.endpoint:
            raise Conflict(
                f"PSK identity {info.psk_identity!r} ({scope} scope) already belongs to endpoint {holder.endpoint!r}"
            )
        self._security[(SecurityScope(scope), info.endpoint)] = info

    async def get_security(self, endpoint: str, scope: SecurityScope = SecurityScope.SERVER) -> SecurityInfo | None:
        self._check()
        return self._security.get((SecurityScope(scope), endpoint))

    async def get_security_by_identity(
        self, psk_identity: str, scope: SecurityScope = SecurityScope.SERVER
    ) -> SecurityInfo | None:
        self._check()
        scope = SecurityScope(scope)
        return next((i for (s, _), i in self._security.items() if s is scope and i.psk_identity == psk_identity), None)

    async def delete_security(self, endpoint: str, scope: SecurityScope = SecurityScope.SERVER) -> None:
        self._check()
        if self._security.pop((SecurityScope(scope), endpoint), None) is None:
            raise NotFound(f"no {scope} security information for endpoint {endpoint!r}")

    async def list_security(self, scope: SecurityScope = SecurityScope.SERVER) -> list[SecurityInfo]:
        self._check()
        scope = SecurityScope(scope)
        return sorted((i for (s, _), i in self._security.items() if s is scope), key=lambda i: i.endpoint)

    # ------------------------------------------------------------------------------ bootstrap

    async def put_bootstrap_config(self, config: BootstrapConfig) -> None:
        self._check()
        self._bootstrap[config.endpoint] = config

    async def get_bootstrap_config(self, endpoint: str) -> BootstrapConfig | None:
        self._check()
        return self._bootstrap.get(endpoint) or self._bootstrap.get(DEFAULT_ENDPOINT)

    async def delete_bootstrap_config(self, endpoint: str) -> None:
        self._check()
        if self._bootstrap.pop(endpoint, None) is None:
            raise NotFound(f"no bootstrap configuration for endpoint {endpoint!r}")

    async def list_bootstrap_configs(self) -> list[BootstrapConfig]:
        self._check()
        return [self._bootstrap[name] for name in sorted(self._bootstrap)]

    # ----------------------------------------------------------------------------- api tokens

    async def put_api_token(self, name: str, token: str) -> None:
        self._check()
        digest = hash_token(token)
        for other, other_digest in self._tokens.items():
            if other_digest == digest and other != name:
                raise Conflict(f"this API token is already issued as {other!r}; issue a fresh random token")
        self._tokens[name] = digest

    async def verify_api_token(self, token: str) -> str | None:
        self._check()
        digest = hash_token(token)
        return next((name for name, d in self._tokens.items() if d == digest), None)

    async def delete_api_token(self, name: str) -> None:
        self._check()
        if self._tokens.pop(name, None) is None:
            raise NotFound(f"no API token named {name!r}")

    async def list_api_tokens(self) -> list[str]:
        self._check()
        return sorted(self._tokens)

    # ---------------------------------------------------------------------------- calibration

    async def put_calibration_backup(self, backup: CalibrationBackup) -> None:
        self._check()
        self._calibration[(backup.endpoint, backup.path)] = backup

    async def list_calibration_backups(self, endpoint: str) -> list[CalibrationBackup]:
        self._check()
        return sorted((b for (e, _), b in self._calibration.items() if e == endpoint), key=lambda b: b.path)
