"""Neutron QoS policies: the seed's policies, Neutron's defaults and validation, round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats import get_format, neutron
from vmqos.core.model import (
    VALID_DSCP_MARKS,
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    PacketRateLimit,
    QosDocument,
    TrafficClass,
)
from vmqos.core.model.host import Policy

MAX_INT = 2**31 - 1


def policy(*rules: dict, name: str = "p", wrap: bool = True) -> str:
    inner = {"name": name, "id": "3f828df0-aa14-4443-949c-f370e55ebb85", "description": "", "shared": False,
             "is_default": False, "project_id": "80d05afc3ed94fa087db9c63be5bbe42", "rules": list(rules)}
    return json.dumps({"policy": inner} if wrap else inner)


def bw(max_kbps: int, burst: int | None = None, direction: str | None = None, **extra) -> dict:
    rule = {"type": "bandwidth_limit", "max_kbps": max_kbps, **extra}
    if burst is not None:
        rule["max_burst_kbps"] = burst
    if direction is not None:
        rule["direction"] = direction
    return rule


# ------------------------------------------------------------------------------ the seed's policies


SEED_BW_LIMITER = """{
  "policy": {
    "description": "",
    "id": "3f828df0-aa14-4443-949c-f370e55ebb85",
    "is_default": false,
    "name": "bw-limiter",
    "project_id": "80d05afc3ed94fa087db9c63be5bbe42",
    "shared": false,
    "rules": [
      {"direction": "egress", "id": "8c4b887e-d69f-4b32-a9c3-b77b82b17311", "max_burst_kbps": 300,
       "max_kbps": 3000, "name": null, "project_id": "", "type": "bandwidth_limit",
       "qos_policy_id": "3f828df0-aa14-4443-949c-f370e55ebb85"}
    ]
  }
}"""

SEED_DSCP = """{
  "description": "", "id": "3be649b0-1c77-469c-b182-645cea3d7931", "is_default": false,
  "name": "dscp-marking", "project_id": "80d05afc3ed94fa087db9c63be5bbe42", "shared": false,
  "rules": [{"dscp_mark": 26, "id": "12923ae9-7205-4b8f-98aa-3e1bdb71ae2a", "type": "dscp_marking"}]
}"""


def test_seed_bw_limiter() -> None:
    doc = neutron.read(SEED_BW_LIMITER)
    assert doc.name == "bw-limiter"
    assert doc.network == NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(3_000_000, burst_bytes=37_500)))
    assert doc.notes == ()  # burst given explicitly: no default, no warning
    assert doc.cpu is None and doc.disk is None


def test_seed_dscp_marking_inner_object() -> None:
    doc = neutron.read(SEED_DSCP)
    assert doc.name == "dscp-marking"
    assert doc.network == NetworkQos(egress=DirectionQos(dscp=26))
    assert doc.network.ingress.is_empty


def test_read_policy_and_policy_from_obj() -> None:
    pol, notes = neutron.read_policy(SEED_BW_LIMITER)
    assert isinstance(pol, Policy)
    assert (pol.name, pol.origin) == ("bw-limiter", "neutron")
    assert pol.qos.egress.bandwidth == BandwidthLimit(3_000_000, burst_bytes=37_500)
    assert notes == ()
    same, _ = neutron.policy_from_obj(json.loads(SEED_BW_LIMITER)["policy"])
    assert same == pol
    renamed, _ = neutron.policy_from_obj({"rules": [bw(3000, 300)]}, name="gold")
    assert renamed.name == "gold" and renamed.qos == pol.qos


def test_qos_from_rules_names_fields_with_prefix() -> None:
    with pytest.raises(InvalidValue) as err:
        neutron.qos_from_rules([bw(-1)], where="policies.gold.rules")
    assert err.value.field == "policies.gold.rules[0].max_kbps"


def test_registered_format() -> None:
    assert get_format("neutron") is neutron


def test_dash_spelling_strings_and_all_rule_types() -> None:
    text = policy(
        {"type": "bandwidth-limit", "max_kbps": "10000", "max_burst_kbps": "1000", "direction": "ingress"},
        {"type": "packet-rate-limit", "max_kpps": 20, "max_burst_kpps": 2},
        {"type": "dscp-marking", "dscp_mark": "46"},
        {"type": "minimum-bandwidth", "min_kbps": 5000, "direction": "ingress"},
        {"type": "minimum_packet_rate", "min_kpps": 3, "direction": "any"},
    )
    qos = neutron.read(text).network
    assert qos.ingress.bandwidth == BandwidthLimit(10_000_000, burst_bytes=125_000)
    assert qos.ingress.min_bps == 5_000_000
    assert qos.egress.packet_rate == PacketRateLimit(20_000, burst_packets=2000)
    assert qos.egress.dscp == 46
    assert qos.min_pps_any == 3000
    assert qos.egress.min_pps is None and qos.ingress.min_pps is None


def test_directional_minimums() -> None:
    qos = neutron.read(policy(
        {"type": "minimum_bandwidth", "min_kbps": 1000},
        {"type": "minimum_packet_rate", "min_kpps": 1, "direction": "ingress"},
        {"type": "minimum_packet_rate", "min_kpps": 2},
    )).network
    assert qos.egress.min_bps == 1_000_000
    assert (qos.ingress.min_pps, qos.egress.min_pps, qos.min_pps_any) == (1000, 2000, None)


# ------------------------------------------------------------------------------------ burst defaults


def test_egress_default_burst_is_80_percent_with_warning() -> None:
    doc = neutron.read(policy(bw(3000)))
    limit = doc.network.egress.bandwidth
    assert limit == BandwidthLimit(3_000_000, burst_bytes=2400 * 125)  # 2400 kbit = 300,000 bytes
    (note,) = doc.notes
    assert note.level == "warning" and note.field == "egress.burst"
    for words in ("80 %", "0.8 s", "LP#1572670", "shaping", "100 MB", "max_burst_kbps"):
        assert words in note.message


def test_egress_default_burst_uses_integer_arithmetic() -> None:
    # 0.8 * 1,000,003 in floating point is 800002.4000000001; Neutron's int() and ours give 800002.
    limit = neutron.read(policy(bw(1_000_003))).network.egress.bandwidth
    assert limit.burst_bytes == 800_002 * 125
    assert neutron.read(policy(bw(107))).network.egress.bandwidth.burst_bytes == 85 * 125
    assert neutron.read(policy(bw(7))).network.egress.bandwidth.burst_bytes is None  # 625 B: below two frames


def test_egress_default_of_zero_kbit_leaves_burst_unset() -> None:
    doc = neutron.read(policy(bw(1)))
    assert doc.network.egress.bandwidth == BandwidthLimit(1000)
    assert doc.notes and doc.notes[0].field == "egress.burst"


def test_ingress_burst_zero_is_vmqos_default_with_info() -> None:
    doc = neutron.read(policy(bw(3000, 0, "ingress")))
    assert doc.network.ingress.bandwidth == BandwidthLimit(3_000_000, burst_bytes=None)
    (note,) = doc.notes
    assert note.level == "info" and "MTU+64" in note.message


def test_packet_rate_burst_zero_is_unset() -> None:
    qos = neutron.read(policy({"type": "packet_rate_limit", "max_kpps": 5, "max_burst_kpps": 0})).network
    assert qos.egress.packet_rate == PacketRateLimit(5000, burst_packets=None)


def test_minimum_of_zero_is_left_out() -> None:
    doc = neutron.read(policy({"type": "minimum_bandwidth", "min_kbps": 0}))
    assert doc.network.is_empty
    assert [n.level for n in doc.notes] == ["info"]


def test_unknown_rule_field_is_warned_not_silent() -> None:
    doc = neutron.read(policy(bw(3000, 300, max_burst_kbits=300)))
    assert any(n.field.endswith("max_burst_kbits") for n in doc.notes)


def test_type_inferred_when_missing() -> None:
    qos = neutron.read(policy({"max_kbps": 100, "max_burst_kbps": 20})).network
    assert qos.egress.bandwidth == BandwidthLimit(100_000, burst_bytes=2500)


def test_empty_policy() -> None:
    doc = neutron.read(policy())
    assert doc.network == NetworkQos()
    assert json.loads(neutron.write(doc))["policy"]["rules"] == []


# -------------------------------------------------------------------------------------------- errors


def test_dscp_42_is_invalid_and_lists_valid_marks() -> None:
    with pytest.raises(InvalidValue) as err:
        neutron.read(policy({"type": "dscp_marking", "dscp_mark": 42}))
    assert err.value.field == "policy.rules[0].dscp_mark"
    assert "26" in str(err.value) and "46" in str(err.value) and "56" in str(err.value)


def test_dscp_with_ingress_direction_is_refused() -> None:
    with pytest.raises(InvalidValue, match="egress"):
        neutron.read(policy({"type": "dscp_marking", "dscp_mark": 26, "direction": "ingress"}))


def test_max_kbps_zero() -> None:
    # Issue 13: Neutron stores max_kbps 0 (its API range is inclusive) and OVS reads it as no limit.
    doc = neutron.read(policy(bw(0)))
    assert doc.network is None or doc.network.egress.bandwidth is None
    assert [n.field for n in doc.notes if n.level == "warning"] == ["policy.rules[0].max_kbps"]


@pytest.mark.parametrize("rule", [
    bw(-1), bw(MAX_INT + 1), bw(3000, -5), bw("3m"), bw(True), bw(3000, None, "inbound"),
    {"type": "bandwidth_limit"}, {"type": "packet_rate_limit", "max_kpps": 0},
    {"type": "minimum_packet_rate", "min_kpps": 1, "direction": "sideways"},
    {"type": "minimum_bandwidth", "min_kbps": 1, "direction": "any"},
])
def test_bad_values(rule: dict) -> None:
    with pytest.raises(InvalidValue):
        neutron.read(policy(rule))


def test_max_int_is_accepted() -> None:
    qos = neutron.read(policy(bw(MAX_INT, MAX_INT))).network
    assert qos.egress.bandwidth == BandwidthLimit(MAX_INT * 1000, burst_bytes=MAX_INT * 125)


def test_duplicate_rule_names_type_and_direction() -> None:
    with pytest.raises(ConflictError) as err:
        neutron.read(policy(bw(1000, 100, "ingress"), bw(2000, 100, "egress"), bw(3000, 100, "ingress")))
    assert "bandwidth_limit" in str(err.value) and "ingress" in str(err.value)
    assert "rules[2]" in str(err.value) and "rules[0]" in str(err.value)


def test_duplicate_defaulted_direction_and_dscp() -> None:
    with pytest.raises(ConflictError, match="egress"):
        neutron.read(policy(bw(1000), bw(2000, direction="egress")))
    with pytest.raises(ConflictError, match="dscp_marking"):
        neutron.read(policy({"type": "dscp_marking", "dscp_mark": 26}, {"type": "dscp_marking", "dscp_mark": 10}))


def test_min_above_max_names_the_rule_fields() -> None:
    with pytest.raises(ConflictError) as err:
        neutron.read(policy(bw(3000, 300), {"type": "minimum_bandwidth", "min_kbps": 5000}))
    assert "min_kbps" in str(err.value) and "max_kbps" in str(err.value) and "egress" in str(err.value)
    # Different directions do not conflict.
    qos = neutron.read(policy(bw(3000, 300), {"type": "minimum_bandwidth", "min_kbps": 5000, "direction": "ingress"}))
    assert qos.network.ingress.min_bps == 5_000_000


def test_min_pps_above_max_pps_names_the_rule_fields() -> None:
    with pytest.raises(ConflictError, match="min_kpps.*max_kpps"):
        neutron.read(policy({"type": "packet_rate_limit", "max_kpps": 1}, {"type": "minimum_packet_rate",
                                                                          "min_kpps": 2}))


def test_any_min_pps_cannot_mix_with_directional() -> None:
    with pytest.raises(ConflictError, match="any"):
        neutron.read(policy({"type": "minimum_packet_rate", "min_kpps": 1, "direction": "any"},
                            {"type": "minimum_packet_rate", "min_kpps": 1, "direction": "ingress"}))


def test_unknown_rule_type_lists_valid_types() -> None:
    with pytest.raises(InvalidValue) as err:
        neutron.read(policy({"type": "bandwidth_limiter", "max_kbps": 1}))
    for rtype in neutron.RULE_TYPES:
        assert rtype in str(err.value)


def test_bad_json_is_format_error_with_line() -> None:
    with pytest.raises(FormatError) as err:
        neutron.read('{\n  "policy": {\n    "rules": [,]\n  }\n}')
    assert err.value.line == 3 and err.value.fmt == "neutron"


@pytest.mark.parametrize("text", ["[]", '"x"', '{"policy": []}', '{"name": "no rules"}', '{"rules": {}}'])
def test_not_a_policy(text: str) -> None:
    with pytest.raises(FormatError):
        neutron.read(text)


# --------------------------------------------------------------------------------------------- write


def test_write_seed_policy() -> None:
    out = neutron.write(neutron.read(SEED_BW_LIMITER))
    assert json.loads(out) == {"policy": {"name": "bw-limiter", "rules": [
        {"type": "bandwidth_limit", "max_kbps": 3000, "max_burst_kbps": 300, "direction": "egress"}]}}
    assert out.startswith('{\n  "policy"')


def test_write_order_is_stable() -> None:
    qos = NetworkQos(
        ingress=DirectionQos(bandwidth=BandwidthLimit(2000), packet_rate=PacketRateLimit(1000), min_bps=1000,
                             min_pps=1000),
        egress=DirectionQos(bandwidth=BandwidthLimit(5000, burst_bytes=250), packet_rate=PacketRateLimit(3000, 2000),
                            dscp=10, min_bps=2000, min_pps=2000),
    )
    rules = json.loads(neutron.write(QosDocument(name="x", network=qos)))["policy"]["rules"]
    assert [(r["type"], r.get("direction")) for r in rules] == [
        ("bandwidth_limit", "egress"), ("bandwidth_limit", "ingress"),
        ("packet_rate_limit", "egress"), ("packet_rate_limit", "ingress"),
        ("dscp_marking", None),
        ("minimum_bandwidth", "egress"), ("minimum_bandwidth", "ingress"),
        ("minimum_packet_rate", "egress"), ("minimum_packet_rate", "ingress"),
    ]
    assert rules[0] == {"type": "bandwidth_limit", "max_kbps": 5, "max_burst_kbps": 2, "direction": "egress"}
    assert "max_burst_kbps" not in rules[1]
    assert rules[2]["max_burst_kpps"] == 2 and "max_burst_kpps" not in rules[3]


def test_write_rounds_to_nearest_unit_unless_exact() -> None:
    doc = QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1499, burst_bytes=1))))
    rule = json.loads(neutron.write(doc))["policy"]["rules"][0]
    assert (rule["max_kbps"], rule["max_burst_kbps"]) == (1, 1)
    with pytest.raises(UnsupportedError, match="rate"):
        neutron.write(doc, exact=True)


def test_write_above_neutron_maximum() -> None:
    doc = QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit((MAX_INT + 1) * 1000))))
    with pytest.raises(UnsupportedError, match="maximum"):
        neutron.write(doc)


def test_write_min_pps_any() -> None:
    rules = json.loads(neutron.write(QosDocument(network=NetworkQos(min_pps_any=4000))))["policy"]["rules"]
    assert rules == [{"type": "minimum_packet_rate", "min_kpps": 4, "direction": "any"}]


@pytest.mark.parametrize("doc,field", [
    (QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1000, peak_bps=2000)))), "peak"),
    (QosDocument(network=NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(1000),
                                                         classes=(TrafficClass("all", 100),)))), "classes"),
    (QosDocument(cpu=CpuQos(shares=512)), "CPU"),
    (QosDocument(disk=DiskQos(read_iops_sec=100)), "disk"),
    (QosDocument(interfaces={"vnet0": NetworkQos(min_pps_any=1000), "vnet1": NetworkQos(min_pps_any=2000)}),
     "vnet0"),
])
def test_write_unsupported(doc: QosDocument, field: str) -> None:
    with pytest.raises(UnsupportedError, match=field):
        neutron.write(doc)


def test_write_peak_message() -> None:
    doc = QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1000, peak_bps=2000))))
    with pytest.raises(UnsupportedError, match="Neutron bandwidth_limit has no peak; use libvirt or vmqos"):
        neutron.write(doc)


def test_write_name_option_and_empty_cpu() -> None:
    out = json.loads(neutron.write(QosDocument(name="a", cpu=CpuQos()), name="b"))
    assert out == {"policy": {"name": "b", "rules": []}}


# -------------------------------------------------------------------------------------- round trips


kbit = st.integers(1, MAX_INT)
kbit0 = st.integers(0, MAX_INT)


@st.composite
def neutron_rules(draw: st.DrawFn) -> list[dict]:
    """A policy's rules in Neutron's own domain: whole kbit/kpps, valid marks, unique (type, direction)."""
    rules: list[dict] = []
    max_kbps: dict[str, int] = {}
    max_kpps: dict[str, int] = {}

    def direction(d: str) -> dict:
        # egress is the default: sometimes leave it out.
        return {} if d == "egress" and draw(st.booleans()) else {"direction": d}

    for d in ("ingress", "egress"):
        if draw(st.booleans()):
            max_kbps[d] = draw(kbit)
            rule = {"type": "bandwidth_limit", "max_kbps": max_kbps[d], **direction(d)}
            if draw(st.booleans()):
                rule["max_burst_kbps"] = draw(kbit0)
            rules.append(rule)
        if draw(st.booleans()):
            max_kpps[d] = draw(kbit)
            rule = {"type": "packet_rate_limit", "max_kpps": max_kpps[d], **direction(d)}
            if draw(st.booleans()):
                rule["max_burst_kpps"] = draw(kbit0)
            rules.append(rule)
        if draw(st.booleans()):
            rules.append({"type": "minimum_bandwidth", "min_kbps": draw(st.integers(1, max_kbps.get(d, MAX_INT))),
                          **direction(d)})
    if draw(st.booleans()):
        rules.append({"type": "dscp_marking", "dscp_mark": draw(st.sampled_from(sorted(VALID_DSCP_MARKS)))})
    if draw(st.booleans()):
        rules.append({"type": "minimum_packet_rate", "min_kpps": draw(kbit), "direction": "any"})
    else:
        for d in ("ingress", "egress"):
            if draw(st.booleans()):
                rules.append({"type": "minimum_packet_rate",
                              "min_kpps": draw(st.integers(1, max_kpps.get(d, MAX_INT))), **direction(d)})
    for rule in rules:
        if draw(st.booleans()):
            rule["type"] = rule["type"].replace("_", "-")
    return draw(st.permutations(rules))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Names are printable text: one with a control character is refused (tests/core/test_trust_names.py).
@given(neutron_rules(), st.text(max_size=20).map(lambda s: "".join(c for c in s if c.isprintable())), st.booleans())
def test_roundtrip_neutron_domain(rules: list[dict], name: str, wrap: bool) -> None:
    first = neutron.read(policy(*rules, name=name, wrap=wrap))
    text = neutron.write(first)
    second = neutron.read(text)
    assert second.network == first.network
    assert second.name == first.name
    assert neutron.write(second) == text  # and the written form is a fixed point
    assert len(json.loads(text)["policy"]["rules"]) == len(rules)


@st.composite
def exact_models(draw: st.DrawFn) -> NetworkQos:
    """Models whose every value is a whole number of Neutron's units (rates in kbit, bursts in 125 bytes)."""
    sides = {}
    for d in ("ingress", "egress"):
        limit = None
        if draw(st.booleans()):
            rate = draw(kbit)
            # An egress limit without a burst reads back with Neutron's 80 % default: always state it there.
            # A burst below one 1514-byte frame (12 kbit or less) is raised when read (issue 13): from 13 kbit.
            frame_kbit = st.integers(13, MAX_INT)
            burst = draw(frame_kbit) if d == "egress" else draw(st.none() | frame_kbit)
            limit = BandwidthLimit(rate * 1000, burst_bytes=None if burst is None else burst * 125)
        packet = None
        if draw(st.booleans()):
            packet = PacketRateLimit(draw(kbit) * 1000, draw(st.none() | kbit.map(lambda k: k * 1000)))
        min_bps = draw(st.none() | st.integers(1, limit.rate_bps // 1000 if limit else MAX_INT).map(lambda k: k * 1000))
        sides[d] = DirectionQos(
            bandwidth=limit, packet_rate=packet, min_bps=min_bps,
            dscp=draw(st.none() | st.sampled_from(sorted(VALID_DSCP_MARKS))) if d == "egress" else None,
            min_pps=None,
        )
    any_pps = draw(st.booleans())
    if any_pps:
        return NetworkQos(ingress=sides["ingress"], egress=sides["egress"], min_pps_any=draw(kbit) * 1000)
    for d in ("ingress", "egress"):
        if draw(st.booleans()):
            top = sides[d].packet_rate.pps // 1000 if sides[d].packet_rate else MAX_INT
            sides[d] = DirectionQos(**{**sides[d].__dict__, "min_pps": draw(st.integers(1, top)) * 1000})
    return NetworkQos(ingress=sides["ingress"], egress=sides["egress"])


@settings(max_examples=150, deadline=None)
@given(exact_models())
def test_roundtrip_model_exact(qos: NetworkQos) -> None:
    text = neutron.write(QosDocument(name="m", network=qos), exact=True)
    back = neutron.read(text)
    assert back.network == qos
    assert back.name == "m"
    assert not [n for n in back.notes if n.level == "warning"]


def test_a_defaulted_egress_burst_below_two_frames_falls_back_to_vmqos_default():
    from vmqos.core.model.checks import check_network

    text = '{"policy": {"name": "tiny", "rules": [{"type": "bandwidth_limit", "max_kbps": 10}]}}'
    doc = neutron.read(text)
    assert doc.network.egress.bandwidth.burst_bytes is None
    assert any("LP#2153122" in n.message for n in doc.notes)
    check_network(doc.network)  # no longer refused: the operator stated no burst at all
