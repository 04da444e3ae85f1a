"""The REST API application: ``create_app(server, store, token)`` returns an ASGI app (Starlette).

Authentication is one ASGI middleware in front of every route except ``GET /api/health``: the
request needs ``Authorization: Bearer <token>``, where the token is the configured one (compared in
constant time) or one issued through ``store.put_api_token`` (the store keeps only its SHA-256).
Tokens never reach a log line: failures log the client address and reason only.

Every handler may simply raise; :func:`spmp.api.errors.to_response` turns the exception into the
JSON error body with the right status, so the error shape is the same everywhere.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from spmp import __version__
from spmp.api import admin, calibration, clients, events
from spmp.api.errors import error_response, to_response
from spmp.api.openapi import openapi_document
from spmp.server import ManagementServer
from spmp.store import Store

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/api/health"})
"""Paths answered without a token: liveness probes (load balancers, systemd) carry no credentials."""

Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Endpoint) -> Endpoint:
    """Wrap a handler so any exception becomes the JSON error answer (see the module docstring).

    Done per handler rather than with Starlette's exception handlers because its catch-all
    ``Exception`` handler re-raises after answering, which would crash test clients and log twice.
    """

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return to_response(exc)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


class BearerAuth:
    """ASGI middleware: 401 with ``WWW-Authenticate: Bearer`` unless the request carries a valid token."""

    def __init__(self, app: ASGIApp, token: str, store: Store) -> None:
        self.app = app
        self._token = token.encode()
        self._store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is None:
            reason, header = "missing bearer token", 'Bearer realm="spmp"'
        elif await self._valid(presented):
            await self.app(scope, receive, send)
            return
        else:
            reason, header = "invalid bearer token", 'Bearer realm="spmp", error="invalid_token"'
        client = scope.get("client")
        log.info("api request refused", extra={"reason": reason, "client": client[0] if client else None})
        response = error_response(
            401, "unauthorized", f"{reason}: send Authorization: Bearer <token>", headers={"WWW-Authenticate": header}
        )
        await response(scope, receive, send)

    async def _valid(self, presented: str) -> bool:
        if hmac.compare_digest(presented.encode(), self._token):
            return True
        try:
            # The store looks up the token's SHA-256: timing reveals nothing about a token's bytes.
            return await self._store.verify_api_token(presented) is not None
        except Exception:
            log.exception("api token lookup failed")
            return False


def _bearer(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            return None
    return None


async def health(request: Request) -> JSONResponse:
    server: ManagementServer = request.app.state.server
    return JSONResponse({"status": "ok", "version": __version__, "clients": len(server.registrations())})


async def stats(request: Request) -> JSONResponse:
    """``GET /api/stats``: the management server's counters (see ``ManagementServer.stats`` and docs/api.md)."""
    server: ManagementServer = request.app.state.server
    return JSONResponse(server.stats())


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code, names.get(exc.status_code, "http_error"), str(exc.detail), headers=dict(exc.headers or {})
    )


def create_app(server: ManagementServer, store: Store, token: str, *, keepalive: float = 15.0) -> Starlette:
    """The REST API over ``server`` and ``store``; ``token`` is the bearer token it accepts.

    ``keepalive`` is the seconds between SSE keep-alive comments on ``/api/events``.
    """
    if not token:
        raise ValueError("the REST API needs a non-empty token")
    g = _guarded
    routes = [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/stats", g(stats), methods=["GET"]),
        Route("/api/events", g(events.events), methods=["GET"]),
        Route("/api/clients", g(clients.list_clients), methods=["GET"]),
        Route("/api/clients/{endpoint}", g(clients.get_client), methods=["GET"]),
        Route("/api/clients/{endpoint}/calibration", g(calibration.get_calibration), methods=["GET"]),
        Route("/api/clients/{endpoint}/calibration/backup", g(calibration.backup_calibration), methods=["POST"]),
        Route("/api/clients/{endpoint}/calibration/restore", g(calibration.restore_calibration), methods=["POST"]),
        Route(
            "/api/clients/{endpoint}/{rest:path}",
            g(clients.client_operation),
            methods=["GET", "PUT", "POST", "DELETE"],
        ),
        Route("/api/security", g(admin.list_security), methods=["GET"]),
        Route("/api/security/{endpoint}", g(admin.get_security), methods=["GET"]),
        Route("/api/security/{endpoint}", g(admin.put_security), methods=["PUT"]),
        Route("/api/security/{endpoint}", g(admin.delete_security), methods=["DELETE"]),
        Route("/api/bootstrap", g(admin.list_bootstrap), methods=["GET"]),
        Route("/api/bootstrap/{endpoint}", g(admin.get_bootstrap), methods=["GET"]),
        Route("/api/bootstrap/{endpoint}", g(admin.put_bootstrap), methods=["PUT"]),
        Route("/api/bootstrap/{endpoint}", g(admin.delete_bootstrap), methods=["DELETE"]),
        Route("/api/bootstrap/{endpoint}/start", g(admin.start_bootstrap), methods=["POST"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {HTTPException: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(BearerAuth, token=token, store=store)
    app.state.server = server
    app.state.store = store
    app.state.keepalive = keepalive
    app.state.closing = asyncio.Event()
    """Set when the HTTP server shuts down: open event streams end (see :mod:`spmp.api.events`)."""
    return app
