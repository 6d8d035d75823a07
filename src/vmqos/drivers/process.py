"""Running `ip`, `tc` and `nft` inside a network namespace, with failures as `KernelError`."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Sequence

from vmqos.core.errors import KernelError, NotFound, ToolTimeout
from vmqos.core.model.host import check_netns_name
from vmqos.drivers.privileges import CAP_NET_ADMIN, CAP_SYS_ADMIN, denied_text, missing, needs_root

NETNS_DIR = "/run/netns"


def netns_exists(netns: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, netns))


def check_netns(netns: str | None) -> None:
    """None is the caller's own namespace; any other value must name an existing one ("" is not
    the host: /run/netns/ itself exists, and a blank name would have meant the host's devices)."""
    if netns is not None:
        check_netns_name(netns)
    if netns is not None and not netns_exists(netns):
        raise NotFound(f"network namespace {netns!r} does not exist (`ip netns list` shows the existing ones)")


def in_netns(argv: Sequence[str], netns: str | None) -> list[str]:
    """The command line that runs `argv` in `netns` (the caller's namespace when None)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(argv: Sequence[str], netns: str | None = None, *, input: str | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool; a missing tool or a non-zero exit becomes a one-line `KernelError`, a refusal for
    want of privileges (tc, nft, ip need CAP_NET_ADMIN; `ip netns exec` CAP_SYS_ADMIN) a PrivilegeError."""
    if shutil.which(argv[0]) is None:
        raise KernelError(f"{argv[0]} is not installed: run `make deps` (Debian: apt-get install "
                          f"{'nftables' if argv[0] == 'nft' else 'iproute2'})")
    try:
        done = subprocess.run(in_netns(argv, netns), input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolTimeout(f"{' '.join(argv[:3])} did not finish within {timeout:g} s") from None
    where = f" in netns {netns}" if netns else ""
    if done.returncode != 0 and denied_text(done.stderr or done.stdout or ""):
        # Whatever `check` says: a caller that reads the output itself expects other failures.
        lacking = missing(*((CAP_SYS_ADMIN,) if netns else ()), CAP_NET_ADMIN)
        if lacking:
            raise needs_root(f"running {' '.join(argv[:3])}{where}", lacking)
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise KernelError(f"{' '.join(argv[:3])}{where} failed: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done
