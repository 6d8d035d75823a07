"""`vmqos port set|show|clear`, `vmqos apply` and `vmqos check`: the commands that touch the kernel."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from vmqos.cli.convert import read_input
from vmqos.cli.option_help import DB_HELP, NETNS_HELP
from vmqos.cli.output import print_json, print_notes, stderr, stdout
from vmqos.core.desired.ports import PortChange
from vmqos.core.formats import neutron
from vmqos.core.model.host import EgressMode
from vmqos.core.units import human_pps, human_rate, human_size

if TYPE_CHECKING:
    from vmqos.services.results import ApplyReport

# services.ports (the store, the reconciler) is imported by the commands that use this host's kernel: a command
# with --server asks a server and loads neither (`remote`; ~0.4 s of CPU a call)


def kernel_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--db", metavar="URL", help=DB_HELP)(func)
    return click.option("--netns", "netns", metavar="NS", help=NETNS_HELP)(func)


def server_options(host_help: str = "with --server: the host the port is on") -> Callable[[Any], Any]:
    """--server URL and --host HOST: the command asks a vmqos server instead of this host (see `remote`)."""

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option("--host", "host", metavar="HOST", help=host_help)(func)
        return click.option("--server", metavar="URL", help="a vmqos server instead of this host (default with "
                            "--host: $VMQOS_URL); credentials from OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME")(func)

    return add


def remote(server: str | None, host: str | None, netns: str | None, db: str | None, local_flags: bool,
           refused: str = "--live, --config and --force are for this host; with --server the host's agent applies "
                          "a change") -> bool:
    """Whether a command goes to a server (--server or --host given); its local-only options refused then
    (`refused` says which and why)."""
    if server is None and host is None:
        return False
    if netns is not None or db is not None:
        raise click.UsageError("--netns and --db read this host; --server and --host ask a server: not both")
    if local_flags:
        raise click.UsageError(refused)
    return True


def _policy(value: str | None) -> tuple[Any, str | None]:
    """A policy file (Neutron JSON, vmqos YAML) is read; anything else names a stored policy."""
    if value is None:
        return None, None
    if value == "-" or "/" in value or value.endswith((".json", ".yaml", ".yml")):
        policy, notes = neutron.read_policy(read_input(value))
        print_notes(notes)
        return policy, None
    return None, value


def report_apply(report: ApplyReport | None, as_json: bool) -> int:
    from vmqos.services.results import StoredOnly

    if report is None:
        if as_json:
            print_json(StoredOnly())
        else:
            stdout.print("stored; the kernel was not touched (--config)")
        return 0
    if as_json:
        print_json(report)
    else:
        print_notes(report.notes)
        for r in report.results:
            if r.error:
                rolled = " (rolled back to its previous state)" if r.rolled_back else ""
                stderr.print(f"[red]{r.port}[/]: {r.error}{rolled}", markup=True)
            elif r.skipped or not r.ops:
                stdout.print(f"{r.port}: in place, nothing to change")
            else:
                stdout.print(f"{r.port}: {len(r.ops)} change(s): " + ", ".join(op.describe() for op in r.ops))
    return 0 if report.ok else 1


@click.group()
def port() -> None:
    """Limit, inspect and release one port (a VM's tap, a veth) now.

    \b
    Examples:
      vmqos port set tap-vm1 --outbound 12800,0,0 --netns lab-host   # 100 Mbit/s, as virsh domiftune
      vmqos port set tap-vm2 --policy bw-limiter.json --netns lab-host
      vmqos port show tap-vm1 --netns lab-host --json
      vmqos port clear tap-vm1 --netns lab-host
      vmqos port set tap-vm1 --server http://ctl:9696 --host compute1 --inbound 12800,0,0
      vmqos port list --server http://ctl:9696 --host compute1
    """


@port.command("set")
@click.argument("device")
@click.option("--inbound", metavar="A,P,B[,F]", help="towards the instance: average,peak,burst[,floor] in "
              "libvirt's units (KiB/s... i.e. kilobytes/s and KiB); 0 clears")
@click.option("--outbound", metavar="A,P,B", help="sent by the instance, same units; 0 clears")
@click.option("--policy", metavar="NAME|FILE|ID", help="a Neutron QoS policy file (bandwidth_limit, "
              "packet_rate_limit, dscp_marking rules) or the name of a stored policy; with --server the id of "
              "a vmqos policy (GET /v1/policies) that the port then follows")
@click.option("--egress-mode", type=click.Choice([m.value for m in EgressMode]),
              help="shape (IFB queue, the default: exact, TCP-friendly) or police (drops above the "
              "rate; the bucket is the burst, 1 s of traffic unless given)")
@click.option("--window-clamp", type=click.Choice(["on", "off"]),
              help="opt-in receive-window clamp: rewrites the window of the TCP ACKs the port forwards so that one "
              "bulk flow without ECN (BBR, cubic) keeps a short queue at the shaper; a flow whose path RTT grows "
              "after its handshake then runs below the limit; shape mode only; off by default "
              "(e.g. --window-clamp on)")
@click.option("--live", is_flag=True, help="change the kernel now (with neither flag: both)")
@click.option("--config", is_flag=True, help="change the stored desired state (with neither flag: both)")
@click.option("--force", is_flag=True, help="replace qdiscs or filters on the port that vmqos did not make")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@server_options()
@kernel_options
def port_set(device: str, inbound: str | None, outbound: str | None, policy: str | None, egress_mode: str | None,
             window_clamp: str | None, live: bool, config: bool, force: bool, as_json: bool, server: str | None,
             host: str | None, netns: str | None, db: str | None) -> None:
    """Set a port's limits, with virsh domiftune's syntax and meaning.

    The limits add to the port's policy and its instance's flavor; the lowest value of each
    field wins. Every change is made in place: the port is never unlimited in between.

    With --server URL --host HOST the server's desired state of the port changes (admin only), and
    the host's agent applies it: --inbound/--outbound edit the port's native policy as they edit a
    local port, --policy FILE replaces it, --policy ID makes it follow the vmqos policy ID (every
    change of that policy reaches the port).

    \b
    Examples:
      vmqos port set tap-vm1 --server http://ctl:9696 --host compute1 --inbound 12800,0,0
      vmqos port set tap-vm1 --server http://ctl:9696 --host compute1 --policy 5f0c...-policy-id
      vmqos port set tap-vm1 --window-clamp on --netns lab-host
    """
    pol, name = _policy(policy)
    change = PortChange(inbound=inbound, outbound=outbound, policy=pol, policy_name=name,
                        egress_mode=EgressMode(egress_mode) if egress_mode else None,
                        window_clamp=None if window_clamp is None else window_clamp == "on")
    if remote(server, host, netns, db, live or config or force):
        from vmqos.cli.fleet import set_remote

        set_remote(server, host, device, change, as_json)
        return
    if not live and not config:
        live = config = True
    from vmqos.services.ports import open_store, set_port

    with open_store(db) as store:
        report = set_port(store, netns, device, change, live=live, config=config, force=force)
    sys.exit(report_apply(report, as_json))


@port.command("clear")
@click.argument("device")
@click.option("--force", is_flag=True, help="also remove qdiscs or filters vmqos did not make")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@server_options()
@kernel_options
def port_clear(device: str, force: bool, as_json: bool, server: str | None, host: str | None, netns: str | None,
               db: str | None) -> None:
    """Remove every limit vmqos set on a port, and forget it.

    With --server URL --host HOST: release the port's native limits on the server (admin only); the
    host's agent removes them from the kernel.

    \b
    Examples:
      vmqos port clear tap-vm1 --netns lab-host
      vmqos port clear tap-vm1 --server http://ctl:9696 --host compute1
    """
    if remote(server, host, netns, db, force):
        from vmqos.cli.fleet import clear_remote

        clear_remote(server, host, device, as_json)
        return
    from vmqos.services.ports import clear_port, open_store

    with open_store(db) as store:
        report = clear_port(store, netns, device, force=force)
    sys.exit(report_apply(report, as_json))


@port.command("list")
@click.option("--server", metavar="URL", help="the vmqos server's URL (default: $VMQOS_URL); credentials from "
              "OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME")
@click.option("--host", "host", metavar="HOST", help="only this host's ports")
@click.option("--json", "as_json", is_flag=True, help="print the ports as JSON")
def port_list(server: str | None, host: str | None, as_json: bool) -> None:
    """The ports a vmqos server knows (those you may see), with their policy and their agent's status.

    This host's own managed ports are listed by `vmqos check`.

    \b
    Examples:
      vmqos port list --server http://ctl:9696
      vmqos port list --server http://ctl:9696 --host compute1 --json
    """
    from vmqos.cli.fleet import list_remote

    list_remote(server, host, as_json)


@port.command("show")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="print everything as JSON")
@server_options()
@kernel_options
def port_show(device: str, as_json: bool, server: str | None, host: str | None, netns: str | None,
              db: str | None) -> None:
    """Desired limits with their sources, the kernel's state, and offered/delivered/dropped counters.

    Offered is what reached the limiter, delivered what passed it, dropped what it refused. The
    device's own rx/tx counters count before any limiter: never read them as "what got through".

    With --server URL --host HOST: what the server wants of the port, and what the host's agent last
    reported (status, applied revision, rates, quarantine).
    """
    if remote(server, host, netns, db, False):
        from vmqos.cli.fleet import show_remote

        show_remote(server, host, device, as_json)
        return
    from vmqos.services.ports import open_store, show_port

    with open_store(db, read_only=True) as store:
        shown = show_port(store, netns, device)
    if as_json:
        print_json(shown)
        return
    from rich.table import Table

    table = Table(title=f"port {device}" + (f" (netns {netns})" if netns else ""), title_justify="left",
                  show_edge=False)
    for col in ("direction", "limit", "mechanism", "offered", "delivered", "dropped", "backlog"):
        table.add_column(col)
    for direction, label in (("ingress", "to instance"), ("egress", "from instance")):
        want = getattr(shown.desired, direction)
        limit = []
        if want.rate_bps:
            limit.append(human_rate(want.rate_bps))
        if want.pps:
            limit.append(human_pps(want.pps))
        if want.dscp is not None:
            limit.append(f"dscp {want.dscp}")
        flow = shown.counters.get(direction)
        cells = ["-"] * 4 if flow is None else [
            f"{flow.offered_packets:,} pkt / {human_size(flow.offered_bytes)}",
            f"{flow.delivered_packets:,} pkt / {human_size(flow.delivered_bytes)}",
            f"{flow.dropped_packets:,} pkt", human_size(flow.backlog_bytes)]
        table.add_row(f"{direction} ({label})", ", ".join(limit) or "none", want.mechanism or "-", *cells)
    stdout.print(table)
    kernel = shown.kernel
    state = "in sync with the desired state" if kernel.in_sync else (
        "device missing" if kernel.missing_device else "DRIFT: " + ", ".join(kernel.operations_needed))
    stdout.print(f"kernel: {state}")
    dev = shown.device_counters
    if dev:
        stdout.print(f"device counters (before any limiter): rx {dev['rx_packets']:,} pkt, "
                     f"tx {dev['tx_packets']:,} pkt")
    print_notes(shown.notes)


@contextmanager
def progress_bars(wanted: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """One bar per phase of a long apply, on stderr, only when stderr is a terminal and `wanted`:
    a log, a pipe or --json gets nothing extra. The reconciler calls from two threads."""
    if not (wanted and stderr.is_terminal):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    lock = threading.Lock()
    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TextColumn("ports"),
                  TimeElapsedColumn(), console=stderr, transient=True) as bars:

        def report(phase: str, done: int, total: int) -> None:
            with lock:
                if phase not in tasks:
                    tasks[phase] = bars.add_task(phase, total=total)
                bars.update(tasks[phase], completed=done, total=total, refresh=True)  # a few calls a phase

        yield report


@click.command("apply")
@click.option("-f", "--file", "path", required=True, metavar="HOST.yaml",
              help="the host's desired state in vmqos's host file format (`vmqos schema host`)")
@click.option("--prune", is_flag=True, help="also clear ports that vmqos manages but the file no longer names")
@click.option("--force", is_flag=True, help="replace qdiscs, filters on managed ports that vmqos did not make")
@click.option("--dry-run", is_flag=True, help="show what would change; write nothing")
@click.option("--json", "as_json", is_flag=True)
@kernel_options
def apply(path: str, prune: bool, force: bool, dry_run: bool, as_json: bool, netns: str | None,
          db: str | None) -> None:
    """Make the kernel match a host file, and store it as the desired state.

    Re-applying an unchanged file performs no writes; after a restart, what is right is adopted.
    On a terminal, a bar per phase (planning, reading back, links, queues, nft, deletions, saving)
    shows on stderr how far it is; nothing extra is printed with --json or when stderr is not a
    terminal.

    \b
    Example: vmqos apply -f host.yaml --netns lab-host --prune
    """
    from vmqos.core.formats.hostfile import read_host_with_notes
    from vmqos.services.ports import apply_host, open_store

    state, notes = read_host_with_notes(read_input(path))
    print_notes(notes)
    with open_store(db) as store, progress_bars(not as_json) as progress:
        report = apply_host(store, netns, state, prune=prune, force=force, dry_run=dry_run, progress=progress)
    sys.exit(report_apply(report, as_json))


@click.command("check")
@click.option("--json", "as_json", is_flag=True)
@kernel_options
def check(as_json: bool, netns: str | None, db: str | None) -> None:
    """Compare the kernel with the desired state: exit 0 when they match, 1 with a per-port report."""
    from vmqos.services.ports import check_host, open_store
    from vmqos.services.results import HostCheck

    with open_store(db, read_only=True) as store:
        found = HostCheck(check_host(store, netns))
    ok = found.ok
    if as_json:
        print_json(found)
    else:
        for d in found.ports:
            if d.ok:
                stdout.print(f"{d.port}: ok")
                continue
            problems = (["device missing"] if d.missing_device else []) + d.operations + \
                [f"foreign nft chain {h.table}/{h.chain} on {h.hook}" for h in d.foreign_hooks]
            stdout.print(f"[red]{d.port}[/]: " + "; ".join(problems), markup=True)
        stdout.print("in sync" if ok else "drift found: `vmqos apply` (with --force for foreign objects) fixes it")
        if any(d.foreign_hooks for d in found.ports):
            stdout.print("a foreign nft chain is not vmqos's to delete: remove it (`nft list ruleset netdev`), or "
                         "`vmqos apply --force` applies the limits beside it")
    sys.exit(0 if ok else 1)
