"""libvirt tier: libvirt's test driver, and a real QEMU domain run by a libvirtd these tests start.

There is no systemd on our machines, so the session fixture starts `virtlogd -d` and
`libvirtd -d` itself (unless they already run: then it uses them and stops nothing) and stops
the daemons it started at the end. The guest is the Debian kernel with a busybox initramfs built
in tmp_path, booted under TCG (`<domain type='qemu'>`): KVM here is nested and an unmodified
guest barely boots (kernel-lab-facts.md §6). Its QEMU runs as root (a static DAC label), because
pytest's tmp_path is private to root. It has an `<interface type='ethernet'>` whose tap
is named vq5t..., and a virtio disk on a file in tmp_path. Domains are destroyed and undefined
in finalizers; the empty /machine cgroup directories libvirt leaves are removed only when this
session created them.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.kernel.conftest import require

PIDFILES = {"virtlogd": "/run/virtlogd.pid", "libvirtd": "/run/libvirtd.pid"}
TOOLS = ("virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "busybox", "cpio")


def _binding() -> str | None:
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "needs libvirt-python: run `make deps` (the libvirt extra)"
    return None


def _kernel() -> str | None:
    found = sorted(glob.glob("/boot/vmlinuz-*"))
    return found[-1] if found else None


def _missing_qemu() -> str | None:
    if os.geteuid() != 0:
        return "needs root (libvirtd, cgroups, taps)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"needs {tool}: run `make deps`, which installs libvirt, QEMU, busybox-static and cpio"
    if _kernel() is None:
        return "needs a guest kernel in /boot: run `make deps` (linux-image-amd64)"
    return _binding()


@pytest.fixture
def test_driver():
    """A connection to libvirt's test driver: state lives as long as the connection."""
    require("libvirt", _binding())
    from vmqos.drivers.libvirt_driver import Libvirt

    with Libvirt("test:///default") as lv:
        yield lv


def _alive(pidfile: str) -> int | None:
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory):
    """qemu:///system served by a libvirtd this session started (or one that already runs).

    Daemons started here log into the session's tmp directory, not /var/log/libvirt.
    """
    require("libvirt", _missing_qemu())
    logs = tmp_path_factory.mktemp("libvirt-logs")
    started: list[tuple[str, int]] = []
    machine_before = {h: os.path.isdir(f"/sys/fs/cgroup/{h}/machine")
                      for h in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{h}")}
    try:
        for daemon in ("virtlogd", "libvirtd"):
            if _alive(PIDFILES[daemon]) is None:
                env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"3:file:{logs}/{daemon}.log")
                subprocess.run([daemon, "-d"], check=True, timeout=30, env=env)
                deadline = time.monotonic() + 20
                while _alive(PIDFILES[daemon]) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                pid = _alive(PIDFILES[daemon])
                assert pid is not None, f"{daemon} -d did not start"
                started.append((daemon, pid))
        deadline = time.monotonic() + 20
        while subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode:
            assert time.monotonic() < deadline, "libvirtd does not answer on qemu:///system"
            time.sleep(0.2)
        yield "qemu:///system"
    finally:
        for daemon, pid in reversed(started):
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for h, existed in machine_before.items():
            path = f"/sys/fs/cgroup/{h}/machine"
            if not existed and os.path.isdir(path):
                for sub, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(sub)
                    except OSError:
                        pass


INIT = """#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
echo VQ5-GUEST-UP > /dev/ttyS0
while :; do /bin/busybox sleep 3600; done
"""


def _cpio(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A newc cpio archive (what an initramfs is) of {path: (mode, data)}, with its directories."""
    out = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0")
        out.write(b"\0" * ((4 - out.tell() % 4) % 4))
        out.write(data)
        out.write(b"\0" * ((4 - out.tell() % 4) % 4))
        ino += 1

    dirs = sorted({os.path.dirname(p) for p in files if os.path.dirname(p)})
    for d in dirs:
        entry(d, 0o040755, b"")
    for path, (mode, data) in files.items():
        entry(path, mode, data)
    entry("TRAILER!!!", 0, b"")
    return out.getvalue()


def build_initramfs(path: str) -> str:
    with open(shutil.which("busybox") or "/bin/busybox", "rb") as f:
        busybox = f.read()
    archive = _cpio({"bin/busybox": (0o100755, busybox), "init": (0o100755, INIT.encode()),
                     "proc/.keep": (0o100644, b""), "dev/.keep": (0o100644, b"")})
    with open(path, "wb") as f:
        f.write(gzip.compress(archive))
    return path


def domain_xml(name: str, tap: str, kernel: str, initrd: str, disk: str, console: str) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <target dev='{tap}' managed='yes'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
"""


@contextlib.contextmanager
def _running_domain(uri: str, tmp_path, *, booted: bool) -> Iterator[dict]:
    """A running, persistent TCG domain with a tap vq5t<hex> and a virtio disk vda; removed at the end.
    booted: wait (up to 60 s) for the guest's marker on its serial console, ~10 s of TCG boot; without it,
    the domain is running (its QEMU, cgroups and tap exist) as soon as libvirt's create() returns."""
    import libvirt

    from vmqos.drivers.libvirt_driver import Libvirt

    tag = uuid.uuid4().hex[:6]
    name, tap = f"vq5dom{tag}", f"vq5t{tag}"
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    os.chmod(tmp_path, 0o755)
    console = tmp_path / "console.log"
    initrd = build_initramfs(str(tmp_path / "initrd.gz"))
    xml = domain_xml(name, tap, _kernel() or "", initrd, str(disk), str(console))
    conn = libvirt.open(uri)
    dom = conn.defineXML(xml)
    try:
        dom.create()
        deadline = time.monotonic() + 60
        while booted and time.monotonic() < deadline:
            if console.exists() and b"VQ5-GUEST-UP" in console.read_bytes():
                break
            time.sleep(0.2)
        with Libvirt(uri) as lv:
            yield {"name": name, "tap": tap, "uri": uri, "lv": lv, "console": console,
                   "booted": b"VQ5-GUEST-UP" in (console.read_bytes() if console.exists() else b"")}
    finally:
        try:
            if dom.isActive():
                dom.destroy()
        finally:
            dom.undefine()
            conn.close()
            try:
                os.unlink(f"/var/log/libvirt/qemu/{name}.log")  # libvirt's per-domain log of this test's domain
            except FileNotFoundError:
                pass


@pytest.fixture
def qemu_domain(libvirtd, tmp_path):
    """A running domain whose guest has booted (its marker on the serial console): the live tests."""
    with _running_domain(libvirtd, tmp_path, booted=True) as domain:
        yield domain


@pytest.fixture
def qemu_domain_started(libvirtd, tmp_path):
    """A running domain, its guest not waited for: for what libvirt and the host do with a domain (its
    definition, its cgroups), which no guest takes part in."""
    with _running_domain(libvirtd, tmp_path, booted=False) as domain:
        yield domain
