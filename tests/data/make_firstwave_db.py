"""Makes tests/data/firstwave.sql and firstwave.json with the FIRST WAVE's own code (commit 0ea2556).

Not a test and not run by the suite: it imports the first wave's modules (vmqos.model,
vmqos.formats, vmqos.monitor.usage), which are gone from today's tree. It was run once as

    git worktree add --detach /work/wt/firstwave 0ea2556
    PYTHONPATH=/work/wt/firstwave/src .venv/bin/python tests/data/make_firstwave_db.py tests/data
    git worktree remove /work/wt/firstwave

and wrote a database as the first wave's Store left it (its tables made by its create_all, its
rows by its save, record_applied, volume and monitor functions), dumped as SQL text, and what
the first wave's own readers returned from it (firstwave.json), for tests/core/test_migrations.py
to compare today's readers with.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from vmqos.formats.hostfile import read_host, to_data, write_host
from vmqos.model import BandwidthLimit, CpuQos, DirectionQos, DiskQos, NetworkQos, PacketRateLimit, QosDocument
from vmqos.model.host import EgressMode, Flavor, HostState, InstanceSpec, NetworkSpec, Policy, PortSpec
from vmqos.model.volume import Volume, VolumeType
from vmqos.monitor.usage import Counted, UsageKey
from vmqos.store import Store
from vmqos.store import monitor as mstore

DEMO = """\
version: 1
policies:
  bw-limiter:
    neutron:
      rules:
        - {type: bandwidth_limit, direction: egress, max_kbps: 3000, max_burst_kbps: 300}
  web-tiers:
    egress:
      rate: 20mbit
      burst: 64kb
      classes:
        - {name: web, share: 60, match: {protocol: tcp, ports: [80, 443]}}
        - {name: rest, share: 40}
    ingress: {rate: 50mbit, peak: 100mbit, burst: 256kb}
flavors:
  m1.resquota:
    extra_specs:
      "quota:cpu_shares": "512"
      "quota:vif_inbound_average": "32768"
      "quota:vif_outbound_average": "32768"
networks:
  private: {policy: web-tiers}
instances:
  vm1:
    flavor: m1.resquota
    ports:
      - {device: tap-vm1, network: private}
  vm2:
    ports:
      - {device: tap-vm2, network: private, policy: bw-limiter}
"""


def limits(rate_mbit: int, **egress: object) -> NetworkQos:
    return NetworkQos(
        ingress=DirectionQos(bandwidth=BandwidthLimit(rate_mbit * 10**6, 2 * rate_mbit * 10**6, 65536),
                             packet_rate=PacketRateLimit(20_000, 2_000)),
        egress=DirectionQos(bandwidth=BandwidthLimit(rate_mbit * 10**6), **egress))


def full_state() -> HostState:
    """tests/core/test_store.py's full_state() of the first wave: every kind of object and value."""
    neutron = Policy("bw-limiter", NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(3_000_000, None, 37500))),
                     origin="neutron")
    gold = Policy("gold", limits(100, dscp=26, min_bps=10**7))
    flavor = Flavor("m1.small", QosDocument(name="m1.small", cpu=CpuQos(shares=512, period_us=100_000, quota_us=20_000),
                                            disk=DiskQos(read_bytes_sec=10 * 2**20, read_iops_sec=500),
                                            network=limits(50)))
    ports = (
        PortSpec("tap-z", network="private", policy="bw-limiter"),
        PortSpec("tap-a", network="private", limits=limits(200, dscp=46), egress_mode=EgressMode.POLICE, mtu=9000),
        PortSpec("tap-m", limits=NetworkQos(egress=DirectionQos(packet_rate=PacketRateLimit(1000)))),
    )
    return HostState(
        policies={"bw-limiter": neutron, "gold": gold},
        flavors={"m1.small": flavor},
        networks={"private": NetworkSpec("private", policy="gold"), "public": NetworkSpec("public")},
        instances={
            "vm1": InstanceSpec("vm1", flavor="m1.small", cpu=CpuQos(shares=1024), ports=ports,
                                disks={"vda": DiskQos(total_iops_sec=1000, total_iops_sec_max=2000),
                                       "vdb": DiskQos(write_bytes_sec=2**20, group_name="slow")}),
            "vm2": InstanceSpec("vm2", ports=(PortSpec("tap-vm2", network="public"),)),
            "idle": InstanceSpec("idle"),
        },
    )


def fill(store: Store) -> None:
    store.save("", HostState(), actor="apply", summary="empty host")
    store.save("", full_state(), actor="apply", summary="3 ports")
    store.save("lab-host", read_host(DEMO), actor="port set", summary="port tap-vm2")
    store.save("gone", full_state(), actor="cli")
    store.save("gone", HostState(), actor="cli", summary="emptied")  # a scope left with history only
    store.record_applied_many("", {"tap-z": "fp-z", "tap-a": "fp-a", "tap-m": "fp-m"})
    store.record_applied("lab-host", "tap-vm1", "fp-lab")
    store.record_applied("gone", "tap-old", "fp-old")  # applied, no longer desired: to be removed
    store.save_volume_type("", VolumeType("gold", "front-end", {"total_iops_sec": "500",
                                                                "read_bytes_sec_per_gb": "1048576"}, "gold-qos"))
    store.save_volume_type("", VolumeType("plain"))
    store.save_volume("", Volume("data1", "gold", 20, instance="vm1", device="vdb"), summary="attached data1")
    store.save_volume("", Volume("spare", "plain", 1))
    at = datetime(2026, 11, 30, 12, 34, 56, 789000, tzinfo=UTC)
    mstore.add_event(store, "", at, "tap-a", "detected", "syn flood 40000 pps", instance="vm1",
                     direction="egress", detector="syn_flood")
    mstore.add_event(store, "", at.replace(second=58), "tap-a", "quarantined", "quarantined: syn flood",
                     instance="vm1")
    quarantine = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000), packet_rate=PacketRateLimit(100)))
    mstore.put_quarantine(store, "", mstore.Quarantine("tap-a", quarantine, "syn flood", at))
    key = UsageKey("egress", "tap-a", "10.0.0.5", "192.0.2.7")
    other = UsageKey("ingress", "tap-a", "10.0.0.5", "192.0.2.7")
    mstore.record_usage(store, "", at, {key: Counted(1_500_000, 1_000), other: Counted(64_000, 100)},
                        {key: Counted(9_000_000, 6_000), other: Counted(64_000, 100)})
    mstore.record_usage(store, "", at.replace(hour=13), {key: Counted(500, 1)}, {key: Counted(9_000_500, 6_001)})


def seen(store: Store) -> dict[str, object]:
    """What the first wave's readers return, in plain JSON (host states as host files)."""
    scopes = store.scopes()
    return {
        "scopes": scopes,
        "states": {scope: write_host(store.load(scope)) for scope in [*scopes, "gone"]},
        "revisions": {scope: [[r.id, r.at.isoformat(), r.actor, r.summary] for r in store.revisions(scope, 100)]
                      for scope in [*scopes, "gone"]},
        "applied": {scope: store.applied(scope) for scope in scopes},
        "volume_types": {n: [v.consumer, v.specs, v.qos_name] for n, v in store.volume_types("").items()},
        "volumes": {n: [v.type, v.size_gb, v.instance, v.device] for n, v in store.volumes("").items()},
        "events": [[e.id, e.at.isoformat(), e.port, e.instance, e.direction, e.kind, e.detector, e.message]
                   for e in mstore.events(store, "")],
        "quarantines": {d: [to_data(q.qos), q.reason, q.since.isoformat()]
                        for d, q in mstore.quarantines(store, "").items()},
        "usage": {g: [[u.key.direction, u.key.device, u.key.local_ip, u.key.remote_ip, u.period_start.isoformat(), u.bytes,
                       u.packets] for u in mstore.usage(store, "", granularity=g)] for g in ("hour", "day")},
        "usage_cursors": sorted([k.direction, k.device, k.local_ip, k.remote_ip, c.bytes, c.packets]
                                for k, c in mstore.usage_cursors(store, "").items()),
    }


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vmqos.db"
        with Store(f"sqlite:///{path}") as store:
            fill(store)
            expected = seen(store)
        with sqlite3.connect(path) as db:
            dump = "\n".join(db.iterdump()) + "\n"
    (out / "firstwave.sql").write_text(dump)
    (out / "firstwave.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
