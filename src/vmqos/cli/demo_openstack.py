"""`vmqos demo`'s OpenStack section: the seeds' workflow, start to end, through the real `openstack` CLI.

Seed 003's commands (`network qos policy create bw-limiter`, `network qos rule create --type
bandwidth-limit --max-kbps 3000 --max-burst-kbits 300 --egress bw-limiter`, `port set --qos-policy`,
`flavor set --property quota:...`, `volume qos create --consumer front-end ...`), run by
python-openstackclient against a throw-away `vmqos server --all-in-one` that enforces the lab
host's ports (the stand-in for the agents of issue 15). The kernel is read back with vmqos's own
read-back (`vmqos port show`, `services.ports`) and the limit measured with real traffic
(`vmqos verify`); a rule changed live, then the policy unset, is seen and measured the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
from rich.text import Text

from vmqos.cli.demo_steps import announce, print_output, vmqos_step
from vmqos.cli.output import stderr, stdout
from vmqos.core.errors import NotFound
from vmqos.core.model import DiskQos
from vmqos.core.model.host import Flavor
from vmqos.core.plan.tc_objects import HtbClass
from vmqos.core.units import human_rate, human_size
from vmqos.lab import Lab, LabInstance
from vmqos.lab.control_plane import AllInOneServer, CliRun, OpenStack, openstack_cli
from vmqos.lab.traffic import iperf3
from vmqos.services.cinder_volumes import VolumeQos, volume_disk_qos
from vmqos.services.flavors import flavor_qos
from vmqos.services.ports import device_objects, open_store, show_port
from vmqos.services.results import PortShow

INSTANCE = 4  # vm4: the lab's instance whose port OpenStack owns (vm1..3 are the host file's)
ADMIN_PASSWORD = "demo-secret"  # of a database that lives as long as the section
KERNEL_WAIT_S = 10.0  # the server enforces within about a second; a bound, not a measurement
# seed 003, m1.resquota
FLAVOR_PROPERTIES = {
    "quota:cpu_shares": "512", "quota:disk_read_bytes_sec": "1000000", "quota:disk_write_bytes_sec": "1024000",
    "quota:vif_outbound_average": "32768", "quota:vif_outbound_peak": "65536", "quota:vif_outbound_burst": "131072",
    "quota:vif_inbound_average": "32768", "quota:vif_inbound_peak": "65536", "quota:vif_inbound_burst": "131072",
}


@dataclass(frozen=True)
class Row:
    """One line of the section's summary: what the operator did, what the kernel held, what traffic showed."""

    step: str
    kernel: str
    after_s: str
    measured: str


class Section:
    """The section's state: the lab, the server, the client, and what the summary will say."""

    def __init__(self, lab: Lab, server: AllInOneServer, client: OpenStack) -> None:
        self.lab, self.server, self.client = lab, server, client
        self.instance: LabInstance = lab.instance(INSTANCE)
        self.rows: list[Row] = []

    def fail(self, what: str) -> click.ClickException:
        return click.ClickException(f"{what} (the server's log: {self.server.log_path})")

    def openstack(self, *args: str) -> CliRun:
        """`openstack ARGS`, shown as typed and printed as it printed; the demo stops when it fails."""
        announce("$ openstack", args)
        done = self.client.run(args)
        print_output(done.stdout, done.stderr)
        if not done.ok:
            raise self.fail(f"demo step failed with exit code {done.returncode}: openstack {' '.join(args)}")
        return done

    def kernel(self, what: str, wanted: Callable[[PortShow | None], bool]) -> tuple[PortShow | None, float]:
        """Poll vmqos's read-back of the port until `wanted` holds (None: the port is not managed any more)."""
        start = time.monotonic()
        while True:
            with open_store(self.server.db, read_only=True) as store:
                try:
                    shown: PortShow | None = show_port(store, self.lab.host_ns, self.instance.port)
                except NotFound:
                    shown = None
            if wanted(shown):
                return shown, time.monotonic() - start
            if not self.server.alive():
                raise self.fail(f"vmqos server stopped while the demo waited for {what}")
            if time.monotonic() - start > KERNEL_WAIT_S:
                raise self.fail(f"{what}: not on {self.instance.port} within {KERNEL_WAIT_S:g} s")
            time.sleep(0.1)


def field(table: str, name: str) -> str:
    """A field of the openstack CLI's `show`-style table (`| id | 3f82… |`)."""
    found = re.search(rf"^\|\s*{re.escape(name)}\s*\|\s*(\S+)", table, re.MULTILINE)
    if not found:
        raise click.ClickException(f"the openstack CLI printed no {name!r} field: {table.strip()[:300]}")
    return found.group(1)


def egress_held(rate_bps: int) -> Callable[[PortShow | None], bool]:
    """The port wants `rate_bps` out of the instance, and the kernel holds it (an HTB class at that rate)."""
    def held(shown: PortShow | None) -> bool:
        return (shown is not None and shown.kernel.in_sync and shown.desired.egress.rate_bps == rate_bps
                and any(isinstance(o, HtbClass) and o.rate_bps == rate_bps for o in shown.kernel.objects))
    return held


def _limit(shown: PortShow | None) -> str:
    want = shown.desired.egress if shown else None
    if want is None or not want.rate_bps:
        return "no limit"
    burst = f", burst {want.burst_bytes:,} bytes" if want.burst_bytes else ""
    return f"{human_rate(want.rate_bps)}{burst}"


def _verify(sec: Section, seconds: str) -> str:
    """`vmqos verify` of the instance's egress against the server's desired state, printed as it prints;
    its verdict line for the summary (`achieved 2.998 Mbit/s, within 5% of 3 Mbit/s`)."""
    with stdout.capture() as captured:  # the table comes at the end anyway; progress goes to stderr, live
        code = vmqos_step(["verify", sec.instance.name, "--lab", sec.lab.name, "--db", sec.server.db, "--direction",
                           "egress", "--duration", seconds, "--no-plot"], ok=(0, 1), prompt="#")
    text = captured.get()
    sys.stdout.write(text)
    sys.stdout.flush()
    found = re.search(r"^egress tcp: (.+)$", Text.from_ansi(text).plain, re.MULTILINE)
    reason = found.group(1).split(";")[0].strip() if found else "no verdict printed"  # its first clause
    return f"pass: {reason}" if code == 0 else f"FAIL: {reason}"


def _network_qos(sec: Section) -> None:
    inst, ns = sec.instance, sec.lab.host_ns
    sec.openstack("network", "qos", "policy", "create", "bw-limiter")
    rule = field(sec.openstack("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "3000",
                               "--max-burst-kbits", "300", "--egress", "bw-limiter").stdout, "id")
    sec.openstack("network", "create", "demo-net", "-c", "id", "-c", "name", "-c", "status")
    sec.openstack("port", "create", "--network", "demo-net", "--host", sec.server.host, "--binding-profile",
                  f"device={inst.port}", f"{inst.name}-port", "-c", "id", "-c", "name", "-c", "binding_host_id",
                  "-c", "binding_vif_details", "-c", "qos_policy_id")
    sec.openstack("port", "set", "--qos-policy", "bw-limiter", f"{inst.name}-port")
    shown, took = sec.kernel("the policy's 3 Mbit/s", egress_held(3_000_000))
    vmqos_step(["port", "show", inst.port, "--netns", ns, "--db", sec.server.db], prompt="#")
    sec.rows.append(Row("port set --qos-policy bw-limiter", _limit(shown), f"{took:.1f} s", _verify(sec, "5")))

    sec.openstack("network", "qos", "rule", "set", "--max-kbps", "6000", "bw-limiter", rule)
    shown, took = sec.kernel("the rule's new 6 Mbit/s", egress_held(6_000_000))
    vmqos_step(["port", "show", inst.port, "--netns", ns, "--db", sec.server.db], prompt="#")
    sec.rows.append(Row("network qos rule set --max-kbps 6000", _limit(shown), f"{took:.1f} s", _verify(sec, "5")))

    sec.openstack("port", "unset", "--qos-policy", f"{inst.name}-port")
    _, took = sec.kernel("the port's release", lambda s: s is None)
    left = device_objects(ns, inst.port)
    if left:
        raise sec.fail(f"{inst.port} still holds {', '.join(o.describe() for o in left)} after `port unset`")
    stdout.print(f"{inst.port} in {ns}, read back from the kernel: no qdisc, class, filter or nft chain of vmqos")
    stderr.print(f"  {inst.name} egress tcp, 2 s ...")
    result = iperf3(sec.lab.wan_ns, sec.lab.wan_address, inst.netns, seconds=2)
    goodput = human_rate(int(result.received_bps))
    stdout.print(f"{inst.name} sends {goodput} (iperf3 goodput, 2 s): no limit any more")
    sec.rows.append(Row("port unset --qos-policy", "no limit (nothing of vmqos on the device)", f"{took:.1f} s",
                        f"iperf3 goodput {goodput}"))


def _disk_text(disk: DiskQos | None) -> str:
    """The disk QoS by its own (libvirt, Cinder) names, which carry their units: bytes or I/Os per second."""
    if disk is None:
        return "none"
    parts = [f"{name} {value:,}" if isinstance(value, int) else f"{name} {value}"
             for name, value in vars(disk).items() if value is not None]
    return ", ".join(parts) or "none"


def _flavor_text(flavor: Flavor) -> list[str]:
    qos, lines = flavor.qos, []
    if qos.network is not None:
        for direction in ("ingress", "egress"):
            bw = getattr(qos.network, direction).bandwidth
            if bw is not None:
                peak = f", peak {human_rate(bw.peak_bps)}" if bw.peak_bps else ""
                burst = f", burst {human_size(bw.burst_bytes)}" if bw.burst_bytes else ""
                lines.append(f"network {direction}: {human_rate(bw.rate_bps)}{peak}{burst}")
    if qos.cpu is not None:
        lines.append("cpu: " + ", ".join(f"{k} {v}" for k, v in vars(qos.cpu).items() if v is not None))
    if qos.disk is not None:
        lines.append(f"disk: {_disk_text(qos.disk)}")
    return lines + [f"note: {n.field}: {n.message}" for n in qos.notes]


def _volume_text(vol: VolumeQos) -> str:
    return f"volume {vol.volume_id} ({vol.size_gb} GB), consumer {vol.consumer}: {_disk_text(vol.disk)}"


def _flavors_and_volumes(sec: Section) -> None:
    made = sec.openstack("flavor", "create", "--ram", "1024", "--disk", "20", "--vcpus", "1", "m1.resquota",
                         "-c", "id", "-c", "name", "-c", "properties")
    flavor_id = field(made.stdout, "id")
    sec.openstack("flavor", "set", "m1.resquota", *[a for k, v in FLAVOR_PROPERTIES.items()
                                                     for a in ("--property", f"{k}={v}")])
    sec.openstack("volume", "qos", "create", "--consumer", "front-end", "--property", "read_bytes_sec=1000000",
                  "--property", "write_bytes_sec=1024000", "--property", "total_iops_sec_per_gb=10", "qos-fe")
    sec.openstack("volume", "type", "create", "fast", "-c", "id", "-c", "name")
    sec.openstack("volume", "qos", "associate", "qos-fe", "fast")
    volume_id = field(sec.openstack("volume", "create", "--size", "20", "--type", "fast", "vol-a", "-c", "id",
                                    "-c", "size", "-c", "type", "-c", "status").stdout, "id")
    with open_store(sec.server.db, read_only=True) as store:
        flavor, volume = flavor_qos(store, flavor_id), volume_disk_qos(store, volume_id)
    stdout.print()
    stdout.print(f"[bold]what vmqos reads from them[/] (services.flavors.flavor_qos, "
                 f"services.cinder_volumes.volume_disk_qos):")
    for line in _flavor_text(flavor):
        stdout.print(f"  flavor {flavor.name}: {line}")
    stdout.print(f"  {_volume_text(volume)}")
    stdout.print("Printed, not enforced: --all-in-one enforces ports and the host's uplink only; flavors and volumes "
                 "reach instances with the agents (issue 15), and on one host today through a host file (vm1 above) or `vmqos volume`.")


def _summary(sec: Section) -> None:
    from rich.table import Table

    table = Table(title=f"the seed's bw-limiter on {sec.instance.port} ({sec.instance.name}'s egress), through the "
                        "openstack CLI", title_justify="left", show_edge=False)
    for col in ("openstack", "kernel (vmqos's read-back)", "seen after", "measured (vmqos verify, iperf3)"):
        table.add_column(col)
    for row in sec.rows:
        table.add_row(row.step, row.kernel, row.after_s, row.measured)
    stdout.print()
    stdout.print(table)
    stdout.print("seen after: from the openstack command's return to vmqos's read-back of the kernel showing it.")


def openstack_section(lab_name: str) -> None:
    """Run the section on lab `lab_name` (up, with at least INSTANCE instances); nothing is left behind
    but the lab, and with KEEP=1 the section's directory (its database and the server's log)."""
    lab = Lab(lab_name)
    cli = openstack_cli()  # before anything starts: one line when it is missing
    tmp = Path(tempfile.mkdtemp(prefix="vmqos-demo-"))
    db = f"sqlite:///{tmp / 'server.db'}"
    keep = os.environ.get("KEEP") == "1"
    failed = True
    try:
        vmqos_step(["server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db])
        server = AllInOneServer(db, lab.host_ns, lab.host_ns, tmp / "server.log")
        announce("# vmqos", server.argv, " &")
        with server:
            stdout.print(f"serving on {server.url}, enforcing the ports bound to host {server.host} on netns "
                         f"{lab.host_ns} (its log: {server.log_path})")
            client = OpenStack(cli, f"{server.url}/v3", "admin", ADMIN_PASSWORD, "admin", tmp)
            stdout.print()
            stdout.print(f"[bold]$ {client.exports()}", soft_wrap=True)
            sec = Section(lab, server, client)
            _network_qos(sec)
            _flavors_and_volumes(sec)
        log = server.log_path.read_text(errors="replace")
        if server.returncode != 0 or "Traceback" in log:
            raise click.ClickException(f"vmqos server exited with status {server.returncode}"
                                       f"{' after a traceback' if 'Traceback' in log else ''} (its log: {server.log_path})")
        stdout.print()
        stdout.print(f"vmqos server stopped (exit status 0); the openstack CLI: {cli}")
        _summary(sec)
        failed = False
    finally:
        if keep or failed:
            stdout.print(f"the section's database and server log kept in {tmp}"
                         + (" (KEEP=1)" if keep else " (it failed)"))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
