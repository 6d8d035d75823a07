"""Neutron QoS policies as the API (and `openstack network qos policy show -f json`) returns them.

A policy is `{"policy": {"name": ..., "rules": [...]}}` (the inner object alone is accepted too).
Units as Neutron states them (qos-semantics.md §3): `max_kbps`/`min_kbps` in kbit/s of 1000 bit,
`max_burst_kbps` is a *size* in kilobits of 1000 bit (125 bytes), packet rates in kpps of 1000
packets. Directions are Neutron's and vmqos's: ingress = towards the instance, egress = sent by it.

Validation follows Neutron's: one rule per (type, direction), `min_kbps <= max_kbps` in a
direction, an `any` minimum packet rate cannot be mixed with directional ones, DSCP marks from
VALID_DSCP_MARKS. Neutron's burst defaults are made explicit: an egress `bandwidth_limit` without
a burst gets the policer's 80 % default (0.8 s of traffic, LP#1572670) with a warning.
"""

from __future__ import annotations

import json
from typing import Any

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats._common import load_json
from vmqos.core.formats.neutron_rules import (
    BANDWIDTH_LIMIT,
    DSCP_MARKING,
    MAX_INT,
    MIN_BURST_KBIT,
    MIN_FRAME_BYTES,
    MINIMUM_BANDWIDTH,
    MINIMUM_PACKET_RATE,
    PACKET_RATE_LIMIT,
    RULE_TYPES,
    parse_rule,
    rule_type,
)
from vmqos.core.model.document import Note, QosDocument
from vmqos.core.model.host import Policy
from vmqos.core.model.network import DIRECTIONS, BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.units import (
    NEUTRON_KPPS,
    NEUTRON_RATE_BPS,
    bytes_to_kbit,
    human_rate,
    human_size,
    kbit_to_bytes,
    to_unit,
)

FMT = "neutron"
# neutron-lib DEFAULT_BURST_RATE: the egress policer's burst when max_burst_kbps is 0, as 8/10 exactly.
DEFAULT_BURST_NUM, DEFAULT_BURST_DEN = 8, 10


# --------------------------------------------------------------------------------------------- read


def read(text: str, **options: Any) -> QosDocument:
    """A Neutron policy (JSON) as a document: its name, its NetworkQos and the notes of the conversion."""
    policy, notes = read_policy(text)
    return QosDocument(name=policy.name or None, network=policy.qos, notes=notes)


def read_policy(text: str) -> tuple[Policy, tuple[Note, ...]]:
    """A Neutron policy (JSON text) as a vmqos Policy with origin "neutron", and the notes."""
    return policy_from_obj(load_json(FMT, text))


def policy_from_obj(obj: Any, *, name: str | None = None, where: str = "policy") -> tuple[Policy, tuple[Note, ...]]:
    """A parsed policy (`{"policy": {...}}` or the inner object) as a Policy and notes.

    `name` overrides the policy's own name (for files that key policies by name); `where`
    prefixes the field names in errors and notes.
    """
    if isinstance(obj, dict) and "policy" in obj:
        obj = obj["policy"]
    if not isinstance(obj, dict):
        raise FormatError(FMT, 'expected a policy object: {"policy": {"name": ..., "rules": [...]}}')
    if "rules" not in obj:
        raise FormatError(FMT, 'the policy has no "rules" list; expected {"policy": {"name": ..., "rules": [...]}}')
    if name is None:
        raw = obj.get("name") or obj.get("id") or ""
        if not isinstance(raw, str):
            raise InvalidValue(f"{where}.name", raw, "a policy name is a string")
        name = raw
    qos, notes = qos_from_rules(obj["rules"], where=f"{where}.rules")
    return Policy(name=name, qos=qos, origin="neutron"), notes


def qos_from_rules(rules: Any, *, where: str = "rules") -> tuple[NetworkQos, tuple[Note, ...]]:
    """A list of Neutron rule objects (each with its `type`) as a NetworkQos, validated as Neutron does."""
    if not isinstance(rules, list):
        raise FormatError(FMT, f"{where} must be a list of rule objects, not {type(rules).__name__}")
    notes: list[Note] = []
    seen: dict[tuple[str, str], int] = {}
    parsed: dict[tuple[str, str], dict[str, Any]] = {}
    for index, rule in enumerate(rules):
        here = f"{where}[{index}]"
        rtype = rule_type(here, rule)
        values = parse_rule(here, rtype, rule, notes)
        key = (rtype, values["direction"])
        if key in seen:
            raise ConflictError(
                f"{here}: the policy already has a {rtype} rule for direction {values['direction']} "
                f"({where}[{seen[key]}]); Neutron allows one rule per type and direction (QoSRulesConflict)"
            )
        seen[key] = index
        parsed[key] = values | {"where": here}
    return _build(parsed, notes), tuple(notes)


def _build(parsed: dict[tuple[str, str], dict[str, Any]], notes: list[Note]) -> NetworkQos:
    any_pps = parsed.get((MINIMUM_PACKET_RATE, "any"))
    directional = [parsed[(MINIMUM_PACKET_RATE, d)]["where"] for d in DIRECTIONS
                   if (MINIMUM_PACKET_RATE, d) in parsed]
    if any_pps is not None and directional:
        raise ConflictError(
            f"{any_pps['where']}: a minimum_packet_rate rule for direction any cannot be mixed with directional "
            f"ones ({', '.join(directional)}); Neutron refuses it - keep either the any rule or the directional ones"
        )
    sides: dict[str, DirectionQos] = {}
    for direction in DIRECTIONS:
        bw = parsed.get((BANDWIDTH_LIMIT, direction))
        pr = parsed.get((PACKET_RATE_LIMIT, direction))
        mb = parsed.get((MINIMUM_BANDWIDTH, direction))
        mp = parsed.get((MINIMUM_PACKET_RATE, direction))
        dscp = parsed.get((DSCP_MARKING, direction))
        if bw is not None and bw["max_kbps"] == 0:  # no limit, noted when read
            bw = None
        if bw is not None and mb is not None and mb["min_kbps"] > bw["max_kbps"]:
            raise ConflictError(
                f"{mb['where']}.min_kbps: {mb['min_kbps']} exceeds {bw['where']}.max_kbps {bw['max_kbps']} "
                f"in direction {direction} (Neutron QoSRuleParameterConflict: min_kbps must be <= max_kbps); "
                "lower min_kbps or raise max_kbps"
            )
        if pr is not None and mp is not None and mp["min_kpps"] > pr["max_kpps"]:
            raise ConflictError(
                f"{mp['where']}.min_kpps: {mp['min_kpps']} exceeds {pr['where']}.max_kpps {pr['max_kpps']} "
                f"in direction {direction}; lower min_kpps or raise max_kpps"
            )
        sides[direction] = DirectionQos(
            bandwidth=None if bw is None else _bandwidth(direction, bw, notes),
            packet_rate=None if pr is None else PacketRateLimit(
                pps=pr["max_kpps"] * NEUTRON_KPPS,
                burst_packets=pr["max_burst_kpps"] * NEUTRON_KPPS or None,
            ),
            dscp=None if dscp is None else dscp["dscp_mark"],
            min_bps=_minimum(direction, mb, "min_kbps", NEUTRON_RATE_BPS, notes),
            min_pps=_minimum(direction, mp, "min_kpps", NEUTRON_KPPS, notes),
        )
    return NetworkQos(ingress=sides["ingress"], egress=sides["egress"],
                      min_pps_any=_minimum("any", any_pps, "min_kpps", NEUTRON_KPPS, notes))


def _minimum(direction: str, rule: dict[str, Any] | None, key: str, unit: int, notes: list[Note]) -> int | None:
    if rule is None:
        return None
    if rule[key] == 0:
        notes.append(Note(f"{rule['where']}.{key}", f"a guaranteed minimum of 0 in direction {direction} "
                                                    "guarantees nothing; it is left out", "info"))
        return None
    return int(rule[key]) * unit


def _bandwidth(direction: str, rule: dict[str, Any], notes: list[Note]) -> BandwidthLimit:
    max_kbps, burst_kbit = rule["max_kbps"], rule["max_burst_kbps"]
    rate = max_kbps * NEUTRON_RATE_BPS
    if burst_kbit:
        return BandwidthLimit(rate_bps=rate, burst_bytes=kbit_to_bytes(burst_kbit))
    if direction == "ingress":
        notes.append(Note(
            "ingress.burst",
            "max_burst_kbps is 0: Neutron/OVS would shape this direction with an HTB queue whose burst is only "
            "MTU+64 bytes (there is no 80 % default for ingress); vmqos applies its own time-based default "
            "instead - set max_burst_kbps to pin the burst",
            "info",
        ))
        return BandwidthLimit(rate_bps=rate)
    default_kbit = max_kbps * DEFAULT_BURST_NUM // DEFAULT_BURST_DEN
    if default_kbit == 0:
        notes.append(Note(
            "egress.burst",
            f"max_burst_kbps is 0 and Neutron's 80 % default of {max_kbps} kbit is 0, so OVS falls back to its own "
            "8000 kbit policer burst; vmqos applies its time-based default instead - set max_burst_kbps explicitly",
        ))
        return BandwidthLimit(rate_bps=rate)
    if kbit_to_bytes(default_kbit) < 2 * MIN_FRAME_BYTES:
        notes.append(Note(
            "egress.burst",
            f"max_burst_kbps is 0 and Neutron's 80 % default ({default_kbit} kbit = "
            f"{kbit_to_bytes(default_kbit)} bytes) is smaller than two full-size frames: a policer with it drops "
            "nearly every full-size packet (LP#2153122); vmqos applies its time-based default instead - "
            f"set max_burst_kbps to at least {MIN_BURST_KBIT} kbit",
        ))
        return BandwidthLimit(rate_bps=rate)
    burst = kbit_to_bytes(default_kbit)
    suggestion = max(max_kbps // 20, MIN_BURST_KBIT)  # 50 ms of traffic, at least two 1500-byte frames
    notes.append(Note(
        "egress.burst",
        f"max_burst_kbps is 0, so Neutron's egress policer default applies: 80 % of max_kbps = {default_kbit} kbit "
        f"({human_size(burst)}), i.e. 0.8 s of traffic at {human_rate(rate)} (LP#1572670). Such a bucket is harmful "
        "with shaping and at high rates - at 1 Gbit/s it lets ~100 MB through at line rate after an idle period; "
        f"set max_burst_kbps explicitly, e.g. {suggestion} kbit (about 50 ms of traffic)",
    ))
    return BandwidthLimit(rate_bps=rate, burst_bytes=burst)


# -------------------------------------------------------------------------------------------- write


def write(doc: QosDocument, **options: Any) -> str:
    """The document's network QoS as a Neutron policy, JSON with indent 2.

    Options: `name` overrides the document's name; `exact=True` refuses values that Neutron's
    units (kbit, kpps) would round instead of rounding them to the nearest unit.
    """
    qos = doc.single_network(FMT)
    if doc.cpu is not None and not doc.cpu.is_empty:
        raise UnsupportedError("neutron: a Neutron QoS policy has no CPU limits; use nova or libvirt for cpu")
    if (doc.disk is not None and not doc.disk.is_empty) or any(not d.is_empty for d in doc.disks.values()):
        raise UnsupportedError("neutron: a Neutron QoS policy has no disk limits; use cinder, nova or libvirt for disk")
    name = options.get("name") or doc.name or ""
    policy = Policy(name=name, qos=qos or NetworkQos(), origin="neutron")
    return json.dumps(policy_to_obj(policy, exact=bool(options.get("exact"))), indent=2) + "\n"


def policy_to_obj(policy: Policy, *, exact: bool = False) -> dict[str, Any]:
    """A Policy as Neutron's `{"policy": {"name": ..., "rules": [...]}}` object."""
    return {"policy": {"name": policy.name, "rules": rules_from_qos(policy.qos, exact=exact)}}


def rules_from_qos(qos: NetworkQos, *, exact: bool = False) -> list[dict[str, Any]]:
    """A NetworkQos as Neutron rules in a stable order; UnsupportedError for what Neutron cannot state."""
    rules: list[dict[str, Any]] = []
    order = ("egress", "ingress")
    for direction in order:
        side: DirectionQos = getattr(qos, direction)
        if side.classes:
            raise UnsupportedError(
                f"neutron: {direction}.classes: Neutron QoS has no traffic classes; use vmqos's own format")
        bw = side.bandwidth
        if bw is None:
            continue
        if bw.peak_bps is not None:
            raise UnsupportedError(
                f"neutron: {direction}.peak: Neutron bandwidth_limit has no peak; use libvirt or vmqos")
        rule: dict[str, Any] = {"type": BANDWIDTH_LIMIT,
                                "max_kbps": _unit(f"{direction}.rate", bw.rate_bps, NEUTRON_RATE_BPS, "kbit/s", exact)}
        if bw.burst_bytes is not None:
            kbit, is_exact = bytes_to_kbit(bw.burst_bytes)
            _check(f"{direction}.burst", bw.burst_bytes, kbit, is_exact, "kbit", exact)
            rule["max_burst_kbps"] = kbit
        rule["direction"] = direction
        rules.append(rule)
    for direction in order:
        pr = getattr(qos, direction).packet_rate
        if pr is None:
            continue
        rule = {"type": PACKET_RATE_LIMIT, "max_kpps": _unit(f"{direction}.pps", pr.pps, NEUTRON_KPPS, "kpps", exact)}
        if pr.burst_packets is not None:
            rule["max_burst_kpps"] = _unit(f"{direction}.pps_burst", pr.burst_packets, NEUTRON_KPPS, "kpps", exact)
        rule["direction"] = direction
        rules.append(rule)
    if qos.egress.dscp is not None:
        rules.append({"type": DSCP_MARKING, "dscp_mark": qos.egress.dscp})
    for direction in order:
        min_bps = getattr(qos, direction).min_bps
        if min_bps is not None:
            rules.append({"type": MINIMUM_BANDWIDTH,
                          "min_kbps": _unit(f"{direction}.min_bps", min_bps, NEUTRON_RATE_BPS, "kbit/s", exact),
                          "direction": direction})
    for direction, min_pps in (("egress", qos.egress.min_pps), ("ingress", qos.ingress.min_pps),
                               ("any", qos.min_pps_any)):
        if min_pps is not None:
            rules.append({"type": MINIMUM_PACKET_RATE,
                          "min_kpps": _unit(f"{direction}.min_pps", min_pps, NEUTRON_KPPS, "kpps", exact),
                          "direction": direction})
    return rules


def _unit(field: str, value: int, unit: int, unit_name: str, exact: bool) -> int:
    whole, is_exact = to_unit(value, unit)
    _check(field, value, whole, is_exact, unit_name, exact)
    return whole


def _check(field: str, value: int, whole: int, is_exact: bool, unit_name: str, exact: bool) -> None:
    if exact and not is_exact:
        raise UnsupportedError(
            f"neutron: {field}: {value} is not a whole number of Neutron's {unit_name} (nearest: {whole}); "
            "round it yourself or write without exact")
    if whole > MAX_INT:
        raise UnsupportedError(f"neutron: {field}: {whole} {unit_name} is above Neutron's maximum {MAX_INT}")


__all__ = ["RULE_TYPES", "policy_from_obj", "policy_to_obj", "qos_from_rules", "read", "read_policy",
           "rules_from_qos", "write"]
