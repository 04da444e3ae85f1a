"""Benchmark: encoding and decoding typical SPMP instances in TLV, SenML JSON and SenML CBOR.

Measures operations per second on one core for a Port Status, a Voltage and an SPMP Battery
instance, beside the bare serializer (json / cbor2) encoding and decoding the same values as a
plain ``{resource id: value}`` mapping in the same run, and reports the ratio (LwM2M cost / bare cost).

Robustness on a shared machine: time is the process's CPU time (``time.process_time``), so time
spent descheduled while other processes run does not count; each (codec, baseline) pair is timed in
alternating rounds (codec, bare, codec, bare, ...), each round long enough to dwarf the timer's
resolution, with the garbage collector off (timeit's default). The table gives the median ops/s over
the rounds and the median of the per-round ratios, so what load remains (shared caches, frequency)
moves both sides of a ratio together instead of skewing it.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_codecs.py [--write docs/performance.md]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path as FilePath

import cbor2

from spmp.lwm2m import ContentFormat, ObjectInstance, ObjectLink, ObjectModel, Path, ResourceType, instance_from_model
from spmp.lwm2m.codecs import decode, encode
from spmp.lwm2m.node import MultipleResource, SingleResource
from spmp.lwm2m.objects import default_registry, ids
from spmp.lwm2m.values import Value

FORMATS = {
    "TLV": ContentFormat.TLV,
    "SenML JSON": ContentFormat.SENML_JSON,
    "SenML CBOR": ContentFormat.SENML_CBOR,
}
BASELINES = {"TLV": "cbor2", "SenML JSON": "json", "SenML CBOR": "cbor2"}


def sample_value(kind: ResourceType, seed: int) -> Value:
    """A plausible value of each type; deterministic so runs compare."""
    if kind is ResourceType.FLOAT:
        return 48.0 + seed * 0.37
    if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        return 300 + seed
    if kind is ResourceType.BOOLEAN:
        return seed % 2 == 0
    if kind is ResourceType.STRING:
        return f"value-{seed}"
    if kind is ResourceType.OPAQUE:
        return bytes(range(seed % 7, seed % 7 + 8))
    if kind is ResourceType.TIME:
        return datetime(2026, 11, 22, 12, 0, seed % 60, tzinfo=UTC)
    if kind is ResourceType.OBJLNK:
        return ObjectLink(ids.ALERTS, seed % 4)
    return f"</{seed}>"


def sample_instance(model: ObjectModel) -> ObjectInstance:
    values: dict[int, Value | dict[int, Value]] = {}
    for resource in model.resources.values():
        if not resource.operations.readable:
            continue
        value = sample_value(resource.type, resource.id)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if resource.range.enforced and resource.range.minimum is not None and numeric:
            assert isinstance(value, int | float)
            if not resource.range.contains(value):
                value = type(value)(resource.range.minimum)
        if resource.range.choices is not None and isinstance(value, int) and not isinstance(value, bool):
            value = min(resource.range.choices)
        values[resource.id] = {0: value, 1: value} if resource.multiple else value
    return instance_from_model(model, 0, values)


def plain(instance: ObjectInstance) -> dict[int, object]:
    """The same values as a bare mapping, as json/cbor2 would carry them with no LwM2M framing."""
    out: dict[int, object] = {}
    for rid, resource in instance.resources.items():
        raw: list[tuple[int | None, Value]] = (
            list(resource.instances.items()) if isinstance(resource, MultipleResource) else [(None, resource.value)]
        )
        for key, value in raw:
            bare: object = value
            if isinstance(value, datetime):
                bare = int(value.timestamp())
            elif isinstance(value, ObjectLink):
                bare = str(value)
            out[rid * 100 + (key or 0)] = bare
    return out


def _number_for(function: Callable[[], object], target: float) -> int:
    """Calls per round so that one round takes about ``target`` seconds."""
    timer = timeit.Timer(function, timer=time.process_time)
    number, elapsed = timer.autorange()  # at least 0.2 s
    return max(1, int(number * target / elapsed))


def paired(
    codec: Callable[[], object], bare: Callable[[], object], rounds: int, target: float
) -> tuple[float, float, float]:
    """(codec ops/s, bare ops/s, median codec/bare cost ratio), timed in alternating rounds."""
    codec_number, bare_number = _number_for(codec, target), _number_for(bare, target)
    codec_timer, bare_timer = timeit.Timer(codec, timer=time.process_time), timeit.Timer(bare, timer=time.process_time)
    codec_costs, bare_costs, ratios = [], [], []
    for _ in range(rounds):
        codec_cost = codec_timer.timeit(codec_number) / codec_number
        bare_cost = bare_timer.timeit(bare_number) / bare_number
        codec_costs.append(codec_cost)
        bare_costs.append(bare_cost)
        ratios.append(codec_cost / bare_cost)
    return 1 / statistics.median(codec_costs), 1 / statistics.median(bare_costs), statistics.median(ratios)


Row = tuple[str, str, float, float, float, float]


def run(rounds: int = 9, target: float = 0.05) -> list[Row]:
    registry = default_registry()
    rows = []
    for object_id in (ids.PORT_STATUS, ids.VOLTAGE, ids.SPMP_BATTERY):
        model = registry.object_model(object_id)
        assert model is not None
        instance = sample_instance(model)
        path = Path.of(object_id, 0)
        bare = plain(instance)
        json_bare = {str(k): (base64.b64encode(v).decode() if isinstance(v, bytes) else v) for k, v in bare.items()}
        text = json.dumps(json_bare, separators=(",", ":"))
        blob = cbor2.dumps(bare)
        for name, fmt in FORMATS.items():
            payload = encode(instance, path, fmt, registry)
            assert decode(payload, path, fmt, registry) == instance, f"{name} round trip failed for {model.name}"
            if BASELINES[name] == "json":
                bare_enc: Callable[[], object] = lambda: json.dumps(json_bare, separators=(",", ":"))  # noqa: B023, E731
                bare_dec: Callable[[], object] = lambda: json.loads(text)  # noqa: B023, E731
            else:
                bare_enc = lambda: cbor2.dumps(bare)  # noqa: B023, E731
                bare_dec = lambda: cbor2.loads(blob)  # noqa: B023, E731
            enc, _, enc_ratio = paired(lambda: encode(instance, path, fmt, registry), bare_enc, rounds, target)  # noqa: B023
            dec, _, dec_ratio = paired(lambda: decode(payload, path, fmt, registry), bare_dec, rounds, target)  # noqa: B023
            rows.append((f"{model.name} ({len(instance.resources)} res.)", name, enc, dec, enc_ratio, dec_ratio))
            print(f"  {rows[-1][0]:<28} {name:<10} enc {enc_ratio:5.2f}x  dec {dec_ratio:5.2f}x", file=sys.stderr)
    return rows


def floors(rounds: int, target: float) -> str:
    """Decode of the largest instance split into what no Python code can avoid: the C parser reading
    the LwM2M payload itself (TLV has none) and building the node objects; each as a cost vs bare."""
    registry = default_registry()
    model = registry.object_model(ids.SPMP_BATTERY)
    assert model is not None
    instance = sample_instance(model)
    path = Path.of(ids.SPMP_BATTERY, 0)
    bare = plain(instance)
    text = json.dumps({str(k): v for k, v in bare.items()}, separators=(",", ":"))
    blob = cbor2.dumps(bare)
    items = [(rid, r.value, r.type) for rid, r in instance.resources.items() if isinstance(r, SingleResource)]
    assert len(items) == len(instance.resources)

    def nodes() -> object:
        return ObjectInstance(0, {rid: SingleResource(rid, value, kind) for rid, value, kind in items})

    lines = [
        f"Decode of the {model.name} instance, split up (cost vs the same bare baseline):\n",
        "| format | C parser on the LwM2M payload | building the nodes | floor (sum) | full decode |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, fmt in FORMATS.items():
        payload = encode(instance, path, fmt, registry)
        if BASELINES[name] == "json":
            bare_dec: Callable[[], object] = lambda: json.loads(text)  # noqa: E731
            parse: Callable[[], object] | None = lambda: json.loads(payload)  # noqa: B023, E731
        else:
            bare_dec = lambda: cbor2.loads(blob)  # noqa: E731
            parse = None if name == "TLV" else lambda: cbor2.loads(payload)  # noqa: B023
        parsing = paired(parse, bare_dec, rounds, target)[2] if parse is not None else 0.0
        building = paired(nodes, bare_dec, rounds, target)[2]
        full = paired(lambda: decode(payload, path, fmt, registry), bare_dec, rounds, target)[2]  # noqa: B023
        parser_text = f"{parsing:.2f}x" if parse is not None else "— (pure Python)"
        lines.append(f"| {name} | {parser_text} | {building:.2f}x | {parsing + building:.2f}x | {full:.2f}x |")
    return "\n".join(lines)


def render(rows: list[Row]) -> str:
    lines = [
        "| instance | format | encode ops/s | decode ops/s | encode cost vs bare | decode cost vs bare |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for instance, fmt, enc, dec, enc_ratio, dec_ratio in rows:
        baseline = BASELINES[fmt]
        ratios = f"{enc_ratio:.2f}x {baseline} | {dec_ratio:.2f}x {baseline}"
        lines.append(f"| {instance} | {fmt} | {enc:,.0f} | {dec:,.0f} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=FilePath, help="replace the codec section of this Markdown file")
    parser.add_argument("--rounds", type=int, default=9, help="alternating timing rounds per pair (default 9)")
    parser.add_argument("--round-seconds", type=float, default=0.05, help="length of one round (default 0.05)")
    args = parser.parse_args()
    table = render(run(args.rounds, args.round_seconds)) + "\n\n" + floors(args.rounds, args.round_seconds)
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    section = (
        "<!-- codecs:begin -->\n## LwM2M codecs\n\n"
        f"Command: `.venv/bin/python benchmarks/bench_codecs.py --write docs/performance.md`  \n"
        f"Machine: {machine}, {os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d}, one core (single process), "
        f"{args.rounds} alternating rounds of {args.round_seconds:g} s per side.  \n"
        "Baseline, measured in the same run: the bare serializer (json for SenML JSON, cbor2 for TLV and "
        "SenML CBOR) encoding/decoding the same values as a plain `{id: value}` mapping. ops/s are medians over "
        "the rounds; a ratio is the median of the per-round ratios, 2.0x meaning the LwM2M codec costs twice "
        "the bare serializer.\n\n"
        f"{table}\n<!-- codecs:end -->\n"
    )
    print(section)
    if args.write:
        existing = args.write.read_text() if args.write.exists() else "# Performance\n\n"
        if "<!-- codecs:begin -->" in existing:
            head, rest = existing.split("<!-- codecs:begin -->", 1)
            _, tail = rest.split("<!-- codecs:end -->\n", 1)
            existing = head + section + tail
        else:
            existing = existing.rstrip("\n") + "\n\n" + section
        args.write.write_text(existing)
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
