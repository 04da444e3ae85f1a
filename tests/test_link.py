"""CoRE link format (RFC 6690) and the LwM2M Register, Discover and Bootstrap-Discover payloads.

TS examples are copied as literals from OMA-TS-LightweightM2M_Core (1.1 / 1.2) and _Transport.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spmp.lwm2m.attributes import NotificationAttributes
from spmp.lwm2m.errors import CodecError
from spmp.lwm2m.link import (
    BootstrapDiscover,
    BootstrapDiscoverLink,
    DiscoverLink,
    Link,
    LinkLimits,
    RegistrationObjects,
    format_bootstrap_discover,
    format_discover,
    format_links,
    format_registration,
    parse_bootstrap_discover,
    parse_discover,
    parse_links,
    parse_registration,
)
from spmp.lwm2m.path import Path


def compact(ts_text: str) -> str:
    """The TS writes ``, `` between links; our serializer writes ``,``."""
    return ts_text.replace(", ", ",")


# --- generic link format -------------------------------------------------------------------------


def test_quoted_values_may_hold_commas_semicolons_and_escaped_quotes() -> None:
    links = parse_links('</a>;title="x, y; \\"z\\" \\\\";rt="p q",</b>;obs;sz=12')
    assert links == [
        Link("/a", [("title", 'x, y; "z" \\'), ("rt", "p q")]),
        Link("/b", [("obs", None), ("sz", "12")]),
    ]
    assert links[0].tokens("rt") == ("p", "q")
    assert format_links(links) == '</a>;title="x, y; \\"z\\" \\\\";rt="p q",</b>;obs;sz=12'


def test_repeated_parameters_value_less_and_dict_form() -> None:
    link = parse_links('</x>;rt=a;rt="b c";hb;ct=0')[0]
    assert link.values("rt") == ("a", "b c")
    assert link.tokens("rt") == ("a", "b", "c")
    assert link.has("hb") and link.get("hb") is None and not link.has("nope")
    assert Link("/x", {"ct": 40, "hb": None}) == Link("/x", [("ct", "40"), ("hb", None)])


def test_percent_encoded_target_is_kept_verbatim() -> None:
    assert parse_links("</a%20b/%C3%A9>")[0].target == "/a%20b/%C3%A9"


def test_whitespace_around_separators_and_empty_payload() -> None:
    assert parse_links("") == [] and parse_links(b"  \r\n") == []
    assert parse_links(" </1/0> ; pmin=1 ,\n</3/0>\t") == [Link("/1/0", {"pmin": "1"}), Link("/3/0")]


def test_empty_quoted_value_and_utf8_title() -> None:
    links = parse_links('</a>;title="";x="é"'.encode())
    assert links[0].attributes == (("title", ""), ("x", "é"))
    assert str(links[0]) == '</a>;title="";x="é"'


@pytest.mark.parametrize(
    ("payload", "offset"),
    [
        ("</3/0", 0),
        ("3/0>", 0),
        ("</3>;", 5),
        ("</3>;=1", 5),
        ('</3>;a="x', 7),
        ("</3>,", 5),
        ("</3> </4>", 5),
        ("</a b>", 3),
        ("</%zz>", 2),
        ("</3>;a=", 7),
        ('</3>;a=b"c"', 8),
        ('</3>;a="\x01"', 8),
        ("</3>;title*", 11),
    ],
)
def test_malformed_links_raise_codec_error_with_offset(payload: str, offset: int) -> None:
    with pytest.raises(CodecError) as info:
        parse_links(payload)
    assert info.value.where == f"offset {offset}"


def test_offsets_count_bytes_for_bytes_input() -> None:
    with pytest.raises(CodecError) as info:
        parse_links('</a>;t="é",<x y>'.encode())
    assert info.value.where == "offset 14"  # "é" is two bytes
    with pytest.raises(CodecError, match="UTF-8"):
        parse_links(b"</\xff>")


def test_limits() -> None:
    limits = LinkLimits(max_payload_bytes=100, max_links=2, max_attributes=2)
    with pytest.raises(CodecError, match="limit"):
        parse_links(b"</1>" * 30, limits)
    with pytest.raises(CodecError, match="more than 2 links"):
        parse_links("</1>,</2>,</3>", limits)
    with pytest.raises(CodecError, match="more than 2 parameters"):
        parse_links("</1>;a;b;c", limits)


def test_link_constructor_refuses_what_cannot_be_written() -> None:
    for bad in (lambda: Link("/a b"), lambda: Link("/a", {"b c": "1"}), lambda: Link("/a", {"x": "\n"})):
        with pytest.raises(CodecError):
            bad()


# --- Register / Update ---------------------------------------------------------------------------

CORE_REGISTER_EXAMPLE = "</1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>"


def test_core_register_examples() -> None:
    plain = parse_registration(CORE_REGISTER_EXAMPLE)
    assert plain.versions == {1: None, 2: None, 3: None, 4: None, 5: None}
    assert plain.instances_of(2) == [0, 1, 2, 3, 4] and plain.instances_of(5) == []
    assert plain.alternate_path == "/" and plain.content_formats == ()
    assert format_registration(plain) == CORE_REGISTER_EXAMPLE

    single_ct = "</>;ct=110, </1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>"
    assert parse_registration(single_ct).content_formats == (110,)
    assert format_registration(parse_registration(single_ct)) == compact(single_ct)

    ct_list = '</>;ct="110 112 60", </1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>'
    assert parse_registration(ct_list).content_formats == (110, 112, 60)
    assert format_registration(parse_registration(ct_list)) == compact(ct_list)


def test_lwm2m_1_1_root_link_with_rt_and_content_formats() -> None:
    reg = parse_registration('</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>')
    assert reg.alternate_path == "/" and reg.content_formats == (11543,)
    assert reg.instances == (Path.of(1, 0), Path.of(3, 0))
    assert parse_registration('</>;ct="60 110 112 11543",</3/0>').content_formats == (60, 110, 112, 11543)


@pytest.mark.parametrize(
    ("payload", "versions"),
    [
        ("</1/0>,</1/1>,</3/0>", {1: None, 3: None}),
        ("</1>;ver=1.0,</1/0>,</1/1>,</3/0>", {1: "1.0", 3: None}),
        ("</1/0>,</1/1>,</3/0>,</44/0>;ver=2.2", {1: None, 3: None, 44: "2.2"}),
        ("</1>,</1/0>,</1/1>,</3/0>,</4/0>", {1: None, 3: None, 4: None}),
        ("</3>;ver=1.1,</3/0>,</3411>;ver=1.1,</3411/0>", {3: "1.1", 3411: "1.1"}),
        ('</6>;ver="2.0",</6/0>', {6: "2.0"}),
    ],
)
def test_core_object_versioning_examples(payload: str, versions: dict[int, str | None]) -> None:
    assert parse_registration(payload).versions == versions


def test_transport_alternate_path_example() -> None:
    # Transport §6.4.1 prints "</lwm2m /1/0>" with a stray space: not a URI-Reference, so refused.
    ts_literal = '</lwm2m>;rt="oma.lwm2m", </lwm2m /1/0>,</lwm2m /1/1>,</lwm2m /2/0>,</lwm2m /5>'
    with pytest.raises(CodecError, match="not allowed in a link target"):
        parse_registration(ts_literal)
    reg = parse_registration(ts_literal.replace("lwm2m /", "lwm2m/"))
    assert reg.alternate_path == "/lwm2m"
    assert reg.instances == (Path.of(1, 0), Path.of(1, 1), Path.of(2, 0))
    assert reg.versions == {1: None, 2: None, 5: None}
    assert format_registration(reg) == '</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/1/1>,</lwm2m/2/0>,</lwm2m/5>'


def test_registration_robustness() -> None:
    reg = parse_registration('</0/0>,</21/0>,</1/0>;foo=bar;obs,</alt>;rt="oma.lwm2m";ct=110,</3/0>,</alt/5/>')
    assert reg.alternate_path == "/alt" and reg.versions == {1: None, 3: None, 5: None}
    for bad, message in [
        ("</3>;ver=x", "MAJOR.MINOR"),
        ("</>;ct=json", "content format"),
        ("</3/0/1>", "neither an object"),
        ("</3/70000>", "not an LwM2M path"),
        ('</3>;rt="oma.lwm2m"', "non-numerical"),
        ('</a>;rt="oma.lwm2m",</b>;rt="oma.lwm2m"', "more than one"),
        ("</3>;ver=1.0,</3/0>;ver=1.1", "announced as version"),
    ]:
        with pytest.raises(CodecError, match=message):
            parse_registration(bad)


def test_registration_objects_create_and_checks() -> None:
    reg = RegistrationObjects.create({3: "1.1"}, ["/3/0", "/1/0"], content_formats=[112])
    assert reg.versions == {1: None, 3: "1.1"}
    assert format_registration(reg) == "</>;ct=112,</1/0>,</3>;ver=1.1,</3/0>"
    with pytest.raises(CodecError, match="must not be registered"):
        RegistrationObjects.create([0])
    with pytest.raises(CodecError, match="non-numerical"):
        RegistrationObjects.create([3], alternate_path="/lw/2")


# --- Discover ------------------------------------------------------------------------------------

DISCOVER_EXAMPLES = [
    "</3>;pmin=10, </3/0>;pmax=60, </3/0/1>, </3/0/2>, </3/0/3>, </3/0/4>, </3/0/6>;dim=2, "
    "</3/0/7>;dim=2;gt=50;lt=42.2, </3/0/8>;dim=2, </3/0/11>, </3/0/16>",
    "</1>, </1/0>, </1/4>;pmax=300",
    "</3/0>;pmin=10;pmax=60, </3/0/1>, </3/0/2>, </3/0/3>, </3/0/4>, </3/0/6>;dim=2, </3/0/6/0>, </3/0/6/3>, "
    "</3/0/7>;dim=2;gt=50;lt=42.2, </3/0/7/0>, </3/0/7/1>;lt=45, </3/0/8>;dim=2, </3/0/8/1>, </3/0/8/2>, "
    "</3/0/11>, </3/0/16>",
    "</3/0>;pmin=10;pmax=60",
    "</3/0/7>;dim=2;pmin=10;pmax=60;gt=50;lt=42.2, </3/0/7/0>, </3/0/7/1>;lt=45",
    "</3/0/7>;dim=2;gt=50;lt=42.2, </3/0/7/0>, </3/0/7/1>",
    "</3/0/7>;dim=2;pmax=300;gt=80;lt=65.5, </3/0/7/0>, </3/0/7/1>",
    "</1/0/0>,</1/0/1>,</1/0/6>,</1/0/7>, </1/0/8>, </1/1/0>,</1/1/1>,</1/1/2>,</1/1/4>,</1/1/6>,</1/1/7>, </1/1/8>",
]


@pytest.mark.parametrize("payload", DISCOVER_EXAMPLES)
def test_core_discover_examples_round_trip(payload: str) -> None:
    assert format_discover(parse_discover(payload)) == compact(payload)


def test_discover_fields() -> None:
    entries = parse_discover(DISCOVER_EXAMPLES[4])
    assert entries[0] == DiscoverLink(
        Path.of(3, 0, 7), NotificationAttributes(pmin=10, pmax=60, gt=50.0, lt=42.2), dim=2
    )
    assert entries[2].attributes == NotificationAttributes(lt=45)
    versioned = parse_discover("</3442>;ver=1.5;foo, </3442/0>")
    assert versioned[0].version == "1.5" and versioned[0].extra == (("foo", None),)


def test_discover_build_with_alternate_path() -> None:
    entries = [DiscoverLink(Path.of(3, 0), NotificationAttributes(pmin=10)), DiscoverLink(Path.of(3, 0, 1))]
    text = format_discover(entries, alternate_path="/lwm2m")
    assert text == "</lwm2m/3/0>;pmin=10,</lwm2m/3/0/1>"
    assert parse_discover(text, alternate_path="/lwm2m") == entries


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("</3/0/7>;dim=256", "0..255"),
        ("</3/0>;pmin=-1", "non-negative"),
        ("</3/0>;pmin", "no value"),
        ("</3/0>;pmin=1;pmin=2", "twice"),
        ("</3/0/7>;st=0", "greater than 0"),
        ("</>", "no root link"),
        ("</3>;ver=1", "MAJOR.MINOR"),
    ],
)
def test_discover_errors(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_discover(payload)


# --- Bootstrap-Discover --------------------------------------------------------------------------

BOOTSTRAP_DISCOVER_EXAMPLES = [
    '</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com", </0/1/>, '
    '</0/2>;ssid=102;uri="coaps://server_2.example.com"',
    '</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com", </0/1>, </1/0/>;ssid=101, </3/0>,</5>,</4>',
    '</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com",</0/2>;ssid=102;'
    'uri="coap://server_1.example.com",</21/0>;ssid=101,</21/2>;ssid=102,</0/1>,</21/1/>',
    '</>;lwm2m=1.1,</0/0>,</0/1>;ssid=101;uri="coaps://server_1.example.com", </1/0/>;ssid=101, '
    "</3/0>,</5>,</4>,</55>;ver=1.9,</55/0>",
]


@pytest.mark.parametrize("payload", BOOTSTRAP_DISCOVER_EXAMPLES)
def test_core_bootstrap_discover_examples(payload: str) -> None:
    parsed = parse_bootstrap_discover(payload)
    assert parsed.lwm2m_version == "1.1"
    # The TS writes some instance links with a trailing slash (</0/1/>); we write them without.
    assert format_bootstrap_discover(parsed) == re.sub(r"(\d)/>", r"\1>", compact(payload))


def test_bootstrap_discover_fields_and_build() -> None:
    parsed = parse_bootstrap_discover(BOOTSTRAP_DISCOVER_EXAMPLES[1])
    assert parsed.links[0] == BootstrapDiscoverLink(Path.of(0, 0), ssid=101, uri="coaps://server_1.example.com")
    assert parsed.links[1] == BootstrapDiscoverLink(Path.of(0, 1))
    assert parsed.links[2] == BootstrapDiscoverLink(Path.of(1, 0), ssid=101)
    built = BootstrapDiscover("1.2", (BootstrapDiscoverLink(Path.of(0, 0), ssid=1, uri='x"y'),))
    assert format_bootstrap_discover(built) == '</>;lwm2m=1.2,</0/0>;ssid=1;uri="x\\"y"'
    assert parse_bootstrap_discover(format_bootstrap_discover(built)) == built


def test_bootstrap_discover_legacy_form_without_root_link() -> None:
    parsed = parse_bootstrap_discover("lwm2m=1.0,</0/0>;ssid=101,</0/1/>,</0/2>;ssid=102")
    assert parsed.lwm2m_version == "1.0"
    assert [link.ssid for link in parsed.links] == [101, None, 102]
    assert parse_bootstrap_discover(b" lwm2m=1.0,</0/1>").links == (BootstrapDiscoverLink(Path.of(0, 1)),)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("</0/0>;ssid=0", "1..65534"),
        ("</0/0>;ssid=65535", "1..65534"),
        ("</0/0>;uri", "no value"),
        ("</0/0>,</>;lwm2m=1.1", "first"),
        ("</>;lwm2m=one", "MAJOR.MINOR"),
        ("</0/0/1>", "neither an object"),
    ],
)
def test_bootstrap_discover_errors(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_bootstrap_discover(payload)


# --- properties ----------------------------------------------------------------------------------

_URI_ALPHABET = "abcXYZ019-._~:/?#[]@!$&'()*+,;="
_NAME_ALPHABET = "abcxyz019!#$&+-.^_`|~"
targets = st.text(_URI_ALPHABET, min_size=0, max_size=12) | st.builds(lambda s: s + "%2F", st.text("ab/", max_size=4))
values = st.none() | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f").filter(
        lambda c: ord(c) >= 0x20 or c == "\t"
    ),
    max_size=12,
)
links = st.builds(
    Link,
    targets,
    st.lists(st.tuples(st.text(_NAME_ALPHABET, min_size=1, max_size=6), values), max_size=4),
)


@given(st.lists(links, max_size=5))
def test_links_round_trip(generated: list[Link]) -> None:
    text = format_links(generated)
    assert parse_links(text) == generated
    assert parse_links(text.encode()) == generated


_PARSERS = [parse_links, parse_registration, parse_discover, parse_bootstrap_discover]


@given(st.text(max_size=80) | st.text('<>/;,="\\ 0123abt*%', max_size=60))
def test_random_text_raises_only_codec_error(text: str) -> None:
    for parser in _PARSERS:
        with contextlib.suppress(CodecError):
            parser(text)


@given(st.binary(max_size=80))
def test_random_bytes_raise_only_codec_error(payload: bytes) -> None:
    for parser in _PARSERS:
        with contextlib.suppress(CodecError):
            parser(payload)


versions = st.none() | st.builds("{}.{}".format, st.integers(0, 9), st.integers(0, 99))


@given(
    st.dictionaries(st.integers(1, 65534).filter(lambda i: i != 21), versions, max_size=5),
    st.lists(st.tuples(st.integers(1, 30).filter(lambda i: i != 21), st.integers(0, 65534)), max_size=5),
    st.sampled_from(["/", "/lwm2m", "/a/b"]),
    st.lists(st.integers(0, 65535), unique=True, max_size=3),
)
def test_registration_round_trip(
    objects: dict[int, str | None], instances: list[tuple[int, int]], alternate_path: str, formats: list[int]
) -> None:
    reg = RegistrationObjects.create(
        objects, [Path.of(*ids) for ids in instances], alternate_path=alternate_path, content_formats=formats
    )
    assert parse_registration(format_registration(reg)) == reg


@given(
    st.lists(
        st.builds(
            DiscoverLink,
            st.lists(st.integers(0, 65534), min_size=1, max_size=4).map(lambda ids: Path(tuple(ids))),
            st.builds(
                NotificationAttributes, pmin=st.none() | st.integers(0, 10**6), gt=st.none() | st.floats(-1e9, 1e9)
            ),
            st.none() | st.integers(0, 255),
            versions,
        ),
        max_size=4,
    )
)
def test_discover_round_trip(entries: list[DiscoverLink]) -> None:
    assert parse_discover(format_discover(entries)) == entries
