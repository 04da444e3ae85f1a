"""Server accounts: what the client reads from its Security (0) and Server (1) objects.

A *server account* is one Security instance (URI, mode, credentials, Short Server ID) plus, for a
management server, the Server instance with the same Short Server ID (lifetime, notification
defaults, storing, binding). The accounts live in the object tree like any other data, so the
bootstrap server can rewrite them and the engine re-reads them; nothing is cached elsewhere.

:func:`factory_bootstrap` and :func:`direct_servers` build the two objects for factory settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from spmp.client.objects import StoredObject
from spmp.client.tree import SECURITY_OBJECT, SERVER_OBJECT, ObjectTree
from spmp.coap.dtls import X509Credentials
from spmp.lwm2m.node import ObjectInstance, instance_from_model
from spmp.lwm2m.objects.security import SECURITY
from spmp.lwm2m.objects.server import SERVER
from spmp.lwm2m.response import OperationError
from spmp.lwm2m.values import Value

SECURITY_MODE_PSK = 0
SECURITY_MODE_CERTIFICATE = 2
SECURITY_MODE_NOSEC = 3
DEFAULT_PORTS = {"coap": 5683, "coaps": 5684}


class AccountError(ValueError):
    """A Security/Server instance the client cannot use (bad URI, unsupported mode, missing key)."""


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where an account's server is: scheme, host and port from the Security URI."""

    scheme: str
    host: str
    port: int

    @property
    def secure(self) -> bool:
        return self.scheme == "coaps"


def parse_uri(uri: str) -> ServerAddress:
    """``coaps://host:5684`` → ServerAddress; only coap:// and coaps:// (UDP binding) are supported."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise AccountError(f"server URI {uri!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise AccountError(f"server URI {uri!r}: only coap:// and coaps:// are supported")
    if not parts.hostname:
        raise AccountError(f"server URI {uri!r} has no host")
    return ServerAddress(parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme])


@dataclass(frozen=True, slots=True)
class ServerAccount:
    """One (bootstrap-)server account, as read from the tree."""

    security_instance: int
    uri: str
    bootstrap: bool
    security_mode: int
    identity: bytes
    """/0/i/3: the PSK identity, or in certificate mode our certificate (DER)."""
    secret_key: bytes
    """/0/i/5: the PSK, or in certificate mode our private key (DER)."""
    short_server_id: int | None
    hold_off: int = 0
    server_instance: int | None = None
    lifetime: int = 86400
    default_pmin: int | None = None
    default_pmax: int | None = None
    disable_timeout: int = 86400
    notification_storing: bool = True
    binding: str = "U"
    mute_send: bool = False
    server_public_key: bytes = b""
    """/0/i/4: in certificate mode the certificate (DER) the server's must chain to: its CA's, or its own
    if self-signed."""

    @property
    def endpoint(self) -> ServerAddress:
        return parse_uri(self.uri)

    def check(self) -> None:
        """Raise AccountError when the engine cannot connect with this account."""
        where = parse_uri(self.uri)
        if self.security_mode == SECURITY_MODE_PSK:
            if not where.secure:
                raise AccountError(f"{self.uri}: PSK mode needs a coaps:// URI")
            if not self.identity or not self.secret_key:
                raise AccountError(f"{self.uri}: PSK mode needs an identity and a key")
        elif self.security_mode == SECURITY_MODE_CERTIFICATE:
            if not where.secure:
                raise AccountError(f"{self.uri}: certificate mode needs a coaps:// URI")
            if not self.identity or not self.secret_key or not self.server_public_key:
                raise AccountError(
                    f"{self.uri}: certificate mode needs our certificate (/0/x/3), the server's CA "
                    "certificate (/0/x/4) and our private key (/0/x/5)"
                )
            try:
                X509Credentials.from_bytes(self.identity, self.secret_key, self.server_public_key)
            except ValueError as exc:
                raise AccountError(f"{self.uri}: unusable certificate mode credentials: {exc}") from None
        elif self.security_mode == SECURITY_MODE_NOSEC:
            if where.secure:
                raise AccountError(f"{self.uri}: NoSec mode needs a coap:// URI")
        else:
            raise AccountError(
                f"{self.uri}: security mode {self.security_mode} is not supported (PSK, Certificate and NoSec are)"
            )


def _int(instance: ObjectInstance, rid: int, default: int | None = None) -> int | None:
    value = instance.value(rid)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def read_accounts(tree: ObjectTree) -> list[ServerAccount]:
    """Every Security instance, joined with its Server instance by Short Server ID."""
    try:
        security = tree.enabler(SECURITY_OBJECT)
    except OperationError:
        return []
    servers: dict[int, ObjectInstance] = {}
    try:
        server_enabler = tree.enabler(SERVER_OBJECT)
        for iid in server_enabler.instance_ids():
            instance = server_enabler.read_instance(iid)
            ssid = _int(instance, 0)
            if ssid is not None:
                servers[ssid] = instance
    except OperationError:
        pass
    accounts: list[ServerAccount] = []
    for iid in security.instance_ids():
        sec = security.read_instance(iid)
        uri, identity, key, server_key = sec.value(0), sec.value(3), sec.value(5), sec.value(4)
        ssid = _int(sec, 10)
        server = servers.get(ssid) if ssid is not None and sec.value(1) is not True else None
        extra: dict[str, object] = {}
        if server is not None:
            extra = {
                "server_instance": server.id,
                "lifetime": _int(server, 1, 86400),
                "default_pmin": _int(server, 2),
                "default_pmax": _int(server, 3),
                "disable_timeout": _int(server, 5, 86400),
                "notification_storing": server.value(6) is not False,
                "binding": str(server.value(7) or "U"),
                "mute_send": server.value(23) is True,
            }
        accounts.append(
            ServerAccount(
                security_instance=iid,
                uri=uri if isinstance(uri, str) else "",
                bootstrap=sec.value(1) is True,
                security_mode=_int(sec, 2, SECURITY_MODE_NOSEC) or 0,
                identity=identity if isinstance(identity, bytes) else b"",
                secret_key=key if isinstance(key, bytes) else b"",
                short_server_id=ssid,
                hold_off=_int(sec, 11, 0) or 0,
                server_public_key=server_key if isinstance(server_key, bytes) else b"",
                **extra,  # type: ignore[arg-type]  # keys and types fixed just above
            )
        )
    return accounts


def management_accounts(tree: ObjectTree) -> list[ServerAccount]:
    """The accounts of LwM2M (management) servers that have both halves."""
    return [a for a in read_accounts(tree) if not a.bootstrap and a.server_instance is not None]


def bootstrap_account(tree: ObjectTree) -> ServerAccount | None:
    return next((a for a in read_accounts(tree) if a.bootstrap), None)


def consistency_problem(tree: ObjectTree) -> str | None:
    """Why the configuration left by a bootstrap is unusable (Bootstrap-Finish → 4.06), or None."""
    accounts = read_accounts(tree)
    dm = [a for a in accounts if not a.bootstrap]
    if not dm:
        return "no LwM2M Server account in the Security object"
    for account in dm:
        if account.short_server_id is None:
            return f"/0/{account.security_instance} has no Short Server ID"
        if account.server_instance is None:
            return f"/0/{account.security_instance} (ssid {account.short_server_id}) has no Server instance"
        try:
            account.check()
        except AccountError as exc:
            return str(exc)
    return None


# -- factory settings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A management server account for :func:`direct_servers`."""

    uri: str
    short_server_id: int = 1
    lifetime: int = 300
    psk_identity: str | None = None
    psk_key: bytes | None = None
    binding: str = "U"
    notification_storing: bool = True
    default_pmin: int | None = None
    default_pmax: int | None = None
    certificate: tuple[bytes, bytes, bytes] | None = None
    """Certificate mode instead of PSK: (our certificate DER, our private key DER, the server's CA
    certificate DER), written to /0/x/3, /0/x/5 and /0/x/4."""


def _security_values(
    uri: str,
    *,
    bootstrap: bool,
    identity: str | None,
    key: bytes | None,
    ssid: int | None,
    certificate: tuple[bytes, bytes, bytes] | None = None,
) -> dict[int, Value | dict[int, Value]]:
    secure = parse_uri(uri).secure
    if certificate is not None:
        if not secure:
            raise AccountError(f"{uri}: certificate mode needs a coaps:// URI")
        own, private_key, server_ca = certificate
        values: dict[int, Value | dict[int, Value]] = {
            0: uri,
            1: bootstrap,
            2: SECURITY_MODE_CERTIFICATE,
            3: own,
            4: server_ca,
            5: private_key,
        }
        if ssid is not None:
            values[10] = ssid
        return values
    if secure and (not identity or not key):
        raise AccountError(f"{uri}: coaps:// needs a PSK identity and key")
    values = {
        0: uri,
        1: bootstrap,
        2: SECURITY_MODE_PSK if secure else SECURITY_MODE_NOSEC,
        3: (identity or "").encode() if secure else b"",
        4: b"",
        5: (key or b"") if secure else b"",
    }
    if ssid is not None:
        values[10] = ssid
    return values


def factory_bootstrap(
    uri: str, psk_identity: str | None = None, psk_key: bytes | None = None
) -> tuple[StoredObject, StoredObject]:
    """Security and Server objects holding only a Bootstrap-Server account (and no Server instance)."""
    security = StoredObject(SECURITY)
    security.add_instance(
        0,
        instance_from_model(
            SECURITY, 0, _security_values(uri, bootstrap=True, identity=psk_identity, key=psk_key, ssid=None)
        ),
    )
    return security, StoredObject(SERVER)


def direct_servers(
    servers: Sequence[ServerSpec], *, bootstrap: tuple[str, str | None, bytes | None] | None = None
) -> tuple[StoredObject, StoredObject]:
    """Security and Server objects with one account per ``servers`` entry (and optionally a bootstrap one)."""
    security, server = (
        factory_bootstrap(*bootstrap) if bootstrap is not None else (StoredObject(SECURITY), StoredObject(SERVER))
    )
    base = len(security.instance_ids())
    for index, spec in enumerate(servers):
        sid = spec.short_server_id
        values = _security_values(
            spec.uri,
            bootstrap=False,
            identity=spec.psk_identity,
            key=spec.psk_key,
            ssid=sid,
            certificate=spec.certificate,
        )
        security.add_instance(base + index, instance_from_model(SECURITY, base + index, values))
        server_values: dict[int, Value | dict[int, Value]] = {
            0: sid,
            1: spec.lifetime,
            6: spec.notification_storing,
            7: spec.binding,
        }
        if spec.default_pmin is not None:
            server_values[2] = spec.default_pmin
        if spec.default_pmax is not None:
            server_values[3] = spec.default_pmax
        server.add_instance(index, instance_from_model(SERVER, index, server_values))
    return security, server


__all__ = [
    "SECURITY_MODE_CERTIFICATE",
    "SECURITY_MODE_NOSEC",
    "SECURITY_MODE_PSK",
    "AccountError",
    "ServerAccount",
    "ServerAddress",
    "ServerSpec",
    "bootstrap_account",
    "consistency_problem",
    "direct_servers",
    "factory_bootstrap",
    "management_accounts",
    "parse_uri",
    "read_accounts",
]
