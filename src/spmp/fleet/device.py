"""One simulated device of the fleet: its objects, its answers to server requests, its payload templates.

A fleet device is deliberately not a :class:`spmp.client.engine.Lwm2mClient` (an object tree, a state
machine and an Endpoint per device would cost too much at 10k–100k devices). It has three object
instances, all of them readable and observable:

* ``/3/0`` Device: manufacturer, model, serial number (the endpoint name), firmware version, binding;
* ``/3316/0`` Voltage: Sensor Value 5700 (the battery bus voltage, changing), units, min/max measured;
* ``/26242/0`` Port Status: name, Voltage Average 1, Amperage Average 2 (changing), Length 3.

Requests are answered with the real codecs (text for one value, SenML CBOR or TLV for instances and
objects, link-format for Discover). Notifications, the hot path, do not run the codecs: a
:class:`PayloadTemplate` is the encoded payload split around the changing float values, built once per
(path, content format) by encoding sentinel values with the real codec and cutting at their bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from spmp.coap.message import Code, Request, Response
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.link import DiscoverLink, RegistrationObjects, format_discover, format_registration
from spmp.lwm2m.model import ModelRegistry
from spmp.lwm2m.node import Node, Object, ObjectInstance, instance_from_model
from spmp.lwm2m.objects import ids
from spmp.lwm2m.path import Path
from spmp.lwm2m.values import Value

__all__ = [
    "CONTENT_FORMATS",
    "DYNAMIC",
    "OBJECTS",
    "DeviceData",
    "PayloadTemplate",
    "answer",
    "models",
    "registration_payload",
]

VOLTAGE_VALUE = 5700
PORT_VOLTAGE_AVERAGE = 1
PORT_AMPERAGE_AVERAGE = 2

OBJECTS: tuple[int, ...] = (ids.DEVICE, ids.VOLTAGE, ids.PORT_STATUS)
"""The objects every fleet device has, each with instance 0."""

DYNAMIC: dict[int, tuple[int, ...]] = {
    ids.VOLTAGE: (VOLTAGE_VALUE,),
    ids.PORT_STATUS: (PORT_VOLTAGE_AVERAGE, PORT_AMPERAGE_AVERAGE),
}
"""The float resources that change between notifications, per object."""

CONTENT_FORMATS: tuple[int, ...] = (ContentFormat.SENML_CBOR,)
"""Announced in the registration (``</>;ct=112``): the server then picks SenML CBOR for instances."""

_MULTI = frozenset({ContentFormat.SENML_CBOR, ContentFormat.TLV})
_DOUBLE = struct.Struct(">d")


def registration_payload() -> bytes:
    """The Register payload: ``</>;ct=112,</3/0>,</3316/0>,</26242/0>``."""
    objects = RegistrationObjects.create({}, [Path.of(o, 0) for o in OBJECTS], content_formats=CONTENT_FORMATS)
    return format_registration(objects).encode()


class DeviceData:
    """The changing values of one device: a smooth daily-ish swing plus a per-device phase."""

    __slots__ = ("endpoint", "index", "phase", "step")

    def __init__(self, endpoint: str, index: int) -> None:
        self.endpoint = endpoint
        self.index = index
        self.phase = (index * 0.618034) % 1.0 * 2 * math.pi
        self.step = 0

    def advance(self) -> None:
        self.step += 1

    def voltage(self) -> float:
        s = self.step
        return 50.4 + 2.2 * math.sin(self.phase + s * 0.05) + ((s * 7919 + self.index) % 97) * 0.001

    def current(self) -> float:
        return 1.5 + 1.2 * math.cos(self.phase + self.step * 0.03)

    def float_values(self, object_id: int) -> tuple[float, ...]:
        """The dynamic values of ``object_id`` in the order of :data:`DYNAMIC`."""
        if object_id == ids.VOLTAGE:
            return (self.voltage(),)
        if object_id == ids.PORT_STATUS:
            return (self.voltage() - 0.3, self.current())
        return ()

    def instance(self, object_id: int, floats: tuple[float, ...] | None = None) -> ObjectInstance | None:
        values = self.float_values(object_id) if floats is None else floats
        return _instance(object_id, self.endpoint, values)


_REGISTRY: ModelRegistry | None = None


def models() -> ModelRegistry:
    global _REGISTRY  # noqa: PLW0603 - built once, on first use
    if _REGISTRY is None:
        from spmp.lwm2m.objects import default_registry  # noqa: PLC0415 - loading the models is slow

        _REGISTRY = default_registry()
    return _REGISTRY


def _instance(object_id: int, endpoint: str, floats: tuple[float, ...]) -> ObjectInstance | None:
    model = models().object_model(object_id)
    if model is None:
        return None
    values: dict[int, Value | dict[int, Value]]
    if object_id == ids.DEVICE:
        values = {0: "SPMP fleet", 1: "spmp-fleet-sim", 2: endpoint, 3: "1.0", 16: "U"}
    elif object_id == ids.VOLTAGE:
        values = {VOLTAGE_VALUE: floats[0], 5701: "V", 5601: 46.0, 5602: 54.0}
    elif object_id == ids.PORT_STATUS:
        values = {0: "battery", PORT_VOLTAGE_AVERAGE: floats[0], PORT_AMPERAGE_AVERAGE: floats[1], 3: 60}
    else:
        return None
    return instance_from_model(model, 0, values)


def _node_at(data: DeviceData, path: Path) -> Node | None:
    """The node at ``path`` (object, instance, resource) with the device's current values, or None."""
    object_id = path.object_id
    if object_id not in OBJECTS:
        return None
    instance = data.instance(object_id)
    if instance is None:
        return None
    if path.is_object:
        return Object(object_id, {0: instance})
    if path.ids[1] != 0:
        return None
    if path.is_object_instance:
        return instance
    if path.is_resource:
        return instance.resources.get(path.ids[2])
    return None


# ------------------------------------------------------------------------------------------- templates

_SENTINELS = (1234.5678901234567, 2345.6789012345678, 3456.7890123456789)


class PayloadTemplate:
    """An encoded payload with holes for the dynamic floats (see the module docstring).

    ``render(values)`` joins the fixed parts with each value as an IEEE double (both CBOR's ``0xfb``
    form and a TLV 8-byte float keep their framing whatever the value), so it costs one
    ``struct.pack`` per value.
    """

    __slots__ = ("content_format", "parts", "text")

    def __init__(self, content_format: int, parts: tuple[bytes, ...], text: bool) -> None:
        self.content_format = content_format
        self.parts = parts
        self.text = text

    def render(self, values: tuple[float, ...]) -> bytes:
        if self.text:
            return f"{values[0]:.4f}".encode()
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out.append(_DOUBLE.pack(value))
            out.append(part)
        return b"".join(out)

    @classmethod
    def build(cls, path: Path, content_format: int) -> PayloadTemplate | None:
        """A template for notifications of ``path`` in ``content_format``; None when unsupported."""
        object_id = path.object_id
        if object_id not in OBJECTS or path.level > 3 or (path.level >= 2 and path.ids[1] != 0):
            return None
        dynamic = DYNAMIC.get(object_id, ())
        if path.is_resource:
            if path.ids[2] not in dynamic:
                dynamic = ()
            elif content_format == ContentFormat.TEXT:
                return cls(content_format, (), True)
        sentinels = _SENTINELS[: len(DYNAMIC.get(object_id, ()))]
        data = DeviceData("sentinel", 0)
        instance = data.instance(object_id, sentinels)
        if instance is None:
            return None
        node: Node | None
        if path.is_object:
            node = Object(object_id, {0: instance})
        elif path.is_object_instance:
            node = instance
        else:
            node = instance.resources.get(path.ids[2])
        if node is None:
            return None
        try:
            payload = codecs.encode(node, path, ContentFormat.of(content_format), models())
        except Lwm2mError:
            return None
        parts: list[bytes] = []
        rest = payload
        all_dynamic = DYNAMIC.get(object_id, ())
        for rid, sentinel in zip(all_dynamic, sentinels, strict=True):
            if rid not in dynamic:
                continue
            needle = _DOUBLE.pack(sentinel)
            if rest.count(needle) != 1:
                return None  # the codec did not write it as one double: no template, encode each time
            head, _, rest = rest.partition(needle)
            parts.append(head)
        parts.append(rest)
        return cls(content_format, tuple(parts), False)

    def values_for(self, path: Path, data: DeviceData) -> tuple[float, ...]:
        floats = data.float_values(path.ids[0])
        if path.is_resource:
            dynamic = DYNAMIC.get(path.ids[0], ())
            rid = path.ids[2]
            return (floats[dynamic.index(rid)],) if rid in dynamic else ()
        return floats


# ------------------------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Answer:
    """What a device answers to one request; ``observe`` says to start (True) or stop (False) one."""

    response: Response
    observe: bool | None = None
    path: Path | None = None


def _discover_payload(object_id: int) -> bytes:
    instance = DeviceData("discover", 0).instance(object_id)
    entries = [DiscoverLink(Path.of(object_id)), DiscoverLink(Path.of(object_id, 0))]
    if instance is not None:
        entries.extend(DiscoverLink(Path.of(object_id, 0, rid)) for rid in sorted(instance.resources))
    return format_discover(entries).encode()


_DISCOVER: dict[int, bytes] = {}


def discover_payload(object_id: int) -> bytes:
    payload = _DISCOVER.get(object_id)
    if payload is None:
        payload = _DISCOVER[object_id] = _discover_payload(object_id)
    return payload


def _text(code: int, message: str) -> Response:
    return Response(code, message.encode())


def answer(request: Request, data: DeviceData, on_execute: Callable[[Path], None] | None = None) -> Answer:
    """Serve one request from the server (Read, Observe, Discover, Write-Attributes, Execute)."""
    try:
        path = Path.parse("/" + "/".join(request.path))
    except Lwm2mError:
        return Answer(_text(Code.NOT_FOUND, "not an LwM2M path"))
    method = request.method
    if path.is_root or path.object_id not in OBJECTS:
        return Answer(_text(Code.NOT_FOUND, "no such object"))
    if method == Code.GET:
        accept = request.accept
        if accept == ContentFormat.LINK:
            if not path.is_object:
                return Answer(_text(Code.NOT_FOUND, "the fleet only discovers objects"))
            return Answer(Response(Code.CONTENT, discover_payload(path.ids[0]), content_format=ContentFormat.LINK))
        node = _node_at(data, path)
        if node is None:
            return Answer(_text(Code.NOT_FOUND, f"nothing at {path}"))
        fmt = accept if accept is not None else (ContentFormat.TEXT if path.is_resource else ContentFormat.SENML_CBOR)
        if fmt not in _MULTI and fmt != ContentFormat.TEXT:
            return Answer(_text(Code.NOT_ACCEPTABLE, "text, SenML CBOR or TLV"))
        try:
            payload = codecs.encode(node, path, ContentFormat.of(fmt), models())
        except Lwm2mError as exc:
            return Answer(_text(Code.NOT_ACCEPTABLE, str(exc)[:100]))
        response = Response(Code.CONTENT, payload, content_format=fmt)
        observe = request.observe
        if observe == 0:
            return Answer(response, True, path)
        if observe == 1:
            return Answer(response, False, path)
        return Answer(response)
    if method == Code.PUT and not request.payload:
        return Answer(Response(Code.CHANGED))  # Write-Attributes: accepted; the fleet notifies at --period
    if method == Code.POST and path.is_resource:
        if on_execute is not None:
            on_execute(path)
        return Answer(Response(Code.CHANGED))
    return Answer(_text(Code.METHOD_NOT_ALLOWED, "the fleet devices are read-only"))
