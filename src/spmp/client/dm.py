"""Serving a management server's requests: the Transport §6.4 mapping of CoAP onto LwM2M operations.

=========  ===========================================  =========================================
method     request                                      operation
=========  ===========================================  =========================================
GET        Accept 40                                    Discover
GET        Observe 0 / Observe 1                        Observe / cancel (then a Read)
GET        otherwise                                    Read (Accept picks the format)
PUT        payload                                      Write (replace)
PUT        query only                                   Write-Attributes
POST       /o/i/r                                       Execute
POST       /o/i with payload                            Write (partial update)
POST       /o                                           Create (2.01, Location-Path o/i)
DELETE     /o/i                                         Delete
FETCH      SenML/LwM2M CBOR path list                   Read-Composite, Observe-Composite
iPATCH     SenML/LwM2M CBOR values                      Write-Composite
=========  ===========================================  =========================================

Errors: OperationError → its code with the reason as diagnostic payload; an unsupported Accept →
4.06; an unsupported Content-Format → 4.15; any other decoding or attribute error → 4.00.
Default formats when no Accept is given: plain text for a single resource or resource instance
(opaque for an Opaque resource), TLV for an instance or object (the format every 1.0 and 1.1
server reads), and the request's own format for a composite operation.
"""

from __future__ import annotations

import logging

from spmp.client.reporting import Reporter
from spmp.client.tree import SECURITY_OBJECT, Caller, ObjectTree
from spmp.coap.endpoint import Endpoint
from spmp.coap.message import Code, Request, Response
from spmp.lwm2m import codecs
from spmp.lwm2m.attributes import NotificationAttributes, inherited, parse_query
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import (
    CodecError,
    InvalidAttributeError,
    InvalidValueError,
    PathError,
    UnsupportedContentFormatError,
)
from spmp.lwm2m.execute import parse_arguments
from spmp.lwm2m.link import DiscoverLink, format_discover
from spmp.lwm2m.model import ModelLookup, ResourceType
from spmp.lwm2m.node import MultipleResource, Node, Object, ObjectInstance
from spmp.lwm2m.path import Path
from spmp.lwm2m.response import OperationError, ResponseCode, bad_request, method_not_allowed

log = logging.getLogger(__name__)

LWM2M_VERSION = "1.1"
_OBSERVE_CANCEL = 1


def error_response(code: ResponseCode | Code | int, message: str) -> Response:
    return Response(int(code), message.encode("utf-8", "replace"))


def request_path(request: Request) -> Path:
    """The LwM2M path of a request's Uri-Path; a malformed one is a 4.00."""
    try:
        return Path.parse("/" + "/".join(request.path))
    except PathError as exc:
        raise bad_request(str(exc)) from None


def default_format(node: Node) -> int:
    if isinstance(node, Object | ObjectInstance | MultipleResource):
        return ContentFormat.TLV
    if node.type is ResourceType.OPAQUE:
        return ContentFormat.OPAQUE
    return ContentFormat.TEXT


def encode_for_accept(node: Node, path: Path, accept: int | None, models: ModelLookup) -> tuple[bytes, int]:
    """Encode a Read result; a format that does not exist or cannot carry the node is 4.06."""
    fmt = accept if accept is not None else default_format(node)
    try:
        return codecs.encode(node, path, fmt, models), fmt
    except (UnsupportedContentFormatError, CodecError) as exc:
        raise OperationError(ResponseCode.NOT_ACCEPTABLE, f"cannot answer {path} in format {fmt}: {exc}") from None


def decode_payload(request: Request, path: Path, models: ModelLookup) -> Node:
    fmt = request.content_format
    if fmt is None:
        raise OperationError(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, "a payload needs a Content-Format")
    try:
        codecs.codec_for(fmt)
    except UnsupportedContentFormatError as exc:
        raise OperationError(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, str(exc)) from None
    return codecs.decode(request.payload, path, fmt, models)


class DeviceManagement:
    """Answers one management server's requests on the endpoint of its session."""

    def __init__(self, tree: ObjectTree, models: ModelLookup, caller: Caller, reporter: Reporter) -> None:
        self.tree = tree
        self.models = models
        self.caller = caller
        self.reporter = reporter
        self.endpoint: Endpoint | None = None
        """Set by the session once its endpoint exists (Observe needs it)."""

    async def handle(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except OperationError as exc:
            return error_response(exc.code, exc.reason)
        except UnsupportedContentFormatError as exc:
            return error_response(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, str(exc))
        except (CodecError, InvalidAttributeError, InvalidValueError, PathError) as exc:
            return error_response(ResponseCode.BAD_REQUEST, str(exc))

    def _dispatch(self, request: Request) -> Response:
        path = request_path(request)
        if path.object_id == SECURITY_OBJECT:
            # The Security object belongs to the bootstrap interface only (TS Core E.1).
            raise OperationError(ResponseCode.UNAUTHORIZED, "the Security object is not accessible")
        method = request.method
        if method == Code.GET:
            if request.accept == ContentFormat.LINK:
                return self._discover(path)
            if request.observe == 0:
                return self._observe(request, (path,), composite=False, fmt=self._read_format(request, path))
            return self._read(request, path)
        if method == Code.PUT:
            if request.payload or request.content_format is not None:
                self.tree.write(path, decode_payload(request, path, self.models), replace=True, caller=self.caller)
                return Response(Code.CHANGED)
            return self._write_attributes(request, path)
        if method == Code.POST:
            return self._post(request, path)
        if method == Code.DELETE:
            if not path.is_object_instance:
                raise method_not_allowed(f"delete of {path} is not allowed")
            self.tree.delete(path, self.caller)
            return Response(Code.DELETED)
        if method == Code.FETCH:
            return self._composite_read(request)
        if method == Code.IPATCH:
            return self._composite_write(request)
        raise method_not_allowed(f"method {method} is not an LwM2M operation")

    # -- Read, Observe, Discover --------------------------------------------------------------------------

    def _read_format(self, request: Request, path: Path) -> int:
        if request.accept is not None:
            return request.accept
        return default_format(self.tree.read(path, self.caller))

    def _read(self, request: Request, path: Path) -> Response:
        node = self.tree.read(path, self.caller)
        payload, fmt = encode_for_accept(node, path, request.accept, self.models)
        return Response(Code.CONTENT, payload, content_format=fmt)

    def _observe(self, request: Request, paths: tuple[Path, ...], *, composite: bool, fmt: int) -> Response:
        assert self.endpoint is not None
        try:
            return self.reporter.observe(self.endpoint, request, paths, composite, fmt)
        except (UnsupportedContentFormatError, CodecError) as exc:
            raise OperationError(ResponseCode.NOT_ACCEPTABLE, f"cannot answer in format {fmt}: {exc}") from None

    def _discover(self, path: Path) -> Response:
        if path.is_root:
            raise method_not_allowed("Discover needs an object, instance or resource path")
        assert path.object_id is not None
        enabler = self.tree.enabler(path.object_id)
        model = enabler.model
        assigned = self.reporter.attributes
        links: list[DiscoverLink] = []
        if path.level >= 3:
            # One link, with the attributes in force there (inherited from the higher levels).
            node = self.tree.read(path, Caller(bootstrap=True))
            dim = len(node.instances) if isinstance(node, MultipleResource) else None
            links.append(DiscoverLink(path, inherited(path, assigned), dim=dim))
            return Response(Code.CONTENT, format_discover(links).encode(), content_format=ContentFormat.LINK)
        if path.is_object:
            version = model.version if model.version != "1.0" else None
            links.append(DiscoverLink(path, assigned.get(path, NotificationAttributes()), version=version))
            instance_ids = enabler.instance_ids()
        else:
            assert path.instance_id is not None
            self.tree.read(path, self.caller)  # 4.04 for an absent instance
            instance_ids = [path.instance_id]
        for iid in instance_ids:
            ipath = Path.of(model.id, iid)
            links.append(DiscoverLink(ipath, assigned.get(ipath, NotificationAttributes())))
            present = enabler.read_instance(iid).resources
            for rid in sorted(set(present) | {r.id for r in model.resources.values() if r.operations.executable}):
                rpath = ipath.child(rid)
                resource = present.get(rid)
                dim = len(resource.instances) if isinstance(resource, MultipleResource) else None
                links.append(DiscoverLink(rpath, assigned.get(rpath, NotificationAttributes()), dim=dim))
        return Response(Code.CONTENT, format_discover(links).encode(), content_format=ContentFormat.LINK)

    def _write_attributes(self, request: Request, path: Path) -> Response:
        if path.is_root:
            raise method_not_allowed("attributes cannot be written on the root path")
        update = parse_query(request.query, lwm2m_version=LWM2M_VERSION)
        if update.is_empty:
            raise bad_request("Write-Attributes names no attribute")
        assert path.object_id is not None
        model = self.tree.enabler(path.object_id).model
        if path.level >= 2:
            self.tree.read(path.parent if path.level == 4 else path, Caller(bootstrap=True))  # 4.04 when absent
        resource_model = model.resource(path.resource_id) if path.resource_id is not None else None
        if path.resource_id is not None and resource_model is None:
            raise OperationError(ResponseCode.NOT_FOUND, f"{path}: no such resource")
        update.check_for(path, resource_model)
        result = update.apply(self.reporter.attributes.get(path))
        if result.is_empty:
            self.reporter.attributes.pop(path, None)
        else:
            self.reporter.attributes[path] = result
        self.reporter.attributes_changed()
        return Response(Code.CHANGED)

    # -- POST: Execute, partial update, Create --------------------------------------------------------------

    def _post(self, request: Request, path: Path) -> Response:
        if path.is_resource:
            self.tree.execute(path, parse_arguments(request.payload), self.caller)
            return Response(Code.CHANGED)
        if path.is_object_instance:
            self.tree.write(path, decode_payload(request, path, self.models), replace=False, caller=self.caller)
            return Response(Code.CHANGED)
        if path.is_object:
            assert path.object_id is not None
            node = decode_payload(request, path, self.models) if request.payload else ObjectInstance(None)
            instances = list(node.instances.values()) if isinstance(node, Object) else [node]
            if not instances or not all(isinstance(i, ObjectInstance) for i in instances):
                raise bad_request("a Create payload must hold object instances")
            created = [self.tree.create(path, i, self.caller) for i in instances if isinstance(i, ObjectInstance)]
            # One created instance is named by Location-Path (Transport §6.4.3); several need no location.
            location = f"{path.object_id}/{created[0]}" if len(created) == 1 else None
            return Response(Code.CREATED, location_path=location)
        raise method_not_allowed(f"POST on {path} is not an LwM2M operation")

    # -- composite ----------------------------------------------------------------------------------------

    def _composite_read(self, request: Request) -> Response:
        fmt = request.content_format
        if fmt is None:
            raise OperationError(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, "a composite request needs a Content-Format")
        try:
            paths = tuple(codecs.multi_codec_for(fmt).decode_paths(request.payload))
        except UnsupportedContentFormatError as exc:
            raise OperationError(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, str(exc)) from None
        if not paths:
            raise bad_request("a composite request names no path")
        if any(p.object_id == SECURITY_OBJECT for p in paths):
            raise OperationError(ResponseCode.UNAUTHORIZED, "the Security object is not accessible")
        accept = request.accept if request.accept is not None else fmt
        if request.observe == 0:
            return self._observe(request, paths, composite=True, fmt=accept)
        nodes = self.reporter.read_nodes(paths, composite=True)
        try:
            payload = codecs.encode_nodes(nodes, accept, self.models)
        except (UnsupportedContentFormatError, CodecError) as exc:
            raise OperationError(ResponseCode.NOT_ACCEPTABLE, f"cannot answer in format {accept}: {exc}") from None
        return Response(Code.CONTENT, payload, content_format=accept)

    def _composite_write(self, request: Request) -> Response:
        fmt = request.content_format
        if fmt is None:
            raise OperationError(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, "a composite write needs a Content-Format")
        try:
            nodes = codecs.decode_nodes(request.payload, fmt, self.models)
        except UnsupportedContentFormatError as exc:
            raise OperationError(ResponseCode.UNSUPPORTED_CONTENT_FORMAT, str(exc)) from None
        if any(p.object_id == SECURITY_OBJECT or p.level < 2 for p in nodes):
            raise method_not_allowed("a composite write targets instances, resources or resource instances")
        # All or nothing (TS Core §6.3.4): snapshot the instances touched and put them back on failure.
        snapshots: dict[Path, ObjectInstance] = {}
        for path in nodes:
            ipath = Path(path.ids[:2])
            if ipath not in snapshots:
                snapshots[ipath] = self.tree.read(ipath, Caller(bootstrap=True))  # type: ignore[assignment]
        try:
            for path, node in nodes.items():
                if node is None:
                    raise bad_request(f"{path} has no value in a composite write")
                self.tree.write(path, node, replace=True, caller=self.caller)
        except Exception:
            for ipath, snapshot in snapshots.items():
                assert ipath.object_id is not None and ipath.instance_id is not None
                enabler = self.tree.enabler(ipath.object_id)
                current = enabler.read_instance(ipath.instance_id).resources
                enabler.remove_resources(ipath.instance_id, [rid for rid in current if rid not in snapshot.resources])
                enabler.write(ipath.instance_id, snapshot.resources)
            raise
        return Response(Code.CHANGED)
