"""Golden transcripts of the commands' human and `--json` output, byte for byte.

The port, apply and check commands run against a fake reconciler (what it "applied" is what it
reads back, with fixed counters), the vm commands against libvirt's test driver, the volume and
instance commands against a store only; no root, no kernel. A change of any byte of output fails
here; `VMQOS_GOLDEN_UPDATE=1` rewrites the transcripts (review the diff before committing it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vmqos.cli.demo import demo_dir
from vmqos.cli.main import main
from vmqos.core.observed import TcStats
from vmqos.core.plan.diff import diff
from vmqos.core.plan.names import ifb_name
from vmqos.reconcile.execute import Observed, PortResult

GOLDEN = Path(__file__).parent / "golden"
DEMO = Path(demo_dir())

_HELD: dict[str, list[Any]] = {}


class FakeReconciler:
    """Holds what it was told to apply; reads back that, with fixed counters; `gone` has no device."""

    gone = {"tap-gone"}

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

        class _Tc:
            @staticmethod
            def link_stats(device: str) -> dict[str, int]:
                return {"rx_bytes": 1500, "rx_packets": 10, "tx_bytes": 3000, "tx_packets": 20, "rx_dropped": 0,
                        "tx_dropped": 1}

        self.tc = _Tc()

    def inventory(self):
        from vmqos.core.plan.orphans import Inventory

        return Inventory()  # nothing of vmqos's beyond what the fake holds for its ports

    def __enter__(self) -> "FakeReconciler":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def observe(self, ports: Any, **_: Any) -> Observed:
        stats = TcStats(bytes=150_000, packets=100, drops=3, overlimits=7, backlog_bytes=1500, qlen=1)
        return Observed({p: list(_HELD.get(p, [])) for p in ports},
                        {p: {("qdisc", p, "root"): stats, ("qdisc", ifb_name(p), "root"): stats} for p in ports},
                        None, {p for p in ports if p in self.gone})

    def reconcile(self, plans: dict[str, Any], *, applied: Any = None, force: bool = False, verify: bool = True,
                  dry_run: bool = False, progress: Any = None) -> tuple[list[PortResult], dict[str, str | None]]:
        results, record = [], {}
        for port, plan in sorted(plans.items()):
            if port in self.gone:
                results.append(PortResult(port, error=f"device {port!r} does not exist", rolled_back=True))
                continue
            ops = diff(plan.objects, _HELD.get(port, []))
            results.append(PortResult(port, ops=list(ops)))
            if not dry_run:
                _HELD[port] = list(plan.objects)
                record[port] = "fp" if plan.objects else None
        return results, record


@pytest.fixture
def fake_kernel(monkeypatch):
    import vmqos.services.ports as ports_module

    _HELD.clear()
    for module in [ports_module] + [m for name, m in __import__("sys").modules.items()
                                    if name.startswith("vmqos.services.") and hasattr(m, "Reconciler")]:
        monkeypatch.setattr(module, "Reconciler", FakeReconciler)
    yield
    _HELD.clear()


class Transcript:
    def __init__(self, capsys: Any, tmp_path: Path) -> None:
        self.capsys, self.tmp, self.parts = capsys, str(tmp_path), []

    def __call__(self, *args: str) -> None:
        self.capsys.readouterr()
        try:
            code: Any = main(list(args))
        except SystemExit as exc:
            code = exc.code
        out = self.capsys.readouterr()
        text = f"$ vmqos {' '.join(args)}\n[exit {code}]\n--- stdout\n{out.out}--- stderr\n{out.err}\n"
        self.parts.append(text.replace(self.tmp, "TMP").replace(str(DEMO), "DEMO"))

    def check(self, name: str) -> None:
        text = "".join(self.parts)
        path = GOLDEN / f"{name}.txt"
        if os.environ.get("VMQOS_GOLDEN_UPDATE"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), f"output differs from {path}"


def test_port_apply_check_transcript(fake_kernel, capsys, tmp_path):
    run = Transcript(capsys, tmp_path)
    db = ["--db", f"sqlite:///{tmp_path}/s.db"]
    run("port", "set", "tap-a", "--outbound", "12800,0,0", "--inbound", "25600,51200,1024", "--json", *db)
    run("port", "set", "tap-b", "--policy", str(DEMO / "bw-limiter.json"), *db)
    run("port", "set", "tap-c", "--policy", str(DEMO / "dscp-marking.json"), "--egress-mode", "police", "--json", *db)
    run("port", "show", "tap-a", "--json", *db)
    run("port", "show", "tap-a", *db)
    run("port", "show", "tap-c", *db)
    run("port", "set", "tap-a", "--outbound", "6400,0,0", "--config", "--json", *db)
    run("port", "set", "tap-a", "--outbound", "3200,0,0", "--config", *db)
    run("port", "show", "tap-a", "--json", *db)
    run("port", "show", "tap-a", *db)
    run("check", "--json", *db)
    run("check", *db)
    run("port", "set", "tap-gone", "--outbound", "100,0,0", "--json", *db)
    run("port", "set", "tap-gone", "--outbound", "100,0,0", *db)
    run("port", "show", "tap-nope", "--json", *db)
    run("apply", "-f", str(DEMO / "host.yaml"), "--dry-run", "--json", *db)
    run("apply", "-f", str(DEMO / "host.yaml"), "--prune", *db)
    run("apply", "-f", str(DEMO / "host.yaml"), "--json", *db)
    run("port", "show", "tap-vm1", "--json", *db)
    run("port", "show", "tap-vm1", *db)
    run("check", "--json", *db)
    run("port", "clear", "tap-vm2", "--json", *db)
    run("port", "clear", "tap-vm3", *db)
    run.check("port_apply_check")


def test_volume_instance_transcript(capsys, tmp_path):
    run = Transcript(capsys, tmp_path)
    db = ["--db", f"sqlite:///{tmp_path}/s.db", "--lab", "vq5g"]
    run("volume-type", "create", "gold", "--consumer", "front-end", "--spec", "read_iops_sec_per_gb=10",
        "--spec", "read_iops_sec_per_gb_min=20", "--spec", "write_bytes_sec=1048576", "--json", *db)
    run("volume-type", "create", "archive", "--spec", "maxIOPSperGB=5", *db)
    run("volume-type", "create", "odd", "--consumer", "both", "--spec", "read_iops_sec_per_gb=1", "--json", *db)
    run("volume-type", "list", "--json", *db)
    run("volume-type", "list", *db)
    run("volume-type", "show", "archive", "--json", *db)
    run("volume-type", "show", "archive", *db)
    run("volume-type", "show", "gold", *db)
    run("volume", "create", "v1", "--type", "gold", "--size", "1", "--json", *db)
    run("volume", "create", "v2", "--size", "3", *db)
    run("volume", "create", "v3", "--type", "archive", "--size", "2", "--json", *db)
    run("volume", "extend", "v1", "--size", "5", "--json", *db)
    run("volume", "extend", "v2", "--size", "4", *db)
    run("volume", "list", "--json", *db)
    run("volume", "list", *db)
    run("volume", "show", "v1", "--json", *db)
    run("volume", "show", "v1", *db)
    run("volume", "show", "nope", "--json", *db)
    lab = ["--db", f"sqlite:///{tmp_path}/s.db", "--lab", "vq5g"]
    run("instance", "set", "vm1", "--cpu-quota", "20000", "--cpu-shares", "512", "--config", "--json", *lab)
    run("instance", "set", "vm2", "--cpu-quota", "50000", "--cpu-period", "200000", "--config",
        "--disk", "loop7:read_bytes_sec=1mb,write_iops_sec=100", *lab)
    run("instance", "set", "vm2", "--disk", "loop7:write_iops_sec=0", "--config", "--json", *lab)
    run.check("volume_instance")


def test_vm_transcript(fake_kernel, capsys, tmp_path):
    run = Transcript(capsys, tmp_path)
    db = ["--db", f"sqlite:///{tmp_path}/s.db"]
    uri = ["--connect", "test:///default"]
    run("vm", "list", "--json", *uri)
    run("vm", "list", *uri)
    run("vm", "show", "test", "--json", *uri, *db)
    run("vm", "show", "test", *uri, *db)
    run("vm", "set", "test", "--disk", "vda:read_iops_sec=100,read_iops_sec_max=1000", "--config", "--json", *uri, *db)
    run("vm", "set", "test", "--disk", "vda:write_iops_sec=50,write_iops_sec_max=500", "--config", *uri, *db)
    run("vm", "set", "test", "--outbound", "12800,0,0", "--live", "--json", *uri, *db)
    run("vm", "set", "test", "--inbound", "1000,2000,100", "--live", *uri, *db)
    run("vm", "show", "test", "--json", *uri, *db)
    run("vm", "show", "test", *uri, *db)
    run("vm", "show", "nope", "--json", *uri, *db)
    run("volume-type", "create", "gold", "--consumer", "front-end", "--spec", "read_iops_sec_per_gb=10",
        "--spec", "read_iops_sec_max=5000", *uri, *db)
    run("volume", "create", "v9", "--type", "gold", "--size", "2", *uri, *db)
    run("volume", "attach", "v9", "test", "--device", "vda", "--json", *uri, *db)
    run("volume", "detach", "v9", *uri, *db)
    run.check("vm")


class FakeGroup:
    """A lab instance's cgroup as `instance show` reads it: fixed values, a device that does not exist."""

    path = "vmqos/vq5g-vm1"

    def __init__(self, version: str, quota: int | None) -> None:
        from vmqos.core.plan.cgroup_values import CgroupLayout

        self.version, self.quota, self.layout = version, quota, CgroupLayout()

    def exists(self) -> bool:
        return True

    def read_cpu(self) -> Any:
        from vmqos.core.plan.cgroup_values import CpuReadback

        if self.version == "v1":
            return CpuReadback("v1", shares=512, quota_us=self.quota, period_us=100_000)
        return CpuReadback("v2", weight=39, quota_us=self.quota, period_us=100_000)

    def read_disks(self) -> dict[Any, Any]:
        from vmqos.core.model.disk import DiskQos

        return {(250, 77): DiskQos(read_bytes_sec=1048576, write_iops_sec=100)}

    def usage(self) -> Any:
        from vmqos.core.plan.cgroup_values import Usage

        return Usage(cpu_ns=1_234_567_890, nr_periods=1000, nr_throttled=250, throttled_ns=5_000_000_000,
                     io={(250, 77): {"read_bytes": 4096, "write_bytes": 1048576, "read_ios": 1, "write_ios": 256}})

    def describe(self) -> dict[str, str]:
        return {"cpu": "/sys/fs/cgroup/cpu/vmqos/vq5g-vm1", "io": "/sys/fs/cgroup/blkio/vmqos/vq5g-vm1"}

    def procs(self) -> set[int]:
        return {42, 7}


def test_instance_show_transcript(monkeypatch, capsys, tmp_path):
    import vmqos.services.instances as instances

    run = Transcript(capsys, tmp_path)
    lab = ["--db", f"sqlite:///{tmp_path}/s.db", "--lab", "vq5g"]
    run("instance", "set", "vm1", "--cpu-quota", "20000", "--cpu-shares", "512", "--config",
        "--disk", "250:77:read_bytes_sec=1mb,write_iops_sec=100", *lab)
    for version, quota in (("v1", 20000), ("v2", None)):
        monkeypatch.setattr(instances, "lab_group", lambda lab, inst, v=version, q=quota: FakeGroup(v, q))
        run("instance", "show", "vm1", "--json", *lab)
        run("instance", "show", "vm1", *lab)
    run.check("instance_show")
