"""`vmqos instance set|show`: CPU and disk limits of a lab instance, in its cgroups."""

from __future__ import annotations

from typing import Any, Callable

import click

from vmqos.cli.output import print_json, print_notes, stdout
from vmqos.cli.option_help import DB_HELP
from vmqos.core.desired.instances import EffectiveInstance, InstanceChange, parse_disk_option
from vmqos.core.errors import InvalidValue
from vmqos.core.model.cpu import CPU_FIELDS
from vmqos.lab import DEFAULT_NAME
from vmqos.services.instances import instance_set, instance_show
from vmqos.services.ports import open_store


def cpu_disk_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The CPU and disk options `instance set` and `vm set` share."""
    for option in reversed([
        click.option("--cpu-shares", type=int, metavar="N",
                     help="relative CPU weight, 2..262144 (1024 is the default; on cgroup v2 converted to a weight, "
                          "1024 -> 100); 0 returns to the flavor's"),
        click.option("--cpu-quota", type=int, metavar="US",
                     help="CPU time per period in microseconds (20000 of 100000 = 20 % of one CPU); 0 removes the cap"),
        click.option("--cpu-period", type=int, metavar="US", help="the CFS period, 1000..1000000 us (100000 default)"),
        click.option("--disk", "disks", multiple=True, metavar="DEV:KEY=VALUE,...",
                     help="disk limits with libvirt/Cinder's keys (read_bytes_sec, write_iops_sec, ...); "
                          "byte rates take tc sizes (1mb = 1 MiB/s); 0 clears a key; repeat per disk"),
        click.option("--remove-disk", "remove_disks", multiple=True, metavar="DEV",
                     help="forget a disk's own limits (what the flavor or volume says applies again)"),
        click.option("--live", is_flag=True, help="change the kernel now (with neither flag: both)"),
        click.option("--config", is_flag=True, help="change the stored desired state (with neither flag: both)"),
        click.option("--json", "as_json", is_flag=True, help="print the result as JSON"),
        click.option("--db", metavar="URL", help=DB_HELP),
    ]):
        func = option(func)
    return func


def make_change(cpu_shares: int | None, cpu_quota: int | None, cpu_period: int | None, disks: tuple[str, ...],
                remove_disks: tuple[str, ...]):
    parsed: dict[str, dict[str, int | str]] = {}
    for text in disks:
        dev, items = parse_disk_option(text)
        if dev in parsed:
            raise InvalidValue("--disk", text, f"{dev} is given twice; put all its keys in one --disk")
        parsed[dev] = items
    return InstanceChange(cpu_shares=cpu_shares, cpu_period_us=cpu_period, cpu_quota_us=cpu_quota, disks=parsed,
                          remove_disks=remove_disks)


def print_desired(desired: EffectiveInstance) -> None:
    from rich.table import Table

    table = Table(show_edge=False, title="desired", title_justify="left")
    for col in ("what", "value", "source"):
        table.add_column(col)
    cpu = desired.cpu
    for f in CPU_FIELDS:
        value = getattr(cpu, f) if cpu else None
        if cpu is not None and value is not None:
            extra = f" (cgroup v2 weight {cpu.weight})" if f == "shares" else ""
            extra = f" ({cpu.cpus * 100:g} % of a CPU)" if f == "quota_us" else extra  # type: ignore[operator]
            table.add_row(f"cpu {f}", f"{value:,}{extra}", desired.cpu_sources.get(f, ""))
    for dev, disk in desired.disks.items():
        limits, volume = disk.items(), desired.volumes.get(dev)
        if not limits:
            table.add_row(f"disk {dev}", "no limit", volume and f"volume {volume}" or "")
        for key, item in limits.items():
            table.add_row(f"disk {dev}", f"{key}={item:,}" if isinstance(item, int) else f"{key}={item}",
                          desired.disk_sources.get(dev, {}).get(key, ""))
    stdout.print(table)


@click.group()
def instance() -> None:
    """CPU and disk limits of a lab instance (its cgroups), live and in the desired state.

    An instance vmN of lab LAB has the cgroup vmqos/LAB-vmN in each hierarchy (cpu, cpuacct and
    blkio on cgroup v1; the unified tree on v2); `vmqos lab exec` runs commands in it. Its
    desired state lives with its port's, in scope LAB-host, as instance vmN.

    \b
    Examples:
      vmqos instance set vm1 --cpu-quota 20000 --cpu-period 100000     # 20 % of one CPU
      vmqos instance set vm2 --cpu-shares 2048 --lab lab
      vmqos instance set vm1 --disk loop0:write_bytes_sec=1mb,write_iops_sec=100
      vmqos instance show vm1 --json
    """


@instance.command("set")
@click.argument("inst", metavar="INST")
@click.option("--lab", default=DEFAULT_NAME, show_default=True, help="the lab the instance belongs to")
@cpu_disk_options
def instance_set_cmd(inst: str, lab: str, cpu_shares: int | None, cpu_quota: int | None, cpu_period: int | None,
                     disks: tuple[str, ...], remove_disks: tuple[str, ...], live: bool, config: bool, as_json: bool,
                     db: str | None) -> None:
    """Set INST's (vm1..) own CPU and disk limits; they replace its flavor's or volume's values.

    The kernel enforces read/write bytes and IOPS per device; bursts (*_max), totals,
    size_iops_sec and group_name are QEMU's and are refused for a lab instance (use a VM).
    All or nothing: if one cgroup file refuses its value, every file written is restored.

    \b
    Examples:
      vmqos instance set vm1 --cpu-quota 20000
      vmqos instance set vm1 --cpu-shares 512 --disk /dev/loop0:read_bytes_sec=10mb,read_iops_sec=200
      vmqos instance set vm1 --cpu-quota 0 --live      # lift the cap now, keep the stored value
    """
    change = make_change(cpu_shares, cpu_quota, cpu_period, disks, remove_disks)
    if not live and not config:
        live = config = True
    with open_store(db) as store:
        report = instance_set(store, lab, inst, change, live=live, config=config)
    if as_json:
        print_json(report)
        return
    print_notes(report.notes)
    done = f"{report.writes} cgroup file(s) written" if report.live else "the kernel was not touched (--config)"
    stdout.print(f"{inst}: {done}" + ("; stored" if report.stored else "; not stored (--live)"))
    print_desired(report.effective)


@instance.command("show")
@click.argument("inst", metavar="INST")
@click.option("--lab", default=DEFAULT_NAME, show_default=True, help="the lab the instance belongs to")
@click.option("--json", "as_json", is_flag=True, help="print everything as JSON")
@click.option("--db", metavar="URL", help=DB_HELP)
def instance_show_cmd(inst: str, lab: str, as_json: bool, db: str | None) -> None:
    """Desired CPU and disk limits with their sources, the cgroups' values, and what INST used.

    \b
    Examples:
      vmqos instance show vm1
      vmqos instance show vm2 --lab lab2 --json | jq .usage.cpu_seconds
    """
    with open_store(db, read_only=True) as store:
        shown = instance_show(store, lab, inst)
    if as_json:
        print_json(shown)
        return
    stdout.print(f"instance {inst} of lab {lab}: cgroups " + ", ".join(sorted(set(shown.cgroups.values()))))
    print_desired(shown.desired)
    cpu = shown.kernel.cpu
    weight = f"shares {cpu.shares}" if cpu.shares is not None else f"weight {cpu.weight}"
    cap = "no cap" if cpu.quota_us is None else f"quota {cpu.quota_us} / period {cpu.period_us} us " \
                                                f"({cpu.cpus * 100:g} % of a CPU)"  # type: ignore[operator]
    stdout.print(f"kernel: cpu ({cpu.version}) {weight}, {cap}")
    for dev, limits in shown.kernel.disks.items():
        stdout.print(f"kernel: disk {dev} " + ", ".join(f"{k}={v:,}" for k, v in limits.items()))
    stdout.print("kernel: in sync with the desired state" if shown.kernel.in_sync else
                 "kernel: DIFFERS from the desired state (`vmqos instance set` applies it)")
    use = shown.usage
    line = f"usage: {use.cpu_seconds:.3f} CPU-seconds" if use.cpu_seconds is not None else "usage: -"
    if use.nr_periods:
        line += f", throttled in {use.nr_throttled:,} of {use.nr_periods:,} periods"
    stdout.print(line)
    for dev, io in use.io.items():
        stdout.print(f"usage: disk {dev} " + ", ".join(f"{k} {v:,}" for k, v in io.items()))
    print_notes(shown.desired.notes)
