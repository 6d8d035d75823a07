"""Build, run and remove a lab fleet: N lab hosts with an agent each, one server (its shape: `fleet_topology`).

Everything runs as an operator would run it, as processes of their own: `vmqos server` in F-ctl,
`vmqos agent` inside each F<i>-host (no --netns: the agent lives in its host, as on a real machine,
and reaches the server over the management network, so that cutting that route is a partition).
The accounts are made as an operator makes them, with `vmqos server init` and `vmqos identity user
create agent-F<i> --role service --host F<i>`, before the server starts.

The fleet's files live in its state directory (default /run/vmqos/fleet-F): the server's SQLite
database (unless --db names another), each agent's cache, the passwords (mode 0600), the logs and
the pid files. `fleet_down` stops the processes, removes the namespaces and that directory: nothing
is left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vmqos.core.errors import KernelError, NotFound
from vmqos.drivers.process import in_netns, netns_exists, run
from vmqos.lab.control_plane import CliRun
from vmqos.lab.fleet_topology import MGMT_BRIDGE, MGMT_DEVICE, MGMT_PREFIX, SERVER_ADDRESS, Fleet, FleetHost
from vmqos.lab.netns_lab import _batch, lab_down, lab_up

STATE_ROOT = Path("/run/vmqos")
START_TIMEOUT_S = 60.0  # the server's first start migrates its database and recomputes every host's rows
STOP_TIMEOUT_S = 30.0
ADMIN = "admin"
# The lab's agents answer a flood within seconds and lift the quarantine 3 s after it ends (the single-host
# demo's monitor; the defaults wait 2 s and cool down for 30 s): a lab's story is told in seconds.
LAB_MONITOR = """\
interval: 0.5
detectors: {packet_rate_pps: 20000, syn_min_pps: 1000, for_seconds: 1}
response: {cooldown: 3, quarantine: {egress: {rate: 1mbit, pps: 1000}}}
"""


def state_dir(name: str) -> Path:
    return STATE_ROOT / f"fleet-{name}"


@dataclass(frozen=True)
class FleetProcess:
    """A process of the fleet: what it is, its pid (None: not running) and its log."""

    role: str  # "server", or the host's name for its agent
    pid: int | None
    log: str


@dataclass(frozen=True)
class FleetStatus:
    name: str
    hosts: tuple[str, ...]
    server_url: str
    ctl_ns: str
    db: str
    state_dir: str
    processes: tuple[FleetProcess, ...]

    def process(self, role: str) -> FleetProcess:
        return next(p for p in self.processes if p.role == role)


def _links(netns: str) -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(run(["ip", "-j", "addr", "show"], netns).stdout or "[]")}


def _mgmt_network(fleet: Fleet) -> None:
    """F-ctl with br-mgmt, and one veth per host: its peer mgmt0 in the host's namespace, addressed and up."""
    if not netns_exists(fleet.ctl_ns):
        _batch(None, [f"netns add {fleet.ctl_ns}"])
    ctl = _links(fleet.ctl_ns)
    lines = ["link set lo up"]
    if MGMT_BRIDGE not in ctl:
        lines += [f"link add {MGMT_BRIDGE} type bridge", f"addr add {SERVER_ADDRESS}/{MGMT_PREFIX} dev {MGMT_BRIDGE}"]
    lines.append(f"link set {MGMT_BRIDGE} up")
    for host in fleet.all_hosts():
        if host.mgmt_peer not in ctl:
            lines.append(f"link add {host.mgmt_peer} type veth peer name {MGMT_DEVICE} netns {host.netns}")
        lines.append(f"link set {host.mgmt_peer} master {MGMT_BRIDGE} up")
    _batch(fleet.ctl_ns, lines)
    for host in fleet.all_hosts():
        mgmt = _links(host.netns).get(MGMT_DEVICE, {})
        addresses = {a.get("local") for a in mgmt.get("addr_info", ())}
        _batch(host.netns, ([] if host.mgmt_address in addresses
                            else [f"addr add {host.mgmt_address}/{MGMT_PREFIX} dev {MGMT_DEVICE}"])
               + [f"link set {MGMT_DEVICE} up"])


def _vmqos(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmqos.cli.main", *args]


def _secret(path: Path) -> str:
    """The password kept in `path` (0600), made on first use."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def _check(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise KernelError(f"{what} failed: {last[-1] if last else f'exit {done.returncode}'}")


def os_env(fleet_url: str, user: str, password: str, project: str) -> dict[str, str]:
    """The OS_* variables of one account on the fleet's server."""
    return {"OS_AUTH_URL": f"{fleet_url}/v3", "OS_USERNAME": user, "OS_PASSWORD": password,
            "OS_PROJECT_NAME": project, "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_IDENTITY_API_VERSION": "3"}


def _accounts(fleet: Fleet, db: str, where: Path) -> None:
    """admin (server init, idempotent) and one service account per host, made once."""
    _check(_vmqos("server", "init", "--admin-password", _secret(where / "admin.password"), "--db", db),
           "vmqos server init")
    for host in fleet.all_hosts():
        marker = where / f"{host.agent_user}.made"
        if not marker.exists():
            _check(_vmqos("identity", "user", "create", host.agent_user, "--role", "service", "--host", host.name,
                          "--password", _secret(where / f"{host.agent_user}.password"), "--db", db),
                   f"vmqos identity user create {host.agent_user}")
            marker.touch()


def _pid(path: Path) -> int | None:
    """The pid in `path` if that process still runs (a stale file is removed)."""
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    return pid


def _spawn(argv: list[str], netns: str, log: Path, pidfile: Path, env: dict[str, str] | None = None) -> int:
    """Start `argv` in `netns`, detached from the caller's session, its output in `log`; its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(in_netns(argv, netns), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=(os.environ | env) if env else None)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def _answers(fleet: Fleet) -> bool:
    probe = ("import sys, urllib.request\n"
             f"try: sys.exit(urllib.request.urlopen('{fleet.server_url}/', timeout=1).status != 200)\n"
             "except OSError: sys.exit(1)\n")
    return run([sys.executable, "-c", probe], fleet.ctl_ns, check=False, timeout=10).returncode == 0


def start_server(name: str, hosts: int) -> int:
    """Start the fleet's server if it is not running and wait until it answers; its pid."""
    fleet, where = Fleet(name, hosts), state_dir(name)
    pidfile, log = where / "server.pid", where / "server.log"
    pid = _pid(pidfile)
    if pid is None:
        db = (where / "db.url").read_text().strip()
        pid = _spawn(_vmqos("server", "--listen", fleet.listen, "--db", db), fleet.ctl_ns, log, pidfile)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(fleet):
        if _pid(pidfile) is None:
            raise KernelError(f"vmqos server exited before it served: {_tail(log)} (log: {log})")
        if time.monotonic() > deadline:
            raise KernelError(f"vmqos server did not answer within {START_TIMEOUT_S:g} s: {_tail(log)} (log: {log})")
        time.sleep(0.3)
    return pid


def agent_argv(fleet: Fleet, host: FleetHost) -> list[str]:
    """The agent runs inside its host's namespace (its route to the server is the host's) and names that
    namespace too, so that its scope is the one `vmqos port show --netns F<i>-host` reads. Its monitor runs
    with the lab's quick thresholds (LAB_MONITOR)."""
    where = state_dir(fleet.name)
    monitor = where / "monitor.yaml"
    if not monitor.exists():
        monitor.write_text(LAB_MONITOR)
    return _vmqos("agent", "--server", fleet.server_url, "--host", host.name, "--netns", host.netns,
                  "--cache", str(where / f"agent-{host.name}.db"), "--monitor-config", str(monitor))


def start_agent(name: str, hosts: int, index: int) -> int:
    """Start host `index`'s agent inside its host namespace if it is not running; its pid."""
    fleet, where = Fleet(name, hosts), state_dir(name)
    host = fleet.host(index)
    pidfile = where / f"agent-{host.name}.pid"
    pid = _pid(pidfile)
    if pid is None:
        env = os_env(fleet.server_url, host.agent_user, _secret(where / f"{host.agent_user}.password"), "service")
        pid = _spawn(agent_argv(fleet, host), host.netns, where / f"agent-{host.name}.log", pidfile, env)
    return pid


def stop(name: str, role: str, sig: int = signal.SIGTERM) -> int | None:
    """Signal the fleet's `role` ("server" or a host's name); wait for it to end on SIGTERM (SIGKILL after
    STOP_TIMEOUT_S). Its pid, None when it was not running."""
    return stop_all(name, [role], sig)[0]


def stop_all(name: str, roles: list[str], sig: int = signal.SIGTERM) -> list[int | None]:
    """`stop` of several roles at once: each is signalled, then all are waited for (an agent's stop takes
    ~1.5 s, its follower's long poll given a second to end: the hosts of a fleet stop side by side)."""
    signalled: list[tuple[int | None, Path]] = []
    for role in roles:
        pidfile = state_dir(name) / ("server.pid" if role == "server" else f"agent-{role}.pid")
        pid = _pid(pidfile)
        if pid is not None:
            os.kill(pid, sig)
        signalled.append((pid, pidfile))
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid, pidfile in signalled:
        if pid is None:
            continue
        killed = False
        while _alive(pid):
            if not killed and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        pidfile.unlink(missing_ok=True)
    return [pid for pid, _ in signalled]


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our child (the caller started it): reap it
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()[-2:] if log.exists() else []
    return " / ".join(lines) or "no output"


def fleet_up(name: str, hosts: int, instances: int, db: str | None = None) -> FleetStatus:
    """Build what the fleet lacks and start what is not running: labs, the management network, the
    accounts, the server, the agents. Idempotent, like `lab up`."""
    fleet, where = Fleet(name, hosts), state_dir(name)
    where.mkdir(parents=True, exist_ok=True)
    where.chmod(0o700)
    url_file = where / "db.url"
    if not url_file.exists() or (db and url_file.read_text().strip() != db):
        url_file.write_text(db or f"sqlite:///{where / 'server.db'}")
    for host in fleet.all_hosts():
        lab_up(host.name, instances)
    _mgmt_network(fleet)
    (where / "hosts").write_text(str(hosts))
    _accounts(fleet, url_file.read_text().strip(), where)
    start_server(name, hosts)
    for host in fleet.all_hosts():
        start_agent(name, hosts, host.index)
    status = fleet_status(name)
    assert status is not None
    return status


def fleet_status(name: str) -> FleetStatus | None:
    where = state_dir(name)
    if not (where / "hosts").exists():
        return None
    fleet = Fleet(name, int((where / "hosts").read_text()))
    hosts = fleet.all_hosts()
    processes = [FleetProcess("server", _pid(where / "server.pid"), str(where / "server.log"))]
    processes += [FleetProcess(h.name, _pid(where / f"agent-{h.name}.pid"), str(where / f"agent-{h.name}.log"))
                  for h in hosts]
    return FleetStatus(name, tuple(h.name for h in hosts), fleet.server_url, fleet.ctl_ns,
                       (where / "db.url").read_text().strip(), str(where), tuple(processes))


def admin_env(name: str) -> dict[str, str]:
    """The admin's OS_* variables for the fleet's server (reachable from its control namespace)."""
    where = state_dir(name)
    if not (where / "admin.password").exists():
        raise NotFound(f"no fleet {name!r} is up: `vmqos lab up --hosts N --name {name}` builds it")
    status = fleet_status(name)
    assert status is not None
    return os_env(status.server_url, ADMIN, (where / "admin.password").read_text().strip(), ADMIN)


def admin_vmqos(name: str, args: list[str], timeout: float = 60.0) -> CliRun:
    """`vmqos ARGS` as the fleet's admin (its OS_* variables) inside its control namespace, where the
    server answers: what an operator on the controller reads with `vmqos fleet ...`."""
    status = fleet_status(name)
    if status is None:
        raise NotFound(f"no fleet {name!r} is up: `vmqos lab up --hosts N --name {name}` builds it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | admin_env(name)
    argv = _vmqos(*args)
    done = subprocess.run(in_netns(argv, status.ctl_ns), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return CliRun(tuple(args), done.returncode, done.stdout, done.stderr)


def partition(name: str, index: int, *, cut: bool) -> None:
    """Cut host `index` off the server, or heal it: its management device down in its namespace (which
    also takes its route to the server away), or up again (the route comes back with it). Deleting only
    the route would not do: an answer already on its way still arrives on the device."""
    where = state_dir(name)
    fleet = Fleet(name, int((where / "hosts").read_text()))
    _batch(fleet.host(index).netns, [f"link set {MGMT_DEVICE} {'down' if cut else 'up'}"])


def unplug(lab_name: str, port: str) -> None:
    """Delete an instance's port in its lab host, as libvirt deletes a VM's tap when it stops or reboots
    (`lab up` makes it again)."""
    _batch(f"{lab_name}-host", [f"link del {port}"])


def fleet_down(name: str) -> list[str]:
    """Stop the agents and the server, remove the labs, the control namespace and the state directory."""
    where = state_dir(name)
    removed: list[str] = []
    hosts = int((where / "hosts").read_text()) if (where / "hosts").exists() else 0
    fleet = Fleet(name, hosts) if hosts else None
    stop_all(name, [host.name for host in fleet.all_hosts()] if fleet else [])  # the agents first, together
    stop(name, "server")
    for host in fleet.all_hosts() if fleet else ():
        removed += lab_down(host.name)
    ctl = f"{name}-ctl"
    if netns_exists(ctl):
        for pid in run(["ip", "netns", "pids", ctl], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        _batch(None, [f"netns del {ctl}"])
        removed.append(ctl)
    shutil.rmtree(where, ignore_errors=True)
    try:
        STATE_ROOT.rmdir()  # made by the first fleet; kept while another fleet's directory is in it
    except OSError:
        pass
    return removed
