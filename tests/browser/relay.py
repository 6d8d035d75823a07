"""A TCP relay from the root namespace's loopback into another network namespace.

The lab fleet's server listens inside its control namespace (F-ctl), where only the fleet's hosts
reach it. Chromium runs as the tests start it, in the root namespace, with no route there; rather
than wrap the browser in `ip netns exec`, this relay listens on 127.0.0.1 and opens each connection
from a thread that entered the fleet's namespace first (setns(2) moves the calling thread only, and
a socket stays in the namespace it was made in).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _connect_in(netns: str, address: tuple[str, int]) -> socket.socket:
    found: dict[str, object] = {}

    def work() -> None:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {netns}")
            found["socket"] = socket.create_connection(address, timeout=10)
        except OSError as exc:
            found["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=work, name=f"vq-relay-connect-{netns}")
    thread.start()
    thread.join()
    if "error" in found:
        raise found["error"]  # type: ignore[misc]
    made = found["socket"]
    assert isinstance(made, socket.socket)
    made.settimeout(None)
    return made


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Relay:
    """127.0.0.1:<port> here -> `address` inside `netns`, until `close()`."""

    def __init__(self, netns: str, address: tuple[str, int]) -> None:
        self.netns, self.address = netns, address
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="vq-relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = _connect_in(self.netns, self.address)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
