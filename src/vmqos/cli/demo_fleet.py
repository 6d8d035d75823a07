"""`vmqos demo`'s fleet section: a server, two lab hosts with an agent each, the seed's commands through `openstack`.

The story of issue 15, on this machine: `vmqos lab up --hosts 2` (a server in its control namespace,
an agent inside each host), seed 003's bw-limiter set on a port of each host with the real
`openstack` CLI, read back from each host's kernel and measured with traffic; the shared rule changed
once and both hosts following; a VM "reboot" (its tap deleted and created again, as libvirt does)
that keeps its limit; a SYN flood from vm1 on host 1 that its agent's monitor quarantines, read back
from the server (`vmqos fleet quarantines`: fleet-wide, not from the host) until it is lifted; the
server killed with -9 while the limits hold; the server back and a change
reaching both hosts again. Each kernel is read with vmqos's own read-back (`services.ports.show_port`
on the agent's cache), each timing is from the command's return to that read-back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
from rich.text import Text

from vmqos.cli.demo_openstack import egress_held, field
from vmqos.cli.demo_steps import announce, print_output, vmqos_step
from vmqos.cli.output import stdout
from vmqos.core.errors import NotFound
from vmqos.core.units import human_rate
from vmqos.lab import fleet as fleets
from vmqos.lab import lab_up
from vmqos.lab.control_plane import CliRun, OpenStack
from vmqos.lab.fleet_topology import Fleet, FleetHost
from vmqos.lab.traffic import running
from vmqos.services.ports import open_store, show_port
from vmqos.services.results import PortShow

HOSTS = 2
KERNEL_WAIT_S = 15.0  # the agents follow within about a second; a bound, not a measurement
FLOOD_S = 6  # hping3's flood; the lab's monitor (lab.fleet.LAB_MONITOR) quarantines after 1 s, lifts 3 s after


@dataclass(frozen=True)
class Row:
    step: str
    seen: str
    measured: str


class FleetDemo:
    def __init__(self, fleet: Fleet, client: OpenStack) -> None:
        self.fleet, self.client = fleet, client
        self.rows: list[Row] = []
        self.rule = ""  # the bw-limiter's bandwidth_limit rule
        self.where = fleets.state_dir(fleet.name)

    def openstack(self, *args: str) -> CliRun:
        announce(f"$ vmqos lab openstack --name {self.fleet.name} --", args)
        done = self.client.run(args)
        print_output(done.stdout, done.stderr)
        if not done.ok:
            raise click.ClickException(f"demo step failed with exit code {done.returncode}: openstack "
                                       f"{' '.join(args)} (logs in {self.where})")
        return done

    def cache(self, host: FleetHost) -> str:
        return f"sqlite:///{self.where / f'agent-{host.name}.db'}"

    def shown(self, host: FleetHost) -> PortShow | None:
        port = host.lab.instance(1).port
        try:
            with open_store(self.cache(host), read_only=True) as store:
                return show_port(store, host.netns, port)
        except NotFound:
            return None

    def wait(self, what: str, wanted: Callable[[PortShow | None], bool],
             hosts: tuple[FleetHost, ...] | None = None) -> float:
        """Seconds until every host's read-back satisfies `wanted`."""
        start = time.monotonic()
        pending = list(hosts or self.fleet.all_hosts())
        while pending:
            pending = [h for h in pending if not wanted(self.shown(h))]
            if not pending:
                break
            if time.monotonic() - start > KERNEL_WAIT_S:
                names = ", ".join(h.name for h in pending)
                raise click.ClickException(f"{what}: not on {names} within {KERNEL_WAIT_S:g} s (agents' logs in "
                                           f"{self.where})")
            time.sleep(0.05)
        return time.monotonic() - start

    def verify(self, host: FleetHost) -> str:
        with stdout.capture() as captured:
            code = vmqos_step(["verify", "vm1", "--lab", host.name, "--db", self.cache(host), "--direction", "egress",
                               "--duration", "4", "--no-plot"], ok=(0, 1), prompt="#")
        text = captured.get()
        sys.stdout.write(text)
        sys.stdout.flush()
        found = re.search(r"^egress tcp: (.+)$", Text.from_ansi(text).plain, re.MULTILINE)
        reason = found.group(1).split(";")[0].strip() if found else "no verdict printed"
        # below the limit is not above it: on a busy machine one TCP flow may not fill a few Mbit/s
        verdict = "pass" if code == 0 else "held, below" if " under " in reason else "FAIL"
        return f"{host.name}: {verdict}: {reason}"


def _ports(demo: FleetDemo) -> None:
    demo.openstack("network", "qos", "policy", "create", "bw-limiter", "-c", "id", "-c", "name")
    demo.rule = field(demo.openstack("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps",
                                     "3000", "--max-burst-kbits", "300", "--egress", "bw-limiter", "-c", "id", "-c",
                                     "max_kbps").stdout, "id")
    demo.openstack("network", "create", "fleet-net", "-c", "id", "-c", "name")
    for host in demo.fleet.all_hosts():
        demo.openstack("port", "create", "--network", "fleet-net", "--host", host.name, "--binding-profile",
                       f"device={host.lab.instance(1).port}", "--qos-policy", "bw-limiter", f"{host.name}-vm1",
                       "-c", "id", "-c", "binding_host_id", "-c", "qos_policy_id")
    took = demo.wait("the policy's 3 Mbit/s", egress_held(3_000_000))
    for host in demo.fleet.all_hosts():
        vmqos_step(["port", "show", "tap-vm1", "--netns", host.netns, "--db", demo.cache(host)], prompt="#")
    demo.rows.append(Row("port create --host fleetN --qos-policy bw-limiter (one port per host)",
                         f"{took:.2f} s on both hosts", demo.verify(demo.fleet.host(1))))


def _shared_change(demo: FleetDemo, kbps: int, label: str) -> None:
    demo.openstack("network", "qos", "rule", "set", "--max-kbps", str(kbps), "bw-limiter", demo.rule)
    took = demo.wait(f"the rule's new {kbps} kbit/s", egress_held(kbps * 1000))
    demo.rows.append(Row(label, f"{took:.2f} s on both hosts", demo.verify(demo.fleet.host(2))))


def _reboot(demo: FleetDemo) -> None:
    host = demo.fleet.host(1)
    stdout.print(f"[bold]vm1 on {host.name} reboots:[/] its tap is deleted and created again, as libvirt does")
    fleets.unplug(host.name, "tap-vm1")
    demo.wait("the deleted tap", lambda s: s is not None and not s.kernel.in_sync, (host,))
    start = time.monotonic()
    lab_up(host.name, 1)  # tap-vm1 again, with vm1's eth0, address and route
    made = time.monotonic() - start
    took = demo.wait("the limit on the new tap", egress_held(6_000_000), (host,))
    demo.rows.append(Row(f"vm1 on {host.name} reboots (tap deleted, re-created)",
                         f"limit back {max(took, 0):.2f} s after `lab up` re-made the tap ({made:.2f} s)",
                         demo.verify(host)))


def _quarantines(demo: FleetDemo, *, show: bool = False) -> list[dict]:
    """`vmqos fleet quarantines --server URL --json` as the admin, inside the control namespace (where the
    server answers): what the server lists, not what a host holds. `show`: the table, on the terminal."""
    args = ["fleet", "quarantines", "--server", demo.fleet.server_url]
    if show:
        announce(f"# ip netns exec {demo.fleet.ctl_ns} vmqos", args)
    done = fleets.admin_vmqos(demo.fleet.name, args if show else [*args, "--json"])
    if not done.ok:
        raise click.ClickException(f"vmqos fleet quarantines failed: {done.stderr.strip() or done.stdout.strip()}")
    if show:
        print_output(done.stdout, done.stderr)
        return []
    return list(json.loads(done.stdout))


def _until_server(demo: FleetDemo, what: str, wanted: Callable[[list[dict]], bool], bound: float) -> float:
    start = time.monotonic()
    while not wanted(_quarantines(demo)):
        if time.monotonic() - start > bound:
            raise click.ClickException(f"{what}: not within {bound:g} s (agents' logs in {demo.where})")
        time.sleep(0.2)
    return time.monotonic() - start


def _flood(demo: FleetDemo) -> None:
    host = demo.fleet.host(1)
    vm1 = host.lab.instance(1)
    stdout.print(f"[bold]vm1 on {host.name} floods:[/] hping3 --flood -S for {FLOOD_S} s towards the lab's wan; "
                 f"the monitor inside {host.name}'s agent answers, and the server lists the quarantine")
    mine = lambda q: q["host"] == host.name and q["device"] == vm1.port  # noqa: E731
    flood = ["timeout", str(FLOOD_S), "hping3", "--flood", "-S", "-q", "-p", "80", host.lab.wan_address]
    with running(flood, vm1.netns) as proc:
        took = _until_server(demo, "the quarantine on the server", lambda qs: any(mine(q) for q in qs),
                             FLOOD_S + KERNEL_WAIT_S)
        detector = next(q["reason"] for q in _quarantines(demo) if mine(q)).split(":")[0]  # the table has it all
        _quarantines(demo, show=True)
        proc.wait(FLOOD_S + 10)  # its whole length: killing `timeout` would leave hping3 flooding
    lifted = _until_server(demo, "the lifted quarantine", lambda qs: not any(mine(q) for q in qs), KERNEL_WAIT_S)
    _quarantines(demo, show=True)
    stdout.print(f"the quarantine is lifted: {vm1.port} on {host.name} is held by the bw-limiter again")
    demo.rows.append(Row(f"hping3 SYN flood from vm1 on {host.name} ({FLOOD_S} s)",
                         f"quarantined ({detector}) {took:.1f} s into the flood, listed by the server; "
                         f"lifted, the server lists none, {lifted:.1f} s after the flood ended",
                         demo.verify(host)))


def _server_killed(demo: FleetDemo) -> None:
    stdout.print("[bold]the server is killed (-9):[/] the agents keep enforcing their cached state")
    fleets.stop(demo.fleet.name, "server", signal.SIGKILL)
    verdicts = [demo.verify(h) for h in demo.fleet.all_hosts()]
    demo.rows.append(Row("vmqos server killed -9", "limits kept on both hosts", "; ".join(verdicts)))
    fleets.start_server(demo.fleet.name, demo.fleet.hosts)
    stdout.print("the server is back: the agents resume their watch from the revision they applied")
    _shared_change(demo, 4000, "server back; network qos rule set --max-kbps 4000")


def _summary(demo: FleetDemo) -> None:
    from rich.table import Table

    table = Table(title="a fleet of two lab hosts: one shared bw-limiter, set once through the openstack CLI",
                  title_justify="left", show_edge=False)
    for col in ("what happened", "on the kernels (agents' read-back)", "measured (vmqos verify, egress)"):
        table.add_column(col)
    for row in demo.rows:
        table.add_row(row.step, row.seen, row.measured)
    stdout.print()
    stdout.print(table)


def fleet_name(lab_name: str) -> str:
    """The demo's fleet, named after its lab (a fleet's name is 1 to 7 of a-z and 0-9): lab -> lab, whose
    hosts are lab1 and lab2 beside the lab's own lab-host."""
    name = re.sub(r"[^a-z0-9]", "", lab_name)
    return (name if name[:1].isalpha() else f"f{name}")[:7]


def fleet_section(lab_name: str) -> None:
    """Run the section; the fleet is removed at the end unless KEEP=1."""
    name = fleet_name(lab_name)
    fleet = Fleet(name, HOSTS)
    announce("# vmqos", ["lab", "up", "--hosts", str(HOSTS), "--name", name, "--instances", "1"])
    status = fleets.fleet_up(name, HOSTS, 1)
    from vmqos.cli.lab_fleet import admin_client, print_fleet

    print_fleet(status)
    home = Path(tempfile.mkdtemp(prefix="vmqos-demo-fleet-"))
    try:
        demo = FleetDemo(fleet, admin_client(name, home))
        _ports(demo)
        _shared_change(demo, 6000, "network qos rule set --max-kbps 6000 (once, for both hosts)")
        _reboot(demo)
        _flood(demo)
        _server_killed(demo)
        _summary(demo)
    finally:
        if os.environ.get("KEEP") == "1":
            stdout.print(f"fleet kept (KEEP=1): `vmqos lab list --name {name}`, `vmqos lab down --name {name}`")
        else:
            fleets.fleet_down(name)
            stdout.print(f"fleet {name} torn down")
        shutil.rmtree(home, ignore_errors=True)
