"""The REST API (Starlette, in the style of Eclipse Leshan's) and its HTTP server.

``create_app(server, store, token)`` builds the ASGI app; :func:`serve` runs it with uvicorn inside
the running event loop, so ``spmp server`` hosts CoAP and HTTP in one process. See docs/api.md.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from spmp.api.app import create_app
from spmp.api.token import load_or_create_token

__all__ = ["ApiServer", "bind", "create_app", "load_or_create_token", "serve"]

log = logging.getLogger(__name__)


class ApiServer(uvicorn.Server):
    """uvicorn's server, ending the app's open event streams first when it shuts down.

    uvicorn waits for open responses before it stops; an SSE stream never finishes on its own, so
    without this a shutdown would always sit out ``timeout_graceful_shutdown``.
    """

    def __init__(self, config: uvicorn.Config, on_started: Callable[[tuple[str, int]], None] | None = None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self._on_started is not None and self.started:
            self._on_started(self.bound_address)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        app = self.config.app
        if isinstance(app, Starlette):
            app.state.closing.set()
        await super().shutdown(sockets)

    @property
    def bound_address(self) -> tuple[str, int]:
        """The address actually bound (useful with port 0)."""
        for server in getattr(self, "servers", ()):
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                return str(host), int(port)
        return self.config.host, self.config.port


def make_server(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_started: Callable[[tuple[str, int]], None] | None = None,
) -> ApiServer:
    """An :class:`ApiServer` for ``app``; ``await server.serve()``, stop with ``server.should_exit = True``."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep SPMP's logging setup (secret masking); uvicorn's would replace it
        access_log=False,  # request lines could carry query strings an operator did not mean to log
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return ApiServer(config, on_started)


async def serve(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_started: Callable[[tuple[str, int]], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` over HTTP until cancelled (or until uvicorn is told to exit).

    With ``sock`` (a bound TCP socket, see :func:`bind`) it serves on that socket instead of binding
    ``host:port`` itself, so that the caller learns of a port in use before anything is printed.
    Cancelling the task that awaits this stops the server cleanly: open event streams end and the
    listening socket closes before the cancellation propagates.
    """
    server = make_server(app, host, port, on_started=on_started)
    # uvicorn captures SIGINT/SIGTERM while serving (main thread only) and re-raises them after its
    # shutdown, so Ctrl-C stops HTTP cleanly and then reaches the caller, which stops CoAP.
    sockets = [sock] if sock is not None else None
    try:
        await server.serve(sockets)
    except asyncio.CancelledError:
        server.should_exit = True
        if server.started:
            await server.shutdown(sockets)
        raise


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free one) for :func:`serve`; OSError if it cannot be."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
