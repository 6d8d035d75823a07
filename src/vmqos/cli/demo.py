"""`vmqos demo`: the seed examples enforced on a lab of namespaces, with real traffic through them."""

from __future__ import annotations

from functools import partial
from importlib import resources
from typing import Callable

import click

from vmqos.cli.demo_steps import vmqos_step as _run
from vmqos.cli.output import print_notes, stderr, stdout
from vmqos.core.analysis.flows import Flow
from vmqos.core.formats.hostfile import read_host_with_notes
from vmqos.core.units import human_rate, human_size
from vmqos.drivers.cgroup import block_device
from vmqos.lab import Lab, lab_down, lab_spawn, lab_up
from vmqos.lab.disk import loop_device
from vmqos.lab.topology import LabInstance
from vmqos.lab.traffic import TrafficResult, iperf3, running
from vmqos.services.instances import instance_apply, lab_group
from vmqos.services.monitoring import events, last_event_id
from vmqos.services.ports import apply_host, open_store, show_port

# vmqos.monitor and vmqos.verify are imported in the sections that use them: both read counters
# through pyroute2 (~65 ms of every `vmqos` start otherwise).


def demo_dir() -> str:
    return str(resources.files("vmqos") / "demo")


def _traffic_table(lab_name: str, netns: str, store) -> None:
    from rich.table import Table

    lab = Lab(lab_name)
    table = Table(title="real traffic through the demo ports (iperf3, 3 s each)", title_justify="left",
                  show_edge=False)
    for col in ("port", "direction", "traffic", "limit", "goodput", "offered", "delivered", "dropped"):
        table.add_column(col)
    runs: list[tuple[LabInstance, str, str, Callable[[], TrafficResult]]] = []
    for inst in lab.instances(3):
        runs.append((inst, "ingress", "tcp", partial(iperf3, inst.netns, inst.address, lab.wan_ns)))
        runs.append((inst, "egress", "tcp", partial(iperf3, lab.wan_ns, lab.wan_address, inst.netns)))
    vm2 = lab.instance(2)
    runs.append((vm2, "egress", "udp 10M", partial(iperf3, lab.wan_ns, lab.wan_address, vm2.netns,
                                                   udp_bps=10_000_000)))
    for inst, direction, kind, go in runs:
        before = show_port(store, netns, inst.port).counters.get(direction, Flow())
        stderr.print(f"  {inst.name} {direction} {kind} ...")
        result = go()
        shown = show_port(store, netns, inst.port)
        after = shown.counters.get(direction)
        want = getattr(shown.desired, direction)
        limit = human_rate(want.rate_bps) if want.rate_bps else "none"
        if want.peak_bps:
            limit += f", peak {human_rate(want.peak_bps)} for {human_size(want.burst_bytes)}"
        cells = [f"{getattr(after, k) - getattr(before, k) if after else 0:,} pkt"
                 for k in ("offered_packets", "delivered_packets", "dropped_packets")]
        table.add_row(inst.port, direction, kind, limit, human_rate(int(result.received_bps)), *cells)
    stdout.print(table)
    stdout.print("A port with a peak runs at the peak while its burst lasts, then at its average; offered "
                 "counts what reached the limiter, delivered what passed it (a tap's own rx counter is offered).")


def _cpu_disk_table(lab_name: str, store) -> None:
    """A 20 % CPU quota on vm1 and a 1 MiB/s disk limit on vm2 (a loop device), measured."""
    import os
    import sys
    import time

    from rich.table import Table

    report = instance_apply(store, lab_name, "vm1")  # vm1's flavor: cpu_shares 512 (seed 003)
    stdout.print(f"vm1: flavor m1.resquota's CPU values in its cgroups ({report.writes} file(s) written)")
    _run(["instance", "set", "vm1", "--lab", lab_name, "--cpu-quota", "20000", "--cpu-period", "100000"])
    procs = []
    with loop_device() as loop:
        try:
            _run(["instance", "set", "vm2", "--lab", lab_name, "--disk", f"{loop}:write_bytes_sec=1mb"])
            procs.append(lab_spawn(lab_name, "vm1", [sys.executable, "-c", "while True: pass"]))
            with open(os.devnull, "w") as devnull:  # the child keeps its own copy of the descriptor
                procs.append(lab_spawn(lab_name, "vm2", ["dd", "if=/dev/zero", f"of={loop}", "bs=64k",
                                                         "count=1000", "oflag=direct"], stdout=devnull, stderr=devnull))
            vm1, vm2, devno = lab_group(lab_name, "vm1"), lab_group(lab_name, "vm2"), block_device(loop)
            stderr.print("  vm1 busy loop, vm2 direct writes to its loop device, 4 s ...")
            time.sleep(1.0)
            t0, cpu0 = time.monotonic(), vm1.usage().cpu_ns or 0
            io0 = vm2.usage().io.get(devno, {}).get("write_bytes", 0)
            time.sleep(3.0)
            elapsed = time.monotonic() - t0
            cpu = ((vm1.usage().cpu_ns or 0) - cpu0) / 1e9 / elapsed
            rate = (vm2.usage().io.get(devno, {}).get("write_bytes", 0) - io0) / elapsed
        finally:
            for p in procs:
                p.kill()
                p.wait()
    table = Table(title="CPU and disk limits on the lab instances (measured from their cgroups' counters, 3 s)",
                  title_justify="left", show_edge=False)
    for col in ("instance", "cgroup", "limit", "load", "measured"):
        table.add_column(col)
    held = vm1.read_cpu()
    weight = f"shares {held.shares}" if held.shares is not None else f"weight {held.weight}"
    table.add_row("vm1", vm1.path, f"cpu quota {held.quota_us}/{held.period_us} us "
                  f"({(held.cpus or 0) * 100:g} % of a CPU), {weight}", "busy loop",
                  f"{cpu * 100:.1f} % of a CPU")
    table.add_row("vm2", vm2.path, f"write_bytes_sec 1 MiB/s on {os.path.basename(loop)}", "dd bs=64k oflag=direct",
                  f"{rate / 1048576:.3f} MiB/s")
    stdout.print(table)
    stdout.print("Buffered writes are throttled too, but per 4 KiB page as the page cache writes them back: an "
                 "IOPS limit then caps buffered throughput at IOPS x 4 KiB.")


DEMO_MONITOR = """\
interval: 0.5
detectors: {packet_rate_pps: 20000, syn_min_pps: 1000, for_seconds: 1}
response: {cooldown: 3, quarantine: {egress: {rate: 1mbit, pps: 1000}}}
"""


def _watch_section(lab_name: str, netns: str, store) -> None:
    """`vmqos top` under traffic, then a SYN flood from vm3 answered by the monitor, then per-IP usage."""
    import time

    from vmqos.monitor.daemon import Monitor, load_config  # lazy: pyroute2

    lab = Lab(lab_name)
    vm1, vm3 = lab.instance(1), lab.instance(3)
    with running(["iperf3", "-s", "-1", "-p", "5210"], vm1.netns, delay=0.3), \
            running(["iperf3", "-c", vm1.address, "-p", "5210", "-t", "3"], lab.wan_ns, delay=0.8):
        _run(["top", "--netns", netns, "--once", "--interval", "1"])
    stdout.print()
    stdout.rule(f"[bold]a SYN flood from vm3 (hping3 --flood -S, 6 s) and `vmqos monitor --netns {netns}`",
                align="left")
    seen = last_event_id(store, netns)
    start = time.monotonic()
    with running(["timeout", "6", "hping3", "--flood", "-S", "-q", "-p", "80", lab.wan_address], vm3.netns), \
            Monitor(store, netns, load_config(DEMO_MONITOR)) as mon:
        while time.monotonic() - start < 16:
            step = mon.step()
            for ev in events(store, netns, after_id=seen):
                seen = ev.id
                where = ev.port + (f" {ev.direction}" if ev.direction else "")
                stdout.print(f"  +{time.monotonic() - start:4.1f} s  {ev.kind:<11} {where}: {ev.message}")
            held = step.rates.get(vm3.port)
            if held and "egress" in held.rates and any(a.kind == "quarantine" for a in step.actions):
                stdout.print(f"           (vm3 offered {held.rates['egress'].offered_pps:,.0f} packets/s)")
            if any(a.kind == "lift" for a in step.actions):
                break
            time.sleep(0.5)
    _run(["events", "--netns", netns, "--since", "10m", "--limit", "12"])
    _run(["usage", "--netns", netns, "--by", "day", "--min-bytes", "1kb"])


DEMO_PLOTS = "vmqos-demo-out"  # relative to where the demo runs; `make demo` runs it in the checkout


def _verify_section(lab_name: str) -> None:
    """`vmqos verify` of every demo port, TCP both ways for 3 s each (vm2: 5 s), plots in ./vmqos-demo-out/."""
    import os

    from vmqos.verify.plot import default_base  # lazy: imports verify.run (pyroute2)

    out = os.path.abspath(DEMO_PLOTS)
    stdout.print(f"verify writes its plots (PNG and SVG) to {out}/")
    lab = Lab(lab_name)
    for inst in lab.instances(3):
        # vm2's 3 Mbit/s needs 5 s: a queue sends 64 KB GSO aggregates whole, one is 9 % of 2 s judged at 3 Mbit/s.
        seconds = "5" if inst.name == "vm2" else "3"
        # A direction without a limit is reported as "no limit" and makes verify exit 1: not a demo failure.
        _run(["verify", inst.name, "--lab", lab_name, "--traffic", "tcp", "--duration", seconds, "--plot-dir", out],
             ok=(0, 1))
    stdout.print()
    stdout.print(f"plots written to {out}/:")
    for inst in lab.instances(3):
        for direction in ("ingress", "egress"):
            base = default_base(inst.port, direction, "tcp", out)
            stdout.print(f"  {base}.png  {base}.svg")


SECTIONS = ("traffic", "cpu-disk", "watch", "verify", "openstack", "fleet")
HOST_FILE_SECTIONS = {"traffic", "cpu-disk", "watch", "verify"}  # they run on the demo host file's limits


@click.command()
@click.option("--lab", "lab_name", default="lab", show_default=True, metavar="NAME",
              help="The lab to build and remove (1 to 8 of a-z, 0-9, '-').")
@click.option("--only", "only", multiple=True, type=click.Choice(SECTIONS), metavar="SECTION",
              help=f"Run only this section (repeatable; {', '.join(SECTIONS)}): the lab is built and removed "
                   "all the same, the host file applied when a section needs it.")
def demo(lab_name: str, only: tuple[str, ...]) -> None:
    """Run the demo: a lab of namespaces, the seed examples applied to it, and real traffic.

    \b
    Brings up the lab `lab` (--lab NAME: another; 4 instances), applies the demo host file: the m1.resquota flavor
    (seed 003) on vm1, the bw-limiter and dscp-marking Neutron policies on vm2 and vm3; drives
    TCP both ways through every port and a UDP flood from vm2, and prints offered / delivered /
    dropped per port (traffic). Then CPU and disk: vm1 gets its flavor's shares and a 20 % quota, vm2 a
    1 MiB/s write limit on a loop device; a busy loop and direct writes show both hold (cpu-disk). Then
    `vmqos top` under traffic, a SYN flood from vm3 that the monitor detects, quarantines and
    lifts, the events and the per-IP usage (watch). Then `vmqos verify` of each port (TCP, 3 s each way;
    5 s for vm2's 3 Mbit/s) judges it against its limits and writes its plots to ./vmqos-demo-out/ (verify).
    Last, the seeds' workflow through the real openstack CLI (openstack, about a minute): a throw-away
    `vmqos server --all-in-one` on the lab's host, the bw-limiter policy set on vm4's port, read back
    from the kernel and verified with traffic, its rule changed live, then unset; the seed's flavor and
    a front-end volume QoS spec as vmqos reads them.
    Then the fleet (fleet, about two minutes): `vmqos lab up --hosts 2` builds a server and two lab
    hosts with an agent each; the seed's bw-limiter on a port of each host through the openstack CLI,
    its shared rule changed once, a VM reboot that keeps its limit, a SYN flood from vm1 that its
    host's agent quarantines and the server lists fleet-wide until it is lifted, the server killed with
    -9 while the limits hold, and a change after it comes back; each measured with traffic.
    The lab (and the loop device) are removed at the end unless KEEP=1 is set.
    """
    import os

    from vmqos.cli.demo_openstack import INSTANCE, openstack_section
    from vmqos.lab.control_plane import openstack_cli

    chosen = set(only or SECTIONS)
    if chosen & {"openstack", "fleet"}:
        openstack_cli()  # one line before anything is built when the client is missing
    d = demo_dir()
    if not only:
        for args in (["convert", "--from", "nova", "--to", "libvirt", f"{d}/m1.resquota.specs"],
                     ["plan", "--port", "tap-vm2", "--policy", f"{d}/bw-limiter.json"]):
            _run(args)
    lab = Lab(lab_name)
    host_file = bool(chosen & HOST_FILE_SECTIONS)
    stdout.print()
    stdout.rule(f"[bold]$ vmqos lab up --name {lab.name} --instances {INSTANCE}"
                + (f" && vmqos apply -f host.yaml --netns {lab.host_ns}" if host_file else ""), align="left")
    lab_up(lab.name, INSTANCE)
    try:
        if host_file:
            _host_file_sections(lab, d, chosen)
        if "verify" in chosen:
            stdout.print()
            stdout.rule("[bold]verification: real traffic through every port, judged against its limits",
                        align="left")
            _verify_section(lab.name)
        if "openstack" in chosen:
            stdout.print()
            stdout.rule("[bold]the seeds' workflow through the openstack CLI: vmqos server --all-in-one on "
                        f"{lab.host_ns}", align="left")
            openstack_section(lab.name)
            if host_file:  # the server's database and the host file's share the namespace, not a device
                _run(["check", "--netns", lab.host_ns])
        if "fleet" in chosen:
            from vmqos.cli.demo_fleet import fleet_section

            stdout.print()
            stdout.rule("[bold]the fleet: vmqos server, two lab hosts, an agent on each", align="left")
            fleet_section(lab.name)
    finally:
        if os.environ.get("KEEP") == "1":
            stdout.print(f"lab kept (KEEP=1): `vmqos lab list`, `vmqos port show tap-vm1 --netns {lab.host_ns}`, "
                         f"`vmqos lab down --name {lab.name}` when done")
        else:
            lab_down(lab.name)
            stdout.print(f"lab {lab.name} torn down (KEEP=1 keeps it)")
    stdout.print()
    stdout.print("[bold green]demo finished:[/] every step above ran the real vmqos commands on this host's kernel.")


def _host_file_sections(lab: Lab, d: str, chosen: set[str]) -> None:
    """The demo host file applied to the lab, then the sections that run on its limits."""
    with open(f"{d}/host.yaml") as f:
        state, notes = read_host_with_notes(f.read())
    print_notes(notes)
    with open_store(None) as store:
        report = apply_host(store, lab.host_ns, state, prune=True)
        for r in report.results:
            stdout.print(f"{r.port}: {r.error or f'{r.writes} kernel objects written'}")
        if not report.ok:
            raise click.ClickException("applying the demo host file failed")
        for port in ("tap-vm1", "tap-vm2", "tap-vm3"):
            _run(["port", "show", port, "--netns", lab.host_ns])
        if "traffic" in chosen:
            stdout.print()
            stdout.rule("[bold]traffic", align="left")
            _traffic_table(lab.name, lab.host_ns, store)
        if "cpu-disk" in chosen:
            stdout.print()
            stdout.rule("[bold]CPU and disk", align="left")
            _cpu_disk_table(lab.name, store)
            _run(["instance", "show", "vm1", "--lab", lab.name])
        if "watch" in chosen:
            stdout.print()
            stdout.rule("[bold]watching: top, a flood and its answer, usage per IP", align="left")
            _watch_section(lab.name, lab.host_ns, store)
