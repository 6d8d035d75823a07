"""Guaranteed minimums on the host's uplink (issue 16): one HTB tree per direction, planned (pure).

A port's `min` (Neutron's minimum_bandwidth, libvirt's `floor`) is not a property of the port: it
is a share of the link the host's ports have in common. So it is held on that link, as libvirt's
floor holds it on the network's bridge and Neutron's placement reserves it on the physical NIC:

  from the instances  an HTB tree on the uplink's root (`wan0` in the lab). A packet no longer
                      says which port it came from once it is routed, so the port's own nft
                      ingress chain sets skb->mark = UPLINK_MARK_BASE | the port's class, and the
                      uplink's nft egress chain (`to_<uplink>`) turns the mark into skb->priority =
                      1:<class>, which HTB reads before any filter. The mark, not the priority, is
                      set at the port: IPv4 forwarding resets skb->priority from the TOS, the mark
                      survives (bench/uplink_floor_probe.py); this kernel has no fw classifier.
  towards them        the uplink's nft ingress chain (`from_<uplink>`) forwards everything to an
                      IFB with the same tree; u32 filters classify by the instance's destination
                      address, IPv4 /32 and IPv6 /128 (a routed uplink's destination MAC is the
                      host's own, so the port's addresses, not its MAC).

Each tree: the root `1:` (default 10), the link `1:1` (rate = ceil = the capacity), one class per
port with a guarantee in that direction (rate = the guarantee, ceil = the port's own limit in that
direction or the capacity) and the default class `1:10` of every other port (rate = what the
guarantees leave, at least DEFAULT_FLOOR_PER_MILLE of the link): all send up to the link when the
others are idle, and HTB lends the surplus by the ratio of the quanta, which are in the ratio of
the rates. Guarantees that add up to more than the capacity are refused, as Neutron's placement
refuses to schedule them, unless the uplink says `oversubscribe: true` (then they are scaled down
to fit, with a warning).

The plan is a `PortPlan` of the uplink device, so that the reconciler, `check` and `--prune` treat
it as any port: its IFB is `ifb_name(uplink)`, its chains `to_`/`from_<uplink>`, and a change of a
guarantee is an `HtbClass` replace (never the tree deleted and added again).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Mapping, Sequence

from vmqos.core.errors import VmqosError
from vmqos.core.model.document import Note
from vmqos.core.model.host import UplinkSpec
from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.objects import HtbClass, IfbLink, KernelObject, NftChain, NftRule, Qdisc, U32Filter
from vmqos.core.plan.planner import Enforced, PortPlan
from vmqos.core.plan.queues import (
    DEFAULT_MINOR,
    PARENT_CLASSID,
    KernelProfile,
    leaf_queue,
    min_burst,
    shared_quanta,
)
from vmqos.core.units import human_rate

UPLINK_MARK_BASE = 0x00560000  # 'V' in bits 16-23: a port's mark is this | its class minor (POLICE_MARK is bit 23)
FIRST_MINOR, LAST_MINOR = 0x100, 0xEFF  # bfifo handles 100:..eff:, segmenting TBFs 1100:..1eff: (never 1010:)
MAX_ADDRESSES = 8  # per port: filter prio = 0x100 + 8 * (minor - 0x100) + index stays under 0x8000
DEFAULT_FLOOR_PER_MILLE = 10  # the default class keeps at least 1 % of the link (and 1 Mbit/s)
DEFAULT_FLOOR_MIN_BPS = 1_000_000


class Oversubscribed(VmqosError):
    """Guarantees that add up to more than the uplink carries: no scheduler could keep them all."""


@dataclass(frozen=True)
class Member:
    """A port on the uplink: its guarantees and ceilings per direction, its class and its addresses."""

    port: str
    addresses: tuple[str, ...]
    min_in: int | None  # towards the instance, bit/s
    min_out: int | None  # from the instance
    ceil_in: int | None = None  # the port's own limit in that direction (its peak, else its rate)
    ceil_out: int | None = None

    @property
    def guaranteed(self) -> bool:
        return bool(self.min_in or self.min_out)


def assign_minors(ports: Sequence[str]) -> dict[str, int]:
    """A class minor per port, from its name's hash: stable while other ports come and go, so that a
    port's class is not renamed. Collisions go to the next free slot, in name order: a new port that
    hashes to an existing port's slot and sorts before it moves that port to the next slot (about one
    chance in 3,584 per port added); the move creates the new class before the nft chain's mark
    switches and deletes the old one last, so the port is never unclassified. The planner is pure and
    keeps no record of earlier slots, which is what would make this fully stable."""
    span = LAST_MINOR - FIRST_MINOR + 1
    if len(ports) > span:
        raise VmqosError(f"uplink: {len(ports)} ports with a guarantee; one uplink holds at most {span}")
    taken: dict[int, str] = {}
    for port in sorted(ports):
        slot = int(hashlib.sha256(port.encode()).hexdigest()[:8], 16) % span
        while FIRST_MINOR + slot in taken:
            slot = (slot + 1) % span
        taken[FIRST_MINOR + slot] = port
    return {port: minor for minor, port in taken.items()}


def uplink_mark(minor: int) -> int:
    return UPLINK_MARK_BASE | minor


def _check_capacity(uplink: UplinkSpec, direction: str, wanted: Mapping[str, int], notes: list[Note]) -> dict[str, int]:
    """The guarantees of one direction as planned: refused, or scaled down to fit with `oversubscribe`."""
    total = sum(wanted.values())
    if total <= uplink.capacity_bps:
        return dict(wanted)
    listed = ", ".join(f"{port} {human_rate(bps)}" for port, bps in sorted(wanted.items()))
    what = (f"uplink {uplink.device}: the guaranteed minimums {direction} add up to {human_rate(total)}, more than "
            f"its capacity of {human_rate(uplink.capacity_bps)} ({listed})")
    if not uplink.oversubscribe:
        raise Oversubscribed(f"{what}; lower the ports' `min` so that they fit, raise uplink.capacity if the link "
                             "carries more, or set `uplink.oversubscribe: true` to scale them down to fit")
    fit = uplink.capacity_bps - _floor(uplink.capacity_bps)
    scaled = {port: max(bps * fit // total, 8000) for port, bps in wanted.items()}
    notes.append(Note(f"uplink.{direction}", f"{what}; oversubscribe is on: each is scaled by "
                      f"{fit / total:.3f} to fit, so no guarantee holds in full"))
    return scaled


def check_guarantees(uplink: UplinkSpec, mins_in: Mapping[str, int], mins_out: Mapping[str, int]) -> list[Note]:
    """Whether the ports' guarantees (port -> bit/s, per direction) fit the uplink: Oversubscribed as the
    agent's plan would refuse them (same words), or the warnings of `oversubscribe` (pure; the CLI's
    `vmqos uplink set --server` asks it before it writes, so the refusal is not only the agent's later
    report)."""
    notes: list[Note] = []
    _check_capacity(uplink, "towards the instances", {p: b for p, b in mins_in.items() if b}, notes)
    _check_capacity(uplink, "from the instances", {p: b for p, b in mins_out.items() if b}, notes)
    return notes


def _floor(capacity: int) -> int:
    return max(capacity * DEFAULT_FLOOR_PER_MILLE // 1000, DEFAULT_FLOOR_MIN_BPS)


def _tree(dev: str, capacity: int, classes: Mapping[str, tuple[int, int, int]], mtu: int,
          profile: KernelProfile) -> list[KernelObject]:
    """Root, link class, default class and one class per port (port -> (minor, rate, ceil))."""
    burst = max(capacity * profile.burst_time_us // 8_000_000, min_burst(capacity, mtu, profile))
    rest = max(capacity - sum(rate for _, rate, _ in classes.values()), _floor(capacity))
    leaves = [(DEFAULT_MINOR, rest, capacity)] + sorted(classes.values())
    quanta = shared_quanta([rate for _, rate, _ in leaves], mtu, profile)
    objects: list[KernelObject] = [
        Qdisc(dev, "root", "1:", "htb", default_minor=DEFAULT_MINOR),
        HtbClass(dev, PARENT_CLASSID, "1:", capacity, capacity, burst, burst, quanta[0], inner=True),
    ]
    for (minor, rate, ceil), quantum in zip(leaves, quanta):
        classid = f"1:{minor:x}"
        cburst = min_burst(ceil, mtu, profile)
        objects.append(HtbClass(dev, classid, PARENT_CLASSID, rate, ceil, min_burst(rate, mtu, profile), cburst,
                                quantum, prio=1))
        objects.append(leaf_queue(dev, classid, minor, ceil, cburst, mtu, profile))
    return objects


def _address_filters(dev: str, minor: int, addresses: Sequence[str]) -> list[KernelObject]:
    """u32 on the destination address: IPv4's at offset 16, IPv6's four words from offset 24."""
    out: list[KernelObject] = []
    for index, text in enumerate(addresses):
        ip = ipaddress.ip_address(text)
        selectors: tuple[str, ...]
        prio = FIRST_MINOR + MAX_ADDRESSES * (minor - FIRST_MINOR) + index
        if ip.version == 4:
            proto, selectors = "ip", (f"u32 {int(ip):#010x} 0xffffffff at 16",)
        else:
            words = ip.packed
            proto = "ipv6"
            selectors = tuple(f"u32 {int.from_bytes(words[i:i + 4], 'big'):#010x} 0xffffffff at {24 + i}"
                              for i in range(0, 16, 4))
        out.append(U32Filter(dev, "1:", prio, proto, selectors, flowid=f"1:{minor:x}"))
    return out


def plan_uplink(uplink: UplinkSpec, members: Sequence[Member], *, mtu: int = 1500,
                profile: KernelProfile = KernelProfile()) -> PortPlan:
    """The uplink's plan: a tree per direction, the chains that classify into them, and notes."""
    notes: list[Note] = []
    cap, dev, ifb = uplink.capacity_bps, uplink.device, ifb_name(uplink.device)
    guaranteed = [m for m in members if m.guaranteed]
    minors = assign_minors([m.port for m in guaranteed])
    for m in guaranteed:
        if m.min_in and not m.addresses:
            raise VmqosError(f"port {m.port}: a guaranteed minimum towards the instance "
                             f"({human_rate(m.min_in)}) needs the instance's addresses on the uplink "
                             f"{dev}; add `addresses: [<IPv4>, <IPv6>]` to the port")
        if len(m.addresses) > MAX_ADDRESSES:
            raise VmqosError(f"port {m.port}.addresses: {len(m.addresses)} addresses; the uplink classifies at "
                             f"most {MAX_ADDRESSES} per port")
    rates_in = _check_capacity(uplink, "towards the instances", {m.port: m.min_in for m in guaranteed if m.min_in},
                               notes)
    rates_out = _check_capacity(uplink, "from the instances", {m.port: m.min_out for m in guaranteed if m.min_out},
                                notes)
    by_port = {m.port: m for m in guaranteed}

    def classes(rates: Mapping[str, int], ceil_of: str) -> dict[str, tuple[int, int, int]]:
        out = {}
        for port, rate in rates.items():
            own = getattr(by_port[port], ceil_of)
            out[port] = (minors[port], rate, max(min(own or cap, cap), rate))
        return out

    cls_in, cls_out = classes(rates_in, "ceil_in"), classes(rates_out, "ceil_out")
    objects: list[KernelObject] = [IfbLink(ifb, mtu)]
    objects += _tree(ifb, cap, cls_in, mtu, profile)
    for port in sorted(cls_in):
        objects += _address_filters(ifb, minors[port], by_port[port].addresses)
    objects += _tree(dev, cap, cls_out, mtu, profile)
    # The uplink's egress: the port's mark names its class (the chain on the uplink's egress hook).
    to_rules = tuple(NftRule("", mark_is=uplink_mark(minors[port]), set_priority=f"1:{minors[port]:x}")
                     for port in sorted(cls_out, key=lambda p: minors[p]))
    objects.append(NftChain(chain_to(dev), "egress", dev, 0, to_rules))
    objects.append(NftChain(chain_from(dev), "ingress", dev, -500, (NftRule("", fwd_to=ifb),)))
    for m in members:
        if not m.guaranteed:
            continue
        notes.append(Note(f"uplink.{m.port}", f"guarantee held on uplink {dev} in class 1:{minors[m.port]:x}: "
                          f"towards the instance {human_rate(rates_in.get(m.port, 0))}, from it "
                          f"{human_rate(rates_out.get(m.port, 0))} of {human_rate(cap)}", "info"))
    rest_in = max(cap - sum(rates_in.values()), _floor(cap))
    rest_out = max(cap - sum(rates_out.values()), _floor(cap))
    return PortPlan(
        port=dev, objects=tuple(objects), ifb=ifb, notes=tuple(notes),
        ingress=Enforced(rate_bps=cap, min_bps=sum(rates_in.values()) or None, source=_SOURCE,
                         mechanism=f"htb on ifb {ifb} by destination address; the other ports share "
                                   f"{human_rate(rest_in)}"),
        egress=Enforced(rate_bps=cap, min_bps=sum(rates_out.values()) or None, source=_SOURCE,
                        mechanism=f"htb on {dev} by the port's mark; the other ports share {human_rate(rest_out)}"),
    )


_SOURCE = {"rate_bps": "uplink.capacity", "min_bps": "the sum of the ports' guarantees"}


def marks(uplink_plan: PortPlan) -> dict[int, str]:
    """Mark -> class of the uplink's egress chain (for `plan` and tests)."""
    return {r.mark_is: r.set_priority or "" for o in uplink_plan.objects if isinstance(o, NftChain)
            for r in o.rules if r.mark_is is not None}
