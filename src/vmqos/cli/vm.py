"""`vmqos vm list|show|set`: CPU, disk and network QoS of libvirt domains."""

from __future__ import annotations

import sys

import click

from vmqos.cli.instance import cpu_disk_options, make_change, print_desired
from vmqos.cli.output import print_json, print_notes, stdout
from vmqos.services.ports import open_store
from vmqos.services.vms import vm_list, vm_set, vm_show

CONNECT_HELP = "libvirt URI (default: $LIBVIRT_DEFAULT_URI or qemu:///system; test:///default for a dry run)"


@click.group()
def vm() -> None:
    """QoS of libvirt domains: CPU through libvirt's scheduler parameters, disks through QEMU's
    throttling (`<iotune>`), network through vmqos's own shaping of the domain's tap.

    libvirt's own network limits (`virsh domiftune`) use tc's sfq, fw and police, which a host
    may lack (then they fail half-way); vmqos shapes the tap with the same planner as
    `vmqos port set`, so the tap gets exactly what `port set` would give it.

    \b
    Examples:
      vmqos vm list
      vmqos vm set web1 --cpu-shares 512 --cpu-quota 20000 --cpu-period 100000
      vmqos vm set web1 --disk vda:total_bytes_sec=10mb,total_iops_sec=500 --live
      vmqos vm set web1 --outbound 12800,0,0          # 100 Mbit/s from the VM, as domiftune
      vmqos vm show web1 --json
    """


@vm.command("list")
@click.option("--connect", metavar="URI", help=CONNECT_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
def vm_list_cmd(connect: str | None, as_json: bool) -> None:
    """The domains with their state, taps and disks."""
    domains = vm_list(connect)
    if as_json:
        print_json(domains)
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("domain", "state", "vcpus", "interfaces (tap)", "disks"):
        table.add_column(col)
    for d in domains:
        table.add_row(d.name, d.state, str(d.vcpus), ", ".join(i.target or "-" for i in d.interfaces) or "-",
                      ", ".join(f"{x.target}" for x in d.disks if x.device == "disk") or "-")
    stdout.print(table)


@vm.command("show")
@click.argument("domain")
@click.option("--connect", metavar="URI", help=CONNECT_HELP)
@click.option("--json", "as_json", is_flag=True, help="print everything as JSON")
@click.option("--db", metavar="URL", help="desired-state database URL")
def vm_show_cmd(domain: str, connect: str | None, as_json: bool, db: str | None) -> None:
    """Desired limits, what libvirt reports (live and in the definition), the cgroups and the taps.

    \b
    Example: vmqos vm show web1 --json | jq .libvirt.live.cpu
    """
    with open_store(db, read_only=True) as store:
        shown = vm_show(store, connect, domain)
    if as_json:
        print_json(shown)
        return
    dom = shown.domain
    stdout.print(f"domain {dom.name} ({dom.driver}, {dom.state}, {dom.vcpus} vCPU) at {shown.uri}")
    print_desired(shown.desired)
    for where, section in shown.libvirt.items():
        cpu = section.cpu
        stdout.print(f"libvirt {where}: cpu " + (cpu["error"] if "error" in cpu else
                                                 ", ".join(f"{k}={v}" for k, v in cpu.items())))
        for target, limits in section.disks.items():
            stdout.print(f"libvirt {where}: disk {target} " +
                         (", ".join(f"{k}={v:,}" for k, v in limits.items()) or "no limit"))
    cg = shown.kernel.cgroups
    if cg:
        vcpus = ", ".join(f"{n} quota {v['cpu.cfs_quota_us'] or v['cpu.max']}" for n, v in cg["vcpus"].items())
        stdout.print(f"kernel: {cg['path']}: cpu.shares {cg['cpu.shares']}; {vcpus}")
    for tap, port in shown.kernel.ports.items():
        if port is None:
            stdout.print(f"kernel: tap {tap}: not limited by vmqos")
            continue
        rates = []
        for direction in ("ingress", "egress"):
            rate = getattr(port.desired, direction).rate_bps
            if rate:
                rates.append(f"{direction} {rate:,} bit/s")
        sync = "in sync" if port.kernel.in_sync else "DRIFT"
        stdout.print(f"kernel: tap {tap}: {', '.join(rates) or 'no limit'} ({sync})")
    print_notes(shown.desired.notes)


@vm.command("set")
@click.argument("domain")
@click.option("--connect", metavar="URI", help=CONNECT_HELP)
@click.option("--inbound", metavar="A,P,B[,F]", help="towards the VM, as virsh domiftune (kB/s, KiB); 0 clears")
@click.option("--outbound", metavar="A,P,B", help="sent by the VM, same units; 0 clears")
@click.option("--interface", metavar="TAP", help="which interface (tap device) --inbound/--outbound limit")
@click.option("--force", is_flag=True, help="replace qdiscs or filters on the tap that vmqos did not make "
              "(libvirt's own noqueue root is replaced without it)")
@cpu_disk_options
def vm_set_cmd(domain: str, connect: str | None, inbound: str | None, outbound: str | None, interface: str | None,
               cpu_shares: int | None, cpu_quota: int | None, cpu_period: int | None, disks: tuple[str, ...],
               remove_disks: tuple[str, ...], live: bool, config: bool, as_json: bool, db: str | None,
               force: bool) -> None:
    """Set a domain's CPU, disk and network limits: --live on the running domain, --config in its
    definition (`<cputune>`, `<iotune>`, `<bandwidth>`), neither: both.

    CPU: --cpu-quota and --cpu-period are per vCPU (libvirt's vcpu_quota, as Nova's
    `<cputune>`). On a cgroup v2 host libvirt writes shares unconverted into cpu.weight
    (1..10000), so larger shares are refused (Nova LP#1978489). Disks: every `<iotune>` key
    (QEMU enforces totals, bursts, size_iops_sec and groups). A failed step restores the
    values changed before it.

    \b
    Examples:
      vmqos vm set web1 --cpu-quota 20000 --live
      vmqos vm set web1 --disk vda:read_iops_sec=200,read_iops_sec_max=1000,read_iops_sec_max_length=10
      vmqos vm set web1 --inbound 1000,2000,100 --interface vnet0
    """
    change = make_change(cpu_shares, cpu_quota, cpu_period, disks, remove_disks)
    if not live and not config:
        live = config = True
    with open_store(db) as store:
        report = vm_set(store, connect, domain, change, inbound=inbound, outbound=outbound, interface=interface,
                        live=live, config=config, force=force)
    if as_json:
        print_json(report)
        sys.exit(0)
    print_notes(report.notes)
    for item in report.applied:
        stdout.print(f"{domain}: {item}")
    if report.network is not None:
        for r in report.network.results:
            stdout.print(f"{r.port}: {len(r.ops)} change(s)" + (f": {r.error}" if r.error else ""))
    print_desired(report.effective)
