"""The notification fast path (spmp.server.fastpath) stores exactly what the general path stores.

For text, TLV and SenML CBOR notifications with random values (encoded by the real codecs), and for
random payload bytes: either the fast path declines (the general path then decides) or it yields the
same rows as decoding the node tree and flattening it.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from spmp.coap.message import Code, Response
from spmp.lwm2m import codecs
from spmp.lwm2m.content_format import ContentFormat
from spmp.lwm2m.errors import Lwm2mError
from spmp.lwm2m.model import ModelRegistry, ObjectModel, Operations, ResourceModel, ResourceType
from spmp.lwm2m.node import MultipleResource, Node, ObjectInstance, SingleResource
from spmp.lwm2m.path import Path
from spmp.server.fastpath import TelemetryRow, plan_for
from spmp.server.observations import _node_at, node_rows
from spmp.store.interface import to_epoch_ms, utc_ms

NOW_MS = 1_750_000_000_123
ENDPOINT = "dev-1"

_TYPES = {
    1: ResourceType.FLOAT,
    2: ResourceType.INTEGER,
    3: ResourceType.UNSIGNED_INTEGER,
    4: ResourceType.BOOLEAN,
    5: ResourceType.STRING,
    6: ResourceType.TIME,
    7: ResourceType.OPAQUE,
}
MULTI_FLOAT = 8


def _registry() -> ModelRegistry:
    resources = {rid: ResourceModel(rid, f"r{rid}", Operations.RW, False, False, kind) for rid, kind in _TYPES.items()}
    resources[MULTI_FLOAT] = ResourceModel(MULTI_FLOAT, "multi", Operations.R, True, False, ResourceType.FLOAT)
    resources[9] = ResourceModel(9, "run", Operations.E, False, False, ResourceType.NONE)
    return ModelRegistry([ObjectModel(30000, "Test", resources)])


REGISTRY = _registry()

finite = st.floats(allow_nan=False, allow_infinity=False)
VALUES = {
    ResourceType.FLOAT: finite,
    ResourceType.INTEGER: st.integers(-(2**63), 2**63 - 1),
    ResourceType.UNSIGNED_INTEGER: st.integers(0, 2**64 - 1),
    ResourceType.BOOLEAN: st.booleans(),
    ResourceType.STRING: st.text(max_size=40),
    ResourceType.TIME: st.integers(0, 2**33),
    ResourceType.OPAQUE: st.binary(max_size=16),
}


def general_rows(payload: bytes, paths: tuple[Path, ...], composite: bool, fmt: int) -> list[TelemetryRow] | None:
    """What ObservationManager's general path stores (None: it refuses the payload)."""
    rows: list[TelemetryRow] = []
    try:
        if fmt in (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON):
            for moment in codecs.decode_timestamped(payload, fmt, REGISTRY):
                when = NOW_MS if moment.timestamp is None else to_epoch_ms(utc_ms(moment.timestamp))
                for path, node in moment.nodes.items():
                    if node is not None:
                        node_rows(ENDPOINT, path, node, when, rows)
        else:
            node = codecs.decode(payload, paths[0], fmt, REGISTRY)
            node_rows(ENDPOINT, _node_at(paths[0], node), node, NOW_MS, rows)
    except (Lwm2mError, ValueError):
        return None
    return rows


def fast_rows(payload: bytes, paths: tuple[Path, ...], composite: bool, fmt: int) -> list[TelemetryRow] | None:
    rows: list[TelemetryRow] = []
    plan = plan_for(REGISTRY, paths, composite, fmt)
    return rows if plan.rows(payload, ENDPOINT, NOW_MS, rows) else None


def _key(row: TelemetryRow) -> tuple[object, ...]:
    value = row[4]
    if isinstance(value, float) and math.isnan(value):
        value = "nan"
    return (row[0], row[1], row[2], row[3], type(value).__name__, repr(value))


def check(payload: bytes, paths: tuple[Path, ...], fmt: int, *, composite: bool = False, expect_fast: bool) -> None:
    general = general_rows(payload, paths, composite, fmt)
    fast = fast_rows(payload, paths, composite, fmt)
    if fast is not None:
        assert general is not None, f"fast path accepted what the general path refuses: {payload!r}"
        assert sorted(map(_key, fast)) == sorted(map(_key, general))
    elif expect_fast:
        raise AssertionError(f"the fast path declined {payload!r} at {paths}")


# ------------------------------------------------------------------------------------------------ text


@st.composite
def single_values(draw: st.DrawFn) -> tuple[int, ResourceType, object]:
    rid = draw(st.sampled_from(sorted(_TYPES)))
    kind = _TYPES[rid]
    return rid, kind, draw(VALUES[kind])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(single_values())
def test_text_matches_general(item: tuple[int, ResourceType, object]) -> None:
    rid, kind, value = item
    path = Path.of(30000, 0, rid)
    if kind is ResourceType.TIME:
        from spmp.lwm2m.values import time_from_seconds

        value = time_from_seconds(value)  # type: ignore[arg-type]
    payload = codecs.encode(SingleResource(rid, value, kind), path, ContentFormat.TEXT, REGISTRY)  # type: ignore[arg-type]
    fast_kind = kind not in (ResourceType.TIME, ResourceType.OPAQUE)
    check(payload, (path,), ContentFormat.TEXT, expect_fast=fast_kind)


@settings(max_examples=600)
@given(
    st.sampled_from(sorted(_TYPES)),
    st.one_of(
        st.binary(max_size=24),
        st.text(alphabet="0123456789+-.eE \tnaifNAIF_x", max_size=24).map(str.encode),
    ),
)
def test_text_random_bytes_never_differ(rid: int, payload: bytes) -> None:
    check(payload, (Path.of(30000, 0, rid),), ContentFormat.TEXT, expect_fast=False)


def test_text_multiple_resource_instance_and_refusals() -> None:
    check(b"2.5", (Path.of(30000, 0, MULTI_FLOAT, 3),), ContentFormat.TEXT, expect_fast=True)
    for payload in (b" 1.5", b"inf", b"1e999", b"nan", b"", b"1_0", b"+", b"1.2.3"):
        assert fast_rows(payload, (Path.of(30000, 0, 1),), False, ContentFormat.TEXT) is None
    for payload in (b"9223372036854775808", b"-", b" 1", b"1.0"):
        assert fast_rows(payload, (Path.of(30000, 0, 2),), False, ContentFormat.TEXT) is None
    assert fast_rows(b"2", (Path.of(30000, 0, 4),), False, ContentFormat.TEXT) is None
    assert fast_rows(b"\xff", (Path.of(30000, 0, 5),), False, ContentFormat.TEXT) is None
    # Paths the text format cannot carry, unknown resources, executables: general path only.
    for path in (Path.of(30000, 0, MULTI_FLOAT), Path.of(30000, 0, 77), Path.of(30000, 0, 9), Path.of(31000, 0, 1)):
        assert fast_rows(b"1", (path,), False, ContentFormat.TEXT) is None


# ------------------------------------------------------------------------------------- TLV, SenML CBOR


@st.composite
def instances(draw: st.DrawFn, *, with_multi: bool) -> ObjectInstance:
    rids = draw(st.sets(st.sampled_from(sorted(_TYPES)), min_size=1))
    resources: list[SingleResource | MultipleResource] = []
    for rid in sorted(rids):
        kind = _TYPES[rid]
        value = draw(VALUES[kind])
        if kind is ResourceType.TIME:
            from spmp.lwm2m.values import time_from_seconds

            value = time_from_seconds(value)  # type: ignore[arg-type]
        resources.append(SingleResource(rid, value, kind))  # type: ignore[arg-type]
    if with_multi and draw(st.booleans()):
        values = draw(st.dictionaries(st.integers(0, 5), finite, min_size=1, max_size=3))
        resources.append(MultipleResource(MULTI_FLOAT, dict(values), ResourceType.FLOAT))
    return ObjectInstance(0, {r.id: r for r in resources})


def _simple(instance: ObjectInstance) -> bool:
    return all(
        isinstance(r, SingleResource) and r.type not in (ResourceType.TIME, ResourceType.OPAQUE)
        for r in instance.resources.values()
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(instances(with_multi=True))
def test_tlv_matches_general(instance: ObjectInstance) -> None:
    path = Path.of(30000, 0)
    payload = codecs.encode(instance, path, ContentFormat.TLV, REGISTRY)
    single_only = all(isinstance(r, SingleResource) for r in instance.resources.values())
    check(payload, (path,), ContentFormat.TLV, expect_fast=single_only)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(instances(with_multi=True))
def test_senml_cbor_matches_general(instance: ObjectInstance) -> None:
    path = Path.of(30000, 0)
    payload = codecs.encode(instance, path, ContentFormat.SENML_CBOR, REGISTRY)
    # Float values the encoder writes as CBOR integers (2.0 -> 2) are left to the general path.
    check(payload, (path,), ContentFormat.SENML_CBOR, expect_fast=False)
    floats_fractional = all(
        not (r.type is ResourceType.FLOAT and float(r.value).is_integer())  # type: ignore[arg-type]
        for r in instance.resources.values()
        if isinstance(r, SingleResource)
    )
    if _simple(instance) and floats_fractional:
        assert fast_rows(payload, (path,), False, ContentFormat.SENML_CBOR) is not None


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([1, 2, 4, 5]), st.data()), min_size=1, max_size=4, unique_by=lambda t: t[0]))
def test_senml_cbor_composite_matches_general(items: list[tuple[int, st.DataObject]]) -> None:
    nodes: dict[Path, Node | None] = {}
    for rid, data in items:
        kind = _TYPES[rid]
        nodes[Path.of(30000, 0, rid)] = SingleResource(rid, data.draw(VALUES[kind]), kind)  # type: ignore[arg-type]
    payload = codecs.encode_nodes(nodes, ContentFormat.SENML_CBOR, REGISTRY)
    check(payload, tuple(nodes), ContentFormat.SENML_CBOR, composite=True, expect_fast=False)


@settings(max_examples=400)
@given(st.binary(max_size=48))
def test_random_bytes_tlv_and_senml_never_differ(payload: bytes) -> None:
    check(payload, (Path.of(30000, 0),), ContentFormat.TLV, expect_fast=False)
    check(payload, (Path.of(30000, 0),), ContentFormat.SENML_CBOR, expect_fast=False)


def test_senml_time_fields_and_duplicates_take_the_general_path() -> None:
    import cbor2

    dup = cbor2.dumps([{-2: "/30000/0/", 0: "1", 2: 1.5}, {0: "1", 2: 2.5}])
    assert fast_rows(dup, (Path.of(30000, 0),), False, ContentFormat.SENML_CBOR) is None
    timed = cbor2.dumps([{-2: "/30000/0/", -3: 1_700_000_000, 0: "1", 2: 1.5}])
    assert fast_rows(timed, (Path.of(30000, 0),), False, ContentFormat.SENML_CBOR) is None
    check(timed, (Path.of(30000, 0),), ContentFormat.SENML_CBOR, expect_fast=False)
    ok = cbor2.dumps([{-2: "/30000/0/", 0: "1", 2: 1.5}, {0: "8/2", 2: 0.25}, {0: "5", 3: "x"}])
    check(ok, (Path.of(30000, 0),), ContentFormat.SENML_CBOR, expect_fast=True)


# ------------------------------------------------------------------------------- through the server


def test_manager_stores_same_rows_on_both_paths() -> None:
    """The ObservationManager's fast path hands the sink the rows the general path would."""
    from spmp.server.observations import _Live

    live = _Live(ENDPOINT, "r1", (Path.of(30000, 0, 1),), False, ContentFormat.TEXT)
    response = Response(Code.CONTENT, b"48.25", content_format=ContentFormat.TEXT, observe=5)
    plan = plan_for(REGISTRY, live.paths, False, ContentFormat.TEXT)
    rows: list[TelemetryRow] = []
    assert plan.rows(response.payload, ENDPOINT, NOW_MS, rows)
    assert rows == [(ENDPOINT, "/30000/0/1", NOW_MS, "Float", 48.25)]
