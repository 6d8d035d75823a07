"""A stopped server answers its long waits at once (api.stop_signals), instead of cutting them after
uvicorn's graceful-shutdown timeout: an agent's long poll still open gets its answer (the state now, as at
its `wait`), and a poll whose client has already gone is not waited for (no task left to cancel).

The real `vmqos server` in a subprocess, SIGTERM as systemd and the lab fleet send it. No timed assertion:
before the change the open poll was cut (no answer) and the log said it cancelled the tasks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.request
from typing import Any

import pytest

from .conftest import ADMIN_PASSWORD, in_process
from .serving import running_server, token

pytestmark = pytest.mark.server

POLL = "/v1/hosts/{host}/desired/changes?since=0&wait=30"
CANCELLED = "timeout graceful shutdown exceeded"  # what uvicorn logs when it cuts the requests under way


def test_a_stop_answers_an_open_long_poll_and_does_not_wait_for_a_gone_one(tmp_path):
    db = f"sqlite:///{tmp_path / 'vmqos.db'}"
    in_process("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db)
    answered: dict[str, Any] = {}
    with running_server(tmp_path, db) as server:
        auth, _ = token(server.url, "admin", ADMIN_PASSWORD, "admin")

        def open_poll() -> None:
            request = urllib.request.Request(server.url + POLL.format(host="h1"), headers={"X-Auth-Token": auth})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answered["status"], answered["body"] = response.status, json.loads(response.read())
            except OSError as exc:  # the connection cut: what a stop did before
                answered["error"] = exc

        poller = threading.Thread(target=open_poll, daemon=True)
        poller.start()
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as gone:  # a poll, then its agent exits
            gone.sendall(f"GET {POLL.format(host='h2')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"X-Auth-Token: {auth}\r\n\r\n".encode())
            time.sleep(1.0)  # both polls reach their wait (each would wait 30 s)
        assert poller.is_alive(), answered  # still waiting: nothing changed on h1
        assert server.pid is not None
        os.kill(server.pid, signal.SIGTERM)
        poller.join(30)
        assert not poller.is_alive()
        assert "error" not in answered, answered["error"]
        assert answered["status"] == 200
        assert answered["body"]["host"] == "h1" and answered["body"]["changes"] == []
    log = (tmp_path / "server.log").read_text()
    assert "Application shutdown complete" in log, log
    assert CANCELLED not in log, log
