"""Tests of the DDF loader: every OMA/IPSO registry file loads, and broken files fail precisely.

Each broken-file test asserts the file name and the line of the offending element, since that is
what an operator needs to fix a vendor's definition.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spmp.lwm2m.ddf import MAX_DDF_BYTES, load_ddf, load_ddf_directory, load_ddf_file
from spmp.lwm2m.errors import ModelError
from spmp.lwm2m.model import Operations, ResourceType

REGISTRY_DIR = Path(__file__).parent / "data" / "lwm2m-registry"
REGISTRY_FILES = sorted(REGISTRY_DIR.glob("*.xml"))

VALID = """\
<?xml version="1.0" encoding="UTF-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Object ObjectType="MODefinition">
    <Name>Test Object</Name>
    <Description1>For tests.</Description1>
    <ObjectID>26300</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:26300:1.1</ObjectURN>
    <LWM2MVersion>1.1</LWM2MVersion>
    <ObjectVersion>1.1</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="0">
        <Name>Level</Name>
        <Operations>RW</Operations>
        <MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory>
        <Type>Integer</Type>
        <RangeEnumeration>0..100</RangeEnumeration>
        <Units>/100</Units>
        <Description>A level.</Description>
      </Item>
      <Item ID="1">
        <Name>Reset</Name>
        <Operations>E</Operations>
        <MultipleInstances>Single</MultipleInstances>
        <Mandatory>Optional</Mandatory>
        <Type></Type>
        <RangeEnumeration></RangeEnumeration>
        <Units></Units>
        <Description>Reset the level.</Description>
      </Item>
    </Resources>
    <Description2></Description2>
  </Object>
</LWM2M>
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the ``occurrence``-th line of ``text`` containing ``needle``."""
    hits = [number for number, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def load_error(text: str, source: str = "broken.xml") -> ModelError:
    with pytest.raises(ModelError) as caught:
        load_ddf(text.encode(), source)
    return caught.value


def assert_error_at(error: ModelError, line: int, fragment: str, source: str = "broken.xml") -> None:
    assert error.source == source
    assert error.line == line, str(error)
    assert str(error).startswith(f"{source}:{line}: ")
    assert fragment in str(error)


def test_registry_files_are_copied_into_the_repository() -> None:
    names = {path.name for path in REGISTRY_FILES}
    assert {"0.xml", "1.xml", "3.xml", "4.xml", "5.xml", "3201.xml", "3316.xml", "3411.xml"} <= names
    assert (REGISTRY_DIR / "LWM2M.xsd").is_file()
    for path in REGISTRY_FILES:
        assert "Redistribution and use in source and binary forms" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", REGISTRY_FILES, ids=lambda p: p.name)
def test_every_registry_file_loads(path: Path) -> None:
    models = load_ddf_file(path)
    assert len(models) == 1
    model = models[0]
    assert path.stem == str(model.id)
    assert model.resources
    assert model.urn.startswith("urn:oma:lwm2m:")


def test_directory_loads_into_a_registry_skipping_the_schema() -> None:
    registry = load_ddf_directory(REGISTRY_DIR)
    assert registry.object_ids() == sorted(int(path.stem) for path in REGISTRY_FILES)


def test_loaded_model_carries_every_field() -> None:
    [model] = load_ddf(VALID.encode(), "valid.xml")
    assert (model.id, model.name, model.version, model.lwm2m_version) == (26300, "Test Object", "1.1", "1.1")
    assert model.multiple and not model.mandatory
    assert model.urn == "urn:oma:lwm2m:x:26300:1.1"
    level, reset = model.resources[0], model.resources[1]
    assert level.operations is Operations.RW and level.type is ResourceType.INTEGER
    assert level.mandatory and not level.multiple
    assert (level.range.minimum, level.range.maximum, level.units) == (0, 100, "/100")
    assert reset.operations is Operations.E and reset.type is ResourceType.NONE


def test_security_object_details() -> None:
    [security] = load_ddf_file(REGISTRY_DIR / "0.xml")
    assert security.resources[0].operations is Operations.NONE
    assert security.resources[13].type is ResourceType.UNSIGNED_INTEGER
    assert security.resources[16].multiple


def test_versions_default_to_1_0_when_absent() -> None:
    text = (
        VALID.replace("    <LWM2MVersion>1.1</LWM2MVersion>\n", "")
        .replace("    <ObjectVersion>1.1</ObjectVersion>\n", "")
        .replace(":26300:1.1<", ":26300<")
    )
    [model] = load_ddf(text.encode())
    assert (model.version, model.lwm2m_version, model.urn) == ("1.0", "1.0", "urn:oma:lwm2m:x:26300")


def test_missing_object_id_names_the_object_line() -> None:
    text = VALID.replace("    <ObjectID>26300</ObjectID>\n", "")
    assert_error_at(load_error(text), line_of(text, "<Object "), "lacks the required element <ObjectID>")


def test_bad_object_id() -> None:
    text = VALID.replace("<ObjectID>26300</ObjectID>", "<ObjectID>70000</ObjectID>")
    assert_error_at(load_error(text), line_of(text, "<ObjectID>"), "ObjectID '70000'")


def test_bad_type_names_the_type_line() -> None:
    text = VALID.replace("<Type>Integer</Type>", "<Type>Double</Type>")
    assert_error_at(load_error(text), line_of(text, "<Type>Double"), "unknown resource type 'Double'")


def test_bad_operations_names_the_operations_line() -> None:
    text = VALID.replace("<Operations>RW</Operations>", "<Operations>RWE</Operations>")
    assert_error_at(load_error(text), line_of(text, "<Operations>RWE"), "'RWE' of resource 0")


@pytest.mark.parametrize("bad_id", ["x", "-1", "65536", "65535", ""])
def test_bad_item_id_names_the_item_line(bad_id: str) -> None:
    text = VALID.replace('<Item ID="1">', f'<Item ID="{bad_id}">')
    assert_error_at(load_error(text), line_of(text, f'<Item ID="{bad_id}">'), "resource ID")


def test_missing_item_id() -> None:
    text = VALID.replace('<Item ID="1">', "<Item>")
    assert_error_at(load_error(text), line_of(text, "<Item>"), "lacks the required attribute ID")


def test_duplicate_resource_id() -> None:
    text = VALID.replace('<Item ID="1">', '<Item ID="0">')
    error = load_error(text)
    assert_error_at(error, line_of(text, '<Item ID="0">', occurrence=2), "resource 0 is defined twice")
    assert f"first on line {line_of(text, '<Item ID=')}" in str(error)


def test_malformed_xml_names_the_line() -> None:
    text = VALID.replace("<Units>/100</Units>", "<Units>/100</Unit>")
    assert_error_at(load_error(text), line_of(text, "</Unit>"), "malformed XML: mismatched tag")


def test_truncated_and_empty_documents() -> None:
    assert_error_at(load_error(VALID[: VALID.index("<Resources>")]), line_of(VALID, "<Resources>"), "malformed")
    assert load_error("").line == 1


@pytest.mark.parametrize(
    ("old", "new", "needle", "fragment"),
    [
        ("<MultipleInstances>Multiple<", "<MultipleInstances>Several<", "Several", "'Several', expected"),
        ("<Mandatory>Mandatory<", "<Mandatory>Yes<", "<Mandatory>Yes", "'Yes', expected"),
        ("<ObjectVersion>1.1<", "<ObjectVersion>v1<", "<ObjectVersion>", "'v1' is not MAJOR.MINOR"),
        (":26300:1.1<", ":26301:1.1<", "<ObjectURN>", "names object 26301"),
        (":26300:1.1<", ":26300:1.2<", "<ObjectURN>", "names version 1.2"),
        ("<Name>Level</Name>", "<Name> </Name>", "<Name> </Name>", "<Name> of resource 0 is empty"),
        ("<Units>/100</Units>", "<Units>/100</Units><Unit/>", "<Unit/>", "unexpected element <Unit>"),
        ("<Units>/100</Units>", "<Units>/100</Units><Units/>", "<Units/>", "element <Units> repeated"),
        ("<RangeEnumeration>0..100<", "<RangeEnumeration>9..1<", "9..1", "minimum above its maximum"),
        ("<Operations>E</Operations>", "<Operations>R</Operations>", "<Type></Type>", "no <Type> but is not"),
        ("<Units>/100</Units>", "<Units><b>V</b></Units>", "<Units><b>", "unexpected element <b> in <Units>"),
    ],
)
def test_schema_breaches_name_the_offending_line(old: str, new: str, needle: str, fragment: str) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    assert_error_at(load_error(text), line_of(text, needle), fragment)


def test_missing_item_child_names_the_item_line() -> None:
    text = VALID.replace("        <Units>/100</Units>\n", "")
    assert_error_at(load_error(text), line_of(text, '<Item ID="0">'), "lacks the required element <Units>")


def test_missing_object_type_attribute() -> None:
    text = VALID.replace('<Object ObjectType="MODefinition">', "<Object>")
    assert_error_at(load_error(text), line_of(text, "<Object>"), "ObjectType")


def test_wrong_root_element() -> None:
    assert_error_at(load_error("<?xml version='1.0'?>\n\n<Objects/>"), 3, "expected <LWM2M>")


def test_duplicate_object_in_one_file() -> None:
    start, end = VALID.index("  <Object "), VALID.index("</LWM2M>")
    text = VALID[:end] + VALID[start:end] + "</LWM2M>\n"
    error = load_error(text)
    assert_error_at(error, line_of(text, "<Object ", occurrence=2), "object 26300 is defined twice")


def test_entity_expansion_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE lolz [\n  <!ENTITY lol "lol">\n  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n'
        "<LWM2M>&lol2;</LWM2M>\n"
    )
    assert_error_at(load_error(bomb), 2, "DOCTYPE declarations are not allowed")


def test_external_entities_are_refused() -> None:
    text = '<?xml version="1.0"?>\n<!DOCTYPE LWM2M SYSTEM "file:///etc/passwd">\n<LWM2M/>\n'
    assert_error_at(load_error(text), 2, "DOCTYPE")


def test_undeclared_entity_is_malformed() -> None:
    text = VALID.replace("A level.", "A &secret; level.")
    assert_error_at(load_error(text), line_of(text, "&secret;"), "malformed XML")


def test_oversized_input_is_refused() -> None:
    with pytest.raises(ModelError, match="larger than"):
        load_ddf(b" " * (MAX_DDF_BYTES + 1), "huge.xml")


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "vendor.xml"
    text = VALID.replace("<Type>Integer</Type>", "<Type>Number</Type>")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_ddf_file(path)
    assert_error_at(caught.value, line_of(text, "<Type>Number"), "Number", source=str(path))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_ddf_file(tmp_path / "absent.xml")


def test_directory_rejects_conflicting_definitions(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(VALID, encoding="utf-8")
    (tmp_path / "b.xml").write_text(VALID.replace("A level.", "Another level."), encoding="utf-8")
    with pytest.raises(ModelError, match=r"b\.xml: object 26300 version 1\.1 is already registered"):
        load_ddf_directory(tmp_path)
