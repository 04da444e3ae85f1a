"""``/api/clients…``: registrations and every device-management operation on one client.

``/api/clients/{endpoint}/{rest}`` is dispatched here by hand rather than by one route per
operation, because LwM2M paths have a variable depth and share the URL space with the operation
suffixes (``/3/0/observe``, ``/3/0/discover``, ``/composite/read``, ``/telemetry``).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from spmp.api.errors import ApiError, bad_request, not_found
from spmp.api.json_nodes import JsonNodeError, node_from_json, node_to_json, nodes_from_json, parse_path, value_to_json
from spmp.lwm2m.attributes import parse_query
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.link import Link, parse_links
from spmp.lwm2m.node import ObjectInstance
from spmp.lwm2m.path import Path
from spmp.server import ManagementServer
from spmp.store import Registration, Store, TelemetryPoint

FORMATS = {
    "tlv": ContentFormat.TLV,
    "senml-json": ContentFormat.SENML_JSON,
    "senml-cbor": ContentFormat.SENML_CBOR,
    "lwm2m-json": ContentFormat.LWM2M_JSON,
    "lwm2m-cbor": ContentFormat.LWM2M_CBOR,
    "text": ContentFormat.TEXT,
    "cbor": ContentFormat.CBOR,
    "opaque": ContentFormat.OPAQUE,
}
"""``?format=`` names, as the ``spmp decode`` command spells them."""

MAX_TIMEOUT = 300.0
MAX_TELEMETRY = 10_000
MAX_BODY = 1 << 20
"""Request bodies above 1 MiB are refused: nothing an operator writes to a device is that large."""


# ------------------------------------------------------------------------------------- registrations


def registration_json(registration: Registration) -> dict[str, Any]:
    """A registration as the list and detail endpoints show it (Leshan's field names)."""
    versions = registration.object_versions
    links: list[dict[str, Any]] = []
    with_instances = set()
    for text in registration.instances:
        path = Path.parse(text)
        with_instances.add(path.object_id)
        links.append({"path": text, "version": versions.get(path.object_id or 0)})
    for object_id, version in sorted(versions.items()):
        if object_id not in with_instances:
            links.append({"path": f"/{object_id}", "version": version})
    links.sort(key=lambda item: Path.parse(item["path"]))
    return {
        "endpoint": registration.endpoint,
        "registrationId": registration.registration_id,
        "lwm2mVersion": registration.lwm2m_version,
        "lifetime": registration.lifetime,
        "binding": registration.binding,
        "queueMode": registration.queue_mode,
        "smsNumber": registration.sms_number,
        "address": _address(registration.host, registration.port),
        "secure": registration.dtls_identity is not None,
        "pskIdentity": registration.dtls_identity,
        "registeredAt": _iso(registration.registered_at),
        "lastUpdate": _iso(registration.last_update),
        "expiresAt": _iso(registration.expires_at),
        "objectLinks": links,
        "contentFormats": list(registration.content_formats),
    }


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def list_clients(request: Request) -> JSONResponse:
    server: ManagementServer = request.app.state.server
    registrations = sorted(server.registrations(), key=lambda r: r.endpoint)
    return JSONResponse([registration_json(r) for r in registrations])


async def get_client(request: Request) -> JSONResponse:
    server: ManagementServer = request.app.state.server
    endpoint = request.path_params["endpoint"]
    registration = _registered(server, endpoint)
    body = registration_json(registration)
    body["discovered"] = _discovered(registration.discovered)
    return JSONResponse(body)


def _discovered(text: str | None) -> list[dict[str, Any]] | None:
    """The stored Discover result as JSON links (None until the server made one)."""
    if text is None:
        return None
    try:
        return [link_json(link) for link in parse_links(text)]
    except CodecError:
        return [{"link": text}]  # stored by an older version or garbled: show it rather than fail


def _registered(server: ManagementServer, endpoint: str) -> Registration:
    registration = server.registration(endpoint)
    if registration is None:
        raise ApiError(404, "client_not_found", f"client {endpoint!r} is not registered")
    return registration


# ------------------------------------------------------------------------------------- dispatch

Handler = Callable[[Request, ManagementServer, str, Path], Awaitable[Response]]


async def client_operation(request: Request) -> Response:
    """Route ``/api/clients/{endpoint}/{rest}`` by method and the shape of ``rest``."""
    server: ManagementServer = request.app.state.server
    endpoint = request.path_params["endpoint"]
    rest = request.path_params["rest"].strip("/")
    method = request.method
    if rest == "telemetry":
        _allow(method, "GET")
        return await telemetry(request, request.app.state.store, endpoint)
    if rest in ("composite/read", "composite/write"):
        _allow(method, "POST")
        return await (composite_read if rest.endswith("read") else composite_write)(request, server, endpoint)
    if rest == "composite/observe":
        _allow(method, "POST", "DELETE")
        return await (composite_observe if method == "POST" else cancel_composite_observe)(request, server, endpoint)
    text, _, suffix = rest.rpartition("/")
    table: dict[str, dict[str, Handler]] = {
        "observe": {"POST": observe, "DELETE": cancel_observe},
        "attributes": {"PUT": write_attributes},
        "discover": {"GET": discover},
    }
    if suffix in table:
        handlers = table[suffix]
    else:
        text = rest
        handlers = {"GET": read, "PUT": write, "POST": post, "DELETE": delete}
    _allow(method, *handlers)
    path = _path("/" + text)
    return await handlers[method](request, server, endpoint, path)


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ApiError(405, "method_not_allowed", f"{method} is not allowed here; use {', '.join(allowed)}")


def _path(text: str) -> Path:
    try:
        return parse_path(text)
    except JsonNodeError as exc:
        raise ApiError(
            400,
            "bad_request",
            f"malformed path {text!r}: {exc.reason}; expected an LwM2M path of numeric ids (/3/0/9) or an operation"
            " (telemetry, composite/read|write|observe, <path>/observe|attributes|discover)",
        ) from None


# ------------------------------------------------------------------------------------- operations


async def read(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    _registered(server, endpoint)
    result = await server.read(endpoint, path, content_format=_format(request), timeout=_timeout(request))
    body = node_to_json(result.node, path)
    body["contentFormat"] = result.content_format
    return JSONResponse(body)


async def write(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    _registered(server, endpoint)
    replace = _flag(request, "replace", default=True)
    node = node_from_json(await _json(request), path, server.model_for(endpoint))
    await server.write(
        endpoint, path, node, replace=replace, content_format=_format(request), timeout=_timeout(request)
    )
    return JSONResponse({"status": "CHANGED"})


async def post(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    """Execute on a resource, Create on an object (LwM2M has no POST on an instance via this API)."""
    _registered(server, endpoint)
    if path.is_resource:
        body = await _body(request)
        try:
            arguments = body.decode("utf-8") if body else None
        except UnicodeDecodeError:
            raise bad_request("execute arguments must be UTF-8 text, such as 0='1',1") from None
        await server.execute(endpoint, path, arguments, timeout=_timeout(request))
        return JSONResponse({"status": "CHANGED"})
    if path.is_object:
        node = node_from_json(await _json(request), path, server.model_for(endpoint), create=True)
        assert isinstance(node, ObjectInstance)
        created = await server.create(endpoint, path, node, content_format=_format(request), timeout=_timeout(request))
        location = f"/api/clients/{quote(endpoint, safe='')}{created}"
        return JSONResponse(
            {"status": "CREATED", "path": str(created)}, status_code=201, headers={"Location": location}
        )
    raise ApiError(
        405, "method_not_allowed", "POST executes a resource (/o/i/r) or creates an instance (/o); use PUT to write"
    )


async def delete(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    _registered(server, endpoint)
    if not (path.is_object_instance or path.is_resource_instance):
        raise bad_request("Delete takes an object instance (/o/i) or a resource instance (/o/i/r/ri)")
    await server.delete(endpoint, path, timeout=_timeout(request))
    return JSONResponse({"status": "DELETED"})


async def observe(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    _registered(server, endpoint)
    info = await server.observe(endpoint, path, content_format=_format(request), timeout=_timeout(request))
    node = info.nodes.get(path)
    return JSONResponse(
        {
            "observation": {
                "token": info.token,
                "paths": [str(p) for p in info.paths],
                "composite": info.composite,
                "contentFormat": info.content_format,
            },
            "value": None if node is None else node_to_json(node, path),
        }
    )


async def cancel_observe(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    _registered(server, endpoint)
    active = _flag(request, "active", default=True)
    # Checked here so "nothing to cancel" is a 404, not the server's generic invalid-argument error.
    covering = server.observations.find(endpoint, path)
    if not covering:
        raise not_found(f"no observation of {path} on {endpoint!r}")
    await server.cancel_observation(endpoint, path, active=active, timeout=_timeout(request))
    return JSONResponse({"status": "CANCELLED", "cancelled": len(covering)})


async def write_attributes(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    registration = _registered(server, endpoint)
    items = [unquote(item) for item in request.url.query.split("&") if item]
    update = parse_query(items, lwm2m_version=registration.lwm2m_version)
    if update.is_empty:
        raise bad_request("name at least one attribute: ?pmin=10&pmax=60, or ?gt to unset gt")
    await server.write_attributes(endpoint, path, update, timeout=_timeout(request))
    return JSONResponse({"status": "CHANGED", "attributes": update.to_query()})


async def discover(request: Request, server: ManagementServer, endpoint: str, path: Path) -> Response:
    _registered(server, endpoint)
    links = await server.discover(endpoint, path, timeout=_timeout(request))
    return JSONResponse({"path": str(path), "links": [link_json(link) for link in links]})


def link_json(link: Link) -> dict[str, Any]:
    return {"path": link.target, "attributes": dict(link.attributes), "link": str(link)}


async def composite_read(request: Request, server: ManagementServer, endpoint: str) -> Response:
    _registered(server, endpoint)
    body = await _json(request)
    paths_json = body.get("paths") if isinstance(body, dict) else None
    if not isinstance(paths_json, list) or not paths_json:
        raise bad_request('composite read needs {"paths": ["/3/0/0", ...]}')
    paths = [parse_path(p, where=f"paths[{i}]") for i, p in enumerate(paths_json)]
    nodes = await server.read_composite(endpoint, paths, content_format=_format(request), timeout=_timeout(request))
    return JSONResponse(
        {"nodes": {str(p): (None if node is None else node_to_json(node, p)) for p, node in nodes.items()}}
    )


async def _composite_paths(request: Request, operation: str) -> list[Path]:
    body = await _json(request)
    paths_json = body.get("paths") if isinstance(body, dict) else None
    if not isinstance(paths_json, list) or not paths_json:
        raise bad_request(f'{operation} needs {{"paths": ["/3/0/0", ...]}}')
    return [parse_path(p, where=f"paths[{i}]") for i, p in enumerate(paths_json)]


async def composite_observe(request: Request, server: ManagementServer, endpoint: str) -> Response:
    """Observe-Composite: one observation of several paths (FETCH with Observe); answers the current values."""
    _registered(server, endpoint)
    paths = await _composite_paths(request, "composite observe")
    info = await server.observe_composite(endpoint, paths, content_format=_format(request), timeout=_timeout(request))
    return JSONResponse(
        {
            "observation": {
                "token": info.token,
                "paths": [str(p) for p in info.paths],
                "composite": info.composite,
                "contentFormat": info.content_format,
            },
            "nodes": {
                str(p): (None if node is None else node_to_json(node, p))
                for p, node in (dict.fromkeys(info.paths) | info.nodes).items()
            },
        }
    )


async def cancel_composite_observe(request: Request, server: ManagementServer, endpoint: str) -> Response:
    """Cancel the composite observation(s) of exactly these paths (any order); ?active=false: passively."""
    _registered(server, endpoint)
    paths = await _composite_paths(request, "cancelling a composite observation")
    active = _flag(request, "active", default=True)
    cancelled = await server.cancel_composite_observation(endpoint, paths, active=active, timeout=_timeout(request))
    if not cancelled:
        raise not_found(f"no composite observation of {', '.join(str(p) for p in paths)} on {endpoint!r}")
    return JSONResponse({"status": "CANCELLED", "cancelled": cancelled})


async def composite_write(request: Request, server: ManagementServer, endpoint: str) -> Response:
    _registered(server, endpoint)
    nodes = nodes_from_json(await _json(request), server.model_for(endpoint))
    await server.write_composite(endpoint, nodes, content_format=_format(request), timeout=_timeout(request))
    return JSONResponse({"status": "CHANGED"})


# ------------------------------------------------------------------------------------- telemetry


async def telemetry(request: Request, store: Store, endpoint: str) -> Response:
    """Stored time series; works for clients that are no longer registered (history outlives sessions)."""
    query = request.query_params
    prefix = str(parse_path(query.get("path", "/"), where="?path"))
    limit = _int(query.get("limit"), "limit", default=1000, low=1, high=MAX_TELEMETRY)
    order = query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise bad_request("?order is asc or desc")
    points = await store.query_telemetry(
        endpoint,
        prefix,
        _time(query.get("since"), "since"),
        _time(query.get("until"), "until"),
        limit,
        descending=order == "desc",
    )
    return JSONResponse({"endpoint": endpoint, "path": prefix, "points": [point_json(p) for p in points]})


def point_json(point: TelemetryPoint) -> dict[str, Any]:
    value: Any = point.value
    if isinstance(value, bytes):
        value = base64.b64encode(value).decode("ascii")
    elif isinstance(value, float):
        value = value_to_json(value)
    return {"path": point.path, "timestamp": _iso(point.timestamp), "value": value, "type": point.type_name}


# ------------------------------------------------------------------------------------- request helpers


def _format(request: Request) -> ContentFormat | None:
    name = request.query_params.get("format")
    if name is None:
        return None
    if name not in FORMATS:
        raise bad_request(f"unknown ?format={name!r}; one of {', '.join(FORMATS)}")
    return FORMATS[name]


def _timeout(request: Request) -> float | None:
    text = request.query_params.get("timeout")
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT:
        raise bad_request(f"?timeout must be seconds in (0, {MAX_TIMEOUT:g}], got {text!r}")
    return seconds


def _flag(request: Request, name: str, *, default: bool) -> bool:
    text = request.query_params.get(name)
    if text is None:
        return default
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise bad_request(f"?{name} is true or false, got {text!r}")


def _int(text: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise bad_request(f"?{name} must be an integer in {low}..{high}, got {text!r}")
    return int(text)


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"?{name} must be an ISO 8601 time such as 2024-05-01T12:00:00Z, got {text!r}") from None
    if value.tzinfo is None:
        raise bad_request(f"?{name} needs a zone (Z or +hh:mm): {text!r}")
    return value


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"request bodies are limited to {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"request bodies are limited to {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> Any:
    body = await _body(request)
    if not body:
        raise bad_request("the request needs a JSON body")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
