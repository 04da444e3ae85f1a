"""``/api/security/{endpoint}`` and ``/api/bootstrap/{endpoint}``: credentials and provisioning.

``POST /api/bootstrap/{endpoint}/start`` runs a server-initiated bootstrap from this process: it
needs only the store this API already manages bootstrap configurations in (the bootstrap server's
listeners are not involved), so it works whenever the bootstrap server shares the store.

Keys are write-only: a PUT takes them (hex), a GET only says whether one is set (``"hasKey"``), so
a leaked API response or browser cache never carries a PSK. ``?scope=bootstrap`` on the security
endpoints addresses the PSK a client uses towards the bootstrap server (default: the management
server's). Writes of the server scope go through the server's PSK cache when it has one, so a new
key is usable at once, not only after the cache's next reload.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from spmp.api.errors import ApiError, bad_request, not_found
from spmp.api.json_nodes import JsonNodeError, parse_path, value_from_json
from spmp.bootstrap.server import BootstrapError, BootstrapServer, parse_address
from spmp.lwm2m.model import ResourceType
from spmp.lwm2m.objects import default_registry
from spmp.lwm2m.values import ObjectLink, time_to_seconds
from spmp.server import ManagementServer, StorePskCache
from spmp.store import (
    BootstrapConfig,
    BootstrapWrite,
    SecurityInfo,
    SecurityMode,
    SecurityScope,
    ServerAccount,
    Store,
    TelemetryValue,
)

MAX_KEY_BYTES = 64
"""DTLS PSKs are 16 to 32 bytes in practice; 64 bounds what mbedTLS accepts with room to spare."""


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def _scope(request: Request) -> SecurityScope:
    text = request.query_params.get("scope", "server")
    try:
        return SecurityScope(text)
    except ValueError:
        raise bad_request(f"?scope is server or bootstrap, got {text!r}") from None


def _hex_key(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise bad_request(f'{where} must be the key in hex, such as "000102..."')
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise bad_request(f"{where} is not hex") from None
    if not 1 <= len(key) <= MAX_KEY_BYTES:
        raise bad_request(f"{where} must be 1..{MAX_KEY_BYTES} bytes, got {len(key)}")
    return key


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request(f'"{name}" must be a non-empty string')
    return value


# ------------------------------------------------------------------------------------------ security


def security_json(info: SecurityInfo, scope: SecurityScope) -> dict[str, Any]:
    return {"endpoint": info.endpoint, "scope": scope.value, "identity": info.psk_identity, "hasKey": True}


async def list_security(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    scope = _scope(request)
    return JSONResponse([security_json(info, scope) for info in await store.list_security(scope)])


async def get_security(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    endpoint, scope = request.path_params["endpoint"], _scope(request)
    info = await store.get_security(endpoint, scope)
    if info is None:
        raise not_found(f"no {scope.value} PSK for endpoint {endpoint!r}")
    return JSONResponse(security_json(info, scope))


async def put_security(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    endpoint, scope = request.path_params["endpoint"], _scope(request)
    data = await _json_object(request)
    identity = _text(data, "identity")
    assert identity is not None
    info = SecurityInfo(endpoint, identity, _hex_key(data.get("key"), '"key"'))
    cache = _psk_cache(request)
    if scope is SecurityScope.SERVER and cache is not None:
        await cache.put(info)
    else:
        await store.put_security(info, scope)
    return JSONResponse(security_json(info, scope))


async def delete_security(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    endpoint, scope = request.path_params["endpoint"], _scope(request)
    cache = _psk_cache(request)
    if scope is SecurityScope.SERVER and cache is not None:
        await cache.remove(endpoint)
    else:
        await store.delete_security(endpoint, scope)
    return JSONResponse({"status": "DELETED"})


def _psk_cache(request: Request) -> StorePskCache | None:
    server: ManagementServer = request.app.state.server
    return server.psk_cache


# ------------------------------------------------------------------------------------------ bootstrap


def bootstrap_json(config: BootstrapConfig) -> dict[str, Any]:
    return {
        "endpoint": config.endpoint,
        "deleteExisting": config.delete_existing,
        "servers": [_account_json(account) for account in config.servers],
        "writes": [_write_json(w) for w in config.writes],
    }


def _account_json(account: ServerAccount) -> dict[str, Any]:
    return {
        "shortServerId": account.short_server_id,
        "uri": account.uri,
        "securityMode": account.security_mode.name,
        "pskIdentity": account.psk_identity,
        "hasPskKey": account.psk_key is not None,
        "lifetime": account.lifetime,
        "defaultPmin": account.default_pmin,
        "defaultPmax": account.default_pmax,
        "binding": account.binding,
        "notificationStoring": account.notification_storing,
    }


def _write_json(write: BootstrapWrite) -> dict[str, Any]:
    value: Any = write.value.hex() if isinstance(write.value, bytes) else write.value
    return {"path": write.path, "type": write.type_name, "value": value}


async def get_bootstrap(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    endpoint = request.path_params["endpoint"]
    config = await store.get_bootstrap_config(endpoint)
    if config is None:
        raise not_found(f"no bootstrap configuration for {endpoint!r} and no default ('*')")
    # "endpoint" tells the caller when the answer is the default configuration, not the endpoint's own.
    return JSONResponse(bootstrap_json(config))


async def put_bootstrap(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    endpoint = request.path_params["endpoint"]
    config = bootstrap_from_json(endpoint, await _json_object(request))
    await store.put_bootstrap_config(config)
    return JSONResponse(bootstrap_json(config))


async def delete_bootstrap(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    await store.delete_bootstrap_config(request.path_params["endpoint"])
    return JSONResponse({"status": "DELETED"})


async def list_bootstrap(request: Request) -> JSONResponse:
    store: Store = request.app.state.store
    return JSONResponse([bootstrap_json(c) for c in await store.list_bootstrap_configs()])


BOOTSTRAP_STEP_TIMEOUT = 10.0
"""Seconds each step of a server-initiated bootstrap started over the API may take."""


async def start_bootstrap(request: Request) -> JSONResponse:
    """Server-initiated bootstrap of the device at ``{"address": "host:port", "secure": true}``.

    200 with the session's result when it finished; 502 with the same body when the device failed it
    (no answer, a refused step, a rejected Bootstrap-Finish); 409 when it cannot start (no
    configuration, no bootstrap PSK for DTLS, a session for the endpoint running). ``"secure": false``
    (plain CoAP) only when the management server runs with ``--insecure``.
    """
    endpoint = request.path_params["endpoint"]
    if endpoint == "*":
        raise bad_request("give a device's endpoint name, not the default configuration '*'")
    data = await _json_object(request)
    address = data.get("address")
    if not isinstance(address, str):
        raise bad_request('"address" must be the device\'s "host:port"')
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    secure = data.get("secure", True)
    if type(secure) is not bool:
        raise bad_request('"secure" must be true or false')
    bootstrapper = _bootstrapper(request)
    if not secure and not bootstrapper.insecure:
        raise ApiError(403, "forbidden", "plain CoAP bootstrap needs the server started with --insecure")
    try:
        result = await bootstrapper.bootstrap_server_initiated(endpoint, host, port, secure=secure)
    except BootstrapError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return JSONResponse(result.as_json(), status_code=200 if result.ok else 502)


def _bootstrapper(request: Request) -> BootstrapServer:
    """The app's bootstrap server object: never started (no listeners), one session per endpoint at a time."""
    existing: BootstrapServer | None = getattr(request.app.state, "bootstrapper", None)
    if existing is None:
        server: ManagementServer = request.app.state.server
        existing = BootstrapServer(
            request.app.state.store,
            server.registry,
            insecure=server.insecure,
            coap_params=server.params,
            step_timeout=BOOTSTRAP_STEP_TIMEOUT,
        )
        request.app.state.bootstrapper = existing
    return existing


def bootstrap_from_json(endpoint: str, data: dict[str, Any]) -> BootstrapConfig:
    servers_json = data.get("servers", [])
    writes_json = data.get("writes", [])
    if not isinstance(servers_json, list) or not isinstance(writes_json, list):
        raise bad_request('"servers" and "writes" must be lists')
    delete_existing = data.get("deleteExisting", True)
    if type(delete_existing) is not bool:
        raise bad_request('"deleteExisting" must be true or false')
    servers = [_account(item, f"servers[{i}]") for i, item in enumerate(servers_json)]
    writes = [_bootstrap_write(item, f"writes[{i}]") for i, item in enumerate(writes_json)]
    try:
        return BootstrapConfig(endpoint, tuple(servers), delete_existing, tuple(writes))
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _account(item: Any, where: str) -> ServerAccount:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object")
    mode_text = item.get("securityMode", "NO_SEC")
    if not isinstance(mode_text, str) or mode_text.upper() not in SecurityMode.__members__:
        raise bad_request(f"{where}.securityMode is one of {', '.join(SecurityMode.__members__)}")
    key = item.get("pskKey")
    identity = item.get("pskIdentity")
    if identity is not None and not isinstance(identity, str):
        raise bad_request(f"{where}.pskIdentity must be a string")
    try:
        return ServerAccount(
            short_server_id=_int(item, "shortServerId", where, required=True) or 0,
            uri=_required_str(item, "uri", where),
            security_mode=SecurityMode[mode_text.upper()],
            psk_identity=identity,
            psk_key=None if key is None else _hex_key(key, f"{where}.pskKey"),
            lifetime=_int(item, "lifetime", where) or 86_400,
            default_pmin=_int(item, "defaultPmin", where),
            default_pmax=_int(item, "defaultPmax", where),
            binding=_optional_str(item, "binding", where) or "U",
            notification_storing=_bool(item, "notificationStoring", where, default=True),
        )
    except ValueError as exc:
        raise bad_request(f"{where}: {exc}") from None


def _bootstrap_write(item: Any, where: str) -> BootstrapWrite:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object")
    try:
        path = parse_path(item.get("path"), where=f"{where}.path")
    except JsonNodeError as exc:
        raise bad_request(str(exc)) from None
    if not path.is_resource:
        raise bad_request(f"{where}.path must name a resource (/o/i/r)")
    kind = _write_type(item.get("type"), path.object_id or 0, path.resource_id or 0, where)
    try:
        value = value_from_json(item.get("value"), kind, where=f"{where}.value", path=path)
    except JsonNodeError as exc:
        raise bad_request(str(exc)) from None
    stored: TelemetryValue
    if isinstance(value, datetime):
        stored = time_to_seconds(value)
    elif isinstance(value, ObjectLink):
        stored = str(value)
    else:
        stored = value
    return BootstrapWrite(str(path), stored, kind.value)


def _write_type(declared: Any, object_id: int, resource_id: int, where: str) -> ResourceType:
    if declared is not None:
        if isinstance(declared, str):
            for member in ResourceType:
                if declared.upper() in (member.name, member.value.upper()):
                    return member
        raise bad_request(f"{where}.type {declared!r} is not an LwM2M type")
    model = default_registry().object_model(object_id)
    resource = model.resource(resource_id) if model is not None else None
    if resource is None:
        raise bad_request(f'{where}: /{object_id}/x/{resource_id} is not in a known model; give its "type"')
    return resource.type


def _int(item: dict[str, Any], name: str, where: str, *, required: bool = False) -> int | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if type(value) is not int:
        raise bad_request(f"{where}.{name} must be an integer")
    return value


def _required_str(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where}.{name} must be a non-empty string")
    return value


def _optional_str(item: dict[str, Any], name: str, where: str) -> str | None:
    return None if item.get(name) is None else _required_str(item, name, where)


def _bool(item: dict[str, Any], name: str, where: str, *, default: bool) -> bool:
    value = item.get(name, default)
    if type(value) is not bool:
        raise bad_request(f"{where}.{name} must be true or false")
    return value
