"""The nftables side of a plan as plain values: vmqos's netdev table, its chains, rules, counters and sets.

`NftRule.text()`/`expr()` give nft's script and JSON forms, and `rule_from_expr` reads nft's
JSON listing back, so that planned and observed rules compare in one form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vmqos.core.plan.kernel_object import KernelObject

NFT_FAMILY = "netdev"
NFT_TABLE = "vmqos"
# The skb->mark bit that police mode's program (tc ingress, `Policer`) sets on a packet over its
# bucket; the port's nft chain, which runs next in the same ingress path, drops every such packet,
# so the bit never travels further.
POLICE_MARK = 0x00800000

@dataclass(frozen=True)
class NftCounter(KernelObject):
    """A named counter: it survives rule replacement, so accounting does not reset on a live change."""

    kind: ClassVar[str] = "counter"
    delete_rank: ClassVar[int] = 4
    name: str

    @property
    def key(self) -> tuple[Any, ...]:
        return ("nft-counter", NFT_TABLE, self.name)


@dataclass(frozen=True)
class NftLimit(KernelObject):
    """A named byte limit (the police rule's bucket): unlike a limit written in a rule, it keeps its
    token bucket when the chain that refers to it is flushed and refilled, so a live change of the
    port's other rules does not hand the instance a fresh, full bucket of one second of traffic.

    Measured on 6.18: the kernel cannot change a limit object (`add limit` of an existing name is
    accepted and ignored), so the name carries the rate and burst: a new rate is a new object.
    """

    kind: ClassVar[str] = "limit"
    delete_rank: ClassVar[int] = 4  # after the chains that refer to it
    name: str
    rate_bytes: int  # bytes/second
    burst_bytes: int

    @property
    def key(self) -> tuple[Any, ...]:
        return ("nft-limit", NFT_TABLE, self.name)

    def text(self) -> str:
        return f"rate over {self.rate_bytes} bytes/second burst {self.burst_bytes} bytes"

    def decl(self) -> dict[str, Any]:
        return {"family": NFT_FAMILY, "table": NFT_TABLE, "name": self.name, "rate": self.rate_bytes,
                "per": "second", "rate_unit": "bytes", "burst": self.burst_bytes, "burst_unit": "bytes",
                "inv": True}


def limit_from_json(body: dict[str, Any]) -> NftLimit | None:
    """A limit object as nft lists it (it prints rates in its own 1024-based units); None if not a byte
    limit over a second."""
    try:
        if body.get("per") != "second" or "rate_unit" not in body or not body.get("inv"):
            return None
        return NftLimit(body["name"], body["rate"] * _BYTE_UNITS[body["rate_unit"]],
                        body.get("burst", 0) * _BYTE_UNITS[body.get("burst_unit", "bytes")])
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class NftSet(KernelObject):
    """A table-wide set that every port's chain feeds (per-IP accounting).

    Shared by all ports: a port's plan lists it so that it exists before the port's rules refer
    to it, but a port's diff never deletes it; it goes with the table when the last port does.
    Its definition is versioned by its name, so an existing set of that name is the right one.
    """

    kind: ClassVar[str] = "set"
    delete_rank: ClassVar[int] = 6
    shared: ClassVar[bool] = True
    name: str
    key_types: tuple[str, ...] = ()
    size: int = 0
    timeout_s: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        return ("nft-set", NFT_TABLE, self.name)

    def matches(self, observed: KernelObject) -> bool:
        return isinstance(observed, NftSet) and observed.name == self.name


TCP_FLAGS_MASK = ("fin", "syn", "rst", "ack")


@dataclass(frozen=True)
class NftRule:
    """One statement of a vmqos chain; `text()` for nft scripts, `expr()` for nft's JSON API.

    `counter` names the rule's named counter ("" for a rule without one, an accounting update).
    """

    counter: str
    limit_pps: int | None = None
    limit_pps_burst: int | None = None
    limit_bytes_per_s: int | None = None
    limit_bytes_burst: int | None = None
    max_length: int | None = None  # apply only to packets of at most this skb length
    dscp: int | None = None
    ip_family: str | None = None  # "ip" / "ip6": the rule applies to that family only
    verdict: str | None = None  # "drop" or None (continue)
    tcp_syn: bool = False  # only TCP segments that open a connection (SYN without ACK)
    account_set: str | None = None  # update this set's element (port . local IP . remote IP)
    account_port: str | None = None
    account_local: str | None = None  # "saddr" or "daddr": which address is the instance's
    fwd_to: str | None = None  # hand the packet to this device's egress (the port's IFB): the last rule
    limit_name: str | None = None  # over this named limit (`NftLimit`): the police rule of earlier versions
    mark_bit: int | None = None  # only packets with this skb->mark bit set (`POLICE_MARK`): the police rule
    mark_is: int | None = None  # only packets whose skb->mark is this (the uplink's classes, `core.plan.uplink`)
    set_mark: int | None = None  # set skb->mark: the port a packet came from, for the uplink
    set_priority: str | None = None  # set skb->priority to this HTB class ("1:1a3"): HTB reads it before filters

    def _remote(self) -> str:
        return "daddr" if self.account_local == "saddr" else "saddr"

    def text(self) -> str:
        parts: list[str] = []
        if self.ip_family is not None:
            parts.append(f"meta protocol {self.ip_family}")
        if self.tcp_syn:
            parts.append(f"tcp flags & ({'|'.join(TCP_FLAGS_MASK)}) == syn")
        if self.account_set is not None:
            fam = self.ip_family
            parts.append(f'update @{self.account_set} {{ "{self.account_port}" . {fam} {self.account_local} . '
                         f"{fam} {self._remote()} }}")
        if self.max_length is not None:
            parts.append(f"meta length <= {self.max_length}")
        if self.limit_pps is not None:
            parts.append(f"limit rate over {self.limit_pps}/second burst {self.limit_pps_burst} packets")
        if self.limit_bytes_per_s is not None:
            parts.append(
                f"limit rate over {self.limit_bytes_per_s} bytes/second burst {self.limit_bytes_burst} bytes")
        if self.limit_name is not None:
            parts.append(f'limit name "{self.limit_name}"')
        if self.mark_bit is not None:
            parts.append(f"meta mark & {self.mark_bit:#x} == {self.mark_bit:#x}")
        if self.mark_is is not None:
            parts.append(f"meta mark {self.mark_is:#x}")
        if self.counter:
            parts.append(f'counter name "{self.counter}"')
        if self.dscp is not None:
            parts.append(f"{self.ip_family} dscp set {self.dscp}")
        if self.set_mark is not None:
            parts.append(f"meta mark set {self.set_mark:#x}")
        if self.set_priority is not None:
            parts.append(f"meta priority set {self.set_priority}")
        if self.verdict:
            parts.append(self.verdict)
        if self.fwd_to is not None:
            parts.append(f'fwd to "{self.fwd_to}"')
        return " ".join(parts)

    def expr(self) -> list[dict[str, Any]]:
        expr: list[dict[str, Any]] = []
        if self.ip_family is not None:
            expr.append(_match({"meta": {"key": "protocol"}}, "==", self.ip_family))
        if self.tcp_syn:
            expr.append(_match({"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, list(TCP_FLAGS_MASK)]},
                               "==", "syn"))
        if self.account_set is not None:
            fam = self.ip_family
            expr.append({"set": {"op": "update", "set": f"@{self.account_set}", "elem": {"concat": [
                self.account_port, {"payload": {"protocol": fam, "field": self.account_local}},
                {"payload": {"protocol": fam, "field": self._remote()}}]}}})
        if self.max_length is not None:
            expr.append(_match({"meta": {"key": "length"}}, "<=", self.max_length))
        if self.limit_pps is not None:
            expr.append({"limit": {"rate": self.limit_pps, "per": "second", "burst": self.limit_pps_burst,
                                   "inv": True}})
        if self.limit_bytes_per_s is not None:
            expr.append({"limit": {"rate": self.limit_bytes_per_s, "rate_unit": "bytes", "per": "second",
                                   "burst": self.limit_bytes_burst, "burst_unit": "bytes", "inv": True}})
        if self.limit_name is not None:
            expr.append({"limit": self.limit_name})
        if self.mark_bit is not None:
            expr.append(_match({"&": [{"meta": {"key": "mark"}}, self.mark_bit]}, "==", self.mark_bit))
        if self.mark_is is not None:
            expr.append(_match({"meta": {"key": "mark"}}, "==", self.mark_is))
        if self.counter:
            expr.append({"counter": self.counter})
        if self.dscp is not None:
            expr.append({"mangle": {"key": {"payload": {"protocol": self.ip_family, "field": "dscp"}},
                                    "value": self.dscp}})
        if self.set_mark is not None:
            expr.append({"mangle": {"key": {"meta": {"key": "mark"}}, "value": self.set_mark}})
        if self.set_priority is not None:
            expr.append({"mangle": {"key": {"meta": {"key": "priority"}}, "value": self.set_priority}})
        if self.verdict:
            expr.append({self.verdict: None})
        if self.fwd_to is not None:
            expr.append({"fwd": {"dev": self.fwd_to}})
        return expr


_BYTE_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
# nft lists well-known DSCP values by name.
_DSCP_NAMES = {**{f"cs{n}": 8 * n for n in range(8)},
               **{f"af{x}{y}": 8 * x + 2 * y for x in range(1, 5) for y in range(1, 4)},
               "ef": 46, "va": 44, "le": 1}
FOREIGN_COUNTER = "<not a vmqos rule>"


def rule_from_expr(expr: list[dict[str, Any]]) -> NftRule:
    """The inverse of `NftRule.expr` on what nft lists back; a rule vmqos did not write never matches."""
    fields: dict[str, Any] = {}
    try:
        for item in expr:
            (name, value), = item.items()
            if name == "match" and value["left"] == {"meta": {"key": "protocol"}} and value["op"] == "==":
                fields["ip_family"] = value["right"]
            elif name == "match" and value["left"] == {"meta": {"key": "length"}} and value["op"] == "<=":
                fields["max_length"] = value["right"]
            elif (name == "match" and value["op"] == "==" and isinstance(value["right"], int)
                  and value["left"] == {"&": [{"meta": {"key": "mark"}}, value["right"]]}):
                fields["mark_bit"] = value["right"]
            elif (name == "match" and value["op"] == "==" and isinstance(value["right"], int)
                  and value["left"] == {"meta": {"key": "mark"}}):
                fields["mark_is"] = value["right"]
            elif name == "mangle" and value["key"] == {"meta": {"key": "mark"}} and isinstance(value["value"], int):
                fields["set_mark"] = value["value"]
            elif name == "mangle" and value["key"] == {"meta": {"key": "priority"}} and isinstance(value["value"], str):
                fields["set_priority"] = value["value"]
            elif (name == "match" and value["op"] == "==" and value["right"] == "syn"
                  and value["left"] == {"&": [{"payload": {"protocol": "tcp", "field": "flags"}},
                                              list(TCP_FLAGS_MASK)]}):
                fields["tcp_syn"] = True
            elif name == "set" and value.get("op") == "update":
                port, local, remote = value["elem"]["concat"]
                fields["account_set"] = value["set"].removeprefix("@")
                fields["account_port"] = port
                fields["account_local"] = local["payload"]["field"]
                # nft lists `meta protocol ip` away: an `ip daddr` key implies it.
                family = fields.setdefault("ip_family", local["payload"]["protocol"])
                if remote["payload"]["field"] == local["payload"]["field"] or \
                        {local["payload"]["protocol"], remote["payload"]["protocol"]} != {family}:
                    return NftRule(FOREIGN_COUNTER)
            elif name == "limit" and isinstance(value, str):
                fields["limit_name"] = value
            elif name == "limit" and value.get("inv") and value.get("per") == "second":
                if "rate_unit" in value:
                    fields["limit_bytes_per_s"] = value["rate"] * _BYTE_UNITS[value["rate_unit"]]
                    fields["limit_bytes_burst"] = value.get("burst", 0) * _BYTE_UNITS[value.get("burst_unit", "bytes")]
                else:
                    fields["limit_pps"], fields["limit_pps_burst"] = value["rate"], value.get("burst", 0)
            elif name == "counter" and isinstance(value, str):
                fields["counter"] = value
            elif name == "mangle" and value["key"]["payload"]["field"] == "dscp":
                mark = value["value"]
                fields["dscp"] = _DSCP_NAMES[mark] if isinstance(mark, str) else mark
            elif name in ("drop", "accept") and value is None:
                fields["verdict"] = name
            elif name == "fwd" and isinstance(value, dict) and set(value) == {"dev"} and isinstance(value["dev"], str):
                fields["fwd_to"] = value["dev"]
            else:
                return NftRule(FOREIGN_COUNTER)
        return NftRule(**{"counter": "", **fields})
    except (KeyError, TypeError, ValueError, AttributeError):
        return NftRule(FOREIGN_COUNTER)


def _match(left: dict[str, Any], op: str, right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


@dataclass(frozen=True)
class NftChain(KernelObject):
    """A base chain of vmqos's netdev table bound to one port; replaced whole, atomically."""

    kind: ClassVar[str] = "chain"
    delete_rank: ClassVar[int] = 5
    name: str
    hook: str  # "ingress" (from the instance) or "egress" (towards it)
    dev: str
    priority: int
    rules: tuple[NftRule, ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        return ("nft-chain", NFT_TABLE, self.name)

    @property
    def device(self) -> str:
        return self.dev

    def counters(self) -> tuple[str, ...]:
        return tuple(rule.counter for rule in self.rules if rule.counter)

    def sets(self) -> tuple[str, ...]:
        return tuple(rule.account_set for rule in self.rules if rule.account_set)

    def limits(self) -> tuple[str, ...]:
        return tuple(rule.limit_name for rule in self.rules if rule.limit_name)

    def forwards_to(self) -> tuple[str, ...]:
        """The devices the chain hands packets to: they must exist before it is loaded."""
        return tuple(rule.fwd_to for rule in self.rules if rule.fwd_to)


def is_nft(obj: KernelObject) -> bool:
    """Whether the object lives in nftables (the rest is tc and links)."""
    return isinstance(obj, (NftChain, NftCounter, NftLimit, NftSet))
