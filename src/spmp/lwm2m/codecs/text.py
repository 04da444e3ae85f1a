"""Plain text (content format 0): one resource or resource-instance value as UTF-8 text.

TS Core §7.4.1 and the data-type table of Appendix C: Integer, Unsigned Integer and Time are ASCII
decimal integers (Time in seconds since the Unix epoch), Float an ASCII decimal number, Boolean
``"0"``/``"1"``, Objlnk ``"object:instance"``, String and Corelnk the text itself. Opaque has no
natural text form; like the 1.0 table (and the shared ``value_to_text``) we carry it as base64
(RFC 4648 §4, padded), which is what 1.0 clients send; content format 42 is the better choice for it.

Plain text cannot carry a multiple resource as a whole, nor an object or an instance: those paths
raise :class:`UnsupportedContentFormatError`. The helpers at the top are shared by the other
single-value formats (octet-stream and CBOR), which have the same path rules.
"""

from __future__ import annotations

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size, checked, model_for_path, text_to_value, value_to_text
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import CodecError, UnsupportedContentFormatError
from spmp.lwm2m.model import ModelLookup, ResourceModel, ResourceType
from spmp.lwm2m.node import Node, ResourceInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value

FMT = "text/plain"


def single_value_model(path: Path, models: ModelLookup, fmt: str) -> ResourceModel:
    """The model of the one value ``path`` names, for a format that carries exactly one value.

    ``/o/i/r`` must be a single resource and ``/o/i/r/ri`` an instance of a multiple resource;
    executable resources carry no value at all.
    """
    if not (path.is_resource or path.is_resource_instance):
        raise UnsupportedContentFormatError(
            f"{fmt} carries one resource value; {path} is not a resource path", content_format=fmt, where=str(path)
        )
    model = model_for_path(models, path, fmt)
    if model.type is ResourceType.NONE:
        raise CodecError(
            f"resource {model.id} ({model.name}) is executable and has no value", content_format=fmt, where=str(path)
        )
    if path.is_resource and model.multiple:
        raise UnsupportedContentFormatError(
            f"resource {model.id} ({model.name}) is multiple; {fmt} carries a single value",
            content_format=fmt,
            where=str(path),
        )
    if path.is_resource_instance and not model.multiple:
        raise CodecError(
            f"resource {model.id} ({model.name}) is single and has no instances", content_format=fmt, where=str(path)
        )
    return model


def single_value_node(value: Value, model: ResourceModel, path: Path) -> SingleResource | ResourceInstance:
    """Wrap a decoded value in the node its path calls for."""
    if path.resource_instance_id is not None:
        return ResourceInstance(path.resource_instance_id, value, model.type)
    return SingleResource(model.id, value, model.type)


def single_value_of(node: Node, path: Path, fmt: str) -> tuple[Value, ResourceType]:
    """The canonical value and type of a single-value node, checked against ``path``."""
    if path.is_resource:
        if not isinstance(node, SingleResource) or node.id != path.resource_id:
            raise UnsupportedContentFormatError(
                f"{fmt} at {path} needs a single resource {path.resource_id}, got {_describe(node)}",
                content_format=fmt,
                where=str(path),
            )
    elif path.is_resource_instance:
        if not isinstance(node, ResourceInstance) or node.id != path.resource_instance_id:
            raise UnsupportedContentFormatError(
                f"{fmt} at {path} needs resource instance {path.resource_instance_id}, got {_describe(node)}",
                content_format=fmt,
                where=str(path),
            )
    else:
        raise UnsupportedContentFormatError(
            f"{fmt} carries one resource value; {path} is not a resource path", content_format=fmt, where=str(path)
        )
    if node.type is ResourceType.NONE:
        raise CodecError("an executable resource has no value to encode", content_format=fmt, where=str(path))
    return checked(node.value, node.type, fmt, str(path)), node.type


def _describe(node: object) -> str:
    ident = getattr(node, "id", None)
    return f"{type(node).__name__} {ident}" if ident is not None else type(node).__name__


class TextCodec:
    """text/plain;charset=utf-8 for one value (see the module docstring for the forms)."""

    content_format = ContentFormat.TEXT

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        value, kind = single_value_of(node, path, FMT)
        try:
            text = value_to_text(value, kind)
        except CodecError as exc:  # NaN and infinities have no decimal form
            raise CodecError(exc.reason, content_format=FMT, where=str(path)) from None
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates in a str cannot be UTF-8
            raise CodecError(
                f"string has no UTF-8 form at character {exc.start}", content_format=FMT, where=str(path)
            ) from None

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        check_size(payload, FMT, self.limits)
        model = single_value_model(path, models, FMT)
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(
                f"invalid UTF-8 ({exc.reason})", content_format=FMT, where=f"offset {exc.start} ({path})"
            ) from None
        return single_value_node(text_to_value(text, model.type, FMT, str(path)), model, path)


register(TextCodec())
