"""Kernel tier: a port's window clamp applied by the reconciler on real devices (a clsact and its two
programs sharing one flow map), adopted by a new reconciler, changed in place, switched off, and its
programs' decisions on a real handshake through the port. A few seconds."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.kernel.conftest import sh
from tests.reconcile_steps import in_sync, settle
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.objects import WindowClamp
from vmqos.core.plan.tc_objects import CLSACT_EGRESS, CLSACT_INGRESS
from vmqos.drivers import bpf_rwnd
from vmqos.reconcile.execute import Reconciler

pytestmark = pytest.mark.kernel


@pytest.fixture
def port(netns, peer_netns):
    """vqc0 in `netns` (the port), its peer vqc1 in `peer_netns` (the instance), 10.77.0.1/2."""
    for command in (["ip", "-n", netns, "link", "add", "vqc0", "type", "veth", "peer", "name", "vqc1",
                     "netns", peer_netns],
                    ["ip", "-n", netns, "addr", "add", "10.77.0.1/24", "dev", "vqc0"],
                    ["ip", "-n", netns, "link", "set", "vqc0", "up"],
                    ["ip", "-n", peer_netns, "addr", "add", "10.77.0.2/24", "dev", "vqc1"],
                    ["ip", "-n", peer_netns, "link", "set", "vqc1", "up"]):
        subprocess.run(command, check=True)
    return netns


def state(towards: int, from_: int, clamp: bool = True) -> HostState:
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(towards)),
                     egress=DirectionQos(bandwidth=BandwidthLimit(from_)))
    return HostState(instances={"vm": InstanceSpec("vm", ports=(PortSpec("vqc0", limits=qos, window_clamp=clamp),))})


def hooks(ns: str) -> dict[str, dict]:
    """The clsact's filters: hook -> tc's JSON of the bpf filter (its name and program id)."""
    out = {}
    for hook in ("ingress", "egress"):
        for f in json.loads(sh(ns, f"tc -j filter show dev vqc0 {hook}").stdout or "[]"):
            if f.get("options", {}).get("bpf_name"):
                out[hook] = f["options"]
    return out


def test_applied_read_back_adopted_changed_in_place_and_removed(port):
    with Reconciler(port) as rec:
        settle(rec, state(3_000_000, 10_000_000))
        assert in_sync(rec, state(3_000_000, 10_000_000))
        seen = {o.parent: o for o in rec.observe(["vqc0"]).objects["vqc0"] if isinstance(o, WindowClamp)}
        assert seen[CLSACT_INGRESS].rate_bytes == 375_000 and seen[CLSACT_EGRESS].rate_bytes == 1_250_000
        assert {seen[h].kmin for h in seen} == {3}
    first = hooks(port)
    assert first["ingress"]["bpf_name"] == "vmqos_rwnd_from" and first["egress"]["bpf_name"] == "vmqos_rwnd_to"
    assert all(h.get("direct-action") for h in first.values())
    # a restart adopts it: nothing written
    with Reconciler(port) as rec:
        again, _ = settle(rec, state(3_000_000, 10_000_000))
        assert sum(r.writes for r in again) == 0
        # a live change: the same programs, their configuration rewritten
        settle(rec, state(1_000_000, 20_000_000))
        assert in_sync(rec, state(1_000_000, 20_000_000))
        assert {h: o["prog"]["id"] for h, o in hooks(port).items()} == {h: o["prog"]["id"] for h, o in first.items()}
        seen = {o.parent: o for o in rec.observe(["vqc0"]).objects["vqc0"] if isinstance(o, WindowClamp)}
        assert (seen[CLSACT_INGRESS].rate_bytes, seen[CLSACT_INGRESS].kmin) == (125_000, 2)
        # switched off: the clsact and its programs go, the shaping stays
        settle(rec, state(1_000_000, 20_000_000, clamp=False))
        assert in_sync(rec, state(1_000_000, 20_000_000, clamp=False))
    assert "clsact" not in sh(port, "tc qdisc show dev vqc0").stdout
    assert "htb" in sh(port, "tc qdisc show dev vqc0").stdout


def test_the_applied_programs_time_a_real_handshake_and_lower_the_windows(port, peer_netns):
    """A TCP connection from the instance through the port: both hooks' programs share the flow map, so
    the handshake is timed once and both directions' entries hold the scale, MSS and RTT."""
    with Reconciler(port) as rec:
        settle(rec, state(3_000_000, 3_000_000))
    server = subprocess.Popen(["ip", "netns", "exec", port, "python3", "-c",
                               "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
                               "s.bind(('10.77.0.1', 5999)); s.listen(1); c, _ = s.accept(); n = 0\n"
                               "while n < 100000: n += len(c.recv(65536))\n"
                               "c.sendall(b'x' * 200000); c.shutdown(socket.SHUT_WR); c.recv(1)"])
    try:
        client = subprocess.run(["ip", "netns", "exec", peer_netns, "python3", "-c",
                                 "import socket, time\n"
                                 "for _ in range(50):\n"
                                 "    try:\n"
                                 "        s = socket.create_connection(('10.77.0.1', 5999), timeout=5); break\n"
                                 "    except OSError: time.sleep(0.05)\n"
                                 "s.sendall(b'y' * 100000); n = 0\n"
                                 "while n < 200000:\n"
                                 "    d = s.recv(65536)\n"
                                 "    if not d: break\n"
                                 "    n += len(d)\n"
                                 "print(n)"], capture_output=True, text=True, timeout=20)
        assert client.returncode == 0 and client.stdout.strip() == "200000", client.stderr
    finally:
        server.kill()
        server.wait()
    ids = {h: o["prog"]["id"] for h, o in hooks(port).items()}
    flows_fd, config_fd = bpf_rwnd._maps_of(ids["egress"])
    try:
        other_flows, other_config = bpf_rwnd._maps_of(ids["ingress"])
        try:
            seen = bpf_rwnd.flows(flows_fd)
            shared = {f.src for f in bpf_rwnd.flows(other_flows)} == {f.src for f in seen}
        finally:
            import os
            os.close(other_flows)
            os.close(other_config)
        timed = [f for f in seen if f.rtt_ns]
        assert shared and {(f.src, f.dst) for f in timed} == {("10.77.0.2", "10.77.0.1"), ("10.77.0.1", "10.77.0.2")}
        assert all(0 < f.rtt_ns < 1_000_000_000 and f.mss > 1000 for f in timed)
        towards, from_ = bpf_rwnd.counters(config_fd, bpf_rwnd.TOWARDS), bpf_rwnd.counters(config_fd, bpf_rwnd.FROM)
        assert towards.syns + from_.syns >= 2 and towards.timed + from_.timed == 1
        assert towards.clamped > 0 and from_.clamped > 0  # 100 / 200 KB each way: windows above 3 Mbit/s x 3 ms
    finally:
        import os
        os.close(flows_fd)
        os.close(config_fd)


def test_the_other_hooks_program_on_a_hook_is_drift_and_put_right(port):
    """The slot a program reads is in its bytecode: `vmqos_rwnd_to` hung on the ingress hook (by hand) reads
    as an empty clamp there, and the next reconcile attaches `vmqos_rwnd_from` in its place."""
    import os
    import struct

    from pyroute2 import IPRoute
    from pyroute2.protocols import ETH_P_ALL

    from vmqos.core.plan.handles import handle_int
    from vmqos.drivers.bpf_police import _PROG_GET_FD_BY_ID, _bpf
    from vmqos.drivers.privileges import open_in_netns

    with Reconciler(port) as rec:
        settle(rec, state(3_000_000, 3_000_000))
    egress_id = hooks(port)["egress"]["prog"]["id"]
    prog_fd = _bpf(_PROG_GET_FD_BY_ID, struct.pack("<III", egress_id, 0, 0))
    try:
        with open_in_netns(port, IPRoute) as ipr:
            idx = ipr.link_lookup(ifname="vqc0")[0]
            ipr.tc("replace-filter", "bpf", idx, 1, parent=handle_int(CLSACT_INGRESS), prio=1, protocol=ETH_P_ALL,
                   fd=prog_fd, name="vmqos_rwnd_to", direct_action=True)
    finally:
        os.close(prog_fd)
    assert hooks(port)["ingress"]["bpf_name"] == "vmqos_rwnd_to"
    with Reconciler(port) as rec:
        seen = {o.parent: o for o in rec.observe(["vqc0"]).objects["vqc0"] if isinstance(o, WindowClamp)}
        assert seen[CLSACT_INGRESS].rate_bytes == 0 and not in_sync(rec, state(3_000_000, 3_000_000))
        settle(rec, state(3_000_000, 3_000_000))
        assert in_sync(rec, state(3_000_000, 3_000_000))
    assert hooks(port)["ingress"]["bpf_name"] == "vmqos_rwnd_from"
