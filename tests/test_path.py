"""Paths: parsing, validation, ordering and navigation."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spmp.lwm2m import ROOT, Path, PathError, PathLevel


@pytest.mark.parametrize(
    ("text", "ids", "level"),
    [
        ("/", (), PathLevel.ROOT),
        ("/3", (3,), PathLevel.OBJECT),
        ("/3/0", (3, 0), PathLevel.OBJECT_INSTANCE),
        ("/3/0/7", (3, 0, 7), PathLevel.RESOURCE),
        ("/3/0/7/1", (3, 0, 7, 1), PathLevel.RESOURCE_INSTANCE),
        ("/26242/3/", (26242, 3), PathLevel.OBJECT_INSTANCE),
        ("/65534/65534/65534/65534", (65534, 65534, 65534, 65534), PathLevel.RESOURCE_INSTANCE),
    ],
)
def test_parse_valid(text: str, ids: tuple[int, ...], level: PathLevel) -> None:
    path = Path.parse(text)
    assert path.ids == ids
    assert path.level is level


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("3/0", "must start with '/'"),
        ("", "must start with '/'"),
        ("/3//0", "is not a number"),
        ("/3/a", "is not a number"),
        ("/3/-1", "is not a number"),
        ("/3/0/1/2/3", "at most 4 levels"),
        ("/65535", "outside 0..65534"),
        ("/123456", "larger than 65534"),
        ("/03", "leading zero"),
        ("/３", "is not a number"),
        ("/3/0 ", "is not a number"),
    ],
)
def test_parse_invalid_says_why(text: str, fragment: str) -> None:
    with pytest.raises(PathError, match=fragment.replace(".", r"\.").replace("(", r"\(").replace("/", "/")):
        Path.parse(text)


def test_constructor_validates() -> None:
    with pytest.raises(PathError):
        Path((1, 2, 3, 4, 5))
    with pytest.raises(PathError):
        Path.of(3, -1)
    with pytest.raises(PathError):
        Path((3, True))  # a bool is not an id


def test_accessors_and_navigation() -> None:
    path = Path.parse("/3316/2/5700")
    assert (path.object_id, path.instance_id, path.resource_id, path.resource_instance_id) == (3316, 2, 5700, None)
    assert path.parent == Path.of(3316, 2)
    assert path.parent.child(5700) == path
    assert path.starts_with(Path.of(3316)) and path.starts_with(ROOT) and not path.starts_with(Path.of(3317))
    assert path.is_resource and not path.is_object
    with pytest.raises(PathError):
        _ = ROOT.parent


def test_order_walks_the_tree() -> None:
    paths = [Path.parse(t) for t in ["/3/0/1", "/3", "/1/0", "/3/0", "/3/0/0/1", "/3/0/0", "/"]]
    assert [str(p) for p in sorted(paths)] == ["/", "/1/0", "/3", "/3/0", "/3/0/0", "/3/0/0/1", "/3/0/1"]


ids = st.integers(min_value=0, max_value=65534)


@given(st.lists(ids, max_size=4))
def test_round_trip(id_list: list[int]) -> None:
    path = Path(tuple(id_list))
    assert Path.parse(str(path)) == path
    assert hash(Path.parse(str(path))) == hash(path)


@given(st.text(max_size=30))
def test_random_text_raises_only_path_error(text: str) -> None:
    with contextlib.suppress(PathError):
        Path.parse(text)
