"""One Neutron QoS rule read as Neutron's API validates it, with the fix-ups old databases need.

Names and enums match exactly (neutron-lib validates `direction` with 'type:values', a plain
membership test: `Egress` is refused), integers are ASCII digits in [0, 2^31-1] (db constants
DB_INTEGER_MAX_VALUE). Two values that Neutron databases hold and vmqos cannot apply as written
are read with a warning instead of refused: `max_kbps: 0` (no limit, as Neutron and OVS read it)
and a `max_burst_kbps` smaller than one full-size frame (raised to two frames).
"""

from __future__ import annotations

from typing import Any

from vmqos.core.errors import InvalidValue
from vmqos.core.formats._common import strict_int
from vmqos.core.model.document import Note
from vmqos.core.model.network import DIRECTIONS, check_dscp
from vmqos.core.units import NEUTRON_BURST_BITS, kbit_to_bytes

BANDWIDTH_LIMIT = "bandwidth_limit"
PACKET_RATE_LIMIT = "packet_rate_limit"
DSCP_MARKING = "dscp_marking"
MINIMUM_BANDWIDTH = "minimum_bandwidth"
MINIMUM_PACKET_RATE = "minimum_packet_rate"
# neutron-lib services/qos/constants.py VALID_RULE_TYPES
RULE_TYPES: tuple[str, ...] = (BANDWIDTH_LIMIT, DSCP_MARKING, MINIMUM_BANDWIDTH, MINIMUM_PACKET_RATE,
                               PACKET_RATE_LIMIT)

# neutron-lib db constants DB_INTEGER_MAX_VALUE: the upper end of every integer field.
MAX_INT = 2**31 - 1
# Below two 1500-byte Ethernet frames a defaulted bucket is the OVN LP#2153122 failure.
MIN_FRAME_BYTES = 1514
# The smallest whole max_burst_kbps that holds two such frames (25 kbit = 3125 bytes >= 3028): the
# planner's two-frame floor at MTU 1500, in Neutron's unit so that writing it back is exact.
MIN_BURST_KBIT = -(-2 * MIN_FRAME_BYTES * 8 // NEUTRON_BURST_BITS)

# python-openstackclient's `--type` choices, which it maps to Neutron's names with replace("-", "_").
_CLIENT_TYPES = frozenset(t.replace("_", "-") for t in RULE_TYPES)
FIELDS: dict[str, tuple[str, ...]] = {
    BANDWIDTH_LIMIT: ("max_kbps", "max_burst_kbps", "direction"),
    PACKET_RATE_LIMIT: ("max_kpps", "max_burst_kpps", "direction"),
    DSCP_MARKING: ("dscp_mark",),
    MINIMUM_BANDWIDTH: ("min_kbps", "direction"),
    MINIMUM_PACKET_RATE: ("min_kpps", "direction"),
}
# Attributes the API returns on every rule that say nothing about the limit.
METADATA = frozenset({"type", "id", "qos_policy_id", "tenant_id", "project_id", "name", "description",
                       "created_at", "updated_at", "revision_number", "tags"})
# A rule without `type` (e.g. taken from a per-type rule list) is recognised by its one required field.
_TYPE_BY_FIELD = {"max_kbps": BANDWIDTH_LIMIT, "max_kpps": PACKET_RATE_LIMIT, "dscp_mark": DSCP_MARKING,
                  "min_kbps": MINIMUM_BANDWIDTH, "min_kpps": MINIMUM_PACKET_RATE}


def rule_type(here: str, rule: Any) -> str:
    """The rule's type as Neutron names it; guessed from its one required field when `type` is absent."""
    if not isinstance(rule, dict):
        raise InvalidValue(here, rule, f"a rule is an object with a type ({', '.join(RULE_TYPES)}) and its fields")
    raw = rule.get("type")
    if raw is None:
        guesses = {t for f, t in _TYPE_BY_FIELD.items() if f in rule}
        if len(guesses) == 1:
            return guesses.pop()
        raise InvalidValue(f"{here}.type", None, f"each rule needs a type: one of {', '.join(RULE_TYPES)}")
    # Exactly as Neutron names them, or as the openstack client spells them (`bandwidth-limit`,
    # which it turns into Neutron's name by replacing - with _); no other case or spacing.
    rtype = raw.replace("-", "_") if isinstance(raw, str) and raw in _CLIENT_TYPES else raw
    if rtype not in RULE_TYPES:
        raise InvalidValue(f"{here}.type", raw, f"use one of Neutron's rule types, in lower case: "
                                                f"{', '.join(RULE_TYPES)}")
    return str(rtype)


def _int(here: str, rule: dict[str, Any], key: str, default: int | None = None) -> int:
    value = rule.get(key)
    if value is None:
        if default is None:
            raise InvalidValue(f"{here}.{key}", None, f"a {rule.get('type', 'rule')} rule needs {key}")
        return default
    return strict_int(f"{here}.{key}", value, minimum=0, maximum=MAX_INT)


def _direction(here: str, rtype: str, rule: dict[str, Any], allow_any: bool = False) -> str:
    raw = rule.get("direction")
    if raw is None:
        return "egress"
    valid = (*DIRECTIONS, "any") if allow_any else DIRECTIONS
    # Neutron validates with 'type:values': the exact lower-case string, nothing else (`Egress` is refused).
    if not isinstance(raw, str) or raw not in valid:
        extra = ", or any (either direction, placement only)" if allow_any else ""
        raise InvalidValue(
            f"{here}.direction", raw,
            f"a {rtype} rule's direction is ingress (towards the instance) or egress (sent by it){extra}, "
            "in lower case as Neutron takes it; Neutron's default is egress",
        )
    return raw


def parse_rule(here: str, rtype: str, rule: dict[str, Any], notes: list[Note]) -> dict[str, Any]:
    """A rule's values (its direction always set) as Neutron would store them, with the notes of reading them."""
    fields = FIELDS[rtype]
    for key in rule:
        if key not in fields and key not in METADATA:
            notes.append(Note(f"{here}.{key}", f"ignored: a {rtype} rule has no field {key!r} "
                                               f"(its fields are {', '.join(fields)})"))
    if rtype == BANDWIDTH_LIMIT:
        direction, max_kbps = _direction(here, rtype, rule), _int(here, rule, "max_kbps")
        burst = _int(here, rule, "max_burst_kbps", 0)
        if max_kbps == 0:
            # neutron-lib validates max_kbps with 'type:range' (0, 2^31-1), inclusive, so databases hold 0;
            # the api-ref says 0 leaves it "no value", OVS reads ingress_policing_rate 0 as "disabled" and
            # the OVS agent removes a limit by writing 0 (delete_egress_bw_limit_for_port). 0 is no limit.
            notes.append(Note(f"{here}.max_kbps", f"max_kbps is 0, which Neutron and OVS read as no limit: "
                                                  f"direction {direction} is read without a bandwidth limit"
                                                  + (f" (max_burst_kbps {burst} ignored)" if burst else "")
                                                  + "; remove the rule, or set max_kbps to the limit meant"))
        elif 0 < burst and kbit_to_bytes(burst) < MIN_FRAME_BYTES:
            notes.append(Note(f"{here}.max_burst_kbps", f"{burst} kbit ({kbit_to_bytes(burst)} bytes) is smaller "
                                                        "than one full-size frame: a policer with it drops every "
                                                        f"full-size packet (LP#2153122); raised to {MIN_BURST_KBIT} "
                                                        f"kbit ({kbit_to_bytes(MIN_BURST_KBIT)} bytes, two "
                                                        f"{MIN_FRAME_BYTES}-byte frames) - set it in Neutron too"))
            burst = MIN_BURST_KBIT
        return {"direction": direction, "max_kbps": max_kbps, "max_burst_kbps": burst}
    if rtype == PACKET_RATE_LIMIT:
        max_kpps = _int(here, rule, "max_kpps")
        if max_kpps == 0:
            raise InvalidValue(f"{here}.max_kpps", max_kpps, "must be >0; remove the rule for no packet-rate limit")
        return {"direction": _direction(here, rtype, rule), "max_kpps": max_kpps,
                "max_burst_kpps": _int(here, rule, "max_burst_kpps", 0)}
    if rtype == DSCP_MARKING:
        raw = rule.get("direction")
        if raw is not None and raw != "egress":
            raise InvalidValue(f"{here}.direction", raw,
                               "a dscp_marking rule has no direction: it always marks traffic sent by the "
                               "instance (egress); remove the direction")
        mark = _int(here, rule, "dscp_mark")
        check_dscp(mark, f"{here}.dscp_mark")
        return {"direction": "egress", "dscp_mark": mark}
    if rtype == MINIMUM_BANDWIDTH:
        return {"direction": _direction(here, rtype, rule), "min_kbps": _int(here, rule, "min_kbps")}
    return {"direction": _direction(here, rtype, rule, allow_any=True), "min_kpps": _int(here, rule, "min_kpps")}
