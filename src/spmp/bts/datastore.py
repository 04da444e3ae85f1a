"""The running datastore as XML: edit-config (RFC 6241 7.2) and subtree filtering (RFC 6241 6), pure.

The datastore is a ``<data>`` element holding at most one ``<bts>``. It keeps only what clients set
(absent leaves take their YANG defaults), so get-config shows exactly what was configured. Edits are
applied to a copy and returned only when the whole edit succeeded: an error leaves the datastore as
it was, which is what the ``:rollback-on-error`` capability promises.

Every value is checked against :data:`spmp.bts.model.SCHEMA` as it is written, so an error names the
offending node in ``error-path`` (``/bts:bts/bts:transceiver-chain[bts:id='1']/bts:rf-power-output``).
"""

from __future__ import annotations

import copy

from lxml import etree

from spmp.bts.errors import NetconfError
from spmp.bts.model import BTS_LEAVES, BTS_NS, CHAIN_ID, CHAIN_LIST, MAX_CHAINS, NC_NS, SCHEMA, STATE, LeafError

__all__ = ["OPERATIONS", "apply_edit", "empty_datastore", "normalise", "subtree_filter"]

OPERATIONS = frozenset({"merge", "replace", "create", "delete", "remove"})
_OP_ATTR = f"{{{NC_NS}}}operation"
_BTS = f"{{{BTS_NS}}}bts"
_CHAIN = f"{{{BTS_NS}}}{CHAIN_LIST}"
_ID = f"{{{BTS_NS}}}id"
# Schema order of the bts container's children: the list sits right after logging-enabled.
_ORDER = {name: i for i, name in enumerate(["logging-enabled", CHAIN_LIST, *(leaf.name for leaf in BTS_LEAVES[1:])])}
_CHAIN_ORDER = {name: i for i, name in enumerate(SCHEMA[CHAIN_LIST])}


def empty_datastore() -> etree._Element:
    """A datastore with no configuration."""
    return etree.Element(f"{{{NC_NS}}}data", nsmap={None: NC_NS})


def apply_edit(running: etree._Element, config: etree._Element, default_operation: str = "merge") -> etree._Element:
    """Return a new datastore: ``running`` with the ``<config>`` element's edit applied; or raise NetconfError."""
    if default_operation not in ("merge", "replace", "none"):
        raise NetconfError("invalid-value", f"default-operation {default_operation!r}", error_type="protocol")
    target = copy.deepcopy(running)
    if default_operation == "replace":  # the edit's content is the whole new configuration
        for child in list(target):
            target.remove(child)
    _edit_children(target, config, "root", default_operation, "")
    bts = target.find(_BTS)
    if bts is not None:
        chains = bts.findall(_CHAIN)
        if len(chains) > MAX_CHAINS:
            raise NetconfError(
                "operation-failed",
                f"at most {MAX_CHAINS} transceiver chains",
                app_tag="too-many-elements",
                path=f"/bts:bts/bts:{CHAIN_LIST}",
            )
    return normalise(target)


def normalise(datastore: etree._Element) -> etree._Element:
    """Put the bts container's children in schema order and the chains in id order (in place)."""
    bts = datastore.find(_BTS)
    if bts is not None:
        for entry in bts.iterfind(_CHAIN):
            entry[:] = sorted(entry, key=lambda e: _CHAIN_ORDER.get(etree.QName(e).localname, 99))
        bts[:] = sorted(bts, key=_bts_child_order)
    return datastore


def _bts_child_order(elem: etree._Element) -> tuple[int, int]:
    name = etree.QName(elem).localname
    key = int(elem.findtext(_ID, "0")) if name == CHAIN_LIST else 0
    return _ORDER.get(name, 99), key


def _operation(elem: etree._Element, inherited: str) -> str:
    op = elem.get(_OP_ATTR)
    if op is None:
        return inherited
    if op not in OPERATIONS:
        raise NetconfError(
            "bad-attribute",
            f"unknown operation {op!r}",
            error_type="protocol",
            info={"bad-attribute": "operation", "bad-element": etree.QName(elem).localname},
        )
    return op


def _edit_children(target: etree._Element, edit: etree._Element, kind: str, op: str, path: str) -> None:
    """Apply the edit's children to ``target``, a node of ``kind``: root, bts or chain (a list entry)."""
    for child in edit.iterchildren(tag=etree.Element):
        qname = etree.QName(child)
        child_op = _operation(child, op)
        if qname.namespace != BTS_NS:
            raise NetconfError(
                "unknown-namespace",
                f"unknown namespace {qname.namespace!r}",
                path=path or "/",
                info={"bad-element": qname.localname, "bad-namespace": qname.namespace or ""},
            )
        name = qname.localname
        if kind == "root" and name == "bts":
            _edit_container(target, child, child_op, "/bts:bts", kind="bts")
        elif kind == "bts" and name == CHAIN_LIST:
            _edit_chain(target, child, child_op, path)
        elif kind == "bts" and name == STATE:
            raise NetconfError("invalid-value", "state is config false: it cannot be edited", path=f"{path}/bts:state")
        elif kind != "root" and name in SCHEMA[kind if kind == "bts" else CHAIN_LIST]:
            if kind == "chain" and name == "id":
                continue  # the key chose the entry already
            _edit_leaf(target, child, child_op, f"{path}/bts:{name}", kind)
        else:
            raise NetconfError(
                "unknown-element", f"unknown element {name!r}", path=path or "/", info={"bad-element": name}
            )


def _edit_leaf(target: etree._Element, edit: etree._Element, op: str, path: str, kind: str) -> None:
    name = etree.QName(edit).localname
    leaf = SCHEMA["bts" if kind == "bts" else CHAIN_LIST][name]
    existing = target.find(f"{{{BTS_NS}}}{name}")
    if op in ("merge", "replace", "create"):
        if op == "create" and existing is not None:
            raise NetconfError("data-exists", f"{name} exists already", path=path)
        try:
            value = leaf.parse(edit.text)
        except LeafError as exc:
            raise NetconfError("invalid-value", str(exc), path=path, info={"bad-element": name}) from None
        if existing is None:
            existing = etree.SubElement(target, f"{{{BTS_NS}}}{name}")
        existing.text = leaf.canonical(value)
    elif op == "delete" and existing is None:
        raise NetconfError("data-missing", f"{name} is not set", path=path)
    elif op in ("delete", "remove") and existing is not None:
        target.remove(existing)
    # "none": the leaf only says where we are; nothing to do


def _edit_container(parent: etree._Element, edit: etree._Element, op: str, path: str, *, kind: str) -> None:
    existing = parent.find(_BTS)
    if op in ("delete", "remove"):
        if existing is not None:
            parent.remove(existing)
        elif op == "delete":
            raise NetconfError("data-missing", "bts is not configured", path=path)
        return
    if op == "create" and existing is not None:
        raise NetconfError("data-exists", "bts exists already", path=path)
    created = existing is None
    if existing is None:
        existing = etree.SubElement(parent, _BTS, nsmap={None: BTS_NS})
    elif op == "replace":
        existing[:] = []
    _edit_children(existing, edit, kind, op, path)
    if created and op == "none" and len(existing) == 0:
        parent.remove(existing)  # "none" only navigated through it: do not leave an empty container


def _edit_chain(bts: etree._Element, edit: etree._Element, op: str, bts_path: str) -> None:
    key_elem = edit.find(_ID)
    if key_elem is None:
        raise NetconfError(
            "missing-element",
            f"{CHAIN_LIST} needs its key id",
            path=f"{bts_path}/bts:{CHAIN_LIST}",
            info={"bad-element": "id"},
        )
    try:
        key = CHAIN_ID.canonical(CHAIN_ID.parse(key_elem.text))
    except LeafError as exc:
        raise NetconfError(
            "invalid-value", str(exc), path=f"{bts_path}/bts:{CHAIN_LIST}/bts:id", info={"bad-element": "id"}
        ) from None
    path = f"{bts_path}/bts:{CHAIN_LIST}[bts:id='{key}']"
    existing = next((e for e in bts.iterfind(_CHAIN) if e.findtext(_ID) == key), None)
    if op in ("delete", "remove"):
        if existing is not None:
            bts.remove(existing)
        elif op == "delete":
            raise NetconfError("data-missing", f"chain {key} does not exist", path=path)
        return
    if op == "create" and existing is not None:
        raise NetconfError("data-exists", f"chain {key} exists already", path=path)
    if op == "none" and existing is None:
        raise NetconfError("data-missing", f"chain {key} does not exist", path=path)
    if existing is None:
        existing = etree.SubElement(bts, _CHAIN)
        etree.SubElement(existing, _ID).text = key
    elif op == "replace":
        existing[:] = [e for e in existing if e.tag == _ID]
    _edit_children(existing, edit, "chain", op, path)


# ----------------------------------------------------------------------------------- subtree filter


def subtree_filter(data: list[etree._Element], filter_elem: etree._Element) -> list[etree._Element]:
    """Copies of the parts of the top-level ``data`` nodes that the subtree filter selects (RFC 6241 6.2)."""
    out: list[etree._Element] = []
    for f in filter_elem.iterchildren(tag=etree.Element):
        for node in data:
            if _same_name(node, f):
                selected = _filter_node(node, f)
                if selected is not None:
                    out.append(selected)
    return out


def _same_name(node: etree._Element, f: etree._Element) -> bool:
    nq, fq = etree.QName(node), etree.QName(f)
    # A filter node without a namespace matches that name in any namespace (RFC 6241 6.2.1).
    return nq.localname == fq.localname and (fq.namespace is None or fq.namespace == nq.namespace)


def _is_content_match(f: etree._Element) -> bool:
    return len(f) == 0 and bool((f.text or "").strip())


def _filter_node(node: etree._Element, f: etree._Element) -> etree._Element | None:
    children = list(f.iterchildren(tag=etree.Element))
    if not children:
        if _is_content_match(f):
            return copy.deepcopy(node) if (node.text or "").strip() == (f.text or "").strip() else None
        return copy.deepcopy(node)  # a selection node: the whole subtree
    matches = [c for c in children if _is_content_match(c)]
    others = [c for c in children if not _is_content_match(c)]
    for m in matches:
        if not any(_same_name(n, m) and (n.text or "").strip() == (m.text or "").strip() for n in node):
            return None  # a content match node fails: the node is not selected at all
    out = etree.Element(node.tag, nsmap=node.nsmap)
    if not others:  # only content match nodes: the node is selected whole
        out[:] = [copy.deepcopy(n) for n in node]
        return out
    for n in node.iterchildren(tag=etree.Element):
        if any(_same_name(n, m) for m in matches):
            out.append(copy.deepcopy(n))
            continue
        for o in others:
            if _same_name(n, o):
                selected = _filter_node(n, o)
                if selected is not None:
                    out.append(selected)
                    break
    return out if len(out) or matches else None
