"""LwM2M <NOTIFICATION> class attributes: parsing, validation, inheritance and the notify decision.

The TS (Core 1.1 §5.1.2, Core 1.2 §5.1.1 "Attributes") defines these R-Attributes:

    ====== ======= ==================================== ============== =========================
    name   type    assignation levels                   since          apply condition
    ====== ======= ==================================== ============== =========================
    pmin   Integer O, OI, R, RI  (seconds, default 0)   1.0            readable resource
    pmax   Integer O, OI, R, RI  (seconds, 0 = none)    1.0            readable resource
    gt     Float   R, RI                                1.0            numerical & readable
    lt     Float   R, RI                                1.0            numerical & readable
    st     Float   R, RI                                1.0            numerical & readable
    epmin  Integer O, OI, R, RI  (seconds)              1.1            readable resource
    epmax  Integer O, OI, R, RI  (seconds)              1.1            readable resource
    edge   0 / 1   R, RI                                1.2            boolean & readable
    con    0 / 1   O, OI, R, RI                         1.2            readable resource
    hqmax  Integer O, OI, R, RI                         1.2            readable resource
    ====== ======= ==================================== ============== =========================

Only these may be changed by Write-Attributes; the <PROPERTIES> class (dim, ssid, uri, ver, lwm2m) is
read-only. In a Write-Attributes query a name without a value unsets that attribute at that level.

Decisions where the TS is silent or loose (each is repeated where it is implemented):

* gt/lt accept a leading ``-``: the TS ABNF (``1*DIGIT ["." 1*DIGIT]``) forgets the sign, but a
  threshold on a temperature must be able to be negative. st must be > 0 (a zero step is always met).
* One Write-Attributes request is rejected when it breaks ``lt < gt``, ``lt + 2*st < gt`` or
  ``epmin < epmax`` (the TS: "MUST be rejected"). A combination that only becomes inconsistent by
  inheritance or successive requests is not an error; :func:`effective` then drops gt/lt/st (the
  "Change Value Conditions" are not valid) or epmax, the way the TS ignores a pmax below pmin.
* Unknown attribute names and duplicates in one request are rejected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal

from spmp.lwm2m.errors import InvalidAttributeError
from spmp.lwm2m.model import ResourceModel, ResourceType
from spmp.lwm2m.path import Path

NOTIFICATION_ATTRIBUTES = ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con", "hqmax")
"""The <NOTIFICATION> class, in the order of the TS table (and of our serializations)."""

PROPERTY_ATTRIBUTES = frozenset({"dim", "ssid", "uri", "ver", "lwm2m"})
"""The <PROPERTIES> class: reported by Discover, never writable."""

_INTEGER_NAMES = frozenset({"pmin", "pmax", "epmin", "epmax", "hqmax"})
_FLOAT_NAMES = frozenset({"gt", "lt", "st"})
_FLAG_NAMES = frozenset({"edge", "con"})
RESOURCE_LEVEL_ONLY = frozenset({"gt", "lt", "st", "edge"})
"""Attributes the TS lets be assigned only on a resource or a resource instance."""

_SINCE = {"epmin": (1, 1), "epmax": (1, 1), "edge": (1, 2), "con": (1, 2), "hqmax": (1, 2)}
_NUMERIC_TYPES = frozenset({ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT})

_INT64_MAX = 2**63 - 1
_INTEGER_RE = re.compile(r"[0-9]{1,19}")
# Long enough for every finite double written without an exponent (5e-324 needs ~330 characters).
_FLOAT_RE = re.compile(r"-?[0-9]{1,400}(?:\.[0-9]{1,400})?")
MAX_QUERY_ITEMS = 32
"""More query items than this is not a plausible Write-Attributes request; refuse it early."""

AttributeValue = int | float | bool


@dataclass(frozen=True, slots=True)
class NotificationAttributes:
    """The notification attributes set at one level (or the result of inheritance); None = unset."""

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None
    edge: bool | None = None
    """True: notify on a false→true transition ("1", rising edge); False: on true→false."""
    con: bool | None = None
    hqmax: int | None = None

    def __post_init__(self) -> None:
        for name in NOTIFICATION_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _checked(name, value))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> NotificationAttributes:
        """Build from ``(name, text)`` pairs such as link parameters; every name must be a notification one."""
        found: dict[str, AttributeValue] = {}
        for name, text in pairs:
            if name in found:
                raise InvalidAttributeError(f"attribute {name!r} given twice", attribute=name)
            found[name] = parse_value(name, text)
        return cls(**found)  # type: ignore[arg-type]  # names and types checked by parse_value

    def get(self, name: str) -> AttributeValue | None:
        if name not in NOTIFICATION_ATTRIBUTES:
            raise InvalidAttributeError(f"{name!r} is not a notification attribute", attribute=name)
        value: AttributeValue | None = getattr(self, name)
        return value

    def items(self) -> list[tuple[str, AttributeValue]]:
        """The set attributes, in TS table order."""
        return [(name, value) for name in NOTIFICATION_ATTRIBUTES if (value := getattr(self, name)) is not None]

    def to_pairs(self) -> list[tuple[str, str]]:
        """``[("pmin", "10"), ("gt", "25.5")]``: the link-parameter form (Discover responses)."""
        return [(name, format_value(name, value)) for name, value in self.items()]

    def to_query(self) -> list[str]:
        """``["pmin=10", "gt=25.5"]``: one Uri-Query option each."""
        return [f"{name}={text}" for name, text in self.to_pairs()]

    @property
    def is_empty(self) -> bool:
        return not self.items()

    def over(self, fallback: NotificationAttributes) -> NotificationAttributes:
        """These attributes, with the unset ones taken from ``fallback`` (a less specific level)."""
        return NotificationAttributes(
            **{
                f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(fallback, f.name)
                for f in fields(self)
            }
        )

    def without(self, names: Iterable[str]) -> NotificationAttributes:
        return replace(self, **dict.fromkeys(names))

    @property
    def change_conditions_valid(self) -> bool:
        """TS: the Change Value Conditions are valid only if ``lt < gt`` and ``lt + 2*st < gt``."""
        if self.lt is not None and self.gt is not None:
            if not self.lt < self.gt:
                return False
            if self.st is not None and not self.lt + 2 * self.st < self.gt:
                return False
        return True


def parse_value(name: str, text: str) -> AttributeValue:
    """Parse the text of one notification attribute strictly by its TS ABNF (plus a sign on gt/lt)."""
    _check_name(name)
    if not isinstance(text, str):
        raise InvalidAttributeError(f"{name} value must be text", attribute=name)
    if name in _INTEGER_NAMES:
        if not _INTEGER_RE.fullmatch(text) or int(text) > _INT64_MAX:
            raise InvalidAttributeError(f"{name} must be a non-negative integer, got {text[:40]!r}", attribute=name)
        return int(text)
    if name in _FLAG_NAMES:
        if text not in ("0", "1"):
            raise InvalidAttributeError(f"{name} must be 0 or 1, got {text[:40]!r}", attribute=name)
        return text == "1"
    if not _FLOAT_RE.fullmatch(text) or (name == "st" and text.startswith("-")):
        raise InvalidAttributeError(f"{name} must be a decimal number, got {text[:40]!r}", attribute=name)
    return _checked(name, float(text))


def _check_name(name: str) -> None:
    if name in PROPERTY_ATTRIBUTES:
        raise InvalidAttributeError(f"attribute {name!r} is read-only", attribute=name)
    if name not in NOTIFICATION_ATTRIBUTES:
        raise InvalidAttributeError(f"unknown attribute {name[:40]!r}", attribute=name[:40])


def format_value(name: str, value: AttributeValue) -> str:
    """The TS text of a value: integers as digits, flags as 0/1, floats in plain decimal (no exponent)."""
    value = _checked(name, value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    text = repr(value)  # shortest text that reads back to the same double
    if "e" in text:
        text = format(Decimal(text), "f")  # the ABNF has no exponent
    return text.removesuffix(".0")


def _checked(name: str, value: object) -> AttributeValue:
    """Type and range of one attribute value (not the cross-attribute rules)."""
    if name in _FLAG_NAMES:
        if not isinstance(value, bool):
            raise InvalidAttributeError(f"{name} must be a boolean, got {value!r}", attribute=name)
        return value
    if name in _INTEGER_NAMES:
        if type(value) is not int or not 0 <= value <= _INT64_MAX:
            raise InvalidAttributeError(f"{name} must be an integer in 0..2^63-1, got {value!r}", attribute=name)
        return value
    if name not in _FLOAT_NAMES:
        raise InvalidAttributeError(f"{name!r} is not a notification attribute", attribute=name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidAttributeError(f"{name} must be a finite number, got {value!r}", attribute=name)
    number = float(value)
    if name == "st" and not number > 0:
        raise InvalidAttributeError(f"st must be greater than 0, got {value!r}", attribute=name)
    return number


@dataclass(frozen=True, slots=True)
class AttributeUpdate:
    """One Write-Attributes request: values to set and names to unset at the target level."""

    values: NotificationAttributes = NotificationAttributes()
    unset: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in self.unset:
            if name not in NOTIFICATION_ATTRIBUTES:
                raise InvalidAttributeError(f"{name!r} is not a notification attribute", attribute=name)
            if self.values.get(name) is not None:
                raise InvalidAttributeError(f"{name} is both set and unset", attribute=name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.values.items()) | self.unset

    @property
    def is_empty(self) -> bool:
        """True for a request naming no attribute (a Write-Attributes handler should refuse it)."""
        return not self.names

    def apply(self, current: NotificationAttributes | None = None) -> NotificationAttributes:
        """The attributes at this level after the request."""
        base = (current or NotificationAttributes()).without(self.unset)
        return self.values.over(base)

    def to_query(self) -> list[str]:
        """Uri-Query items: ``pmin=10`` for a value, a bare ``st`` to unset, in TS table order."""
        out = self.values.to_query()
        out.extend(name for name in NOTIFICATION_ATTRIBUTES if name in self.unset)
        return out

    def check_for(self, path: Path, resource: ResourceModel | None = None) -> None:
        check_applicable(self.names, path, resource)


def parse_query(query: str | Iterable[str], *, lwm2m_version: str = "1.2") -> AttributeUpdate:
    """Parse Write-Attributes (or Observe) query items: ``["pmin=10", "gt=25.5", "st"]``.

    A string is split on ``&``. Raises InvalidAttributeError for unknown, read-only, duplicated or
    malformed attributes, attributes newer than ``lwm2m_version``, and for a request that breaks
    ``lt < gt``, ``lt + 2*st < gt`` or ``epmin < epmax`` by itself (TS: "MUST be rejected").
    """
    items = (query.split("&") if query else []) if isinstance(query, str) else list(query)
    if len(items) > MAX_QUERY_ITEMS:
        raise InvalidAttributeError(f"{len(items)} query items; at most {MAX_QUERY_ITEMS} are accepted")
    version = _version_tuple(lwm2m_version)
    seen: set[str] = set()
    values: dict[str, str] = {}
    unset: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise InvalidAttributeError(f"query item must be text, got {type(item).__name__}")
        name, has_value, text = item.partition("=")
        _check_name(name)
        if name in seen:
            raise InvalidAttributeError(f"attribute {name!r} given twice", attribute=name)
        seen.add(name)
        if version < _SINCE.get(name, (1, 0)):
            raise InvalidAttributeError(f"{name} does not exist in LwM2M {lwm2m_version}", attribute=name)
        if has_value:
            values[name] = text
        else:
            unset.add(name)
    update = AttributeUpdate(NotificationAttributes.from_pairs(values.items()), frozenset(unset))
    given = update.values
    if not given.change_conditions_valid:
        raise InvalidAttributeError("lt must be below gt, and lt + 2*st below gt")
    if given.epmin is not None and given.epmax is not None and not given.epmin < given.epmax:
        raise InvalidAttributeError("epmin must be less than epmax", attribute="epmax")
    return update


def _version_tuple(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,3})\.(\d{1,3})", text)
    if not match:
        raise InvalidAttributeError(f"LwM2M version {text!r} is not MAJOR.MINOR")
    return int(match.group(1)), int(match.group(2))


def check_applicable(names: Iterable[str], path: Path, resource: ResourceModel | None = None) -> None:
    """Refuse attributes at a level or on a resource the TS does not allow them on.

    gt/lt/st/edge only on a resource or resource instance; with the resource model at hand also:
    every notification attribute needs a readable resource, gt/lt/st a numerical one (Integer,
    Unsigned Integer, Float), edge a Boolean one, and a resource-instance path a multiple resource.
    """
    where = str(path)
    if path.is_root:
        raise InvalidAttributeError("attributes cannot be set on the root path", path=where)
    for name in names:
        if name not in NOTIFICATION_ATTRIBUTES:
            raise InvalidAttributeError(f"{name!r} is not a notification attribute", attribute=name, path=where)
        if name in RESOURCE_LEVEL_ONLY and path.resource_id is None:
            raise InvalidAttributeError(f"{name} can only be set on a resource", attribute=name, path=where)
        if resource is None or path.resource_id is None:
            continue
        if not resource.operations.readable:
            raise InvalidAttributeError(
                f"{name}: resource {resource.name!r} is not readable", attribute=name, path=where
            )
        if name in _FLOAT_NAMES and resource.type not in _NUMERIC_TYPES:
            raise InvalidAttributeError(
                f"{name} needs a numerical resource, {resource.name!r} is {resource.type.value}",
                attribute=name,
                path=where,
            )
        if name == "edge" and resource.type is not ResourceType.BOOLEAN:
            raise InvalidAttributeError(f"edge needs a Boolean resource, {resource.name!r} is not", path=where)
    if resource is not None and path.is_resource_instance and not resource.multiple:
        raise InvalidAttributeError(f"resource {resource.name!r} has no instances", path=where)


def inherited(path: Path, assigned: Mapping[Path, NotificationAttributes]) -> NotificationAttributes:
    """The attributes in force at ``path`` by the TS precedence rules 1-5, as Discover reports them.

    Per attribute, the most specific level that sets it wins: resource instance, then resource,
    object instance, object. gt/lt/st/edge are taken from the resource levels only (they cannot be
    assigned higher, and a stray one there must not leak down).
    """
    result = NotificationAttributes()
    for depth in range(len(path.ids), 0, -1):
        level = assigned.get(Path(path.ids[:depth]))
        if level is not None:
            result = result.over(level if depth >= 3 else level.without(RESOURCE_LEVEL_ONLY))
    return result


def effective(
    attributes: NotificationAttributes, *, default_pmin: int | None = None, default_pmax: int | None = None
) -> NotificationAttributes:
    """The attributes a notification engine evaluates, with the server account's defaults applied.

    * pmin: its value, else the Server object's Default Minimum Period (/1/x/2), else 0.
    * pmax: its value, else Default Maximum Period (/1/x/3), else none; 0 or a pmax below pmin is
      ignored (TS) and comes out as None.
    * epmax not above epmin is dropped (TS: epmin must be less than epmax; mirrors the pmax rule).
    * gt/lt/st are dropped when they break ``lt < gt`` / ``lt + 2*st < gt`` (not "valid").
    """
    pmin = attributes.pmin if attributes.pmin is not None else (default_pmin or 0)
    pmax = attributes.pmax if attributes.pmax is not None else default_pmax
    if pmax is not None and (pmax == 0 or pmax < pmin):
        pmax = None
    result = replace(attributes, pmin=pmin, pmax=pmax)
    if result.epmin is not None and result.epmax is not None and result.epmax <= result.epmin:
        result = replace(result, epmax=None)
    if not result.change_conditions_valid:
        result = result.without(("gt", "lt", "st"))
    return result


def effective_for(
    path: Path,
    assigned: Mapping[Path, NotificationAttributes],
    *,
    default_pmin: int | None = None,
    default_pmax: int | None = None,
) -> NotificationAttributes:
    """:func:`effective` of :func:`inherited`: what governs notifications of ``path``."""
    return effective(inherited(path, assigned), default_pmin=default_pmin, default_pmax=default_pmax)


# --- The notify decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationState:
    """What the engine remembers per observed resource (or resource instance) between evaluations."""

    last_time: float
    """When the last notification (or the Observe response, the first one) was sent, in seconds."""
    last_value: object
    """The value carried by that notification."""
    pending: bool = False
    """A change condition was met before pmin expired: a notification is owed at pmin expiry."""
    last_evaluation: float | None = None
    """When the reporting criteria were last evaluated (for epmin/epmax)."""
    deferred: bool = False
    """A value was offered within epmin of the last evaluation and not evaluated yet."""


@dataclass(frozen=True, slots=True)
class Decision:
    notify: bool
    """Send a notification now, carrying the value just offered."""
    state: NotificationState
    """The state to keep (already updated for a notification sent now)."""
    next_deadline: float | None
    """When to call :meth:`NotificationPolicy.evaluate` again even if nothing changes; None: only on change."""


def change_condition_met(attributes: NotificationAttributes, last_value: object, value: object) -> bool:
    """Whether ``value`` meets a Change Value Condition relative to the last *notified* value.

    * A number with gt, lt or st set: met when it crosses gt (one of the two values above gt, the
      other not) or lt (one below lt, the other not), or moved by at least st. Any one suffices.
    * A boolean with edge set: met on a false→true change for edge=1, true→false for edge=0.
    * Otherwise (no condition applies): met on any change of value (TS: "upon any change").
    """
    if last_value is None:
        return value is not None
    if (
        _is_number(value)
        and _is_number(last_value)
        and (attributes.gt is not None or attributes.lt is not None or attributes.st is not None)
    ):
        new, old = float(value), float(last_value)  # type: ignore[arg-type]  # checked by _is_number
        if attributes.gt is not None and (new > attributes.gt) != (old > attributes.gt):
            return True
        if attributes.lt is not None and (new < attributes.lt) != (old < attributes.lt):
            return True
        return attributes.st is not None and abs(new - old) >= attributes.st
    if isinstance(value, bool) and isinstance(last_value, bool) and attributes.edge is not None:
        return value is attributes.edge and last_value is not attributes.edge
    return value != last_value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class NotificationPolicy:
    """The TS notification rules over one set of :func:`effective` attributes. Pure: time is passed in.

    Rules, in the order they are applied by :meth:`evaluate` (``elapsed`` = now - last notification):

    1. The Observe response is the first notification (:meth:`start`); every notification restarts
       the pmin and pmax timers.
    2. pmax: when ``elapsed >= pmax`` a notification is sent whatever the value (pmax None = none).
    3. A notification owed from an earlier change (``pending``) is sent once ``elapsed >= pmin``,
       with the value current then, even if it has moved back (TS: "sent as soon as pmin expires").
    4. epmin: the criteria are evaluated at most once per epmin; a value offered sooner is
       ``deferred`` and must be offered again at last evaluation + epmin (the next deadline).
    5. Otherwise the value is evaluated (:func:`change_condition_met`). Met with ``elapsed >= pmin``:
       notify now; met earlier: the notification becomes ``pending`` until pmin expiry.
    6. epmax: an evaluation must happen at last evaluation + epmax (a deadline, nothing more).

    The next deadline is the earliest of: last notification + pmax; + pmin when pending;
    last evaluation + epmin when deferred; last evaluation + epmax.
    """

    attributes: NotificationAttributes

    def start(self, value: object, now: float) -> NotificationState:
        """The state right after the Observe response carrying ``value`` was sent."""
        return NotificationState(last_time=now, last_value=value, last_evaluation=now)

    def evaluate(self, state: NotificationState, value: object, now: float) -> Decision:
        attrs = self.attributes
        pmin = attrs.pmin or 0
        elapsed = now - state.last_time
        notify = False
        last_evaluation = state.last_evaluation
        too_soon = attrs.epmin is not None and last_evaluation is not None and now - last_evaluation < attrs.epmin
        if attrs.pmax is not None and attrs.pmax >= pmin and elapsed >= attrs.pmax:
            notify = True
        elif state.pending:
            notify = elapsed >= pmin
        elif too_soon:
            state = replace(state, deferred=True)
        else:
            state = replace(state, last_evaluation=now, deferred=False)
            if change_condition_met(attrs, state.last_value, value):
                if elapsed >= pmin:
                    notify = True
                else:
                    state = replace(state, pending=True)
        if notify:
            state = NotificationState(last_time=now, last_value=value, last_evaluation=now)
        return Decision(notify, state, self.next_deadline(state))

    def next_deadline(self, state: NotificationState) -> float | None:
        attrs = self.attributes
        candidates: list[float] = []
        if attrs.pmax is not None and attrs.pmax >= (attrs.pmin or 0):
            candidates.append(state.last_time + attrs.pmax)
        if state.pending:
            candidates.append(state.last_time + (attrs.pmin or 0))
        if state.last_evaluation is not None:
            if state.deferred and attrs.epmin is not None:
                candidates.append(state.last_evaluation + attrs.epmin)
            if attrs.epmax is not None:
                candidates.append(state.last_evaluation + attrs.epmax)
        return min(candidates) if candidates else None


def should_notify(attributes: NotificationAttributes, state: NotificationState, value: object, now: float) -> bool:
    """Shorthand for ``NotificationPolicy(attributes).evaluate(state, value, now).notify``."""
    return NotificationPolicy(attributes).evaluate(state, value, now).notify


def next_deadline(attributes: NotificationAttributes, state: NotificationState) -> float | None:
    """Shorthand for ``NotificationPolicy(attributes).next_deadline(state)``."""
    return NotificationPolicy(attributes).next_deadline(state)
