"""A fork server for the real `openstack` CLI: run by the CLI's own interpreter (.venv-osc), never by pytest's.

Why: an `openstack` call costs about 0.75 s of CPU before it sends its first request (measured
2026-12-07: python-openstackclient's imports ~0.5 s, its command plugins' imports ~0.15 s, cliff's
package-to-distribution map ~0.06 s), and the server tier makes ~600 calls. This process pays that
once: it imports `openstackclient.shell` and every module its entry points name, then forks one child
per command. The child is a fresh process of the unmodified client: it takes the call's environment,
working directory, argv and files for stdin/stdout/stderr, runs the console script's own
`sys.exit(main())` and exits through the interpreter's normal shutdown (atexit, flushes), so its exit
status, its stdout and its stderr are the command's, as with an exec. Nothing a command does reaches
the next one: every child starts from this process, which never runs a command.

What differs from an exec, on purpose and harmless for the tests: modules a command would import
are already imported; modules that read the environment when imported (openstack.config's and
stevedore's cache directories, from HOME) saw this process's environment, which the caller gives as
the base of every call's (tests/server/osc_cli.py starts one per server, with the server's HOME), and
those that read sys.argv[0] (cliff's program name) saw the console script's path, as in an exec.

Protocol, one JSON object a line: in on stdin {"argv", "env", "cwd", "stdin", "stdout", "stderr"}
(the three last are paths), out on stdout {"pid"} when the child is forked, then {"status", "cpu_us"}
when it ended (status as os.waitstatus_to_exitcode: negative for a signal; cpu_us: the child's user +
system CPU time, for bench/osc_cli_bench.py). EOF on stdin ends the server.

Relay mode (`osc_forkserver.py CLI --socket PATH`, tests/server/osc_relay.py): for a program that runs
`openstack` itself (the demo), the calls come from a small client executable instead: on a Unix socket
it sends {"argv", "env", "cwd"} with its own stdin, stdout, stderr and network namespace as file
descriptors, and gets {"status"} back, which it exits with. The child takes those descriptors, and
joins that namespace when it is not this process's (the demo's fleet runs `ip netns exec CTL openstack
...`). A client that goes away (killed on a timeout) takes its child with it. On stdout: {"ready"},
then {"status"} per call served; EOF on stdin ends the server, as in the first mode.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import select
import signal
import socket
import sys

# The entry-point groups an `openstack` run loads: its commands, its auth plugins, its formatters.
_GROUP_PREFIXES = ("openstack.", "keystoneauth1.plugin", "cliff.")


def _warm(cli: str) -> None:
    """Import what every call would import, as the console script's interpreter would find it."""
    sys.path[0] = os.path.dirname(cli)  # the console script's directory, not this file's (tests/server)
    sys.argv = [cli]  # what the console script's imports see (cliff's App.NAME is argv[0]'s base name)
    import openstackclient.shell  # noqa: F401  (the console script's own import)
    from cliff import command

    for dist in importlib.metadata.distributions():
        for entry in dist.entry_points:
            if entry.group.startswith(_GROUP_PREFIXES):
                try:
                    importlib.import_module(entry.module)
                except Exception:  # noqa: BLE001  a broken plugin fails in the child, as it would in an exec
                    pass
    command._get_distributions_by_modules()  # the installed packages' metadata, read once


def _send(message: dict[str, int]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _serve() -> dict[str, object] | None:
    """Fork a child per request; return the request in the child, None in the server at EOF."""
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return request
        _send({"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        _send({"status": os.waitstatus_to_exitcode(status), "cpu_us": int((usage.ru_utime + usage.ru_stime) * 1e6)})
    return None


def _become(request: dict[str, object]) -> None:
    """Turn this child into the process an exec of the console script would have been."""
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    for fd, key, flags in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY)):
        opened = os.open(str(request[key]), flags)
        os.dup2(opened, fd)
        os.close(opened)
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = [str(a) for a in argv]


_CLONE_NEWNET = 0x40000000  # setns(2)'s namespace type (os.setns is Python >= 3.12; the client's may be 3.11)
_MAX_REQUEST = 1 << 20


def _recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """A relay client's request: a 4-byte length, the JSON; its four descriptors came with the first bytes."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        more = conn.recv(65536)
        if not more or len(data) > _MAX_REQUEST:
            raise ConnectionError("a relay client sent a short request")
        data += more
    return json.loads(data[4:4 + int.from_bytes(data[:4], "big")]), fds


def _serve_socket(path: str) -> tuple[dict[str, object], list[int]] | None:
    """Relay mode: fork a child per connection; the request and its descriptors in the child, None in
    the server at EOF on stdin."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    _send({"ready": 1})
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable and not sys.stdin.readline():
            listener.close()
            return None
        if listener not in readable:
            continue
        conn, _ = listener.accept()
        try:
            request, fds = _recv_request(conn)
        except (ConnectionError, ValueError):
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            return request, fds
        for fd in fds:
            os.close(fd)
        status = _wait_or_kill(pid, conn)
        _send({"status": status})  # the relay counts the calls it served (tests/server/osc_relay.py)
        try:
            conn.sendall((json.dumps({"status": status}) + "\n").encode())
        except OSError:
            pass
        conn.close()


def _wait_or_kill(pid: int, conn: socket.socket) -> int:
    """The child's exit status; it is killed when its client goes away first (EOF on the connection)."""
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            readable, _, _ = select.select([pidfd, conn], [], [])
            if pidfd in readable:
                break
            if not conn.recv(1):  # the client is gone: so is its command
                os.kill(pid, signal.SIGKILL)
                break
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _become_relayed(request: dict[str, object], fds: list[int]) -> None:
    """Turn this child into the process the relay client's exec of the console script would have been."""
    stdin, stdout, stderr, netns = fds
    if os.fstat(netns).st_ino != os.stat("/proc/self/ns/net").st_ino:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(netns, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns to the relay client's network namespace")
    os.close(netns)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = [str(a) for a in argv]


def main() -> None:
    cli = sys.argv[1]
    relay = sys.argv[3] if sys.argv[2:3] == ["--socket"] else None  # read before _warm sets sys.argv
    _warm(cli)
    if relay is not None:
        relayed = _serve_socket(relay)
        if relayed is None:
            return
        _become_relayed(*relayed)
    else:
        _send({"ready": 1})
        request = _serve()
        if request is None:
            return
        _become(request)
    from openstackclient.shell import main as openstack_main

    sys.exit(openstack_main())


if __name__ == "__main__":
    main()
