"""The client side of the Bootstrap interface (TS Core §6.1, Transport §6.4.1).

:class:`BootstrapInterface` answers the bootstrap server's requests, always as Caller BOOTSTRAP:

* Bootstrap-Discover: GET with Accept 40 on ``/`` or ``/o`` →
  ``</>;lwm2m=1.1,</0/0>,</0/1>;ssid=101;uri="coaps://…",</1/0>;ssid=101,</3>;ver=1.1,</3/0>``
  (ssid and uri on Security instances of management servers, ssid on Server instances).
* Bootstrap-Read: GET on the Server object (1.1 allows only the Server and Access Control objects;
  anything else is 4.05, "target not allowed").
* Bootstrap-Write: PUT with a payload on ``/o``, ``/o/i`` or ``/o/i/r``; writing an absent instance
  creates it. Resources not in the payload are kept (the bootstrap server writes what it sets).
* Bootstrap-Delete: DELETE on ``/``, ``/o`` or ``/o/i`` (the bootstrap account and Device stay).
* Bootstrap-Finish: POST ``/bs``. The configuration must then hold at least one usable management
  server account with matching Short Server IDs; if not the answer is 4.06 Not Acceptable (TS) and
  the bootstrap server may fix it and finish again.

:func:`request_bootstrap` is the client-initiated start: ``POST /bs?ep=…&pct=…`` (expects 2.04).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from spmp.client.accounts import consistency_problem
from spmp.client.dm import decode_payload, encode_for_accept, error_response, request_path
from spmp.client.tree import BOOTSTRAP, SECURITY_OBJECT, SERVER_OBJECT, ObjectTree
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.coap.transport import Peer
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, InvalidValueError, PathError, UnsupportedContentFormatError
from spmp.lwm2m.link import BootstrapDiscover, BootstrapDiscoverLink, format_bootstrap_discover
from spmp.lwm2m.model import ModelLookup
from spmp.lwm2m.path import Path
from spmp.lwm2m.registration import BootstrapRequestParams
from spmp.lwm2m.response import OperationError, ResponseCode, method_not_allowed

log = logging.getLogger(__name__)

_BOOTSTRAP_READABLE = frozenset({SERVER_OBJECT, 2})  # Server, Access Control


class BootstrapFailedError(Exception):
    """The bootstrap server refused the Bootstrap-Request or never finished."""


class BootstrapInterface:
    """Serves a bootstrap server's requests; ``on_finish`` runs after an accepted Bootstrap-Finish."""

    def __init__(self, tree: ObjectTree, models: ModelLookup, on_finish: Callable[[], None]) -> None:
        self.tree = tree
        self.models = models
        self.on_finish = on_finish
        self.requests = 0

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        try:
            return self._dispatch(request)
        except OperationError as exc:
            return error_response(exc.code, exc.reason)
        except UnsupportedContentFormatError as exc:
            return error_response(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, str(exc))
        except (CodecError, InvalidValueError, PathError) as exc:
            return error_response(ResponseCode.BAD_REQUEST, str(exc))

    def _dispatch(self, request: Request) -> Response:
        if request.method == Code.POST and request.path == ("bs",):
            return self._finish()
        path = request_path(request)
        if request.method == Code.GET:
            if request.accept == ContentFormat.LINK:
                return self._discover(path)
            if path.object_id not in _BOOTSTRAP_READABLE or path.level > 2:
                raise method_not_allowed(f"Bootstrap-Read of {path}: only the Server object may be read")
            node = self.tree.read(path, BOOTSTRAP)
            payload, fmt = encode_for_accept(node, path, request.accept, self.models)
            return Response(Code.CONTENT, payload, content_format=fmt)
        if request.method == Code.PUT:
            if path.is_root:
                raise method_not_allowed("Bootstrap-Write needs an object path")
            self.tree.write(path, decode_payload(request, path, self.models), replace=False, caller=BOOTSTRAP)
            return Response(Code.CHANGED)
        if request.method == Code.DELETE:
            if path.level > 2:
                raise method_not_allowed("Bootstrap-Delete targets /, /o or /o/i")
            self.tree.delete(path, BOOTSTRAP)
            return Response(Code.DELETED)
        raise method_not_allowed(f"{request!r} is not a bootstrap operation")

    def _finish(self) -> Response:
        problem = consistency_problem(self.tree)
        if problem is not None:
            log.warning("Bootstrap-Finish refused: inconsistent configuration", extra={"reason": problem})
            return error_response(ResponseCode.NOT_ACCEPTABLE, problem)
        # Let the 2.04 go out before the engine tears the bootstrap session down.
        asyncio.get_running_loop().call_soon(self.on_finish)
        return Response(Code.CHANGED)

    def _discover(self, path: Path) -> Response:
        if path.level > 1:
            raise method_not_allowed("Bootstrap-Discover targets / or /o")
        object_ids = self.tree.object_ids() if path.is_root else [self.tree.enabler(path.object_id or 0).model.id]
        links: list[BootstrapDiscoverLink] = []
        for object_id in object_ids:
            enabler = self.tree.enabler(object_id)
            model = enabler.model
            version = model.version if model.version != "1.0" else None
            instance_ids = enabler.instance_ids()
            if version is not None or not instance_ids:
                links.append(BootstrapDiscoverLink(Path.of(object_id), version=version))
            for iid in instance_ids:
                instance = enabler.read_instance(iid)
                ssid: int | None = None
                uri: str | None = None
                if object_id == SECURITY_OBJECT and instance.value(1) is not True:
                    value, text = instance.value(10), instance.value(0)
                    ssid = value if isinstance(value, int) and not isinstance(value, bool) else None
                    uri = text if isinstance(text, str) else None
                elif object_id == SERVER_OBJECT:
                    value = instance.value(0)
                    ssid = value if isinstance(value, int) and not isinstance(value, bool) else None
                links.append(BootstrapDiscoverLink(Path.of(object_id, iid), ssid=ssid, uri=uri))
        payload = format_bootstrap_discover(BootstrapDiscover("1.1", tuple(links)))
        return Response(Code.CONTENT, payload.encode(), content_format=ContentFormat.LINK)


async def request_bootstrap(
    endpoint: Endpoint, peer: Peer, endpoint_name: str, preferred_format: int | None = ContentFormat.SENML_CBOR
) -> None:
    """Client-initiated bootstrap: POST /bs?ep=…&pct=…; raises BootstrapFailedError unless 2.04."""
    query = BootstrapRequestParams(endpoint_name, preferred_format).to_query()
    response = await endpoint.request(peer, Request(Code.POST, "bs", query=query))
    if response.code != Code.CHANGED:
        raise BootstrapFailedError(
            f"Bootstrap-Request refused with {response.code >> 5}.{response.code & 31:02d}: "
            f"{response.payload.decode('utf-8', 'replace')}"
        )
