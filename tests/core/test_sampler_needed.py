"""Which named nft counters the sampler reads by name (nft_reads="needed"), without a kernel.

A direction whose planned queue is there needs only its packet-rate drops from nft (the queue
gives offered, delivered and dropped); one whose queue is missing, or that has none planned
(police mode, no limit), needs its offered/passed/policed counters too; SYNs always."""

from __future__ import annotations

from array import array

from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import ifb_name
from vmqos.drivers.counter_arrays import QDISC_FIELDS
from vmqos.monitor.columns import ColumnLayout
from vmqos.monitor.sample_layout import Slots, Watched
from vmqos.monitor.sample_layout import needed_names as _needed_of

SHAPED, POLICED = "vqn0", "vqn1"


def _slots() -> Slots:
    shaped = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(1_000_000), packet_rate=PacketRateLimit(400)),
                        egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000), packet_rate=PacketRateLimit(400)))
    policed = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000)))
    plans = plan_host(HostState(instances={
        "vm0": InstanceSpec("vm0", ports=(PortSpec(SHAPED, limits=shaped, egress_mode=EgressMode.SHAPE),)),
        "vm1": InstanceSpec("vm1", ports=(PortSpec(POLICED, limits=policed, egress_mode=EgressMode.POLICE),))}))
    return Slots.of(Watched.of(plans), {SHAPED: 2, ifb_name(SHAPED): 3, POLICED: 4})


def _needed(slots: Slots, q: array) -> list[str] | tuple[str, ...]:
    """What the sampler reads by name after a pass read these roots (its column layout, as the sampler builds it)."""
    return _needed_of(slots, ColumnLayout.of(slots.rows, slots.pps_names), q)


def _qdiscs(slots: Slots, present: set[int]) -> array:
    """Root qdisc slots as the decoder fills them: `present` slots with the planned kind."""
    q = array("Q", bytes(8 * QDISC_FIELDS * slots.layout.sizes()[0]))
    for _, _, qs, kind, ifb_qs, ifb_kind, _, _ in slots.rows:
        for slot, words in ((qs, kind), (ifb_qs, ifb_kind)):
            if slot in present and words[0] >= 0:
                b = slot * QDISC_FIELDS
                q[b], q[b + 3], q[b + 4] = 1, words[0], words[1]
    return q


def test_a_shaped_port_with_its_queues_needs_only_its_drops_and_syns_a_policed_one_its_counters() -> None:
    slots = _slots()
    needed = set(_needed(slots, _qdiscs(slots, {0, 1, 2, 3})))
    assert {n for n in needed if SHAPED in n} == {f"from_{SHAPED}_syn", f"to_{SHAPED}_pps_dropped",
                                                  f"from_{SHAPED}_pps_dropped"}
    assert {f"from_{POLICED}_offered", f"from_{POLICED}_passed", f"from_{POLICED}_dropped",
            f"from_{POLICED}_syn"} <= needed
    assert needed <= set(slots.layout.counters)  # only counters the plans name


def test_a_missing_queue_makes_its_direction_read_what_flows_would_take_from_nft() -> None:
    slots = _slots()
    shaped_row = slots.rows[[r[0] for r in slots.rows].index(SHAPED)]
    ifb_slot = shaped_row[4]
    needed = set(_needed(slots, _qdiscs(slots, {0, 1, 2, 3} - {ifb_slot})))  # the IFB's HTB is gone
    assert {f"from_{SHAPED}_offered", f"from_{SHAPED}_passed"} <= needed
    assert f"to_{SHAPED}_offered" not in needed  # the port's own HTB is still there
