"""The pure LwM2M core: paths, object models, the node tree and every content-format codec.

Nothing in this package does I/O or uses asyncio; it works on values and bytes only.
"""

from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import (
    CodecError,
    InvalidValueError,
    Lwm2mError,
    ModelError,
    PathError,
    UnsupportedContentFormatError,
)
from spmp.lwm2m.model import (
    ModelLookup,
    ModelRegistry,
    ObjectModel,
    Operations,
    ResourceModel,
    ResourceType,
    ValueRange,
)
from spmp.lwm2m.node import (
    MultipleResource,
    Node,
    Object,
    ObjectInstance,
    Resource,
    ResourceInstance,
    SingleResource,
    instance_from_model,
    resource_from_model,
    validate,
)
from spmp.lwm2m.path import ROOT, Path, PathLevel
from spmp.lwm2m.values import ObjectLink, Value

__all__ = [
    "ROOT",
    "CodecError",
    "ContentFormat",
    "InvalidValueError",
    "Lwm2mError",
    "ModelError",
    "ModelLookup",
    "ModelRegistry",
    "MultipleResource",
    "Node",
    "Object",
    "ObjectInstance",
    "ObjectLink",
    "ObjectModel",
    "Operations",
    "Path",
    "PathError",
    "PathLevel",
    "Resource",
    "ResourceInstance",
    "ResourceModel",
    "ResourceType",
    "SingleResource",
    "UnsupportedContentFormatError",
    "Value",
    "ValueRange",
    "instance_from_model",
    "resource_from_model",
    "validate",
]
