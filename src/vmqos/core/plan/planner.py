"""Turn the effective QoS of one port into the kernel objects that enforce it (pure).

Towards the instance (ingress) traffic leaves the host through the port device, so it is shaped
by an HTB tree on the port's root. From the instance (egress) it enters the host through the
port: nftables' ingress hook on the port either forwards it to an IFB device shaped by the same
HTB tree (`shape`, the default), or polices it (`police`). nftables also enforces
packet-rate limits, marks DSCP and keeps the counters that tell offered from dropped traffic.

The HTB tree, for the kernel facts of ARCHITECTURE.md:
  1:   root, `default 10`: unclassified traffic (ARP too) always has a class, never the direct queue
  1:1  the port's token bucket: rate = ceil = average, burst = cburst = the operator's burst; it
       is the parent every leaf borrows from (a top-level class would send at its ceil forever)
  leaves  ceil = peak: they drain the parent's burst at up to the peak, then run at the average
  1:f  the sparse class, HTB prio 0: packets shorter than 256 bytes (pings, ACKs, DNS, SYNs) are
       sent ahead of bulk traffic, as fq_codel's sparse flows (fq_codel, sfq and cake are not
       built on our kernels); its rate is 2 % of the average, taken from the other leaves
  1:10 the default leaf; 1:11... one leaf per traffic class, rate = its share of the rest, prio 1
  10:  the leaf's queue, sized by time (20 ms at the ceiling) instead of a 1000-packet FIFO that
       queues for seconds. Where 20 ms is less than two 64 KiB GSO aggregates (a ceiling under
       about 52 Mbit/s) it is a TBF that only segments (`queues.leaf_queue`): a bfifo that short
       would drop whole aggregates, and one 64 KiB aggregate is half a second of 1 Mbit/s. Above,
       a bfifo of 20 ms, which costs no CPU per packet.
Bursts are time-based with floors (2 frames, one timer tick at the rate); quanta are clamped to
[one frame, 60000]; rates are plain integers, which tc and netlink carry as 64-bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

from vmqos.core.desired.effective import EffectiveDirection, EffectiveNetwork
from vmqos.core.errors import UnsupportedError
from vmqos.core.model.checks import ETH_HLEN, frame_bytes
from vmqos.core.model.document import Note
from vmqos.core.model.host import EgressMode
from vmqos.core.model.network import Direction
from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.nft_objects import POLICE_MARK
from vmqos.core.plan.objects import (
    IfbLink,
    KernelObject,
    NftChain,
    NftCounter,
    NftRule,
    NftSet,
    Policer,
    Qdisc,
    is_nft,
    policer,
)
from vmqos.core.plan.queues import (
    DEFAULT_MINOR as DEFAULT_MINOR,
    PARENT_CLASSID as PARENT_CLASSID,
    SPARSE_CLASSID as SPARSE_CLASSID,
    KernelProfile as KernelProfile,
    htb_tree as htb_tree,
    leaf_queue as leaf_queue,
    min_burst as min_burst,
    quantum as quantum,
    queue_limit as queue_limit,
    segments as segments,
    window_clamps as window_clamps,
)
from vmqos.core.units import human_rate, human_size

# Per-IP accounting: one set per direction and address family for the whole host, keyed by
# port . the instance's address . the remote address, each element with its own counter. Idle
# pairs expire after an hour; the monitor reads the sets far more often than that.
ACCOUNT_SIZE = 1 << 18
ACCOUNT_TIMEOUT_S = 3600
ACCOUNT_SETS = {
    (direction, fam): NftSet(f"acct_{direction}{4 if fam == 'ip' else 6}_v1",
                             ("ifname", "ipv4_addr" if fam == "ip" else "ipv6_addr",
                              "ipv4_addr" if fam == "ip" else "ipv6_addr"), ACCOUNT_SIZE, ACCOUNT_TIMEOUT_S)
    for direction in ("to", "from") for fam in ("ip", "ip6")
}


@dataclass(frozen=True)
class Enforced:
    """What will be enforced in one direction, in canonical units, with where each value came from."""

    rate_bps: int | None = None
    peak_bps: int | None = None
    burst_bytes: int | None = None
    pps: int | None = None
    pps_burst: int | None = None
    dscp: int | None = None
    min_bps: int | None = None
    classes: tuple[dict[str, object], ...] = ()
    mechanism: str | None = None
    source: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "rate_bps": self.rate_bps, "peak_bps": self.peak_bps, "burst_bytes": self.burst_bytes,
            "pps": self.pps, "pps_burst": self.pps_burst, "dscp": self.dscp, "min_bps": self.min_bps,
            "classes": list(self.classes), "mechanism": self.mechanism, "source": self.source,
        }


def _digest(objects: Iterable[KernelObject]) -> str:
    text = "\n".join(sorted(repr(o) for o in objects))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(objects: Sequence[KernelObject], port: str) -> str:
    """`tc:<port>,<ifb>;nft:<chains>`: which part of a port's plan changed since it was applied (the
    queues on the port, those on its IFB, its nft chains), so that a live change reads back only that."""
    tc = [o for o in objects if not is_nft(o)]
    own, ifb = _digest(o for o in tc if o.device == port), _digest(o for o in tc if o.device != port)
    return f"tc:{own},{ifb};nft:{_digest(o for o in objects if is_nft(o))}"


@dataclass(frozen=True)
class PortPlan:
    port: str
    objects: tuple[KernelObject, ...]
    ingress: Enforced
    egress: Enforced
    notes: tuple[Note, ...] = ()
    ifb: str | None = None

    @cached_property
    def fingerprint(self) -> str:
        """Computed once per plan: a no-op pass over thousands of ports compares these and nothing else."""
        return fingerprint(self.objects, self.port)


def _burst(where: str, eff: EffectiveDirection, mtu: int, profile: KernelProfile,
           notes: list[Note], police: bool = False) -> tuple[int, str]:
    assert eff.rate_bps is not None
    rate = eff.rate_bps.value
    floor = min_burst(rate, mtu, profile)
    if eff.burst_bytes is None:
        time_us = profile.police_burst_time_us if police else profile.burst_time_us
        default = max(rate * time_us // 8_000_000, floor)
        kind = "vmqos police default" if police else "vmqos default"
        return default, f"{kind} ({time_us // 1000} ms at the rate, at least {floor} bytes)"
    burst = eff.burst_bytes.value
    if burst < floor:
        notes.append(Note(f"{where}.burst", f"{human_size(burst)} is below the floor of {floor} bytes (two frames "
                          f"and one timer tick at {human_rate(rate)}); raised to {floor} bytes"))
        return floor, eff.burst_bytes.source + " (raised to the floor)"
    return burst, eff.burst_bytes.source


def _enforced(eff: EffectiveDirection, mechanism: str | None, burst: int | None, burst_source: str | None,
              pps_burst: int | None) -> Enforced:
    source = eff.sources()
    if burst_source is not None:
        source["burst_bytes"] = burst_source
    if pps_burst is not None and eff.pps_burst is None:
        source["pps_burst"] = "vmqos default (100 ms of the packet rate, at least 5)"
    classes: tuple[dict[str, object], ...] = tuple(
        {"name": c.name, "share_percent": c.share_percent,
         "match": None if c.match is None else {"protocol": c.match.protocol, "ports": list(c.match.ports),
                                                "dscp": c.match.dscp}}
        for c in (eff.classes.value if eff.classes is not None else ())
    )
    return Enforced(
        rate_bps=eff.rate_bps.value if eff.rate_bps else None,
        peak_bps=eff.peak_bps.value if eff.peak_bps else None,
        burst_bytes=burst, pps=eff.pps.value if eff.pps else None, pps_burst=pps_burst,
        dscp=eff.dscp.value if eff.dscp else None, min_bps=eff.min_bps.value if eff.min_bps else None,
        classes=classes, mechanism=mechanism, source=source,
    )


def _pps_rule(chain: str, eff: EffectiveDirection, max_length: int) -> tuple[NftRule | None, int | None]:
    if eff.pps is None:
        return None, None
    burst = eff.pps_burst.value if eff.pps_burst is not None else max(eff.pps.value // 10, 5)
    # A GSO aggregate (longer than one frame) is bulk traffic that counts as one packet here:
    # it is left to the byte limit so that a packet-rate limit never throttles TCP by accident.
    return NftRule(f"{chain}_pps_dropped", limit_pps=eff.pps.value, limit_pps_burst=burst,
                   max_length=max_length, verdict="drop"), burst


def _accounting(device: str, direction: str) -> list[NftRule]:
    """Per-IP counts of what passed the port's nft limits (`to`: towards the instance, whose address is the
    destination; `from`: sent by it)."""
    local = "daddr" if direction == "to" else "saddr"
    return [NftRule("", ip_family=fam, account_set=ACCOUNT_SETS[(direction, fam)].name, account_port=device,
                    account_local=local) for fam in ("ip", "ip6")]


def _segmenting(tree: Sequence[KernelObject]) -> str:
    """How `plan` names a tree whose leaves queue in segmenting TBFs (a ceiling under ~52 Mbit/s)."""
    return ", segmenting tbf leaves" if any(isinstance(o, Qdisc) and o.qdisc_kind == "tbf" for o in tree) else ""


def plan_port(device: str, effective: EffectiveNetwork, *, egress_mode: EgressMode = EgressMode.SHAPE,
              mtu: int = 1500, profile: KernelProfile = KernelProfile(), accounting: bool = True,
              uplink: str | None = None, uplink_mark: int | None = None, window_clamp: bool = False) -> PortPlan:
    """The kernel objects of one port; `accounting` (the default for a port vmqos manages) also counts
    both directions, SYNs from the instance and traffic per IP, whether or not the port is limited.
    `uplink`: the host's uplink that holds the port's guaranteed minimums (`core.plan.uplink`), and
    `uplink_mark` the skb->mark its ingress chain sets so that the uplink knows the port's packets.
    `window_clamp`: the port's opt-in receive-window clamp (`queues.window_clamps`), shape mode only."""
    notes: list[Note] = list(effective.notes)
    objects: list[KernelObject] = []
    chains: list[NftChain] = []

    # Towards the instance: HTB on the port's root; nft on its egress hook counts and limits pps first.
    eff_in = effective.ingress
    in_burst = in_burst_src = in_mech = None
    if eff_in.rate_bps is not None:
        in_burst, in_burst_src = _burst("ingress", eff_in, mtu, profile, notes)
        tree = htb_tree(device, eff_in, in_burst, mtu, profile)
        objects += tree
        in_mech = f"htb on {device}" + _segmenting(tree)
    to_chain = chain_to(device)
    pps_in, pps_in_burst = _pps_rule(to_chain, eff_in, frame_bytes(mtu))
    if accounting or eff_in.rate_bps is not None or pps_in is not None:
        rules = [NftRule(f"{to_chain}_offered")] + ([pps_in] if pps_in else [])
        rules += (_accounting(device, "to") if accounting else []) + [NftRule(f"{to_chain}_passed")]
        chains.append(NftChain(to_chain, "egress", device, 0, tuple(rules)))
        if in_mech is None and pps_in is not None:
            in_mech = "nftables"

    # From the instance: IFB + HTB (shape) or an nft byte policer (police) at the port's ingress hook.
    eff_out = effective.egress
    out_burst = out_burst_src = out_mech = None
    from_chain = chain_from(device)
    rules_out: list[NftRule] = [NftRule(f"{from_chain}_offered")]
    if accounting:
        rules_out.append(NftRule(f"{from_chain}_syn", tcp_syn=True))
    pps_out, pps_out_burst = _pps_rule(from_chain, eff_out, mtu)  # skb->len at ingress has no L2 header
    if pps_out is not None:
        rules_out.append(pps_out)
    shaper: str | None = None
    if eff_out.rate_bps is not None:
        out_burst, out_burst_src = _burst("egress", eff_out, mtu, profile, notes,
                                          police=egress_mode is not EgressMode.SHAPE)
        if egress_mode is EgressMode.SHAPE:
            shaper = ifb_name(device)
            objects.append(IfbLink(shaper, mtu))
            tree = htb_tree(shaper, eff_out, out_burst, mtu, profile)
            objects += tree
            out_mech = f"htb on ifb {shaper}" + _segmenting(tree)
        else:
            police, bucket = _police(device, from_chain, eff_out, out_burst, mtu, notes)
            rules_out.append(police)
            objects += [Qdisc(device, "ingress", "ffff:", "ingress"), bucket]
            out_mech = "police (tc ingress bucket, nftables drop)"
    if eff_out.dscp is not None:
        for fam in ("ip", "ip6"):
            rules_out.append(NftRule(f"{from_chain}_marked", dscp=eff_out.dscp.value, ip_family=fam))
    if accounting or len(rules_out) > 1 or shaper or uplink_mark is not None:
        limiting = len(rules_out) > (2 if accounting else 1)
        rules_out += (_accounting(device, "from") if accounting else []) + [NftRule(f"{from_chain}_passed")]
        if uplink_mark is not None:  # after the police rule (which reads the mark), before the IFB
            rules_out.append(NftRule("", set_mark=uplink_mark))
        # The shaper is fed from this chain, not by a tc ingress redirect: tc's ingress runs before
        # nft's, and a packet the IFB re-injects skips both, so behind a tc redirect this chain would
        # never see the instance's packets (no packet-rate limit, DSCP mark, SYN count or accounting).
        if shaper:
            rules_out.append(NftRule("", fwd_to=shaper))
        chains.append(NftChain(from_chain, "ingress", device, -500, tuple(rules_out)))
        if limiting:
            out_mech = out_mech or "nftables"

    for direction, eff in ((Direction.INGRESS, eff_in), (Direction.EGRESS, eff_out)):
        if eff.min_bps is not None:
            notes.append(Note(f"{direction.value}.min_bps", f"held on the host's uplink {uplink}, shared with its other "
                              "ports (`vmqos plan --uplink-of HOSTFILE` shows it)" if uplink else
                              "a guaranteed minimum is shared out on the host's uplink among all its ports, not on "
                              "one port; name the uplink in the host file (`uplink: {device: ..., capacity: ...}`) "
                              "to enforce it", "info"))

    if chains:
        counters = sorted({name for chain in chains for name in chain.counters()})
        used = {name for chain in chains for name in chain.sets()}
        objects += [st for st in ACCOUNT_SETS.values() if st.name in used]
        objects += [NftCounter(name) for name in counters]
        objects += chains

    # Last: on a port that was policed, the clsact replaces the ingress qdisc (and its policer) only
    # once the chain above forwards to the IFB.
    if window_clamp:
        shaped_out = eff_out.rate_bps.value if eff_out.rate_bps is not None and shaper else None
        shaped_in = eff_in.rate_bps.value if eff_in.rate_bps is not None else None
        if egress_mode is not EgressMode.SHAPE:
            notes.append(Note("window_clamp", "the window clamp needs egress mode shape: police mode holds the "
                              "port's tc ingress hook, where the clamp's program would go; not applied", "warning"))
        elif shaped_in or shaped_out:
            objects += window_clamps(device, shaped_in, shaped_out, mtu, profile)
            notes.append(Note("window_clamp", "each TCP flow's window is sized for the RTT of its handshake: a flow "
                              "whose path RTT grows later (a client's bloated uplink, Wi-Fi, cellular) runs below "
                              "the limit (+20 ms after the handshake: 70 % of 3 Mbit/s, 21 % of 10, 16 % of 100 "
                              "measured); turn it off for such clients", "info"))
            in_mech = in_mech + ", window clamp" if in_mech and shaped_in else in_mech
            out_mech = out_mech + ", window clamp" if out_mech and shaped_out else out_mech
        else:
            notes.append(Note("window_clamp", "the port shapes neither direction: nothing to clamp", "info"))

    return PortPlan(
        port=device, objects=tuple(objects), ifb=shaper, notes=tuple(notes),
        ingress=_enforced(eff_in, in_mech, in_burst, in_burst_src, pps_in_burst),
        egress=_enforced(eff_out, out_mech, out_burst, out_burst_src, pps_out_burst),
    )


def police_first_second(objects: Sequence[KernelObject]) -> str | None:
    """What police mode's bucket does to the first second, in numbers, for `plan` and `verify`; None
    when the port is not policed."""
    found = [o for o in objects if isinstance(o, Policer)]
    if not found:
        return None
    p = found[0]
    over = 100 * p.bucket_bytes / p.rate_bytes if p.rate_bytes else 0.0
    return (f"police mode (egress): the bucket is the burst, {p.bucket_bytes} bytes ({over:.0f} % of one second of "
            f"the rate, {p.rate_bytes} bytes); after a pause the instance may send that much at once, so a "
            f"first second can carry up to {over:.0f} % of the rate on top of it, and no interval ever carries "
            "more than the burst plus the rate times the interval (live changes keep the bucket's tokens). "
            "TCP through a bucket well under one second of traffic loses most of its rate to whole dropped "
            "64 KiB GSO aggregates (50 Mbit/s: 5 through 128 KiB, 9 through 256 KiB); use egress mode shape "
            "for a first second within a small burst")


def _police(device: str, chain: str, eff: EffectiveDirection, burst: int, mtu: int,
            notes: list[Note]) -> tuple[NftRule, KernelObject]:
    """The bucket on the port's tc ingress and the nft rule that drops what it marks (see `Policer`)."""
    assert eff.rate_bps is not None
    if eff.classes is not None:
        raise UnsupportedError(
            "egress.classes: traffic classes need queues; use egress mode shape for this port")
    if eff.peak_bps is not None:
        notes.append(Note("egress.peak", "a policer has no peak rate: police mode enforces the average only; "
                          "use egress mode shape to honour peak"))
    # The bucket counts skb->len without the 14-byte Ethernet header, as nft's limit did: scale so
    # that full-size frames are held to the frame rate the limit states.
    rate_bytes = eff.rate_bps.value * mtu // (8 * (mtu + ETH_HLEN))
    burst_bytes = burst * mtu // (mtu + ETH_HLEN)
    notes.append(Note("egress.rate", f"police mode counts IP bytes, so vmqos sets {rate_bytes} bytes/s "
                      f"({mtu}/{mtu + ETH_HLEN} of the frame rate); its bucket is the burst ({burst_bytes} bytes): "
                      "in any interval the instance sends at most the burst plus the rate times the interval, "
                      "across live changes too; TCP sees drops, not queueing, and through a bucket much below "
                      "one second of traffic it falls far below the rate (it recovers by retransmit timeouts)",
                      "info"))
    bucket = policer(device, rate_bytes, burst_bytes)
    notes.append(Note("egress.burst", police_first_second([bucket]) or "", "info"))
    return NftRule(f"{chain}_dropped", mark_bit=POLICE_MARK, verdict="drop"), bucket
