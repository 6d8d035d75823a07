"""Traffic tier: the monitor on a lab under real traffic — rates, top, Prometheus, per-IP usage, floods.

Every flow stays between the lab's namespaces; every process is bounded and killed by its pid.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import urllib.request
from ipaddress import ip_address

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vmqos.core.desired.ports import PortChange, scope_of
from vmqos.core.model.host import EgressMode
from vmqos.drivers.process import in_netns
from vmqos.monitor.daemon import Monitor, load_config
from vmqos.monitor.exporter import Exporter
from vmqos.monitor.sampler import Sampler, rates
from vmqos.services.ports import desired_plans
from vmqos.store import monitor as mstore

from .harness import (
    ETH_HLEN,
    finish_client,
    iperf_server,
    kill,
    log,
    run_client,
    start_client,
)

pytestmark = [pytest.mark.traffic, pytest.mark.kernel]

MBIT = 1_000_000


def _plans(ports):
    scope = scope_of(ports.netns)
    state = ports.store.load(scope)
    return desired_plans(ports.store, scope, state), {p.device: i.name for i, p in state.ports()}


def _vmqos(*args: str, db: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "VMQOS_DB": db})


def _db(ports) -> str:
    return ports.store.url


def test_sampler_tells_offered_delivered_and_dropped_apart(lab, ports):
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(outbound="1250,0,0", egress_mode=EgressMode.SHAPE))  # 10 Mbit/s
    payload = 1400
    frame = payload + 8 + 20 + ETH_HLEN
    plans, instances = _plans(ports)
    with Sampler(ports.netns) as sampler, iperf_server(lab.wan_ns) as server:
        client = start_client(vm1.netns, lab.wan_address, 4, "-u", "-b", "40M", "-w", "4M", "-l", str(payload))
        time.sleep(1.5)
        first = sampler.sample(plans, instances)
        time.sleep(2.0)
        second = sampler.sample(plans, instances)
        finish_client(client, 4)
        server.result()
    out = rates(first, second)[vm1.port].rates["egress"]
    log(f"sampled 10 Mbit/s egress under a 40 Mbit/s UDP flood: offered {out.offered_bps / MBIT:.2f}, delivered "
        f"{out.delivered_bps / MBIT:.3f} Mbit/s, dropped {out.dropped_pps:.0f} pps of {out.offered_pps:.0f} pps")
    assert 0.95 * 10 * MBIT <= out.delivered_bps <= 1.05 * 10 * MBIT
    assert out.offered_bps >= 3 * 10 * MBIT  # 40 Mbit/s of payload, about 41 of frames
    expected_drop = out.offered_pps - out.delivered_bps / 8 / frame
    assert abs(out.dropped_pps - expected_drop) <= 0.05 * out.offered_pps
    assert out.limit_bps == 10 * MBIT and 0.95 <= out.utilisation <= 1.05
    link = second.ports[vm1.port].link
    assert link is not None and link.rx_packets > 0  # the tap's own count, before the limiter


def test_top_once_json_and_its_keys_on_a_terminal(lab, ports):
    vm1, vm2 = lab.instance(1), lab.instance(2)
    ports.set(vm1.port, PortChange(inbound="2500,0,0"))  # 20 Mbit/s towards vm1
    ports.set(vm2.port, PortChange(outbound="0"))  # managed, not limited: counted all the same
    with iperf_server(vm1.netns) as server:
        client = start_client(lab.wan_ns, vm1.address, 6)
        time.sleep(1.5)  # past TCP's slow start: the sample below is the steady state
        done = _vmqos("top", "--netns", ports.netns, "--once", "--json", "--interval", "1", db=_db(ports))
        assert done.returncode == 0, done.stderr
        sample = json.loads(done.stdout)
        # The live view on a pseudo-terminal: sort by pps, filter on vm1, then quit.
        pid, fd = pty.fork()
        if pid == 0:  # the child: the CLI on the terminal
            os.environ["VMQOS_DB"] = _db(ports)
            os.execv(sys.executable, [sys.executable, "-m", "vmqos.cli.main", "top", "--netns", ports.netns,
                                      "--interval", "0.5"])
        screen = b""
        try:
            deadline = time.monotonic() + 12
            keys = [b"p", b"/vm1\r", b"q"]
            next_key = None  # the first key goes once the first screen is drawn (the terminal is raw then)
            while time.monotonic() < deadline:
                if next_key is None and b"vmqos top:" in screen:
                    next_key = time.monotonic() + 0.5
                if keys and next_key is not None and time.monotonic() >= next_key:
                    os.write(fd, keys.pop(0))
                    next_key = time.monotonic() + 1.2
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    screen += chunk
                finished, status = os.waitpid(pid, os.WNOHANG)
                if finished:
                    break
            else:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("top did not quit on 'q'")
        finally:
            os.close(fd)
        finish_client(client, 6)
        server.result()
    rows = {(r["port"], r["direction"]): r for r in sample["ports"]}
    down = rows[(vm1.port, "ingress")]
    log(f"top --once: {vm1.port} ingress delivered {down['delivered_bps'] / MBIT:.2f} Mbit/s, util "
        f"{down['utilisation']:.2f}")
    assert 0.9 * 20 * MBIT <= down["delivered_bps"] <= 1.05 * 20 * MBIT and down["limit_bps"] == 20 * MBIT
    assert (vm2.port, "egress") in rows and rows[(vm2.port, "egress")]["limit_bps"] is None
    assert sample["ports"][0]["port"] == vm1.port  # busiest first
    text = screen.decode(errors="replace")
    assert "sort: pps" in text and "filter: vm1" in text and "delivered" in text and status == 0


def test_prometheus_exporter_is_scraped_over_http(lab, ports):
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(outbound="1250,0,0"))
    server = Exporter(ports.store, ports.netns, "127.0.0.1:0").start()
    try:
        with iperf_server(lab.wan_ns) as ip:
            run_client(vm1.netns, lab.wan_address, 2, "-u", "-b", "30M", "-w", "4M")
            ip.result()
        with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=10) as response:
            assert response.status == 200
            body = response.read().decode()
    finally:
        server.stop()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"instance": vm1.port, "port": vm1.port, **labels}.items())))]

    offered = value("vmqos_port_offered_bytes_total", direction="egress")
    delivered = value("vmqos_port_delivered_bytes_total", direction="egress")
    dropped = value("vmqos_port_dropped_packets_total", direction="egress")
    log(f"scraped: offered {offered:.0f} B, delivered {delivered:.0f} B, dropped {dropped:.0f} packets")
    assert offered > 2 * delivered > 0 and dropped > 0
    assert value("vmqos_port_limit_bits_per_second", direction="egress") == 10 * MBIT
    assert value("vmqos_port_device_bytes_total", counter="rx") >= offered * 0.9
    assert value("vmqos_port_quarantined") == 0
    assert ("vmqos_scrape_duration_seconds", ()) in samples


def test_usage_is_counted_per_ip_pair_and_never_twice(lab, ports):
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(inbound="12500,0,0"))  # 100 Mbit/s towards vm1
    with Monitor(ports.store, ports.netns) as mon:
        mon.fold_usage()  # whatever was counted before this test
        base = {(u.key.direction, u.key.local_ip, u.key.remote_ip): u.bytes
                for u in mstore.usage(ports.store, scope_of(ports.netns), granularity="day", port=vm1.port)}
        with iperf_server(vm1.netns) as server:
            run_client(lab.wan_ns, vm1.address, 2)
            received = server.result()["end"]["sum_received"]["bytes"]
        mon.fold_usage()
        mon.fold_usage()  # nothing new: nothing added
    totals = {(u.key.direction, u.key.local_ip, u.key.remote_ip): u
              for u in mstore.usage(ports.store, scope_of(ports.netns), granularity="day", port=vm1.port)}
    down = totals[("ingress", vm1.address, lab.wan_address)]
    up = totals[("egress", vm1.address, lab.wan_address)]
    got = down.bytes - base.get(("ingress", vm1.address, lab.wan_address), 0)
    log(f"usage wan -> vm1: {got:,} bytes counted for {received:,} bytes of payload received "
        f"({got / received:.3f}); acks back {up.bytes:,} bytes")
    assert received <= got <= 1.08 * received  # payload plus TCP/IP/Ethernet headers
    assert 0 < up.bytes < 0.1 * got
    # Counted by the instance's own address; multicast towards it (IGMP, IPv6 neighbour discovery) by the group's.
    assert all(k[1] == vm1.address for k in totals if ":" not in k[1] and not ip_address(k[1]).is_multicast)
    done = _vmqos("usage", "--netns", ports.netns, "--port", vm1.port, "--by", "day", "--json", db=_db(ports))
    assert done.returncode == 0, done.stderr
    assert any(row["remote_ip"] == lab.wan_address and row["bytes"] == down.bytes for row in json.loads(done.stdout))


def test_a_syn_flood_is_detected_quarantined_held_and_lifted(lab, ports, tmp_path):
    vm3 = lab.instance(3)
    ports.set(vm3.port, PortChange(inbound="12500,0,0"))  # managed; nothing limits what vm3 sends
    config = load_config("interval: 0.5\n"
                         "detectors: {packet_rate_pps: 20000, syn_min_pps: 1000, for_seconds: 1}\n"
                         "response: {cooldown: 3, quarantine: {egress: {rate: 1mbit, pps: 1000}}}\n")
    scope = scope_of(ports.netns)
    timeline: list[tuple[float, str, str]] = []
    held: list[float] = []
    flood = subprocess.Popen(in_netns(["timeout", "7", "hping3", "--flood", "-S", "-p", "80", "-q",
                                       lab.wan_address], vm3.netns), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        with Monitor(ports.store, ports.netns, config) as mon:
            while time.monotonic() - start < 20:
                step = mon.step()
                t = time.monotonic() - start
                for det in step.started:
                    timeline.append((t, "detected", det.detector))
                for act in step.actions:
                    timeline.append((t, act.kind, act.reason))
                assert not step.errors, step.errors
                egress = step.rates.get(vm3.port)
                if egress and "egress" in egress.rates and mstore.quarantines(ports.store, scope) \
                        and flood.poll() is None:
                    held.append(egress.rates["egress"].delivered_pps)
                if any(kind == "lift" for _, kind, _ in timeline):
                    break
                time.sleep(max(0.0, 0.5 - (time.monotonic() - start - t)))
    finally:
        kill(flood)
    log(f"SYN flood timeline: {[(round(t, 1), k, r[:60]) for t, k, r in timeline]}; delivered pps under "
        f"quarantine {[round(p) for p in held]}")
    kinds = [k for _, k, _ in timeline]
    assert "detected" in kinds and "quarantine" in kinds and kinds[-1] == "lift", timeline
    detected = next(t for t, k, r in timeline if k == "detected")
    quarantined = next(t for t, k, r in timeline if k == "quarantine")
    lifted = next(t for t, k, r in timeline if k == "lift")
    assert detected <= 4 and quarantined <= 4.5, "the flood was not answered within a few seconds"
    assert lifted >= 7 + 3 - 1, "lifted before the flood had stopped for the cool-down"
    steady = held[2:]  # the samples across the change still hold part of the flood
    assert steady and max(steady) <= 1000 * 1.2 + 100, f"the quarantine did not hold the flood: {held}"
    events = [e.kind for e in mstore.events(ports.store, scope)]
    assert events.index("detected") < events.index("quarantined") < events.index("lifted"), events
    assert not mstore.quarantines(ports.store, scope)
    done = _vmqos("events", "--netns", ports.netns, "--json", db=_db(ports))
    assert done.returncode == 0 and any(e["kind"] == "quarantined" and e["port"] == vm3.port
                                        for e in json.loads(done.stdout))
