"""A systemd unit's process sandbox without systemd: run a command as the unit's [Service] would confine it.

systemd is not PID 1 on our machines, so `systemctl start` cannot show that Python, uvicorn, argon2's
cffi and OpenSSL run under contrib/systemd's hardening. This applies the parts of it that decide
whether the process runs at all, as systemd 252 builds them (src/shared/seccomp-util.c), then execs
the command:

- NoNewPrivileges= and CapabilityBoundingSet=: `setpriv --no-new-privs --bounding-set -all,+…` (a uid-0
  process then holds exactly the set's capabilities after its exec, none for an empty set; the
  agent's unit runs as root with its two, the server's as a user with none);
- SystemCallFilter=: an allow list, each `@group` expanded by `systemd-analyze syscall-filter` (the
  same tables systemd uses), minus the `~` lists, every other call failing with
  SystemCallErrorNumber=;
- MemoryDenyWriteExecute=: a second filter, systemd's rules: mmap with PROT_WRITE|PROT_EXEC,
  mprotect/pkey_mprotect with PROT_EXEC and shmat with SHM_EXEC fail with EPERM;
- RestrictAddressFamilies=: socket(2) of any other family fails with EAFNOSUPPORT.

Not applied (they change what the process sees, not whether it runs, and need a mount namespace
systemd builds): ProtectSystem=, PrivateTmp=, PrivateDevices=, ProtectHome=, the credentials, the
user. libseccomp is called through ctypes (Debian's libseccomp2, which systemd itself links).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

_LAUNCHER = r'''
import ctypes, errno, json, os, sys
spec = json.loads(sys.argv[1])
lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                       ctypes.c_void_p]
lib.seccomp_load.argtypes = [ctypes.c_void_p]

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

ALLOW, EQ, MASKED_EQ = 0x7FFF0000, 4, 7
def fail(code): return 0x00050000 | code
def nr(name): return lib.seccomp_syscall_resolve_name(name.encode())
def rule(ctx, action, name, *cmps):
    number = nr(name)
    if number < 0:
        return  # not a call of this architecture
    array = (Cmp * max(1, len(cmps)))(*cmps)
    if lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array) < 0:
        raise OSError(f"seccomp_rule_add {name}")

allowed = lib.seccomp_init(fail(spec["errno"]))
for name in spec["allow"]:
    rule(allowed, ALLOW, name)
second = lib.seccomp_init(ALLOW)
if spec["mdwe"]:
    PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
    rule(second, fail(errno.EPERM), "mmap", Cmp(2, MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC))
    rule(second, fail(errno.EPERM), "mprotect", Cmp(2, MASKED_EQ, PROT_EXEC, PROT_EXEC))
    rule(second, fail(errno.EPERM), "pkey_mprotect", Cmp(2, MASKED_EQ, PROT_EXEC, PROT_EXEC))
    rule(second, fail(errno.EPERM), "shmat", Cmp(2, MASKED_EQ, SHM_EXEC, SHM_EXEC))
if spec["families"] is not None:
    for family in range(0, 64):
        if family not in spec["families"]:
            rule(second, fail(errno.EAFNOSUPPORT), "socket", Cmp(0, EQ, family, 0))
for ctx in (second, allowed):  # the allow list last: once loaded, it would refuse seccomp(2) itself
    if lib.seccomp_load(ctx) < 0:
        raise OSError("seccomp_load")
os.execv(spec["argv"][0], spec["argv"])
'''

_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


def service_section(unit: Path) -> dict[str, list[str]]:
    """Every key of [Service] with all its values in order (a key may be given more than once; an empty
    value is kept: it resets a list in systemd's syntax)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def syscalls(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a `@group` as systemd defines it (nested groups expanded), or a call itself."""
    if not group.startswith("@"):
        return {group}
    seen = seen if seen is not None else set()
    if group in seen:
        return set()
    seen.add(group)
    listed = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    names: set[str] = set()
    for line in listed.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            names |= syscalls(item, seen)
    return names


def confinement(unit: Path) -> dict[str, object]:
    """What the unit's [Service] says about system calls, W^X memory, address families and privileges."""
    service = service_section(unit)
    allow: set[str] = set()
    deny: set[str] = set()
    for value in service.get("SystemCallFilter", []):
        words = value.split()
        if words and words[0].startswith("~"):
            for word in [words[0][1:], *words[1:]]:
                deny |= syscalls(word)
        else:
            for word in words:
                allow |= syscalls(word)
    families = None
    for value in service.get("RestrictAddressFamilies", []):
        families = [_FAMILIES[name] for name in value.split()]
    error = service.get("SystemCallErrorNumber", ["EPERM"])[-1]
    return {"allow": sorted(allow - deny), "errno": getattr(errno, error),
            "mdwe": service.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes", "families": families,
            "no_new_privileges": service.get("NoNewPrivileges", ["no"])[-1] == "yes",
            "capabilities": service.get("CapabilityBoundingSet", [None])[-1]}


def confined(unit: Path, argv: list[str]) -> list[str]:
    """The command line that runs `argv` (argv[0] a path) inside the unit's confinement."""
    if shutil.which("systemd-analyze") is None or shutil.which("setpriv") is None:
        raise RuntimeError("systemd-analyze (Debian's systemd) and setpriv (util-linux) are needed")
    spec = confinement(unit)
    if not spec["no_new_privileges"]:
        raise ValueError(f"{unit.name}: NoNewPrivileges=yes is what makes the filters loadable without privileges")
    capabilities = str(spec["capabilities"] or "").split()
    if spec["capabilities"] is None or any(not c.startswith("CAP_") for c in capabilities):
        raise ValueError(f"{unit.name}: give CapabilityBoundingSet= as a list of CAP_* (empty: none)")
    bounding = ",".join(["-all", *(f"+{c[4:].lower()}" for c in capabilities)])
    spec["argv"] = [os.fspath(a) for a in argv]
    return ["setpriv", "--no-new-privs", "--bounding-set", bounding, "--inh-caps", "-all", "--", sys.executable,
            "-c", _LAUNCHER, json.dumps(spec)]
