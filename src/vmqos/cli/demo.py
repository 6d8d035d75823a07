"""`vmqos demo`: conversions and plans on the seed examples (the lab replaces this later)."""

from __future__ import annotations

import shlex
from importlib import resources

import click

from vmqos.cli.output import stdout


def demo_dir() -> str:
    return str(resources.files("vmqos") / "demo")


def _run(args: list[str]) -> None:
    from vmqos.cli.main import main

    stdout.print()
    stdout.rule(f"[bold]$ vmqos {' '.join(shlex.quote(a) for a in args)}", align="left")
    code = main(args)
    if code != 0:
        raise click.ClickException(f"demo step failed with exit code {code}: vmqos {' '.join(args)}")


@click.command()
def demo() -> None:
    """Run the demo: the seed examples converted and planned.

    \b
    The m1.resquota flavor (seed 003) as libvirt XML and as a plan for port tap-vm1; the
    bw-limiter and dscp-marking Neutron policies as canonical values and plans for tap-vm2 and
    tap-vm3; the seed 000 throttle (domiftune --outbound 12800,0,0); the demo host file.
    """
    d = demo_dir()
    steps = [
        ["convert", "--from", "nova", "--to", "libvirt", f"{d}/m1.resquota.specs"],
        ["convert", "--from", "nova", "--to", "effective", f"{d}/m1.resquota.specs"],
        ["plan", "--port", "tap-vm1", "--flavor", f"{d}/m1.resquota.specs"],
        ["convert", "--from", "neutron", "--to", "effective", f"{d}/bw-limiter.json"],
        ["plan", "--port", "tap-vm2", "--policy", f"{d}/bw-limiter.json"],
        ["plan", "--port", "tap-vm2", "--policy", f"{d}/bw-limiter.json", "--egress-mode", "police"],
        ["convert", "--from", "neutron", "--to", "effective", f"{d}/dscp-marking.json"],
        ["plan", "--port", "tap-vm3", "--policy", f"{d}/dscp-marking.json"],
        ["plan", "--port", "tap6ffab502-4a", "--outbound", "12800,0,0"],
        ["convert", "--from", "vmqos", "--to", "effective", "--instance", "vm1", f"{d}/host.yaml"],
    ]
    for args in steps:
        _run(args)
    stdout.print()
    stdout.print("[bold green]demo finished:[/] every step above ran the real vmqos commands on the seed examples.")
