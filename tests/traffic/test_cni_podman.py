"""Traffic tier, issue 19: a real container runtime. Debian's podman 4.3 with its CNI back end runs a container
from a local image (Debian's busybox-static imported as a tarball: no registry) on a CNI network list that
chains `vmqos-cni` after `bridge` + `host-local`; iperf3 into the container's namespace holds the limit, a
`port set` changes it live, and `podman rm` leaves no IFB, chain or row. About 20 s.

What this machine needs, found by trying (README "Containers"):
- podman runs in a host namespace `vqph…` entered with `nsenter --net`, not `ip netns exec`, which mounts
  a fresh /sys and hides the cgroup hierarchies from the OCI runtime;
- runc, not crun: crun 1.8 refuses the hybrid cgroup layout of these hosts ("cgroups in hybrid mode not
  supported, drop all controllers from cgroupv2": v1 controllers plus hugetlb on the unified mount);
- explicit nofile/nproc ulimits: podman's default RLIMIT_NOFILE (1048576) exceeds this host's hard limit
  and setrlimit is refused;
- everything podman keeps goes under the test's tmp_path (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF); what
  it makes in fixed places (/run/libpod, /run/runc, /var/lib/containers/cache...) is removed after the test
  when it was not there before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests import cni_chain as cni
from tests.kernel.conftest import require
from tests.traffic.harness import frame_rate, iperf_server, log, run_client
from vmqos.core.desired.ports import PortChange
from vmqos.services.ports import set_port, show_port
from vmqos.store import Store

pytestmark = [pytest.mark.kernel, pytest.mark.traffic, pytest.mark.containers]

RATE = 10_000_000
SECONDS = 4
FIXED_PLACES = ("/run/libpod", "/run/runc", "/run/crun", "/run/containers", "/var/lib/containers", "/var/lib/cni")


def _missing() -> str | None:
    for tool in ("podman", "runc", "nsenter", "iperf3"):
        if shutil.which(tool) is None:
            return f"needs {tool}: run `make deps` (podman, runc, util-linux, iperf3)"
    if not Path("/bin/busybox").exists():
        return "needs /bin/busybox: apt-get install busybox-static"
    return cni.missing()


class Podman:
    def __init__(self, tmp: Path, host: str) -> None:
        self.host = host
        conf, storage = tmp / "containers.conf", tmp / "storage.conf"
        (tmp / "tmp").mkdir()
        conf.write_text(f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
                        f'tmp_dir = "{tmp}/tmp"\nvolume_path = "{tmp}/volumes"\nstatic_dir = "{tmp}/libpod"\n'
                        f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{tmp}/cni-bin"]\n'
                        f'network_config_dir = "{tmp}/net.d"\n')
        storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp}/graph"\nrunroot = "{tmp}/run"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}

    def __call__(self, *argv: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["nsenter", f"--net=/run/netns/{self.host}", "podman", *argv], capture_output=True,
                              text=True, timeout=timeout, env=self.env)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(argv)}: {done.stderr.strip()[-1500:]}")
        return done


@pytest.fixture
def podman(tmp_path):
    require("containers", _missing())
    before = {p for p in FIXED_PLACES if os.path.exists(p)}
    host = cni.new_name("vqph")
    cni.netns_add(host)
    parent = cni.new_name("vqpodman")
    pod = Podman(tmp_path, host)
    pod.cgroup_parent = f"/{parent}"  # type: ignore[attr-defined]
    try:
        cni.plugin_dir(tmp_path)
        (tmp_path / "net.d").mkdir()
        (tmp_path / "net.d" / "vqpod.conflist").write_text(json.dumps(
            cni.conflist("vqpod", "10.197.0.0/24", "vqbr9", [{
                "type": "vmqos-cni", "vmqosDatabase": str(tmp_path / "vq.db"), "ingressRate": RATE,
                "egressRate": 5_000_000, "egressMode": "shape", "capabilities": {"bandwidth": True}}],
                tmp_path / "ipam")))
        with tarfile.open(tmp_path / "busybox.tar", "w") as tar:
            tar.add("/bin/busybox", arcname="bin/busybox")
        pod("import", str(tmp_path / "busybox.tar"), "localhost/vqbusybox:latest")
        yield pod
    finally:
        pod("rm", "-f", "-t", "0", "vqbox", check=False)
        cni.netns_del(host)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            group = hierarchy / parent
            if group.is_dir():
                for sub in sorted(group.rglob("*"), reverse=True):
                    if sub.is_dir():
                        sub.rmdir()
                group.rmdir()
        for place in set(FIXED_PLACES) - before:
            shutil.rmtree(place, ignore_errors=True)


def test_podman_runs_a_container_whose_veth_vmqos_limits_live_and_rm_cleans_up(podman, tmp_path):
    podman("run", "-d", "--name", "vqbox", "--network", "vqpod", "--cgroup-parent", podman.cgroup_parent,
           "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
           "localhost/vqbusybox", "/bin/busybox", "sleep", "120")
    info = json.loads(podman("inspect", "vqbox").stdout)[0]
    sandbox = info["NetworkSettings"]["SandboxKey"]  # /run/netns/cni-…: podman's name for the container's netns
    address = info["NetworkSettings"]["Networks"]["vqpod"]["IPAddress"]
    container_ns = Path(sandbox).name
    veths = [n for n in cni.links(podman.host) if n.startswith("veth")]
    assert len(veths) == 1 and len(cni.links(podman.host, "ifb")) == 1
    db = f"sqlite:///{tmp_path / 'vq.db'}"
    with Store(db) as store:
        shown = show_port(store, podman.host, veths[0])
    assert shown.instance == "cni-" + info["Id"][:12] and shown.kernel.in_sync

    with iperf_server(container_ns) as server:
        run_client(podman.host, address, SECONDS)
        got = float(server.result()["end"]["sum_received"]["bits_per_second"])
    log(f"podman container, ingress {RATE / 1e6:g} Mbit/s: frame rate {frame_rate(got) / 1e6:.2f} Mbit/s")
    assert 0.85 * RATE <= frame_rate(got) <= 1.05 * RATE + 8 * shown.desired.ingress.burst_bytes / SECONDS

    with Store(db) as store:  # the running container's limit, changed through the CLI's door
        assert set_port(store, podman.host, veths[0], PortChange(inbound="625")).ok  # 625 kB/s = 5 Mbit/s
    classes = subprocess.run(["ip", "netns", "exec", podman.host, "tc", "class", "show", "dev", veths[0]],
                             capture_output=True, text=True, check=True).stdout
    assert "rate 5Mbit" in classes, classes

    podman("rm", "-f", "-t", "0", "vqbox")
    assert cni.links(podman.host, "ifb") == [] and cni.nft_chains(podman.host) == []
    assert [n for n in cni.links(podman.host) if n.startswith("veth")] == []
    with Store(db) as store:
        assert store.load(podman.host).instances == {}
