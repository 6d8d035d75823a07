"""Build, read back, enter and remove a lab (its shape is in `vmqos.lab.topology`).

Every device is created from inside the lab (`ip -n LAB-host link add tap-vm1 type veth peer
name eth0 netns LAB-vm1`), so the root namespace never holds a lab device, not even for a moment.
Each namespace is read with one `ip -j -batch` and changed with one `ip -batch`, and only what is
missing is created, so `up` is idempotent, finishes a half-built lab and takes about a second.

Each instance also gets its own cgroup, `vmqos/LAB-vmN`, in every hierarchy that holds CPU
limits, CPU usage or disk limits (on cgroup v1: cpu, cpuacct and blkio, three hierarchies).
`lab exec` places the command in it before it starts; `lab down` kills what runs there and
removes it. Only these groups are ever created or removed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from vmqos.core.errors import InvalidValue, KernelError, NotFound
from vmqos.drivers.cgroup import PARENT, Group, host_layout, remove_parent_if_empty
from vmqos.drivers.process import NETNS_DIR, in_netns, netns_exists, run
from vmqos.lab.topology import (
    BRIDGE,
    GUEST_DEVICE,
    UPLINK,
    Lab,
    LabInstance,
    LabStatus,
    differences,
)


@dataclass(frozen=True)
class _Link:
    name: str
    mac: str
    up: bool  # administratively (IFF_UP)
    master: str
    ipv4: tuple[str, ...]  # "a.b.c.d/len"


@dataclass(frozen=True)
class _Netns:
    """What `ip -j addr` and `ip -j route show default` say about one namespace."""

    links: tuple[_Link, ...]
    default_via: str

    def link(self, name: str) -> _Link | None:
        return next((link for link in self.links if link.name == name), None)

    def is_up(self, name: str) -> bool:
        link = self.link(name)
        return link is not None and link.up


def _documents(text: str) -> list[list[dict]]:
    """The JSON arrays that `ip -j -batch` prints, one line per command (-j without -p)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _read(netns: str) -> _Netns:
    addrs, routes = _documents(run(["ip", "-j", "-n", netns, "-batch", "-"],
                                   input="addr show\nroute show default\n").stdout)
    links = tuple(_Link(a["ifname"], a.get("address", ""), "UP" in a.get("flags", ()), a.get("master", ""),
                        tuple(f"{i['local']}/{i['prefixlen']}" for i in a.get("addr_info", ())
                              if i.get("family") == "inet"))
                  for a in addrs)
    return _Netns(links, next((r["gateway"] for r in routes if "gateway" in r), ""))


def _batch(netns: str | None, lines: Sequence[str]) -> None:
    """Run `ip` commands in one process; a failure names the command that failed and why."""
    if not lines:
        return
    done = run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input="\n".join(lines) + "\n", check=False)
    if done.returncode != 0:
        failed = re.search(r"Command failed -:(\d+)", done.stderr)
        command = lines[int(failed.group(1)) - 1] if failed else "; ".join(lines)
        why = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("Command failed")]
        where = f"-n {netns} " if netns else ""
        raise KernelError(f"ip {where}{command}: {why[-1] if why else f'exit {done.returncode}'}")


def _namespaces(lab: Lab) -> list[str]:
    """The lab's namespaces that exist, in the order host, vm1.., wan."""
    try:
        names = [n for n in os.listdir(NETNS_DIR) if lab.owns(n)]
    except FileNotFoundError:
        return []
    order = {lab.host_ns: -1, lab.wan_ns: 1 << 30}
    return sorted(names, key=lambda n: order.get(n) or lab.index_of(n) or 0)


def _host_commands(lab: Lab, guests: Sequence[LabInstance], host: _Netns) -> list[str]:
    """What LAB-host lacks: lo up, br-int with the gateway, a port per guest (tap in br-int, wan0 routed)."""
    lines = [] if host.is_up("lo") else ["link set lo up"]
    bridge = host.link(BRIDGE)
    if bridge is None:
        lines.append(f"link add {BRIDGE} address {lab.bridge_mac} type bridge")
    if bridge is None or lab.gateway_cidr not in bridge.ipv4:
        lines.append(f"addr add {lab.gateway_cidr} dev {BRIDGE}")
    if bridge is None or not bridge.up:
        lines.append(f"link set {BRIDGE} up")
    for guest in guests:
        port = host.link(guest.port)
        if port is None:
            lines.append(f"link add {guest.port} address {guest.port_mac} type veth "
                         f"peer name {GUEST_DEVICE} address {guest.mac} netns {guest.netns}")
        if guest.port == UPLINK:
            if port is None or lab.uplink_cidr not in port.ipv4:
                lines.append(f"addr add {lab.uplink_cidr} dev {UPLINK}")
            if port is None or not port.up:
                lines.append(f"link set {UPLINK} up")
        elif port is None or port.master != BRIDGE or not port.up:
            lines.append(f"link set {guest.port} master {BRIDGE} up")
    return lines


def _guest_commands(guest: LabInstance, state: _Netns) -> list[str]:
    """What a guest lacks: lo up, eth0 addressed and up, the default route through LAB-host."""
    eth0 = state.link(GUEST_DEVICE)
    if eth0 is None:
        raise KernelError(f"{guest.netns} has no {GUEST_DEVICE} although {guest.port} exists in the host "
                          f"namespace: remove the lab with `vmqos lab down` and bring it up again")
    lines = [] if state.is_up("lo") else ["link set lo up"]
    if guest.cidr not in eth0.ipv4:
        lines.append(f"addr add {guest.cidr} dev {GUEST_DEVICE}")
    if not eth0.up:
        lines.append(f"link set {GUEST_DEVICE} up")
    if state.default_via != guest.gateway:
        lines.append(f"route replace default via {guest.gateway} dev {GUEST_DEVICE}")
    return lines


def instance_groups(lab: Lab, indexes: Sequence[int]) -> list[Group]:
    layout = host_layout()
    return [Group(layout, f"{PARENT}/{lab.instance(i).netns}") for i in indexes]


def _existing_groups(lab: Lab) -> list[Group]:
    """This lab's instance groups that exist in any hierarchy (vm1.. beyond the current count too)."""
    indexes: set[int] = set()
    for h in host_layout().mounts():
        try:
            names = os.listdir(os.path.join(h.mount, PARENT))
        except OSError:
            continue
        indexes.update(i for i in (lab.index_of(n) for n in names) if i is not None)
    return instance_groups(lab, sorted(indexes))


def lab_up(name: str, instances: int) -> LabStatus:
    """Create what the lab `name` with vm1..vm<instances> lacks; existing parts are kept as they are.

    Instances beyond `instances` are kept too: the returned status lists them.
    """
    lab = Lab(name)
    guests = (*lab.instances(instances), lab.wan)
    existing = set(_namespaces(lab))
    _batch(None, [f"netns add {ns}" for ns in (lab.host_ns, *(g.netns for g in guests)) if ns not in existing])
    _batch(lab.host_ns, _host_commands(lab, guests, _read(lab.host_ns)))
    for guest in guests:
        _batch(guest.netns, _guest_commands(guest, _read(guest.netns)))
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=lab.host_ns)
    indexes = [i for g in guests if g.name != "wan" and (i := lab.index_of(g.netns)) is not None]
    for group in instance_groups(lab, indexes):
        group.create()
    status = lab_status(name)
    assert status is not None
    return status


def _found(expected: LabInstance, guest: _Netns, host: _Netns | None) -> LabInstance:
    eth0 = guest.link(GUEST_DEVICE)
    port = host.link(expected.port) if host else None
    address = eth0.ipv4[0].split("/")[0] if eth0 and eth0.ipv4 else ""
    return LabInstance(expected.name, expected.netns, port.name if port else "", address, eth0.mac if eth0 else "",
                       port.mac if port else "")


def _problems(expected: LabInstance, found: LabInstance, guest: _Netns, host: _Netns | None) -> list[str]:
    out = differences(expected, found)
    port = host.link(expected.port) if host else None
    if port is not None and expected.port != UPLINK and port.master != BRIDGE:
        out.append(f"{expected.name}: {expected.port} is not a port of {BRIDGE}")
    if not guest.is_up(GUEST_DEVICE) or (port is not None and not port.up):
        out.append(f"{expected.name}: {GUEST_DEVICE} or {expected.port} is down")
    if guest.default_via != expected.gateway:
        out.append(f"{expected.name}: the default route is {guest.default_via or 'missing'}, "
                   f"expected via {expected.gateway}")
    return out


def lab_status(name: str) -> LabStatus | None:
    """The lab as the kernel has it (None when none of its namespaces exists)."""
    lab = Lab(name)
    present = _namespaces(lab)
    if not present:
        return None
    host = _read(lab.host_ns) if lab.host_ns in present else None
    problems = [] if host else [f"the host namespace {lab.host_ns} is missing"]
    bridge = host.link(BRIDGE) if host else None
    if host and (bridge is None or lab.gateway_cidr not in bridge.ipv4):
        problems.append(f"{lab.host_ns}: {BRIDGE} is missing or lacks {lab.gateway_cidr}")
    found: list[LabInstance] = []
    for ns in present:
        if ns == lab.host_ns:
            continue
        expected = lab.wan if ns == lab.wan_ns else lab.instance(lab.index_of(ns) or 0)
        guest = _read(ns)
        found.append(_found(expected, guest, host))
        problems += _problems(expected, found[-1], guest, host)
    if lab.wan_ns not in present:
        problems.append(f"the wan namespace {lab.wan_ns} is missing")
    wan = next((f for f in found if f.netns == lab.wan_ns), None)
    return LabStatus(name, tuple(present), bridge.mac if bridge else "",
                     bridge.ipv4[0].split("/")[0] if bridge and bridge.ipv4 else "", wan,
                     tuple(f for f in found if f is not wan), tuple(problems))


def lab_down(name: str) -> list[str]:
    """Kill the processes left in the lab's namespaces, then delete them (which deletes their devices).

    Only this lab's namespaces are touched; returns their names, [] when there was nothing.
    Processes are killed first because a namespace, and so its veths, lives as long as one remains.
    """
    lab = Lab(name)
    present = _namespaces(lab)
    for ns in present:
        for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
            if int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    _batch(None, [f"netns del {ns}" for ns in present])
    groups = _existing_groups(lab)
    for group in groups:
        group.remove(kill=True)
    if groups:
        remove_parent_if_empty(groups[0].layout)
    return present


def _entry(name: str, inst: str) -> tuple[str, Callable[[], None]]:
    """The namespace of `inst` and the function that moves a child into its cgroups (None: host, wan)."""
    lab = Lab(name)
    netns = lab.ns(inst)
    if not netns_exists(netns):
        raise NotFound(f"lab {name!r} has no {inst} (no namespace {netns}): `vmqos lab list --name {name}` shows it")
    index = lab.index_of(netns)
    group = instance_groups(lab, [index])[0] if index is not None else None
    if group is not None and not group.exists():
        raise NotFound(f"lab {name!r}: {inst} has no cgroup {group.path}: `vmqos lab up --name {name}` creates it")

    def enter() -> None:  # in the child, before exec: the command starts inside the instance's cgroups
        if group is not None:
            group.add(os.getpid())

    return netns, enter


def lab_exec(name: str, inst: str, argv: Sequence[str]) -> int:
    """Run `argv` in the namespace of `inst` (vmN, wan or host) on the caller's terminal; its exit code.

    An instance's command runs in its cgroups too, so its CPU and disk limits apply to it.
    A command killed by signal S returns 128+S, as a shell would.
    """
    if not argv:
        raise InvalidValue("command", "", "name the command to run after `--`, e.g. -- ping -c 1 10.247.0.130")
    netns, enter = _entry(name, inst)
    code = subprocess.run(in_netns(list(argv), netns), preexec_fn=enter).returncode
    return 128 - code if code < 0 else code


def lab_spawn(name: str, inst: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside `inst` (namespace and cgroups) in the background, as `lab exec` runs it."""
    if not argv:
        raise InvalidValue("command", "", "name the command to run")
    netns, enter = _entry(name, inst)
    return subprocess.Popen(in_netns(list(argv), netns), preexec_fn=enter, **popen)
