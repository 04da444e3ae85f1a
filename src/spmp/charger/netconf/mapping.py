"""Declarative LwM2M ↔ YANG mappings: which YANG node backs each resource of Smart Load (BTS) 26244.

A mapping is a TOML file (format in docs/smart-load.md, "The NETCONF bridge"), so a BTS from another
manufacturer with another YANG model is a new file, not new code. Loading validates everything up
front against the LwM2M object model and names the file and the key in every error. The mapping is
pure: :meth:`BtsMapping.read_values` turns a ``<data>`` reply into resource values,
:meth:`BtsMapping.edit` turns a set of resource writes into one ``<config>`` for edit-config.

Paths are ``/``-separated node names from the top container, each optionally ``prefix:``-qualified
(prefixes from ``[namespaces]``; unqualified names are in ``namespace``) and list entries selected by
``[key=SOURCE]``: ``$instance`` (the LwM2M instance id), ``*`` (every entry the BTS has: a write goes
to each, a read gives the first entry's value) or a fixed key value.

Conversions (LwM2M value → YANG text, and back):

* ``boolean``: Boolean ↔ ``true``/``false``; ``invert = true`` for a leaf that means the opposite
  (``disabled``).
* ``integer``: Integer ↔ decimal digits; ``min``/``max`` and ``clamp``; ``scale`` multiplies on the
  way to YANG.
* ``decimal64``: Float ↔ decimal with ``fraction-digits``; ``step`` with ``rounding`` (``down``,
  ``up``, ``nearest``) applied from ``min`` (or 0); ``min``/``max`` with ``clamp``; ``choices`` (the
  nearest allowed value); ``scale``.
* ``enumeration``: ``[resource.enum]`` maps YANG enum names to LwM2M values.
* ``string``: as is.

A value the mapping cannot express (out of range without ``clamp``, no enum for it) raises
:class:`MappingValueError` before anything is sent to the BTS.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree

from spmp.lwm2m.model import ObjectModel, ResourceType
from spmp.lwm2m.objects.smart_load import SMART_LOAD_BTS
from spmp.lwm2m.values import Value

__all__ = [
    "ANY",
    "INSTANCE",
    "NC_NS",
    "STATE_NAMES",
    "BtsMapping",
    "Conversion",
    "MappingError",
    "MappingValueError",
    "NodeMapping",
    "Step",
    "load_builtin_mapping",
    "load_mapping",
    "parse_mapping",
]

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
INSTANCE = "$instance"
"""Key source: the LwM2M object instance id."""
ANY = "*"
"""Key source: every list entry the BTS has."""
#: Read-only state leaves the charger understands, with the LwM2M-side type of their value.
STATE_NAMES: Mapping[str, ResourceType] = {
    "power-draw-watts": ResourceType.FLOAT,
    "on-air": ResourceType.BOOLEAN,
    "serving-users": ResourceType.INTEGER,
    "uptime": ResourceType.INTEGER,
}
KINDS = ("boolean", "integer", "decimal64", "enumeration", "string")
_COMPATIBLE: Mapping[str, tuple[ResourceType, ...]] = {
    "boolean": (ResourceType.BOOLEAN,),
    "integer": (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER),
    "decimal64": (ResourceType.FLOAT, ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER),
    "enumeration": tuple(ResourceType),
    "string": (ResourceType.STRING,),
}
_SEGMENT = re.compile(r"^(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)((?:\[[^\]]*\])*)$")
_KEY = re.compile(r"\[(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)=([^\]]+)\]")


class MappingError(ValueError):
    """A mapping file is invalid; the message starts with ``<file>: <key>:``."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key


class MappingValueError(ValueError):
    """A value the mapping cannot turn into YANG (the LwM2M write is answered 4.00)."""


# ------------------------------------------------------------------------------------------ model
@dataclass(frozen=True, slots=True)
class Step:
    """One node of a path: its qualified name and, for a list entry, the keys that select it."""

    namespace: str
    name: str
    keys: tuple[tuple[str, str, str], ...] = ()
    """(namespace, key leaf name, source): source is INSTANCE, ANY or a fixed value."""

    @property
    def tag(self) -> str:
        return f"{{{self.namespace}}}{self.name}"

    def __str__(self) -> str:
        return self.name + "".join(f"[{name}={source}]" for _, name, source in self.keys)


@dataclass(frozen=True, slots=True)
class Conversion:
    """How one leaf's YANG text and the LwM2M value convert; see the module docstring."""

    kind: str
    lwm2m_type: ResourceType
    fraction_digits: int = 0
    step: Decimal | None = None
    rounding: str = "nearest"
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    clamp: bool = False
    choices: tuple[Decimal, ...] = ()
    scale: Decimal = Decimal(1)
    invert: bool = False
    enum: Mapping[str, Value] = field(default_factory=dict)

    def to_yang(self, value: Value) -> str:
        """The YANG text for an LwM2M value; MappingValueError when it cannot be expressed."""
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise MappingValueError(f"{value!r} is not a Boolean")
            return "true" if value != self.invert else "false"
        if self.kind == "string":
            if not isinstance(value, str):
                raise MappingValueError(f"{value!r} is not a String")
            return value
        if self.kind == "enumeration":
            for name, mapped in self.enum.items():
                if type(mapped) is type(value) and mapped == value:
                    return name
            raise MappingValueError(f"{value!r} has no counterpart in the BTS's enumeration ({', '.join(self.enum)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise MappingValueError(f"{value!r} is not a finite number")
        number = Decimal(repr(value) if isinstance(value, float) else value) * self.scale
        number = self._limit(number)
        if self.kind == "integer":
            return str(int(number.to_integral_value(ROUND_HALF_EVEN)))
        return f"{number.quantize(Decimal(1).scaleb(-self.fraction_digits), ROUND_HALF_EVEN):.{self.fraction_digits}f}"

    def _limit(self, number: Decimal) -> Decimal:
        if self.choices:
            return min(self.choices, key=lambda c: (abs(c - number), c))
        if self.step is not None:
            base = self.minimum if self.minimum is not None else Decimal(0)
            mode = {"down": ROUND_FLOOR, "up": ROUND_CEILING}.get(self.rounding, ROUND_HALF_EVEN)
            number = base + ((number - base) / self.step).to_integral_value(mode) * self.step
        for bound, below in ((self.minimum, True), (self.maximum, False)):
            if bound is None or (number >= bound if below else number <= bound):
                continue
            if not self.clamp:
                word = "below the minimum" if below else "above the maximum"
                raise MappingValueError(f"{number / self.scale} is {word} {bound / self.scale}")
            number = bound
        return number

    def from_yang(self, text: str) -> Value:
        """The LwM2M value of a leaf's YANG text; ValueError when the text is not of the leaf's type."""
        raw = text.strip()
        if self.kind == "boolean":
            if raw not in ("true", "false"):
                raise ValueError(f"{raw!r} is not a YANG boolean")
            return (raw == "true") != self.invert
        if self.kind == "string":
            return text
        if self.kind == "enumeration":
            if raw not in self.enum:
                raise ValueError(f"{raw!r} is not one of {', '.join(self.enum)}")
            return self.enum[raw]
        try:
            number = Decimal(raw) / self.scale
        except InvalidOperation:
            raise ValueError(f"{raw!r} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"{raw!r} is not a finite number")
        if self.lwm2m_type is ResourceType.FLOAT:
            return float(number)
        return int(number.to_integral_value(ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class NodeMapping:
    """A resource (or a state value) and the YANG leaf behind it."""

    key: str
    """``resource[N]`` or ``state[N]``, for messages."""
    name: str
    steps: tuple[Step, ...]
    conversion: Conversion
    default: str | None = None
    """YANG text to assume when the BTS reports no such leaf (its YANG default)."""
    resource_id: int | None = None

    @property
    def path_text(self) -> str:
        return "/" + "/".join(str(s) for s in self.steps)


@dataclass(frozen=True)
class BtsMapping:
    """A validated mapping file; see the module docstring."""

    name: str
    source: str
    object_id: int
    instances: tuple[int, ...]
    resources: Mapping[int, NodeMapping]
    state: Mapping[str, NodeMapping]
    description: str = ""

    @property
    def root(self) -> Step:
        """The top container every path starts from (one per mapping)."""
        first = next(iter(self.resources.values()), None) or next(iter(self.state.values()))
        return first.steps[0]

    def filter_xml(self) -> etree._Element:
        """A subtree filter selecting the top container: configuration and state."""
        return etree.Element(self.root.tag, nsmap={None: self.root.namespace})

    # -- reading ----------------------------------------------------------------------------------
    def read_values(self, data: etree._Element, instance_id: int) -> dict[int, Value]:
        """The resources of ``instance_id`` in a ``<data>`` element; ValueError on a malformed leaf."""
        values: dict[int, Value] = {}
        for rid, node in self.resources.items():
            found = _leaf_text(data, node, instance_id)
            if found is not None:
                values[rid] = _convert(node, found)
        return values

    def read_state(self, data: etree._Element, instance_id: int = 0) -> dict[str, Value]:
        """The state values (``power-draw-watts``, ``on-air``, …) the mapping names."""
        out: dict[str, Value] = {}
        for name, node in self.state.items():
            found = _leaf_text(data, node, instance_id)
            if found is not None:
                out[name] = _convert(node, found)
        return out

    # -- writing ----------------------------------------------------------------------------------
    def edit(self, writes: Mapping[int, Value], instance_id: int, current: etree._Element | None) -> etree._Element:
        """One ``<config>`` element merging every write; ``current`` (the last ``<data>``) gives ``*`` keys.

        Raises KeyError for a resource the mapping does not have and MappingValueError for a value it
        cannot express or a ``*`` list with no entry to write to.
        """
        config = etree.Element(f"{{{NC_NS}}}config", nsmap={"nc": NC_NS})
        for rid, value in writes.items():
            node = self.resources[rid]
            text = node.conversion.to_yang(value)
            for keys in _expand(node.steps, instance_id, current):
                parent = config
                for step, key_values in zip(node.steps, keys, strict=True):
                    parent = _child(parent, step, key_values)
                parent.text = text
        return config


def _convert(node: NodeMapping, text: str) -> Value:
    try:
        return node.conversion.from_yang(text)
    except ValueError as exc:
        raise ValueError(f"{node.path_text}: {exc}") from None


def _matches(elem: etree._Element, step: Step, key_values: Mapping[str, str]) -> bool:
    for (ns, name, _), wanted in zip(step.keys, key_values.values(), strict=True):
        key = elem.find(f"{{{ns}}}{name}")
        if key is None or (key.text or "").strip() != wanted:
            return False
    return True


def _key_values(step: Step, instance_id: int) -> dict[str, str] | None:
    """Fixed key values of a step, None when a key is ANY."""
    out: dict[str, str] = {}
    for _, name, source in step.keys:
        if source == ANY:
            return None
        out[name] = str(instance_id) if source == INSTANCE else source
    return out


def _leaf_text(data: etree._Element, node: NodeMapping, instance_id: int) -> str | None:
    elems = [data]
    for index, step in enumerate(node.steps):
        found: list[etree._Element] = []
        for parent in elems:
            children = parent.findall(step.tag)
            if step.keys:
                fixed = _key_values(step, instance_id)
                # ANY: the first entry speaks for all.
                children = [c for c in children if _matches(c, step, fixed)] if fixed is not None else children[:1]
            found.extend(children)
        if not found:
            # A missing container or leaf takes the default; a missing list entry has no value.
            missing_entry = any(s.keys for s in node.steps[: index + 1])
            return None if missing_entry and node.steps[index].keys else node.default
        elems = found
    return elems[0].text or ""


def _expand(steps: tuple[Step, ...], instance_id: int, current: etree._Element | None) -> list[list[dict[str, str]]]:
    """Every combination of key values a write goes to (several when a step's key is ANY)."""
    combos: list[list[dict[str, str]]] = [[]]
    context: list[etree._Element | None] = [current]
    for step in steps:
        fixed = _key_values(step, instance_id)
        new_combos: list[list[dict[str, str]]] = []
        new_context: list[etree._Element | None] = []
        for combo, parent in zip(combos, context, strict=True):
            children = [] if parent is None else parent.findall(step.tag)
            if fixed is not None:
                match = next((c for c in children if _matches(c, step, fixed)), None)
                new_combos.append([*combo, fixed])
                new_context.append(match)
                continue
            if not children:
                raise MappingValueError(f"the BTS has no {step.name} entry to write to")
            for child in children:
                values = {name: (child.findtext(f"{{{ns}}}{name}") or "").strip() for ns, name, _ in step.keys}
                new_combos.append([*combo, values])
                new_context.append(child)
        combos, context = new_combos, new_context
    return combos


def _child(parent: etree._Element, step: Step, key_values: Mapping[str, str]) -> etree._Element:
    for existing in parent.findall(step.tag):
        if _matches(existing, step, key_values):
            return existing
    nsmap = {None: step.namespace} if parent.nsmap.get(None) != step.namespace else None
    elem = etree.SubElement(parent, step.tag, nsmap=nsmap)
    for ns, name, _ in step.keys:
        etree.SubElement(elem, f"{{{ns}}}{name}").text = key_values[name]
    return elem


# ----------------------------------------------------------------------------------------- loading
class _Check:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> MappingError:
        return MappingError(self.source, key, message)

    def table(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        return value

    def integer(self, value: object, key: str, lo: int = 0, hi: int = 65534) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"must be an integer in {lo}..{hi}")
        return value

    def decimal(self, value: object, key: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, "must be a number")
        return Decimal(repr(value) if isinstance(value, float) else value)

    def unknown(self, table: Mapping[str, Any], allowed: Iterable[str], key: str) -> None:
        extra = sorted(set(table) - set(allowed))
        if extra:
            where = f"{key}.{extra[0]}" if key else extra[0]
            raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


_TOP_KEYS = ("format", "name", "description", "object", "instances", "namespace", "namespaces", "resource", "state")
_NODE_KEYS = (
    "id",
    "name",
    "path",
    "type",
    "default",
    "fraction-digits",
    "step",
    "rounding",
    "min",
    "max",
    "clamp",
    "choices",
    "scale",
    "invert",
    "enum",
)


def parse_mapping(text: str, source: str = "<mapping>", model: ObjectModel = SMART_LOAD_BTS) -> BtsMapping:
    """Parse and validate a mapping file's text against ``model`` (Smart Load (BTS) by default)."""
    check = _Check(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise check.fail("", f"not valid TOML: {exc}") from None
    check.unknown(document, _TOP_KEYS, "")
    if document.get("format") != 1:
        raise check.fail("format", "must be 1 (the only mapping format so far)")
    name = check.string(document.get("name"), "name")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise check.fail("description", "must be a string")
    object_id = check.integer(document.get("object", model.id), "object")
    if object_id != model.id:
        raise check.fail("object", f"must be {model.id} ({model.name})")
    instances_raw = document.get("instances", [0])
    if not isinstance(instances_raw, list) or not instances_raw:
        raise check.fail("instances", "must be a non-empty list of instance ids")
    instances = tuple(check.integer(i, f"instances[{n}]") for n, i in enumerate(instances_raw))
    if len(set(instances)) != len(instances):
        raise check.fail("instances", "lists an instance twice")
    default_ns = check.string(document.get("namespace"), "namespace")
    namespaces = {
        prefix: check.string(uri, f"namespaces.{prefix}")
        for prefix, uri in check.table(document.get("namespaces", {}), "namespaces").items()
    }

    resources_raw = document.get("resource", [])
    if not isinstance(resources_raw, list):
        raise check.fail("resource", "must be an array of tables ([[resource]])")
    nodes: dict[int, NodeMapping] = {}
    for index, item in enumerate(resources_raw):
        key = f"resource[{index}]"
        table = check.table(item, key)
        check.unknown(table, _NODE_KEYS, key)
        rid = check.integer(table.get("id"), f"{key}.id")
        resource_model = model.resource(rid)
        if resource_model is None:
            raise check.fail(f"{key}.id", f"{model.name} ({model.id}) has no resource {rid}")
        if not resource_model.operations.writable or resource_model.multiple:
            raise check.fail(f"{key}.id", f"resource {rid} ({resource_model.name}) is not a writable single resource")
        if "name" in table and table["name"] != resource_model.name:
            raise check.fail(f"{key}.name", f"resource {rid} is {resource_model.name!r}, not {table['name']!r}")
        if rid in nodes:
            raise check.fail(f"{key}.id", f"resource {rid} is mapped twice (also {nodes[rid].key})")
        nodes[rid] = _node(
            check,
            key,
            table,
            name=resource_model.name,
            lwm2m_type=resource_model.type,
            default_ns=default_ns,
            namespaces=namespaces,
            rid=rid,
        )

    state_raw = document.get("state", [])
    if not isinstance(state_raw, list):
        raise check.fail("state", "must be an array of tables ([[state]])")
    state: dict[str, NodeMapping] = {}
    for index, item in enumerate(state_raw):
        key = f"state[{index}]"
        table = check.table(item, key)
        check.unknown(table, tuple(k for k in _NODE_KEYS if k != "id"), key)
        state_name = check.string(table.get("name"), f"{key}.name")
        if state_name not in STATE_NAMES:
            raise check.fail(f"{key}.name", f"must be one of {', '.join(STATE_NAMES)}")
        if state_name in state:
            raise check.fail(f"{key}.name", f"{state_name} is mapped twice")
        state[state_name] = _node(
            check,
            key,
            table,
            name=state_name,
            lwm2m_type=STATE_NAMES[state_name],
            default_ns=default_ns,
            namespaces=namespaces,
            rid=None,
        )

    if not nodes and not state:
        raise check.fail("resource", "the mapping maps nothing")
    roots = {n.steps[0].tag for n in (*nodes.values(), *state.values())}
    if len(roots) != 1:
        raise check.fail("resource", f"every path must start at the same top container, not {sorted(roots)}")
    for node in (*nodes.values(), *state.values()):
        if node.steps[0].keys:
            raise check.fail(f"{node.key}.path", "the top container cannot be a list entry")
    return BtsMapping(name, source, object_id, instances, nodes, state, description)


def _node(
    check: _Check,
    key: str,
    table: Mapping[str, Any],
    *,
    name: str,
    lwm2m_type: ResourceType,
    default_ns: str,
    namespaces: Mapping[str, str],
    rid: int | None,
) -> NodeMapping:
    steps = _path(check, f"{key}.path", table.get("path"), default_ns, namespaces)
    kind = table.get("type")
    if kind not in KINDS:
        raise check.fail(f"{key}.type", f"must be one of {', '.join(KINDS)}")
    if lwm2m_type not in _COMPATIBLE[kind]:
        raise check.fail(f"{key}.type", f"{kind} cannot carry {name!r} (LwM2M {lwm2m_type.value})")
    numeric = kind in ("integer", "decimal64")
    for option in ("fraction-digits", "step", "rounding", "min", "max", "clamp", "choices", "scale"):
        if option in table and not numeric:
            raise check.fail(f"{key}.{option}", f"only for integer and decimal64, not {kind}")
    if "invert" in table and kind != "boolean":
        raise check.fail(f"{key}.invert", "only for boolean")
    if ("enum" in table) != (kind == "enumeration"):
        raise check.fail(f"{key}.enum", "an enumeration needs an enum table, and only an enumeration has one")
    digits = table.get("fraction-digits", 0 if kind == "integer" else None)
    if kind == "decimal64" and digits is None:
        raise check.fail(f"{key}.fraction-digits", "is required for decimal64")
    if numeric:
        digits = check.integer(digits, f"{key}.fraction-digits", 0, 18)
        if kind == "integer" and digits:
            raise check.fail(f"{key}.fraction-digits", "an integer has none")
    rounding = table.get("rounding", "nearest")
    if rounding not in ("down", "up", "nearest"):
        raise check.fail(f"{key}.rounding", "must be down, up or nearest")
    step = check.decimal(table["step"], f"{key}.step") if "step" in table else None
    if step is not None and step <= 0:
        raise check.fail(f"{key}.step", "must be positive")
    minimum = check.decimal(table["min"], f"{key}.min") if "min" in table else None
    maximum = check.decimal(table["max"], f"{key}.max") if "max" in table else None
    if minimum is not None and maximum is not None and minimum > maximum:
        raise check.fail(f"{key}.max", "is below min")
    clamp = table.get("clamp", False)
    if not isinstance(clamp, bool):
        raise check.fail(f"{key}.clamp", "must be true or false")
    choices_raw = table.get("choices", [])
    if not isinstance(choices_raw, list):
        raise check.fail(f"{key}.choices", "must be a list of numbers")
    choices = tuple(sorted(check.decimal(c, f"{key}.choices[{n}]") for n, c in enumerate(choices_raw)))
    if choices and step is not None:
        raise check.fail(f"{key}.choices", "choose choices or step, not both")
    scale = check.decimal(table["scale"], f"{key}.scale") if "scale" in table else Decimal(1)
    if scale == 0:
        raise check.fail(f"{key}.scale", "must not be 0")
    invert = table.get("invert", False)
    if not isinstance(invert, bool):
        raise check.fail(f"{key}.invert", "must be true or false")
    enum: dict[str, Value] = {}
    if kind == "enumeration":
        for enum_name, value in check.table(table["enum"], f"{key}.enum").items():
            if not isinstance(value, bool | int | float | str):
                raise check.fail(f"{key}.enum.{enum_name}", "must be a Boolean, number or string")
            ok = {
                ResourceType.BOOLEAN: bool,
                ResourceType.STRING: str,
                ResourceType.FLOAT: float,
            }.get(lwm2m_type, int)
            if type(value) is not ok:
                raise check.fail(f"{key}.enum.{enum_name}", f"must be a {lwm2m_type.value} like {name!r}")
            enum[enum_name] = value
        if not enum:
            raise check.fail(f"{key}.enum", "must name at least one value")
    default = table.get("default")
    if default is not None and not isinstance(default, str):
        raise check.fail(f"{key}.default", 'must be the leaf\'s YANG text, a string (e.g. "true", "33.0")')
    conversion = Conversion(
        kind=kind,
        lwm2m_type=lwm2m_type,
        fraction_digits=digits or 0,
        step=step,
        rounding=rounding,
        minimum=minimum,
        maximum=maximum,
        clamp=clamp,
        choices=choices,
        scale=scale,
        invert=invert,
        enum=enum,
    )
    node = NodeMapping(key, name, steps, conversion, default, rid)
    if default is not None:
        try:
            conversion.from_yang(default)
        except ValueError as exc:
            raise check.fail(f"{key}.default", str(exc)) from None
    return node


def _path(check: _Check, key: str, value: object, default_ns: str, namespaces: Mapping[str, str]) -> tuple[Step, ...]:
    text = check.string(value, key)
    parts = text.strip("/").split("/")
    steps: list[Step] = []
    for part in parts:
        match = _SEGMENT.match(part)
        if match is None:
            raise check.fail(key, f"{part!r} is not a node name (prefix:name[key=source])")
        prefix, name, predicates = match.groups()
        keys: list[tuple[str, str, str]] = []
        consumed = "".join(m.group(0) for m in _KEY.finditer(predicates))
        if consumed != predicates:
            raise check.fail(key, f"{part!r}: a list key is written [name=$instance], [name=*] or [name=value]")
        for kmatch in _KEY.finditer(predicates):
            kprefix, kname, source = kmatch.groups()
            keys.append((_namespace(check, key, kprefix, default_ns, namespaces), kname, source.strip()))
        steps.append(Step(_namespace(check, key, prefix, default_ns, namespaces), name, tuple(keys)))
    if len(steps) < 2:
        raise check.fail(key, "a leaf sits inside a top container: at least container/leaf")
    if steps[-1].keys:
        raise check.fail(key, "must end at a leaf, not a list entry")
    return tuple(steps)


def _namespace(check: _Check, key: str, prefix: str | None, default_ns: str, namespaces: Mapping[str, str]) -> str:
    if prefix is None:
        return default_ns
    if prefix not in namespaces:
        raise check.fail(key, f"prefix {prefix!r} is not in [namespaces]")
    return namespaces[prefix]


def load_mapping(path: str | Path, model: ObjectModel = SMART_LOAD_BTS) -> BtsMapping:
    """Load and validate a mapping file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(str(path), "", f"cannot read: {exc}") from None
    return parse_mapping(text, str(path), model)


def load_builtin_mapping(name: str = "spmp-bts") -> BtsMapping:
    """A mapping shipped with SPMP (``maps/<name>.toml``), e.g. ``spmp-bts``."""
    resource = resources.files("spmp.charger.netconf") / "maps" / f"{name}.toml"
    if not resource.is_file():
        raise MappingError(f"maps/{name}.toml", "", "no such built-in mapping")
    return parse_mapping(resource.read_text(encoding="utf-8"), f"maps/{name}.toml")
