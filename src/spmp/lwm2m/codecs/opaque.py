"""application/octet-stream (content format 42): the raw bytes of one Opaque value.

TS Core §7.4.2: used for Read and Write of a single Opaque resource (or one instance of a multiple
Opaque resource), e.g. firmware images. The payload is the value, with no framing; any other
resource type has no octet-stream form and is refused.
"""

from __future__ import annotations

from spmp.lwm2m.codecs import register
from spmp.lwm2m.codecs._common import LIMITS, Limits, check_size
from spmp.lwm2m.codecs.text import single_value_model, single_value_node, single_value_of
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import UnsupportedContentFormatError
from spmp.lwm2m.model import ModelLookup, ResourceType
from spmp.lwm2m.node import Node
from spmp.lwm2m.path import Path

FMT = "application/octet-stream"


class OpaqueCodec:
    """The bytes of one Opaque resource or resource instance."""

    content_format = ContentFormat.OPAQUE

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes:
        value, kind = single_value_of(node, path, FMT)
        if kind is not ResourceType.OPAQUE:
            raise UnsupportedContentFormatError(
                f"{FMT} carries Opaque values only, not {kind.value}", content_format=FMT, where=str(path)
            )
        assert isinstance(value, bytes)  # coerce() made it bytes for an Opaque
        return value

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node:
        check_size(payload, FMT, self.limits)
        model = single_value_model(path, models, FMT)
        if model.type is not ResourceType.OPAQUE:
            raise UnsupportedContentFormatError(
                f"resource {model.id} ({model.name}) is {model.type.value}; {FMT} carries Opaque values only",
                content_format=FMT,
                where=str(path),
            )
        return single_value_node(bytes(payload), model, path)


register(OpaqueCodec())
