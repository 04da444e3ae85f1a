"""Content-format codecs: encode nodes to bytes and decode bytes to nodes, driven by the model.

Each format lives in its own module and registers a codec object here. The public entry points are
:func:`encode`, :func:`decode` (one node at one path), and, for formats that can carry several paths
(SenML JSON/CBOR, LwM2M JSON, LwM2M CBOR): :func:`encode_nodes`, :func:`decode_nodes`,
:func:`decode_timestamped` and :func:`encode_timestamped`.

Node shape by path level: ``/o`` → :class:`Object`, ``/o/i`` → :class:`ObjectInstance`,
``/o/i/r`` → :class:`SingleResource` or :class:`MultipleResource`, ``/o/i/r/ri`` →
:class:`ResourceInstance`. Decoders raise only :class:`CodecError` (and its subclasses) for bad input.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import UnsupportedContentFormatError
from spmp.lwm2m.model import ModelLookup
from spmp.lwm2m.node import Node
from spmp.lwm2m.path import Path


@dataclass(frozen=True, slots=True)
class TimestampedNodes:
    """The nodes of one instant in a time series (notification or Send with timestamps).

    ``timestamp`` is None for values without a time. ``nodes`` maps each path to its node; a value of
    None means "this path has no value" (a composite read of an absent path).
    """

    timestamp: datetime | None
    nodes: Mapping[Path, Node | None] = field(default_factory=dict)


@runtime_checkable
class NodeCodec(Protocol):
    """A content format that carries one node at one path."""

    content_format: ContentFormat

    def encode(self, node: Node, path: Path, models: ModelLookup) -> bytes: ...

    def decode(self, payload: bytes, path: Path, models: ModelLookup) -> Node: ...


@runtime_checkable
class MultiNodeCodec(NodeCodec, Protocol):
    """A content format that can also carry several paths and time series (composite, Send)."""

    def encode_nodes(self, nodes: Mapping[Path, Node | None], models: ModelLookup) -> bytes: ...

    def decode_nodes(self, payload: bytes, models: ModelLookup) -> dict[Path, Node | None]: ...

    def encode_timestamped(self, series: Sequence[TimestampedNodes], models: ModelLookup) -> bytes: ...

    def decode_timestamped(self, payload: bytes, models: ModelLookup) -> list[TimestampedNodes]: ...

    def encode_paths(self, paths: Sequence[Path]) -> bytes: ...

    def decode_paths(self, payload: bytes) -> list[Path]: ...


_CODECS: dict[ContentFormat, NodeCodec] = {}


def register(codec: NodeCodec, *aliases: ContentFormat) -> None:
    """Make a codec available for its content format (and legacy aliases of it)."""
    _CODECS[codec.content_format] = codec
    for alias in aliases:
        _CODECS[alias] = codec


def codec_for(content_format: ContentFormat | int) -> NodeCodec:
    if _loaded:  # the per-call path: ContentFormat is an IntEnum, so members and ints share dict keys
        found = _CODECS.get(content_format)  # type: ignore[arg-type]
        if found is not None:
            return found
    _load_builtin_codecs()
    fmt = ContentFormat.of(int(content_format))
    found = _CODECS.get(fmt)
    if found is None:
        raise UnsupportedContentFormatError(f"no codec for content format {int(fmt)} ({fmt.media_type})")
    return found


def multi_codec_for(content_format: ContentFormat | int) -> MultiNodeCodec:
    found = codec_for(content_format)
    if not isinstance(found, MultiNodeCodec):
        raise UnsupportedContentFormatError(
            f"content format {int(found.content_format)} cannot carry several paths or time series"
        )
    return found


def supported_formats() -> list[ContentFormat]:
    _load_builtin_codecs()
    return sorted(_CODECS)


def encode(node: Node, path: Path, content_format: ContentFormat | int, models: ModelLookup) -> bytes:
    return codec_for(content_format).encode(node, path, models)


def decode(payload: bytes, path: Path, content_format: ContentFormat | int, models: ModelLookup) -> Node:
    return codec_for(content_format).decode(payload, path, models)


def encode_nodes(nodes: Mapping[Path, Node | None], content_format: ContentFormat | int, models: ModelLookup) -> bytes:
    return multi_codec_for(content_format).encode_nodes(nodes, models)


def decode_nodes(payload: bytes, content_format: ContentFormat | int, models: ModelLookup) -> dict[Path, Node | None]:
    return multi_codec_for(content_format).decode_nodes(payload, models)


def encode_timestamped(
    series: Sequence[TimestampedNodes], content_format: ContentFormat | int, models: ModelLookup
) -> bytes:
    return multi_codec_for(content_format).encode_timestamped(series, models)


def decode_timestamped(
    payload: bytes, content_format: ContentFormat | int, models: ModelLookup
) -> list[TimestampedNodes]:
    return multi_codec_for(content_format).decode_timestamped(payload, models)


_loaded = False


def _load_builtin_codecs() -> None:
    """Import the format modules once; each registers itself. Lazy to keep imports cycle-free."""
    global _loaded  # noqa: PLW0603 - a one-time import latch
    if _loaded:
        return
    _loaded = True
    for module in ("text", "opaque", "cbor_value", "tlv", "lwm2m_json", "senml_json", "senml_cbor", "lwm2m_cbor"):
        try:
            importlib.import_module(f"spmp.lwm2m.codecs.{module}")
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a format is being written
            if exc.name != f"spmp.lwm2m.codecs.{module}":
                raise
