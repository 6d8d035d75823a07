"""The commands `vmqos plan` prints are accepted by this kernel and build exactly the planned objects.

Every transition between plans (shape, police, classes, cleared) is applied for real in a vq*
namespace and read back with tc and nft themselves.
"""

from __future__ import annotations

import json
import re

import pytest

from vmqos.cli.main import main
from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.model import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.model.host import EgressMode
from vmqos.core.plan.diff import Operation, diff
from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.objects import Policer, Qdisc
from vmqos.core.plan.planner import plan_port
from vmqos.core.plan.render import POLICER_COMMENT, render
from vmqos.core.plan.tc_objects import is_program
from vmqos.drivers import bpf_police
from vmqos.drivers.nft import Nft, _set_decl
from vmqos.drivers.tc_netlink import TcNetlink

from .conftest import sh

pytestmark = pytest.mark.kernel
PORT = "tap-vq1"

CLASSES = (TrafficClass("web", 50, TrafficMatch("tcp", (80, 443))), TrafficClass("ef", 10, TrafficMatch(dscp=46)),
           TrafficClass("rest", 40))
FULL = NetworkQos(
    ingress=DirectionQos(bandwidth=BandwidthLimit(262_144_000, 524_288_000, 134_217_728), classes=CLASSES,
                         packet_rate=PacketRateLimit(20_000)),
    egress=DirectionQos(bandwidth=BandwidthLimit(3_000_000, None, 37_500), dscp=26,
                        packet_rate=PacketRateLimit(1000)),
)


def _port(ns: str) -> None:
    assert sh(ns, f"ip link add {PORT} type veth peer name vqpeer && ip link set {PORT} up").returncode == 0


def _apply(ns: str, ops) -> None:
    """The rendered commands, in order; the eBPF programs (police mode's bucket, the AQM), which tc cannot
    load, by the driver: each comment line stands for the next of them."""
    programs = iter([op.obj for op in ops if is_program(op.obj) and op.action != "delete"])
    for command in render(ops):
        if command.startswith(POLICER_COMMENT):
            with TcNetlink(ns) as tc:
                tc.replace(next(programs))
            continue
        result = sh(ns, command)
        assert result.returncode == 0, f"{command}\n{result.stderr}"


def _programs(ns: str) -> set[int]:
    with TcNetlink(ns) as tc:
        msgs = tc._ipr.get_filters(index=tc.index(PORT), parent=0xFFFF0000)
        return {p for m in msgs if m.get_attr("TCA_OPTIONS") and (p := bpf_police.prog_id(m)) is not None}


def _policer(ns: str) -> Policer | None:
    with TcNetlink(ns) as tc:
        found = [o for o in tc.read([PORT])[PORT].objects or [] if isinstance(o, Policer)]
    return found[0] if found else None


def _plan(qos: NetworkQos, mode: EgressMode = EgressMode.SHAPE):
    return plan_port(PORT, combine([QosSource("test", qos)]), egress_mode=mode)


def _classes(ns: str, dev: str) -> dict[str, str]:
    out = sh(ns, f"tc class show dev {dev}").stdout  # iproute2 6.1 prints classes as text even with -j
    return {m.group(1): line for line in out.splitlines() if (m := re.search(r"class htb (\S+)", line))}


def test_full_plan_builds_what_was_planned(netns):
    _port(netns)
    plan = _plan(FULL)
    _apply(netns, diff(plan.objects, []))
    classes = _classes(netns, PORT)
    assert set(classes) == {"1:1", "1:f", "1:10", "1:11", "1:12"}
    assert "rate 262144Kbit ceil 262144Kbit burst 128Mb cburst 128Mb" in classes["1:1"]
    assert "prio 0 rate 5242Kbit ceil 524288Kbit" in classes["1:f"]  # 2 % of the rate, for short packets
    assert "prio 1 rate 102760Kbit" in classes["1:10"]  # 40 % of the rest
    qdiscs = json.loads(sh(netns, f"tc -j qdisc show dev {PORT}").stdout)
    kinds = {(q["kind"], q["handle"]) for q in qdiscs}
    assert {("htb", "1:"), ("bfifo", "f:"), ("bfifo", "10:"), ("bfifo", "11:"), ("bfifo", "12:")} <= kinds
    assert ("ingress", "ffff:") not in kinds  # nft feeds the IFB, not a tc redirect
    ifb = ifb_name(PORT)
    assert "rate 3Mbit ceil 3Mbit burst 37500b" in _classes(netns, ifb)["1:1"]
    ruleset = json.loads(sh(netns, "nft -j list table netdev vmqos").stdout)["nftables"]
    chains = {item["chain"]["name"]: item["chain"] for item in ruleset if "chain" in item}
    assert chains[chain_to(PORT)]["hook"] == "egress" and chains[chain_from(PORT)]["hook"] == "ingress"
    text = sh(netns, "nft list table netdev vmqos").stdout
    assert "ip dscp set af31" in text  # 26 = AF31 = TOS 0x68
    assert "limit rate over 1000/second burst 100 packets" in text
    assert f'fwd to "{ifb}"' in text


@pytest.mark.parametrize("bulk", [False, True])
def test_segmenting_tbf_leaves_read_back_as_planned_and_change_in_place(netns, monkeypatch, bulk):
    """A 3 Mbit/s port: TBF leaves on the port and its IFB, read back over netlink (a few devices) and
    from `tc -j qdisc show` (many), equal to the plan; then 100 Mbit/s and back, replace-only."""
    if bulk:
        monkeypatch.setattr("vmqos.drivers.tc_netlink.BULK_READ_MIN", 1)
    _port(netns)
    low = _plan(NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(3_000_000)),
                           egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000))))
    high = _plan(NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(100_000_000)),
                            egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000))))
    devices = [PORT, ifb_name(PORT)]

    def observed():
        with TcNetlink(netns) as tc:
            read = tc.read(devices)
        return [o for d in devices for o in read[d].objects]

    def tc_of(objects):
        return [o for o in objects if o.device in devices and not getattr(o, "hook", None)
                and type(o).__name__ not in ("NftChain", "NftCounter", "NftSet")]

    _apply(netns, diff(low.objects, []))
    seen = observed()
    leaves = {(o.dev, o.parent): o.qdisc_kind for o in seen if isinstance(o, Qdisc) and o.parent.startswith("1:")}
    assert leaves == {(PORT, "1:f"): "bfifo", (PORT, "1:10"): "tbf", (ifb_name(PORT), "1:f"): "bfifo",
                      (ifb_name(PORT), "1:10"): "tbf"}
    assert not diff(tc_of(low.objects), seen)
    ops = diff(tc_of(high.objects), seen)
    assert ops and all(op.action == "replace" for op in ops)
    _apply(netns, ops)
    assert not diff(tc_of(high.objects), observed())
    with TcNetlink(netns) as tc:  # and back over netlink, as a live change does
        for op in diff(tc_of(low.objects), observed()):
            assert tc.can_replace(op.obj) and op.action == "replace"
            tc.replace(op.obj)
    assert not diff(tc_of(low.objects), observed())


def test_every_transition_applies_and_the_clear_leaves_nothing(netns):
    _port(netns)
    shaped = _plan(FULL)
    policed = _plan(NetworkQos(ingress=FULL.ingress, egress=DirectionQos(
        bandwidth=BandwidthLimit(3_000_000, None, 37_500), dscp=26)), EgressMode.POLICE)
    slower = _plan(NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)),
                              egress=DirectionQos(bandwidth=BandwidthLimit(102_400_000))))
    _apply(netns, diff(shaped.objects, []))
    _apply(netns, diff(policed.objects, shaped.objects))
    assert ifb_name(PORT) not in sh(netns, "ip -o link show").stdout
    listed = sh(netns, "nft list table netdev vmqos").stdout
    # the police rule drops what the bucket on tc ingress marks; nft holds no byte limit of its own
    assert "meta mark & 0x00800000 == 0x00800000" in listed and "bytes/second" not in listed
    assert _policer(netns) is not None and _policer(netns).rate_bytes == 371532
    _apply(netns, diff(slower.objects, policed.objects))
    assert _policer(netns) is None
    assert set(_classes(netns, PORT)) == {"1:1", "1:f", "1:10"}  # the class leaves and their filters are gone
    assert "rate 10Mbit" in _classes(netns, PORT)["1:1"]
    assert "rate 102400Kbit" in _classes(netns, ifb_name(PORT))["1:1"]
    assert "bytes/second" not in sh(netns, "nft list table netdev vmqos").stdout
    _apply(netns, diff(shaped.objects, slower.objects))
    assert set(_classes(netns, PORT)) == {"1:1", "1:f", "1:10", "1:11", "1:12"}
    _apply(netns, diff([], shaped.objects))
    links = sh(netns, "ip -o link show").stdout
    assert ifb_name(PORT) not in links
    assert "htb" not in sh(netns, f"tc qdisc show dev {PORT}").stdout
    assert "ingress" not in sh(netns, f"tc qdisc show dev {PORT}").stdout
    ruleset = json.loads(sh(netns, "nft -j list table netdev vmqos").stdout)["nftables"]
    # The shared accounting sets stay for other ports; the reconciler removes the table with the last port.
    assert [k for item in ruleset for k in item if k not in ("metainfo", "table")] == ["set"] * 4


def test_police_mode_reads_back_as_planned_and_a_rate_change_keeps_its_program(netns):
    _port(netns)
    plan = _plan(NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(100_000_000, None, 125_000))),
                 EgressMode.POLICE)
    _apply(netns, diff(plan.objects, []))
    (planned,) = [o for o in plan.objects if isinstance(o, Policer)]
    assert _policer(netns) == planned and planned.rate_bytes == 100_000_000 * 1500 // (8 * 1514)
    chains = Nft(netns).read([PORT]).chains
    assert chains[chain_from(PORT)].rules == next(o for o in plan.objects if getattr(o, "name", "") ==
                                                  chain_from(PORT)).rules
    ids = _programs(netns)
    assert len(ids) == 1
    slower = _plan(NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(20_000_000, None, 25_000))),
                   EgressMode.POLICE)
    ops = diff(slower.objects, plan.objects)
    assert [(op.action, type(op.obj)) for op in ops] == [("replace", Policer)]
    _apply(netns, ops)
    assert _policer(netns) == next(o for o in slower.objects if isinstance(o, Policer))
    assert _programs(netns) == ids  # the same program: its map changed, its bucket kept


def test_plan_cli_commands_apply(netns, capsys):
    _port(netns)
    assert main(["plan", "--port", PORT, "--outbound", "12800,0,0", "--inbound", "1000,2000,100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["egress"]["rate_bps"] == 102_400_000 and out["ingress"]["peak_bps"] == 16_000_000
    for command in out["commands"]:
        result = sh(netns, command)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert "rate 102400Kbit" in _classes(netns, ifb_name(PORT))["1:1"]


def test_nft_json_form_of_each_rule_loads_and_equals_the_text_form(netns):
    """`NftRule.expr()` is what the nft driver will send; nft must read it back as the text form."""
    _port(netns)
    sh(netns, f"ip link add {ifb_name(PORT)} type ifb")  # what the egress chain forwards to
    plan = _plan(FULL)
    chains = [o for o in plan.objects if o.kind == "chain"]
    counters = {name for c in chains for name in c.counters()}
    sets = [o for o in plan.objects if o.kind == "set"]

    def load(use_json: bool) -> str:
        sh(netns, "nft delete table netdev vmqos")
        cmds: list[dict] = [{"add": {"table": {"family": "netdev", "name": "vmqos"}}}]
        cmds += [{"add": {"counter": {"family": "netdev", "table": "vmqos", "name": n}}} for n in sorted(counters)]
        if use_json:  # a set gets its dynamic flag from the rules of its own transaction
            cmds += [{"add": {"set": _set_decl(st)}} for st in sets]
        for c in chains:
            cmds.append({"add": {"chain": {"family": "netdev", "table": "vmqos", "name": c.name, "type": "filter",
                                           "hook": c.hook, "dev": c.dev, "prio": c.priority, "policy": "accept"}}})
            for rule in c.rules:
                if use_json:
                    cmds.append({"add": {"rule": {"family": "netdev", "table": "vmqos", "chain": c.name,
                                                  "expr": rule.expr()}}})
        script = json.dumps({"nftables": cmds})
        result = sh(netns, f"nft -j -f - <<'EOF'\n{script}\nEOF")
        assert result.returncode == 0, result.stderr
        if not use_json:
            text = "\n".join([line for st in sets for line in render([Operation("create", st)])[0].splitlines()[2:-1]]
                             + [f"add rule netdev vmqos {c.name} {r.text()}" for c in chains for r in c.rules])
            result = sh(netns, f"nft -f - <<'EOF'\n{text}\nEOF")
            assert result.returncode == 0, result.stderr
        return sh(netns, "nft list table netdev vmqos").stdout

    from_json, from_text = load(True), load(False)
    assert "limit rate over 1000/second burst 100 packets" in from_json
    assert 'update @acct_from4_v1 { "' + PORT + '" . ip saddr . ip daddr }' in from_json
    assert "tcp flags syn / fin,syn,rst,ack" in from_json  # how nft lists a SYN without ACK
    assert from_json == from_text
