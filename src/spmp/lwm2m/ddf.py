"""Loader for OMA LwM2M object definition files (DDF, the XML format of the OMNA registry).

The structure enforced is the one ``LWM2M.xsd`` requires (every element it lists, in any order,
with the enumerated values it allows), widened only where the LwM2M 1.1+ registry files go beyond
that 2017 schema: the types ``Unsigned Integer`` and ``Corelnk`` are accepted.

Every error is a :class:`~spmp.lwm2m.errors.ModelError` naming the file and the line of the
offending element, so that an operator can fix a vendor's file without guessing. The standard
library's ElementTree drops line numbers, so this module builds its own small tree from an
expat parser that records ``CurrentLineNumber`` for each element.

Definition files come from vendors and the network: the parser refuses any DOCTYPE (and with it
every entity declaration), so neither entity expansion ("billion laughs") nor external entities
can be smuggled in, and it refuses files above :data:`MAX_DDF_BYTES`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from spmp.lwm2m.errors import ModelError
from spmp.lwm2m.model import ModelRegistry, ObjectModel, Operations, ResourceModel, ResourceType, ValueRange

__all__ = ["MAX_DDF_BYTES", "load_ddf", "load_ddf_directory", "load_ddf_file"]

#: The largest registry files are a few hundred KiB; anything far above is not a definition file.
MAX_DDF_BYTES = 4 * 1024 * 1024

_OBJECT_CHILDREN_REQUIRED = (
    "Name",
    "Description1",
    "ObjectID",
    "ObjectURN",
    "MultipleInstances",
    "Mandatory",
    "Resources",
    "Description2",
)
_OBJECT_CHILDREN_OPTIONAL = ("LWM2MVersion", "ObjectVersion")
_ITEM_CHILDREN_REQUIRED = (
    "Name",
    "Operations",
    "MultipleInstances",
    "Mandatory",
    "Type",
    "RangeEnumeration",
    "Units",
    "Description",
)
_MULTIPLICITY = {"Single": False, "Multiple": True}
_MANDATORY = {"Mandatory": True, "Optional": False}
_OPERATIONS = {op.value: op for op in Operations}
_VERSION = re.compile(r"\d+\.\d+")
_URN = re.compile(r"urn:oma:lwm2m:(oma|ext|x|reserved):(\d+)(?::(\d+\.\d+))?")


@dataclass(slots=True)
class _Element:
    """An XML element with the line it starts on; just enough tree for DDF validation."""

    tag: str
    attributes: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


class _Parser:
    """Builds an :class:`_Element` tree from bytes with expat, refusing DTDs and entities."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._expat = expat.ParserCreate()
        self._expat.buffer_text = True
        # Never read external DTDs or parameter entities, whatever the document asks for.
        self._expat.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._expat.StartElementHandler = self._start
        self._expat.EndElementHandler = self._end
        self._expat.CharacterDataHandler = self._characters
        self._expat.StartDoctypeDeclHandler = self._doctype
        self._expat.EntityDeclHandler = self._entity
        self._expat.ExternalEntityRefHandler = self._external_entity
        self._stack: list[_Element] = []
        self._root: _Element | None = None

    def parse(self, data: bytes) -> _Element:
        try:
            self._expat.Parse(data, True)
        except expat.ExpatError as error:
            message = expat.errors.messages.get(error.code, str(error)) if error.code else str(error)
            raise ModelError(f"malformed XML: {message}", source=self._source, line=error.lineno) from None
        if self._root is None:  # pragma: no cover - expat reports "no element found" first
            raise ModelError("no root element", source=self._source, line=1)
        return self._root

    def _line(self) -> int:
        return int(self._expat.CurrentLineNumber)

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        element = _Element(tag, dict(attributes), self._line())
        if self._stack:
            self._stack[-1].children.append(element)
        else:
            self._root = element
        self._stack.append(element)

    def _end(self, tag: str) -> None:
        self._stack.pop()

    def _characters(self, data: str) -> None:
        if self._stack:
            self._stack[-1].text_parts.append(data)

    def _doctype(self, name: str, system_id: str | None, public_id: str | None, has_internal_subset: bool) -> None:
        raise ModelError("DOCTYPE declarations are not allowed in DDF files", source=self._source, line=self._line())

    def _entity(self, name: str, *args: object) -> None:
        raise ModelError(f"entity declaration {name!r} is not allowed", source=self._source, line=self._line())

    def _external_entity(self, *args: object) -> int:
        raise ModelError("external entities are not allowed", source=self._source, line=self._line())


class _Validator:
    """Turns the element tree of one file into object models, raising on the first schema breach."""

    def __init__(self, source: str) -> None:
        self._source = source

    def error(self, message: str, element: _Element) -> ModelError:
        return ModelError(message, source=self._source, line=element.line)

    def document(self, root: _Element) -> list[ObjectModel]:
        if root.tag != "LWM2M":
            raise self.error(f"root element is <{root.tag}>, expected <LWM2M>", root)
        if root.text.strip():
            raise self.error("unexpected text in <LWM2M>", root)
        models: list[ObjectModel] = []
        seen: dict[int, _Element] = {}
        for child in root.children:
            if child.tag != "Object":
                raise self.error(f"unexpected element <{child.tag}> in <LWM2M>", child)
            model = self.object(child)
            if model.id in seen:
                raise self.error(f"object {model.id} is defined twice (first on line {seen[model.id].line})", child)
            seen[model.id] = child
            models.append(model)
        if not models:
            raise self.error("<LWM2M> contains no <Object>", root)
        return models

    def children(self, parent: _Element, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, _Element]:
        """Index the children of ``parent`` by tag: each required once, optional at most once, nothing else."""
        allowed = set(required) | set(optional)
        found: dict[str, _Element] = {}
        for child in parent.children:
            if child.tag not in allowed:
                raise self.error(f"unexpected element <{child.tag}> in <{parent.tag}>", child)
            if child.tag in found:
                raise self.error(f"element <{child.tag}> repeated in <{parent.tag}>", child)
            found[child.tag] = child
        for tag in required:
            if tag not in found:
                raise self.error(f"<{parent.tag}> lacks the required element <{tag}>", parent)
        return found

    def leaf_text(self, element: _Element) -> str:
        if element.children:
            raise self.error(f"unexpected element <{element.children[0].tag}> in <{element.tag}>", element.children[0])
        return element.text

    def choice(self, element: _Element, choices: dict[str, bool]) -> bool:
        value = self.leaf_text(element).strip()
        if value not in choices:
            expected = " or ".join(repr(c) for c in choices)
            raise self.error(f"<{element.tag}> is {value!r}, expected {expected}", element)
        return choices[value]

    def unsigned_short(self, text: str, what: str, element: _Element) -> int:
        value = text.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 5 or int(value) > 65535:
            raise self.error(f"{what} {value!r} is not an integer in 0..65535", element)
        number = int(value)
        if number == 65535:
            # 65535 is reserved by the TS (it is the "no id" value in object links and TLV).
            raise self.error(f"{what} 65535 is reserved", element)
        return number

    def version(self, element: _Element | None) -> str:
        if element is None:
            return "1.0"
        value = self.leaf_text(element).strip()
        if value == "":
            return "1.0"
        if not _VERSION.fullmatch(value):
            raise self.error(f"<{element.tag}> {value!r} is not MAJOR.MINOR", element)
        return value

    def object(self, element: _Element) -> ObjectModel:
        if "ObjectType" not in element.attributes:
            raise self.error("<Object> lacks the required attribute ObjectType", element)
        parts = self.children(element, _OBJECT_CHILDREN_REQUIRED, _OBJECT_CHILDREN_OPTIONAL)
        name = self.leaf_text(parts["Name"]).strip()
        if not name:
            raise self.error("<Name> of the object is empty", parts["Name"])
        object_id = self.unsigned_short(self.leaf_text(parts["ObjectID"]), "ObjectID", parts["ObjectID"])
        version = self.version(parts.get("ObjectVersion"))
        lwm2m_version = self.version(parts.get("LWM2MVersion"))
        urn = self.urn(parts["ObjectURN"], object_id, version)
        resources: dict[int, ResourceModel] = {}
        items = parts["Resources"]
        if items.text.strip():
            raise self.error("unexpected text in <Resources>", items)
        first_seen: dict[int, int] = {}
        for item in items.children:
            if item.tag != "Item":
                raise self.error(f"unexpected element <{item.tag}> in <Resources>", item)
            resource = self.item(item)
            if resource.id in resources:
                raise self.error(
                    f"resource {resource.id} is defined twice in object {object_id} "
                    f"(first on line {first_seen[resource.id]})",
                    item,
                )
            first_seen[resource.id] = item.line
            resources[resource.id] = resource
        # The schema allows no empty <Resources>; the registry does hold such objects, so accept them.
        multiple = self.choice(parts["MultipleInstances"], _MULTIPLICITY)
        mandatory = self.choice(parts["Mandatory"], _MANDATORY)
        description = _clean(self.leaf_text(parts["Description1"]))
        self.leaf_text(parts["Description2"])
        try:
            return ObjectModel(
                id=object_id,
                name=name,
                resources=resources,
                version=version,
                lwm2m_version=lwm2m_version,
                multiple=multiple,
                mandatory=mandatory,
                urn=urn,
                description=description,
            )
        except ModelError as error:
            raise self.error(error.reason, element) from None

    def urn(self, element: _Element, object_id: int, version: str) -> str:
        """Check ``<ObjectURN>`` against the id and version; empty means "derive it"."""
        value = self.leaf_text(element).strip()
        if value == "":
            return ""
        match = _URN.fullmatch(value)
        if match is None:
            raise self.error(f"<ObjectURN> {value!r} is not urn:oma:lwm2m:{{oma|ext|x|reserved}}:ID[:VERSION]", element)
        if int(match.group(2)) != object_id:
            raise self.error(f"<ObjectURN> {value!r} names object {match.group(2)}, not {object_id}", element)
        urn_version = match.group(3)
        if urn_version is not None and urn_version != version:
            raise self.error(f"<ObjectURN> {value!r} names version {urn_version}, not {version}", element)
        if urn_version is None and version != "1.0":
            # The TS omits the version from the URN only for version 1.0.
            raise self.error(f"<ObjectURN> {value!r} lacks the object version {version}", element)
        return value

    def item(self, element: _Element) -> ResourceModel:
        if "ID" not in element.attributes:
            raise self.error("<Item> lacks the required attribute ID", element)
        resource_id = self.unsigned_short(element.attributes["ID"], "resource ID", element)
        parts = self.children(element, _ITEM_CHILDREN_REQUIRED)
        name = self.leaf_text(parts["Name"]).strip()
        if not name:
            raise self.error(f"<Name> of resource {resource_id} is empty", parts["Name"])
        operations_text = self.leaf_text(parts["Operations"]).strip()
        if operations_text not in _OPERATIONS:
            raise self.error(
                f"<Operations> {operations_text!r} of resource {resource_id} is not one of R, W, RW, E or empty",
                parts["Operations"],
            )
        operations = _OPERATIONS[operations_text]
        type_element = parts["Type"]
        try:
            resource_type = ResourceType.from_ddf(self.leaf_text(type_element))
        except ModelError as error:
            raise self.error(f"{error.reason} for resource {resource_id}", type_element) from None
        if resource_type is ResourceType.NONE and operations is not Operations.E:
            raise self.error(f"resource {resource_id} has no <Type> but is not executable", type_element)
        range_element = parts["RangeEnumeration"]
        try:
            value_range = ValueRange.parse(self.leaf_text(range_element))
        except ModelError as error:
            raise self.error(f"{error.reason} for resource {resource_id}", range_element) from None
        multiple = self.choice(parts["MultipleInstances"], _MULTIPLICITY)
        mandatory = self.choice(parts["Mandatory"], _MANDATORY)
        units = self.leaf_text(parts["Units"]).strip()
        description = _clean(self.leaf_text(parts["Description"]))
        try:
            return ResourceModel(
                id=resource_id,
                name=name,
                operations=operations,
                multiple=multiple,
                mandatory=mandatory,
                type=resource_type,
                range=value_range,
                units=units,
                description=description,
            )
        except ModelError as error:
            raise self.error(error.reason, element) from None


def _clean(text: str) -> str:
    """Descriptions keep their line breaks (they carry enumeration tables) but lose edge blanks."""
    return "\n".join(line.strip() for line in text.strip().splitlines())


def load_ddf(data: bytes, source: str = "<ddf>") -> list[ObjectModel]:
    """Parse one DDF document; ``source`` names it in error messages (a file name, usually)."""
    if len(data) > MAX_DDF_BYTES:
        raise ModelError(f"file is larger than {MAX_DDF_BYTES} bytes", source=source)
    root = _Parser(source).parse(data)
    return _Validator(source).document(root)


def load_ddf_file(path: str | os.PathLike[str]) -> list[ObjectModel]:
    """Read and parse one DDF file; errors name the file as given."""
    file_path = Path(path)
    try:
        size = file_path.stat().st_size
        if size > MAX_DDF_BYTES:
            raise ModelError(f"file is larger than {MAX_DDF_BYTES} bytes", source=str(path))
        data = file_path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read: {error.strerror or error}", source=str(path)) from error
    return load_ddf(data, str(path))


def load_ddf_directory(
    directory: str | os.PathLike[str], registry: ModelRegistry | None = None, *, pattern: str = "*.xml"
) -> ModelRegistry:
    """Load every ``pattern`` file of ``directory`` (sorted by name) into ``registry`` (or a new one).

    Two files defining the same object id and version with different content are an error naming
    the second file; the XSD and other non-matching files are skipped.
    """
    target = registry if registry is not None else ModelRegistry()
    for file_path in sorted(Path(directory).glob(pattern)):
        if not file_path.is_file():
            continue
        for model in load_ddf_file(file_path):
            try:
                target.add(model)
            except ModelError as error:
                raise ModelError(error.reason, source=str(file_path)) from None
    return target
