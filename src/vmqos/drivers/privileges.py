"""What needs root, and a refusal for the lack of it as one line that says so.

The kernel answers EPERM or EACCES both when the caller lacks a capability and, now and then,
when root asks for something an object refuses; only the first is a matter of privileges, so the
effective capabilities of this process decide which it was (/proc/self/status, CapEff). What a
refusal looked like before: `vmqos: error: : failed to open netns` (pyroute2's OSError, without a
file name) or one `Operation not permitted` per port of an apply.
"""

from __future__ import annotations

import errno as errnos
from typing import Callable, TypeVar

from vmqos.core.errors import KernelError, NotFound, PrivilegeError

CAP_DAC_OVERRIDE = 1  # write a file whatever its mode: the cgroup files belong to root
CAP_NET_ADMIN = 12  # tc, nftables, links
CAP_SYS_ADMIN = 21  # setns(2) into another network namespace, and `ip netns exec`'s mounts
_NAMES = {CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE", CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_SYS_ADMIN: "CAP_SYS_ADMIN"}
DENIED_ERRNOS = (errnos.EPERM, errnos.EACCES)
_DENIED_TEXT = ("Operation not permitted", "Permission denied")
T = TypeVar("T")


def effective_capabilities() -> int:
    """The effective capability bits of this process; every bit when they cannot be read (then a
    refusal is never blamed on privileges)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return -1


def missing(*caps: int) -> list[str]:
    """The names of `caps` this process does not have."""
    have = effective_capabilities()
    return [_NAMES[c] for c in caps if not have & (1 << c)]


def denied_text(text: str) -> bool:
    """Whether a tool's error output is a permission refusal (iproute2's and nft's wording)."""
    return any(words in text for words in _DENIED_TEXT)


def needs_root(action: str, caps: list[str]) -> PrivilegeError:
    """`action` ("opening network namespace lab-host") needs what `caps` names."""
    return PrivilegeError(f"{action} needs root ({', '.join(caps)}): run vmqos as root (e.g. with sudo), or give "
                          "it these capabilities (systemd: AmbientCapabilities=)", errno=errnos.EPERM)


def refused(action: str, code: int | None, *caps: int) -> PrivilegeError | None:
    """The PrivilegeError for a refusal with errno `code`, when it was for lack of `caps`; else None."""
    if code not in DENIED_ERRNOS:
        return None
    lacking = missing(*caps)
    return needs_root(action, lacking) if lacking else None


def open_in_netns(netns: str | None, opener: Callable[..., T]) -> T:
    """`opener(netns=netns)` (`opener()` for this namespace), a refusal to enter the namespace as one
    line: pyroute2 raises an OSError without a file name ("failed to open netns"; as root without
    CAP_SYS_ADMIN, "mount rundir failed")."""
    if not netns:
        return opener()
    try:
        # flags=0: pyroute2 creates a missing namespace by default (O_CREAT); one deleted since it
        # was checked must be an error, not a new empty namespace that the next steps would fill.
        return opener(netns=netns, flags=0)
    except OSError as exc:
        if exc.errno == errnos.ENOENT:
            raise NotFound(f"network namespace {netns!r} does not exist (`ip netns list` shows the existing "
                           "ones)") from None
        if exc.errno not in DENIED_ERRNOS:
            raise
        action = f"opening network namespace {netns}"
        raise (refused(action, exc.errno, CAP_SYS_ADMIN) or KernelError(
            f"{action} was refused ({exc.strerror or exc}) although vmqos has CAP_SYS_ADMIN: a container or a "
            "security module (AppArmor, SELinux) forbids it", errno=exc.errno)) from None
