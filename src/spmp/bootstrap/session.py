"""The bootstrap sequence for one client as a plan of steps (TS Core §6.1, Transport §6.1), pure.

A session is: Bootstrap-Discover (``GET /`` with Accept 40) → (optionally) Bootstrap-Read of the
Server object → Bootstrap-Delete of what must go →
Bootstrap-Write of one Security (/0) and one Server (/1) instance per management server → the
configuration's extra writes → Bootstrap-Finish (``POST /bs``). Discover comes first because its
answer decides the rest: which /0 instance is the client's bootstrap account (our Security
instances must not collide with it), which instances already exist (with ``delete_existing=False``
an account with the same Short Server ID is overwritten in place), and the client's enabler
version (``lwm2m=``), which picks the content format when the client did not ask for one (``pct``).

Bootstrap-Read (1.1: only the Server (/1) and Access Control (/2) objects may be read) is used when
the configuration keeps what the client has (``delete_existing=False``) and the client is 1.1+ with
Server instances (:func:`wants_bootstrap_read`): the server accounts read
(:func:`parse_server_read`) say which instance holds which Short Server ID, with which lifetime and
binding. An account whose Server instance already holds exactly what we would write is not rewritten,
and accounts not in the configuration are kept (and reported in the plan's notes).

Nothing here does I/O or draws random numbers: the server (:mod:`spmp.bootstrap.server`) sends the
steps, and passes in the per-endpoint PSK it generated or found in the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.link import BootstrapDiscover
from spmp.lwm2m.model import ModelLookup, ObjectModel
from spmp.lwm2m.node import (
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    ResourceInstance,
    SingleResource,
    instance_from_model,
    resource_from_model,
)
from spmp.lwm2m.objects import ids
from spmp.lwm2m.path import ROOT, Path
from spmp.lwm2m.response import ResponseCode
from spmp.lwm2m.values import Value
from spmp.store import BootstrapConfig, BootstrapWrite, SecurityMode, ServerAccount

__all__ = [
    "WRITE_FORMATS",
    "BootstrapPlanError",
    "ExistingServer",
    "PskCredentials",
    "SessionPlan",
    "Step",
    "StepKind",
    "check_response",
    "choose_content_format",
    "discover_step",
    "needs_generated_psk",
    "parse_server_read",
    "plan_session",
    "read_step",
    "wants_bootstrap_read",
]

# Security (0) and Server (1) resource ids (objects/security.py, objects/server.py).
SEC_URI, SEC_BOOTSTRAP, SEC_MODE, SEC_IDENTITY, SEC_SERVER_KEY, SEC_SECRET_KEY, SEC_SSID = 0, 1, 2, 3, 4, 5, 10
SRV_SSID, SRV_LIFETIME, SRV_PMIN, SRV_PMAX, SRV_STORING, SRV_BINDING = 0, 1, 2, 3, 6, 7

WRITE_FORMATS = frozenset(
    {
        ContentFormat.TLV,
        ContentFormat.OLD_TLV,
        ContentFormat.SENML_JSON,
        ContentFormat.SENML_CBOR,
        ContentFormat.LWM2M_JSON,
        ContentFormat.OLD_JSON,
        ContentFormat.LWM2M_CBOR,
    }
)
"""Formats that can carry a whole object instance, so a client's ``pct`` among them is honoured."""


class BootstrapPlanError(Lwm2mError):
    """The configuration cannot be turned into Bootstrap-Writes (a bad extra write, a missing PSK)."""


@dataclass(frozen=True, slots=True, repr=False)
class PskCredentials:
    """A PSK identity and key to write into a Security instance; ``repr`` never shows the key."""

    identity: str
    key: bytes

    def __repr__(self) -> str:
        return f"PskCredentials(identity={self.identity!r}, key=<{len(self.key)} bytes hidden>)"


class StepKind(StrEnum):
    DISCOVER = "discover"
    READ = "read"
    DELETE = "delete"
    WRITE = "write"
    FINISH = "finish"


_METHODS = {
    StepKind.DISCOVER: "GET",
    StepKind.READ: "GET",
    StepKind.DELETE: "DELETE",
    StepKind.WRITE: "PUT",
    StepKind.FINISH: "POST",
}
_EXPECTED = {
    StepKind.DISCOVER: ResponseCode.CONTENT,
    StepKind.READ: ResponseCode.CONTENT,
    StepKind.DELETE: ResponseCode.DELETED,
    StepKind.WRITE: ResponseCode.CHANGED,
    StepKind.FINISH: ResponseCode.CHANGED,
}


@dataclass(frozen=True, slots=True)
class Step:
    """One downlink request of the session. ``payload`` is already encoded in ``content_format``."""

    kind: StepKind
    path: Path
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    what: str = ""
    """For people: ``"Security for 101 coaps://telco:5684"``."""

    @property
    def method(self) -> str:
        return _METHODS[self.kind]

    @property
    def uri_path(self) -> str:
        """Bootstrap-Finish goes to ``/bs``; everything else to its LwM2M path."""
        return "/bs" if self.kind is StepKind.FINISH else str(self.path)

    @property
    def expected(self) -> ResponseCode:
        return _EXPECTED[self.kind]

    def __str__(self) -> str:
        text = f"{self.kind.value} {self.uri_path}"
        return f"{text} ({self.what})" if self.what else text


def discover_step() -> Step:
    """Bootstrap-Discover of the whole client: ``GET /`` with Accept application/link-format."""
    return Step(StepKind.DISCOVER, ROOT, accept=ContentFormat.LINK, what="what the client has")


def read_step(content_format: ContentFormat) -> Step:
    """Bootstrap-Read of the Server object: ``GET /1`` with Accept ``content_format``."""
    return Step(StepKind.READ, Path.of(ids.SERVER), accept=int(content_format), what="existing server accounts")


@dataclass(frozen=True, slots=True)
class ExistingServer:
    """A Server (/1) instance as Bootstrap-Read found it on the client."""

    instance_id: int
    short_server_id: int | None
    lifetime: int | None = None
    default_pmin: int | None = None
    default_pmax: int | None = None
    notification_storing: bool | None = None
    binding: str | None = None

    def matches(self, account: ServerAccount) -> bool:
        """Whether writing ``account``'s Server instance would change nothing we write."""
        return (
            self.short_server_id == account.short_server_id
            and self.lifetime == account.lifetime
            and self.notification_storing == account.notification_storing
            and self.binding == account.binding
            and (account.default_pmin is None or self.default_pmin == account.default_pmin)
            and (account.default_pmax is None or self.default_pmax == account.default_pmax)
        )

    def __str__(self) -> str:
        return f"/1/{self.instance_id} (Short Server ID {self.short_server_id}, lifetime {self.lifetime})"


def wants_bootstrap_read(config: BootstrapConfig, discovered: BootstrapDiscover | None) -> bool:
    """Read /1 when it matters and is allowed: existing accounts are kept, the client is 1.1+ and has some."""
    if config.delete_existing or discovered is None or discovered.lwm2m_version in (None, "1.0"):
        return False
    return any(link.path.object_id == ids.SERVER and link.path.instance_id is not None for link in discovered.links)


def parse_server_read(payload: bytes, content_format: int, models: ModelLookup) -> tuple[ExistingServer, ...]:
    """The Server instances of a Bootstrap-Read answer on /1; raises :class:`Lwm2mError` if unreadable."""
    node = codecs.decode(payload, Path.of(ids.SERVER), content_format, models)
    if isinstance(node, Object):
        instances = dict(node.instances)
    elif isinstance(node, ObjectInstance) and node.id is not None:
        instances = {node.id: node}
    else:
        raise BootstrapPlanError(f"Bootstrap-Read of /1 answered a {type(node).__name__}, not Server instances")
    return tuple(
        ExistingServer(
            instance_id,
            _int(instance.value(SRV_SSID)),
            _int(instance.value(SRV_LIFETIME)),
            _int(instance.value(SRV_PMIN)),
            _int(instance.value(SRV_PMAX)),
            value if isinstance(value := instance.value(SRV_STORING), bool) else None,
            value if isinstance(value := instance.value(SRV_BINDING), str) else None,
        )
        for instance_id, instance in sorted(instances.items())
    )


def _int(value: Value | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_response(step: Step, code: int, diagnostic: str = "") -> str | None:
    """None if ``code`` answers ``step`` successfully, else the reason the session fails.

    A Delete answered 4.04 is a success: there was nothing to delete. A Bootstrap-Finish answered
    4.06 is the client saying the configuration is unusable (its diagnostic says why).
    """
    if code == step.expected or (step.kind is StepKind.DELETE and code == ResponseCode.NOT_FOUND):
        return None
    dotted = f"{code >> 5}.{code & 0x1F:02d}"
    detail = f": {diagnostic}" if diagnostic else ""
    if step.kind is StepKind.FINISH and code == ResponseCode.NOT_ACCEPTABLE:
        return f"the client rejected the configuration at Bootstrap-Finish (4.06 Not Acceptable){detail}"
    return f"{step} answered {dotted}, expected {step.expected.dotted}{detail}"


def choose_content_format(preferred: int | None, lwm2m_version: str | None) -> ContentFormat:
    """The client's ``pct`` if it can carry instances, else SenML CBOR for 1.1+ and TLV for 1.0.

    A client that did not say its version in Bootstrap-Discover (or could not answer it) is taken
    for 1.0, whose only mandatory multi-resource format is TLV.
    """
    if preferred is not None and preferred in WRITE_FORMATS:
        return ContentFormat(preferred)
    if lwm2m_version is None or lwm2m_version == "1.0":
        return ContentFormat.TLV
    return ContentFormat.SENML_CBOR


def needs_generated_psk(config: BootstrapConfig) -> bool:
    """Whether some account uses PSK without a key: the server must supply the endpoint's own PSK."""
    return any(s.security_mode is SecurityMode.PSK and s.psk_key is None for s in config.servers)


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """What to send after Discover, and why (``notes`` are for the session log)."""

    content_format: ContentFormat
    lwm2m_version: str | None
    steps: tuple[Step, ...]
    security_instances: Mapping[int, int] = field(default_factory=dict)
    """Short Server ID → the /0 instance id chosen for it."""
    server_instances: Mapping[int, int] = field(default_factory=dict)
    """Short Server ID → the /1 instance id chosen for it."""
    unchanged_servers: tuple[int, ...] = ()
    """Short Server IDs whose Server instance Bootstrap-Read found as configured (not rewritten)."""
    notes: tuple[str, ...] = ()


def plan_session(
    config: BootstrapConfig,
    discovered: BootstrapDiscover | None,
    models: ModelLookup,
    *,
    preferred_format: int | None = None,
    generated_psk: PskCredentials | None = None,
    existing_servers: Sequence[ExistingServer] | None = None,
) -> SessionPlan:
    """The steps after Discover for ``config``; ``discovered`` is None if Discover failed (a 1.0 client).

    ``generated_psk`` is written into every PSK account that has no key of its own
    (:func:`needs_generated_psk`); it is an error to leave it out then. ``existing_servers`` is
    what Bootstrap-Read of /1 found (None when it was not read); it counts only with
    ``delete_existing=False``.
    """
    version = discovered.lwm2m_version if discovered is not None else None
    fmt = choose_content_format(preferred_format, version)
    notes: list[str] = []
    if preferred_format is not None and preferred_format != fmt:
        notes.append(f"pct={preferred_format} cannot carry object instances; writing {fmt.media_type}")
    if discovered is None:
        notes.append("no Bootstrap-Discover answer: assuming LwM2M 1.0 with its bootstrap account at /0/0")

    bootstrap_ids, security_by_ssid, server_by_ssid, existing = _existing(discovered)
    steps: list[Step] = []
    if config.delete_existing:
        # Delete /0 and /1 rather than "/": the TS makes the client keep its bootstrap account through
        # it, and other objects (the charger's own configuration) are not ours to wipe.
        steps += [
            Step(StepKind.DELETE, Path.of(ids.SECURITY), what="old server accounts"),
            Step(StepKind.DELETE, Path.of(ids.SERVER), what="old server settings"),
        ]
        security_by_ssid, server_by_ssid = {}, {}
        existing = {ids.SECURITY: set(bootstrap_ids), ids.SERVER: set()}
    read: dict[int, ExistingServer] = {}
    if existing_servers is not None and not config.delete_existing:
        # What Bootstrap-Read found is the Server object itself: it wins over Discover's attributes.
        read = {server.instance_id: server for server in existing_servers}
        existing[ids.SERVER] |= set(read)
        server_by_ssid = {ssid: iid for ssid, iid in server_by_ssid.items() if iid not in read}
        server_by_ssid |= {s.short_server_id: s.instance_id for s in read.values() if s.short_server_id is not None}
        configured = {account.short_server_id for account in config.servers}
        for server in read.values():
            if server.short_server_id not in configured:
                notes.append(f"kept {server}: not in the configuration")
    security_ids = _assign(config.servers, security_by_ssid, existing[ids.SECURITY])
    server_ids = _assign(config.servers, server_by_ssid, existing[ids.SERVER])
    unchanged: list[int] = []

    for account in config.servers:
        credentials = _credentials(account, generated_psk)
        path = Path.of(ids.SECURITY, security_ids[account.short_server_id])
        node = _security_instance(account, credentials, path, models)
        steps.append(_write(path, node, fmt, models, f"Security for {account.short_server_id} {account.uri}"))
    for account in config.servers:
        path = Path.of(ids.SERVER, server_ids[account.short_server_id])
        found = read.get(server_ids[account.short_server_id])
        if found is not None and found.matches(account):
            unchanged.append(account.short_server_id)
            notes.append(f"Server {account.short_server_id} at {path} already as configured: not rewritten")
            continue
        node = _server_instance(account, path, models)
        steps.append(_write(path, node, fmt, models, f"Server {account.short_server_id}, lifetime {account.lifetime}"))
    for extra in config.writes:
        path, node = _extra_node(extra, models)
        steps.append(_write(path, node, fmt, models, "extra write"))
    steps.append(Step(StepKind.FINISH, ROOT, what="Bootstrap-Finish"))
    return SessionPlan(fmt, version, tuple(steps), security_ids, server_ids, tuple(unchanged), tuple(notes))


def _existing(
    discovered: BootstrapDiscover | None,
) -> tuple[set[int], dict[int, int], dict[int, int], dict[int, set[int]]]:
    """Bootstrap account ids, /0 and /1 instances by Short Server ID, and every existing instance id."""
    if discovered is None:
        return {0}, {}, {}, {ids.SECURITY: {0}, ids.SERVER: set()}
    bootstrap: set[int] = set()
    by_ssid: dict[int, dict[int, int]] = {ids.SECURITY: {}, ids.SERVER: {}}
    existing: dict[int, set[int]] = {ids.SECURITY: set(), ids.SERVER: set()}
    for link in discovered.links:
        object_id, instance_id = link.path.object_id, link.path.instance_id
        if object_id not in existing or instance_id is None:
            continue
        existing[object_id].add(instance_id)
        if link.ssid is not None:
            by_ssid[object_id][link.ssid] = instance_id
        elif object_id == ids.SECURITY:
            bootstrap.add(instance_id)  # the TS lists no ssid only on the Bootstrap-Server account
    return bootstrap, by_ssid[ids.SECURITY], by_ssid[ids.SERVER], existing


def _assign(accounts: tuple[ServerAccount, ...], reuse: Mapping[int, int], taken: set[int]) -> dict[int, int]:
    """An instance id per account: the one already holding its Short Server ID, else the lowest free one."""
    chosen: dict[int, int] = {}
    used = set(taken) - {reuse[a.short_server_id] for a in accounts if a.short_server_id in reuse}
    for account in accounts:
        if account.short_server_id in reuse:
            chosen[account.short_server_id] = reuse[account.short_server_id]
            used.add(reuse[account.short_server_id])
    for account in accounts:
        if account.short_server_id not in chosen:
            instance_id = next(i for i in range(65535) if i not in used)
            chosen[account.short_server_id] = instance_id
            used.add(instance_id)
    return chosen


def _credentials(account: ServerAccount, generated: PskCredentials | None) -> PskCredentials | None:
    if account.security_mode is not SecurityMode.PSK:
        return None
    if account.psk_identity is not None and account.psk_key is not None:
        return PskCredentials(account.psk_identity, account.psk_key)
    if generated is None:
        raise BootstrapPlanError(f"server {account.short_server_id} uses PSK without a key and no PSK was supplied")
    return generated


def _security_instance(account: ServerAccount, psk: PskCredentials | None, path: Path, models: ModelLookup) -> Node:
    model = models.object_model(ids.SECURITY)
    if model is None:
        raise BootstrapPlanError("the model registry has no Security object (0)")
    values: dict[int, Value] = {
        SEC_URI: account.uri,
        SEC_BOOTSTRAP: False,
        SEC_MODE: int(account.security_mode),
        SEC_IDENTITY: psk.identity.encode() if psk is not None else b"",
        SEC_SERVER_KEY: b"",
        SEC_SECRET_KEY: psk.key if psk is not None else b"",
        SEC_SSID: account.short_server_id,
    }
    return _instance(model, path, values)


def _server_instance(account: ServerAccount, path: Path, models: ModelLookup) -> Node:
    model = models.object_model(ids.SERVER)
    if model is None:
        raise BootstrapPlanError("the model registry has no Server object (1)")
    values: dict[int, Value] = {
        SRV_SSID: account.short_server_id,
        SRV_LIFETIME: account.lifetime,
        SRV_STORING: account.notification_storing,
        SRV_BINDING: account.binding,
    }
    if account.default_pmin is not None:
        values[SRV_PMIN] = account.default_pmin
    if account.default_pmax is not None:
        values[SRV_PMAX] = account.default_pmax
    return _instance(model, path, values)


def _instance(model: ObjectModel, path: Path, values: Mapping[int, Value]) -> Node:
    try:
        return instance_from_model(model, path.instance_id, values)
    except Lwm2mError as exc:
        raise BootstrapPlanError(f"cannot build {path}: {exc}") from None


def _extra_node(write: BootstrapWrite, models: ModelLookup) -> tuple[Path, Node]:
    """A configured extra write (``/3/0/14 = "+03:00"``) as a resource or resource-instance node."""
    try:
        path = Path.parse(write.path)
    except Lwm2mError as exc:
        raise BootstrapPlanError(f"extra write {write.path!r}: {exc}") from None
    if not (path.is_resource or path.is_resource_instance):
        raise BootstrapPlanError(f"extra write {path}: give a resource or resource instance path")
    model = models.object_model(path.object_id or 0)
    resource_model = model.resource(path.resource_id or 0) if model is not None else None
    if resource_model is None:
        raise BootstrapPlanError(f"extra write {path}: no such resource in the object models")
    try:
        if path.is_resource_instance:
            rid = path.resource_instance_id
            assert rid is not None
            built = resource_from_model(resource_model, {rid: write.value}, path=str(path))
            assert isinstance(built, MultipleResource)
            return path, ResourceInstance(rid, built.instances[rid], built.type)
        node = resource_from_model(resource_model, write.value, path=str(path))
    except Lwm2mError as exc:
        raise BootstrapPlanError(f"extra write {path}: {exc}") from None
    assert isinstance(node, SingleResource | MultipleResource)
    return path, node


def _write(path: Path, node: Node, fmt: ContentFormat, models: ModelLookup, what: str) -> Step:
    try:
        payload = codecs.encode(node, path, fmt, models)
    except Lwm2mError as exc:
        raise BootstrapPlanError(f"cannot encode {path} as {fmt.media_type}: {exc}") from None
    return Step(StepKind.WRITE, path, payload, int(fmt), what=what)
