"""Kernel tier: the reconciler and the port commands on real devices in a throwaway namespace."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest
from vmqos.reconcile.execute import Reconciler

from tests.kernel.conftest import sh
from tests.reconcile_steps import in_sync, settle
from vmqos.cli.main import main
from vmqos.core.errors import ToolTimeout
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
)
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import ifb_name
from vmqos.core.plan.objects import (
    Aqm,
    HtbClass,
    IfbLink,
    NftChain,
    NftRule,
    NftSet,
    Qdisc,
    U32Filter,
)
from vmqos.services.ports import check_host, show_port
from vmqos.services.serialize import to_json
from vmqos.store import Store

pytestmark = pytest.mark.kernel


@pytest.fixture
def ports(netns):
    for a, b in (("vqa0", "vqb0"), ("vqa1", "vqb1")):
        subprocess.run(["ip", "-n", netns, "link", "add", a, "type", "veth", "peer", "name", b], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", b, "up"], check=True)
    return netns


def state(rate: int, mode: EgressMode = EgressMode.SHAPE, devices=("vqa0", "vqa1"), pps: int | None = 2000) -> HostState:
    qos = NetworkQos(
        ingress=DirectionQos(bandwidth=BandwidthLimit(rate), packet_rate=PacketRateLimit(pps) if pps else None),
        egress=DirectionQos(bandwidth=BandwidthLimit(rate // 2), dscp=18))
    return HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=qos, egress_mode=mode),))
                                for d in devices})


def test_apply_reads_back_exactly_and_reapply_writes_nothing(ports):
    with Reconciler(ports) as rec:
        results, record = settle(rec, state(50_000_000))
        assert all(r.writes > 5 for r in results)
        assert in_sync(rec, state(50_000_000))
        again, _ = settle(rec, state(50_000_000), applied=record)
        assert [r.writes for r in again] == [0, 0]
    # A restart: a new reconciler adopts what is there, by its handles, and writes nothing.
    with Reconciler(ports) as rec:
        again, _ = settle(rec, state(50_000_000))
        assert sum(r.writes for r in again) == 0
    shown = sh(ports, "tc class show dev vqa0").stdout
    assert "rate 50Mbit" in shown and "ceil 50Mbit" in shown


def test_trusted_pass_skips_unchanged_ports_without_reading(ports):
    with Reconciler(ports) as rec:
        _, record = settle(rec, state(20_000_000))
        results, _ = settle(rec, state(20_000_000), applied=record, verify=False)
        assert all(r.skipped for r in results)


def _leaf_queues(ns: str, dev: str) -> dict[str, tuple[str, int]]:
    """The queues under vqa0's bulk leaves: handle -> (kind, packets it sent)."""
    shown = json.loads(sh(ns, f"tc -s -j qdisc show dev {dev}").stdout)
    return {q["handle"]: (q["kind"], q["packets"]) for q in shown if q.get("parent", "").startswith("1:1")}


def test_live_rate_change_replaces_classes_in_place(ports):
    """20 -> 40 Mbit/s: the classes and the leaves' segmenting TBFs (their rate is ten times the
    ceiling) are replaced in place - the same qdiscs, still counting, nothing deleted and added."""
    with Reconciler(ports) as rec:
        _, record = settle(rec, state(20_000_000))
        before = sh(ports, "tc -s qdisc show dev vqa0").stdout.splitlines()[0]
        sh(ports, "ip addr add 10.0.0.1/24 dev vqa0 && ip neigh replace 10.0.0.9 lladdr 02:00:00:00:00:09 dev vqa0 && "
                  "ping -c 2 -i 0.2 -s 1000 -W 1 10.0.0.9 || true")  # long echo requests: the default leaf's TBF
        leaves = _leaf_queues(ports, "vqa0")
        assert leaves and all(kind == "tbf" and sent > 0 for kind, sent in leaves.values())
        results, _ = settle(rec, state(40_000_000), applied=record, verify=False)
        for r in results:
            assert r.ops and all(op.action == "replace" for op in r.ops)
            assert all(isinstance(op.obj, (HtbClass, Aqm)) or (isinstance(op.obj, Qdisc) and op.obj.qdisc_kind == "tbf")
                       for op in r.ops)  # the AQM's rate is rewritten in its map, in place
            assert any(isinstance(op.obj, Qdisc) for op in r.ops)  # the TBF's rate follows the ceiling
        assert in_sync(rec, state(40_000_000))
        assert sh(ports, "tc -s qdisc show dev vqa0").stdout.splitlines()[0] == before  # same root qdisc
        after = _leaf_queues(ports, "vqa0")  # same handles, counters not reset: changed, not re-created
        assert after.keys() == leaves.keys() and all(after[h][1] >= leaves[h][1] for h in leaves)


def test_a_trusted_live_change_reads_back_only_the_device_it_changes(ports):
    """Towards the instance is the port's HTB, from it the IFB's: the other device is not read, the
    port is still looked up, and a fingerprint recorded before the split reads both."""
    def only_ingress(rate: int) -> HostState:
        st = state(20_000_000, devices=("vqa0",))
        inst = st.instances["vqa0"]
        qos = replace(inst.ports[0].limits, ingress=DirectionQos(bandwidth=BandwidthLimit(rate)))
        return HostState(instances={"vqa0": replace(inst, ports=(replace(inst.ports[0], limits=qos),))})

    with Reconciler(ports) as rec:
        _, record = settle(rec, only_ingress(20_000_000))
        reads: list[list[str]] = []
        real_read = rec.tc.read
        rec.tc.read = lambda devices: (reads.append(list(devices)), real_read(devices))[1]  # type: ignore[method-assign]
        results, record = settle(rec, only_ingress(40_000_000), applied=record, verify=False)
        assert reads == [["vqa0"]] and results[0].ops and in_sync(rec, only_ingress(40_000_000))

        reads.clear()
        egress = state(20_000_000, devices=("vqa0",))  # from the instance: 10 Mbit/s, now 7
        inst = egress.instances["vqa0"]
        qos = replace(only_ingress(40_000_000).instances["vqa0"].ports[0].limits,
                      egress=DirectionQos(bandwidth=BandwidthLimit(7_000_000), dscp=18))
        egress = HostState(instances={"vqa0": replace(inst, ports=(replace(inst.ports[0], limits=qos),))})
        results, record = settle(rec, egress, applied=record, verify=False)
        assert reads == [[ifb_name("vqa0")]] and results[0].ops and in_sync(rec, egress)

        reads.clear()
        old_style = {"vqa0": "tc:0123456789abcdef;" + record["vqa0"].split(";", 1)[1]}
        results, _ = settle(rec, egress, applied=old_style, verify=False)
        assert reads == [["vqa0", ifb_name("vqa0")]] and results[0].writes == 0

        subprocess.run(["ip", "-n", ports, "link", "del", "vqa0"], check=True)  # the port is gone
        qos = replace(qos, egress=DirectionQos(bandwidth=BandwidthLimit(5_000_000), dscp=18))
        gone = HostState(instances={"vqa0": replace(inst, ports=(replace(inst.ports[0], limits=qos),))})
        results, _ = rec.reconcile(plan_host(gone), applied=record, verify=False)
        assert results[0].error and "does not exist" in results[0].error


@pytest.mark.parametrize("first,second", [(EgressMode.SHAPE, EgressMode.POLICE), (EgressMode.POLICE, EgressMode.SHAPE)])
def test_egress_mode_switch_and_clear_leave_nothing_behind(ports, first, second):
    with Reconciler(ports) as rec:
        settle(rec, state(30_000_000, first))
        settle(rec, state(30_000_000, second))
        assert in_sync(rec, state(30_000_000, second))
        empty = plan_host(state(30_000_000))
        cleared = {p: replace(plan, objects=()) for p, plan in empty.items()}
        results, record = rec.reconcile(cleared)
        assert all(r.error is None for r in results) and record == {"vqa0": None, "vqa1": None}
    assert "htb" not in sh(ports, "tc qdisc show").stdout
    assert "vqi" not in sh(ports, "ip -br link").stdout
    assert sh(ports, "nft list tables").stdout.strip() == ""  # the emptied table goes too


def test_failed_port_is_rolled_back_and_the_other_port_is_changed(ports):
    with Reconciler(ports) as rec:
        settle(rec, state(10_000_000))
        plans = plan_host(state(60_000_000))
        # A queue under a class that does not exist: the kernel refuses it (ENOENT).
        bad = Qdisc("vqa1", "1:99", "99:", "bfifo", limit_bytes=100_000)
        plans["vqa1"] = replace(plans["vqa1"], objects=plans["vqa1"].objects + (bad,))
        results, record = rec.reconcile(plans)
        by_port = {r.port: r for r in results}
        assert by_port["vqa0"].error is None
        assert by_port["vqa1"].error and "1:99" in by_port["vqa1"].error and by_port["vqa1"].rolled_back
        assert "vqa1" not in record
        assert in_sync(rec, state(10_000_000, devices=("vqa1",)))  # back to its previous state
        assert in_sync(rec, state(60_000_000, devices=("vqa0",)))


@pytest.mark.parametrize("failing", ["tc", "ip", "nft"])
def test_bulk_from_empty_runs_nft_beside_tc_and_still_rolls_a_failed_port_back(ports, monkeypatch, failing):
    """In bulk, a port's new nft objects go in while ip and tc work (what forwards to an IFB once
    it exists); if its tc part fails, they go again. If its IFB cannot be made, or its first nft
    part fails, its forwarding chain is left out of the transaction built meanwhile."""
    import threading

    monkeypatch.setattr("vmqos.reconcile.execute.CONCURRENT_MIN_PORTS", 1)
    with Reconciler(ports) as rec:
        threads: list[str] = []
        run_nft = rec._run_nft
        monkeypatch.setattr(rec, "_run_nft", lambda ops, failed, *encoded: (
            threads.append(threading.current_thread().name), run_nft(ops, failed, *encoded))[1])
        plans = plan_host(state(20_000_000))
        # tc: a queue under a class that does not exist (ENOENT); ip: an IFB name longer than
        # IFNAMSIZ; nft: a rule that counts in a counter that does not exist
        bad = {"tc": Qdisc("vqa1", "1:99", "99:", "bfifo", limit_bytes=100_000),
               "ip": IfbLink("vqi-name-too-long-for-linux"),
               "nft": NftChain("to_vqa1_bad", "egress", "vqa1", 0, (NftRule("vq_no_such_counter"),))}[failing]
        plans["vqa1"] = replace(plans["vqa1"], objects=plans["vqa1"].objects + (bad,))
        results, record = rec.reconcile(plans)
        by_port = {r.port: r for r in results}
        assert threads and threads[0] != threading.main_thread().name  # the early nft ran beside tc
        assert by_port["vqa0"].error is None and "vqa0" in record
        assert by_port["vqa1"].error and by_port["vqa1"].rolled_back and "vqa1" not in record
        assert {"tc": "1:99", "ip": "vqi-name-too-long", "nft": "nftables transaction"}[failing] in \
            by_port["vqa1"].error
        assert in_sync(rec, state(20_000_000, devices=("vqa0",)))
        left = [o for o in rec.observe(["vqa1"]).objects["vqa1"] if not isinstance(o, NftSet)]  # sets are shared
        assert left == []  # nothing of the failed port is left
        assert writes_none(rec, state(20_000_000, devices=("vqa0",)))


def test_an_nft_timeout_fails_every_port_of_the_transaction_without_retrying_each(ports, monkeypatch):
    calls = []

    def slow(ops):
        calls.append(len(ops))
        raise ToolTimeout("nft -j -f did not finish within 1800 s")

    with Reconciler(ports) as rec:
        monkeypatch.setattr(rec.nft, "apply", slow)
        results, record = rec.reconcile(plan_host(state(20_000_000)))
        assert len(calls) == 1 and not record  # one transaction tried, not one more per port
        assert all("did not finish" in r.error and r.rolled_back for r in results)
        monkeypatch.undo()
        assert all(not [o for o in objs if not isinstance(o, NftSet)]
                   for objs in rec.observe(["vqa0", "vqa1"]).objects.values())  # rolled back to empty


def test_a_port_fed_by_the_old_tc_redirect_is_converted_without_force(ports):
    """What an earlier vmqos applied (a tc ingress redirect to the IFB, a chain without the forward)
    is vmqos's own: re-applying converts it in place, the nft forward in before the redirect goes."""
    st = state(20_000_000, devices=("vqa0",))
    plan = plan_host(st)["vqa0"]
    ifb = ifb_name("vqa0")
    old = [replace(o, rules=tuple(r for r in o.rules if not r.fwd_to)) if isinstance(o, NftChain) else o
           for o in plan.objects]
    old += [Qdisc("vqa0", "ingress", "ffff:", "ingress"),
            U32Filter("vqa0", "ffff:", 1, "all", ("u32 0 0",), redirect_to=ifb)]
    with Reconciler(ports) as rec:
        results, _ = rec.reconcile({"vqa0": replace(plan, objects=tuple(old))})
        assert results[0].error is None
        results, _ = rec.reconcile(plan_host(st))
        (result,) = results
        assert result.error is None, result.error
        # the filter goes with its qdisc; the chain is swapped (forward in) before tc deletes anything
        assert {op.describe() for op in result.ops} == {"delete qdisc vqa0 ingress", "replace nft-chain vmqos from_vqa0"}
        assert in_sync(rec, st)
    assert "ingress" not in sh(ports, "tc qdisc show dev vqa0").stdout
    assert f'fwd to "{ifb}"' in sh(ports, "nft list table netdev vmqos").stdout


def writes_none(rec: Reconciler, st: HostState) -> bool:
    results, _ = rec.reconcile(plan_host(st))
    return all(not r.ops and r.error is None for r in results)


def test_foreign_root_qdisc_is_drift_until_forced(ports):
    sh(ports, "tc qdisc add dev vqa0 root handle 5: tbf rate 1mbit burst 10k latency 50ms")
    with Reconciler(ports) as rec:
        results, _ = rec.reconcile(plan_host(state(10_000_000, devices=("vqa0",))))
        assert results[0].error and "drift" in results[0].error and "--force" in results[0].error
        assert "tbf" in sh(ports, "tc qdisc show dev vqa0").stdout  # untouched
        settle(rec, state(10_000_000, devices=("vqa0",)), force=True)
        assert in_sync(rec, state(10_000_000, devices=("vqa0",)))


def test_missing_device_is_reported_not_raised(ports):
    with Reconciler(ports) as rec:
        results, record = rec.reconcile(plan_host(state(10_000_000, devices=("vqnone",))))
        assert "does not exist" in (results[0].error or "") and record == {}


def _cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def test_port_commands_end_to_end(ports, tmp_path, capsys):
    db = f"sqlite:///{tmp_path}/vq.db"
    common = ["--netns", ports, "--db", db]
    code, _ = _cli("port", "set", "vqa0", "--outbound", "12800,0,0", "--inbound", "1250,2500,64", *common)
    assert code == 0
    code, out = _cli("port", "show", "vqa0", "--json", *common)
    data = json.loads(out)
    assert code == 0 and data["kernel"]["in_sync"]
    assert data["desired"]["egress"]["rate_bps"] == 102_400_000
    assert data["desired"]["ingress"]["rate_bps"] == 10_000_000 and data["desired"]["ingress"]["peak_bps"] == 20_000_000
    assert set(data["counters"]) == {"ingress", "egress"}
    assert _cli("check", *common)[0] == 0
    # --live only: the kernel changes, the stored state does not -> check reports drift.
    assert _cli("port", "set", "vqa0", "--outbound", "6400,0,0", "--live", *common)[0] == 0
    code, out = _cli("check", "--json", *common)
    assert code == 1 and not json.loads(out)["ok"]
    assert _cli("port", "set", "vqa0", "--outbound", "0", *common)[0] == 0  # 0 clears, as domiftune
    with Store(db) as store:
        assert to_json(show_port(store, ports, "vqa0"))["desired"]["egress"]["rate_bps"] is None
        assert all(d.ok for d in check_host(store, ports))
    assert _cli("port", "clear", "vqa0", *common)[0] == 0
    assert "htb" not in sh(ports, "tc qdisc show dev vqa0").stdout
    assert _cli("check", *common)[0] == 0
    code, _ = _cli("port", "show", "vqa0", *common)
    assert code == 1 and "not managed" in capsys.readouterr().err


def test_apply_host_file_prune_and_bad_input(ports, tmp_path, capsys):
    db = f"sqlite:///{tmp_path}/vq.db"
    common = ["--netns", ports, "--db", db]
    two = tmp_path / "two.yaml"
    two.write_text("version: 1\ninstances:\n  a:\n    ports:\n      - device: vqa0\n        limits: {ingress: {rate: 20mbit}}\n"
                   "  b:\n    ports:\n      - device: vqa1\n        limits: {egress: {rate: 5mbit}}\n")
    one = tmp_path / "one.yaml"
    one.write_text("version: 1\ninstances:\n  a:\n    ports:\n      - device: vqa0\n        limits: {ingress: {rate: 20mbit}}\n")
    assert _cli("apply", "-f", str(two), *common)[0] == 0
    code, out = _cli("apply", "-f", str(two), "--json", *common)
    assert code == 0 and json.loads(out)["writes"] == 0
    assert _cli("apply", "-f", str(one), *common)[0] == 0
    assert "vqi" in sh(ports, "ip -br link").stdout  # without --prune vqa1 keeps its limits
    assert _cli("apply", "-f", str(one), "--prune", *common)[0] == 0
    assert "vqi" not in sh(ports, "ip -br link").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ninstances:\n  a:\n    ports:\n      - device: vqa0\n        limits: {ingress: {rate: fast}}\n")
    assert _cli("apply", "-f", str(bad), *common)[0] == 2
    err = capsys.readouterr().err
    assert "fast" in err and "Traceback" not in err
    assert _cli("check", *common)[0] == 0  # the bad file changed nothing


def test_clearing_a_port_whose_device_is_gone_removes_its_ifb_and_chains(ports):
    with Reconciler(ports) as rec:
        settle(rec, state(10_000_000, devices=("vqa0",)))
    subprocess.run(["ip", "-n", ports, "link", "del", "vqa0"], check=True)  # as libvirt removes a tap
    with Reconciler(ports) as rec:
        results, record = rec.reconcile({"vqa0": replace(plan_host(state(10_000_000, devices=("vqa0",)))["vqa0"], objects=())})
        assert results[0].error is None and record == {"vqa0": None}
    assert "vqi" not in sh(ports, "ip -br link").stdout
    assert sh(ports, "nft list tables").stdout.strip() == ""


def test_live_change_of_rate_and_leaf_queue_goes_over_netlink(ports, monkeypatch):
    with Reconciler(ports) as rec:
        _, record = settle(rec, state(100_000_000))

        def no_process(*args, **kwargs):
            raise AssertionError("a live rate change must not start a tc or ip process")

        monkeypatch.setattr("vmqos.reconcile.execute.run_batch", no_process)
        results, _ = settle(rec, state(200_000_000), applied=record, verify=False)
        kinds = {type(op.obj).__name__ for r in results for op in r.ops}
        assert kinds == {"HtbClass", "Qdisc", "Aqm"}  # the bfifo grows with the rate (20 ms of traffic), the AQM's map
        assert in_sync(rec, state(200_000_000))
    assert "limit 500000b" in sh(ports, "tc qdisc show dev vqa0").stdout


def test_foreign_filter_on_a_managed_port_is_drift_until_forced(ports, tmp_path):
    with Reconciler(ports) as rec:
        settle(rec, state(10_000_000, devices=("vqa0",)))
    sh(ports, 'tc filter add dev vqa0 parent 1: protocol all prio 5 bpf bytecode "1,6 0 0 4294967295," flowid 1:1')
    with Store(f"sqlite:///{tmp_path}/vq.db") as store:
        store.save(ports, state(10_000_000, devices=("vqa0",)))
        (drift,) = check_host(store, ports)
        assert not drift.ok and drift.operations == ["delete filter vqa0 1: 5"]
    with Reconciler(ports) as rec:
        results, _ = rec.reconcile(plan_host(state(10_000_000, devices=("vqa0",))))
        assert results[0].error and "drift" in results[0].error
        assert "bpf" in sh(ports, "tc filter show dev vqa0").stdout
        settle(rec, state(10_000_000, devices=("vqa0",)), force=True)
        assert in_sync(rec, state(10_000_000, devices=("vqa0",)))
    filters = sh(ports, "tc filter show dev vqa0").stdout
    assert " pref 5 " not in filters and "vmqos_aqm" in filters  # the foreign filter is gone; vmqos's AQM stays


def _read(rec: Reconciler, devices, monkeypatch, bulk: bool):
    monkeypatch.setattr("vmqos.drivers.tc_netlink.BULK_READ_MIN", 1 if bulk else 10**9)
    read = rec.tc.read(devices)
    return {d: (read[d].exists, sorted(map(repr, read[d].objects or [])), read[d].stats or {}) for d in devices}


def test_namespace_wide_and_per_device_reads_agree(ports, monkeypatch):
    """The bulk read (ip -j / tc -j) and the per-device netlink read see the same objects and counters."""
    with Reconciler(ports) as rec:
        settle(rec, state(30_000_000, devices=("vqa0",)))
        settle(rec, state(30_000_000, mode=EgressMode.POLICE, devices=("vqa1",)))
    sh(ports, "tc qdisc add dev vqb0 root handle 5: tbf rate 1mbit burst 10k latency 50ms")  # foreign
    sh(ports, "tc qdisc add dev vqb1 root handle 7: htb default 1 && tc class add dev vqb1 parent 7: classid 7:1 htb "
              "rate 1mbit")  # a foreign HTB; its leaf's default queue is invisible to both reads
    sh(ports, "ping -c 2 -i 0.2 -W 1 -I vqa0 10.0.0.9 || true")  # a few frames through vqa0's HTB
    with Reconciler(ports) as rec:
        devices = ["vqa0", "vqa1", "vqb0", "vqb1", ifb_name("vqa0"), ifb_name("vqa1"), "vqnothere"]
        per_device = _read(rec, devices, monkeypatch, bulk=False)
        bulk = _read(rec, devices, monkeypatch, bulk=True)
    assert {d: v[:2] for d, v in bulk.items()} == {d: v[:2] for d, v in per_device.items()}
    for dev, (_, _, stats) in per_device.items():  # the same counters; traffic may go on between the reads
        assert stats.keys() == bulk[dev][2].keys()
        assert all(bulk[dev][2][k].packets >= v.packets and bulk[dev][2][k].bytes >= v.bytes for k, v in stats.items())
    assert per_device["vqnothere"][0] is False and per_device[ifb_name("vqa1")][0] is False
    assert any("tbf" in o for o in per_device["vqb0"][1])
    assert any("'7:1'" in o and "HtbClass" in o for o in per_device["vqb1"][1])
    assert not any("pfifo" in o for o in per_device["vqb1"][1])
    assert any("IfbLink" in o for o in per_device[ifb_name("vqa0")][1])
    assert per_device["vqa0"][2][("qdisc", "vqa0", "root")].packets > 0  # the pings went through the HTB
