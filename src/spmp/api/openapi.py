"""The OpenAPI 3.1 description served at ``GET /api/openapi.json``.

Written by hand (Starlette does not generate one): it is short, and writing it down keeps the
documented contract deliberate. ``tests/test_api.py`` checks that every route is described.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from spmp import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_CLIENT = {
    "name": "endpoint",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "endpoint name",
}
_PATH = {
    "name": "path",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^\d+(/\d+){0,3}$"},
    "description": "LwM2M path without the leading slash: 3, 3/0, 3/0/1 or 3/0/7/1",
}
_FORMAT = {
    "name": "format",
    "in": "query",
    "schema": {"enum": ["tlv", "senml-json", "senml-cbor", "lwm2m-json", "lwm2m-cbor", "text", "cbor", "opaque"]},
    "description": "force this content format towards the device",
}
_TIMEOUT = {
    "name": "timeout",
    "in": "query",
    "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
    "description": "seconds to wait for the device",
}
_SCOPE = {"name": "scope", "in": "query", "schema": {"enum": ["server", "bootstrap"], "default": "server"}}


def _ok(description: str, schema: dict[str, Any] | None = None, status: str = "200") -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return {status: body, "default": _ERROR}


def _op(summary: str, responses: dict[str, Any], *params: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": body}}}}
    return op


_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}}
_NODE = {"$ref": "#/components/schemas/Node"}


@cache
def openapi_document() -> dict[str, Any]:
    c = "/api/clients/{endpoint}"
    paths: dict[str, Any] = {
        "/api/health": {
            "get": {**_op("Liveness (no token needed)", _ok("alive", {"type": "object"})), "security": []},
        },
        "/api/openapi.json": {"get": _op("This document", _ok("OpenAPI 3.1", {"type": "object"}))},
        "/api/stats": {
            "get": _op(
                "Server counters: registrations, CoAP endpoints, DTLS handshakes, telemetry ingest, refusals",
                _ok("counters (see docs/api.md)", {"type": "object"}),
            )
        },
        "/api/events": {
            "get": _op(
                "Server-sent events (registered, updated, deregistered, expired, notification, send, ...)",
                {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}}, "default": _ERROR},
                {"name": "endpoint", "in": "query", "schema": {"type": "string"}},
                {"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "comma-separated kinds"},
            )
        },
        "/api/clients": {
            "get": _op(
                "Registered clients",
                _ok("registrations", {"type": "array", "items": {"$ref": "#/components/schemas/Registration"}}),
            )
        },
        c: {
            "get": _op(
                "One registration (+ discovered)",
                _ok("registration", {"$ref": "#/components/schemas/Registration"}),
                _CLIENT,
            )
        },
        c + "/{path}": {
            "get": _op("Read", _ok("the node read", _NODE), _CLIENT, _PATH, _FORMAT, _TIMEOUT),
            "put": _op(
                "Write (replace; ?replace=false for a partial update)",
                _ok("written", _STATUS),
                _CLIENT,
                _PATH,
                _FORMAT,
                _TIMEOUT,
                {"name": "replace", "in": "query", "schema": {"type": "boolean", "default": True}},
                body="#/components/schemas/Node",
            ),
            "post": {
                **_op(
                    "Execute a resource (body: arguments as text) or Create an instance of an object (JSON)",
                    {**_ok("executed", _STATUS), "201": {"description": "created; Location names the instance"}},
                    _CLIENT,
                    _PATH,
                    _FORMAT,
                    _TIMEOUT,
                ),
                "requestBody": {
                    "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": _NODE}}
                },
            },
            "delete": _op(
                "Delete an object instance or resource instance", _ok("deleted", _STATUS), _CLIENT, _PATH, _TIMEOUT
            ),
        },
        c + "/{path}/observe": {
            "post": _op(
                "Observe; answers the current value and the observation",
                _ok("observing", {"type": "object"}),
                _CLIENT,
                _PATH,
                _FORMAT,
                _TIMEOUT,
            ),
            "delete": _op(
                "Cancel the observations covering path (?active=false: passively)",
                _ok("cancelled", _STATUS),
                _CLIENT,
                _PATH,
                {"name": "active", "in": "query", "schema": {"type": "boolean", "default": True}},
            ),
        },
        c + "/{path}/attributes": {
            "put": _op(
                "Write-Attributes from the query: pmin, pmax, gt, lt, st, epmin, epmax, ... (a bare name unsets)",
                _ok("written", _STATUS),
                _CLIENT,
                _PATH,
                _TIMEOUT,
            )
        },
        c + "/{path}/discover": {"get": _op("Discover", _ok("links", {"type": "object"}), _CLIENT, _PATH, _TIMEOUT)},
        c + "/composite/read": {
            "post": _op(
                "Read-Composite",
                _ok("nodes by path", {"type": "object"}),
                _CLIENT,
                _FORMAT,
                _TIMEOUT,
                body="#/components/schemas/Paths",
            )
        },
        c + "/composite/observe": {
            "post": _op(
                "Observe-Composite: the current values and one observation of all the paths",
                _ok("observation and nodes by path", {"type": "object"}),
                _CLIENT,
                _FORMAT,
                _TIMEOUT,
                body="#/components/schemas/Paths",
            ),
            "delete": _op(
                "Cancel the composite observation of exactly these paths (?active=false: passively)",
                _ok("cancelled", _STATUS),
                _CLIENT,
                _TIMEOUT,
                body="#/components/schemas/Paths",
            ),
        },
        c + "/composite/write": {
            "post": _op(
                "Write-Composite",
                _ok("written", _STATUS),
                _CLIENT,
                _FORMAT,
                _TIMEOUT,
                body="#/components/schemas/Nodes",
            )
        },
        c + "/telemetry": {
            "get": _op(
                "Stored time series",
                _ok("points", {"type": "object"}),
                _CLIENT,
                {"name": "path", "in": "query", "schema": {"type": "string", "default": "/"}},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                },
                {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
            )
        },
        c + "/calibration": {
            "get": _op(
                "The calibration backup (3316/3317 resource 5821 values)", _ok("backup", {"type": "object"}), _CLIENT
            )
        },
        c + "/calibration/backup": {
            "post": _op("Read the calibration now and replace the backup", _ok("backup", {"type": "object"}), _CLIENT)
        },
        c + "/calibration/restore": {
            "post": _op(
                "Write the backed-up calibration to the device (?from=ENDPOINT: another unit's backup)",
                _ok("restored paths", {"type": "object"}),
                _CLIENT,
                {"name": "from", "in": "query", "schema": {"type": "string"}},
            )
        },
        "/api/security": {
            "get": _op("PSK identities (keys are never returned)", _ok("list", {"type": "array"}), _SCOPE)
        },
        "/api/security/{endpoint}": {
            "get": _op("An endpoint's PSK identity", _ok("identity", {"type": "object"}), _CLIENT, _SCOPE),
            "put": _op(
                "Set an endpoint's PSK",
                _ok("stored", {"type": "object"}),
                _CLIENT,
                _SCOPE,
                body="#/components/schemas/Psk",
            ),
            "delete": _op("Remove an endpoint's PSK", _ok("deleted", _STATUS), _CLIENT, _SCOPE),
        },
        "/api/bootstrap": {"get": _op("Bootstrap configurations", _ok("list", {"type": "array"}))},
        "/api/bootstrap/{endpoint}": {
            "get": _op(
                "The endpoint's bootstrap configuration (or the default '*')",
                _ok("config", {"type": "object"}),
                _CLIENT,
            ),
            "put": _op(
                "Set it (keys write-only)",
                _ok("stored", {"type": "object"}),
                _CLIENT,
                body="#/components/schemas/BootstrapConfig",
            ),
            "delete": _op("Remove it", _ok("deleted", _STATUS), _CLIENT),
        },
        "/api/bootstrap/{endpoint}/start": {
            "post": _op(
                "Server-initiated bootstrap of the device at an address (502 with the result if the device failed it)",
                _ok("the session finished", {"$ref": "#/components/schemas/BootstrapResult"}),
                _CLIENT,
                body="#/components/schemas/BootstrapStart",
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "SPMP management API", "version": __version__, "description": "See docs/api.md."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "coapCode": {"type": "string", "description": "the device's answer, e.g. 4.04"},
                    },
                },
                "Node": {
                    "type": "object",
                    "properties": {
                        "kind": {
                            "enum": ["object", "instance", "singleResource", "multipleResource", "resourceInstance"]
                        },
                        "id": {"type": "integer"},
                        "type": {
                            "enum": [
                                "STRING",
                                "INTEGER",
                                "UNSIGNED_INTEGER",
                                "FLOAT",
                                "BOOLEAN",
                                "OPAQUE",
                                "TIME",
                                "OBJLNK",
                                "CORELNK",
                            ]
                        },
                        "value": {},
                        "values": {"type": "object"},
                        "resources": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                        "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                    },
                },
                "Paths": {
                    "type": "object",
                    "required": ["paths"],
                    "properties": {"paths": {"type": "array", "items": {"type": "string"}}},
                },
                "Nodes": {
                    "type": "object",
                    "required": ["nodes"],
                    "properties": {"nodes": {"type": "object", "additionalProperties": _NODE}},
                },
                "Registration": {"type": "object"},
                "Psk": {
                    "type": "object",
                    "required": ["identity", "key"],
                    "properties": {
                        "identity": {"type": "string"},
                        "key": {"type": "string", "description": "hex, write-only"},
                    },
                },
                "BootstrapConfig": {
                    "type": "object",
                    "properties": {
                        "deleteExisting": {"type": "boolean"},
                        "servers": {"type": "array", "items": {"type": "object"}},
                        "writes": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "BootstrapStart": {
                    "type": "object",
                    "required": ["address"],
                    "properties": {
                        "address": {"type": "string", "description": "host:port the device listens on"},
                        "secure": {"type": "boolean", "default": True},
                    },
                },
                "BootstrapResult": {
                    "type": "object",
                    "properties": {
                        "ok": {"type": "boolean"},
                        "reason": {"type": ["string", "null"]},
                        "steps": {"type": "array", "items": {"type": "object"}},
                        "notes": {"type": "array", "items": {"type": "string"}},
                        "existingServers": {"type": ["array", "null"], "items": {"type": "object"}},
                    },
                },
            },
        },
    }
