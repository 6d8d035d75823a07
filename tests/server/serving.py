"""A `vmqos server` in a subprocess with the options a test gives (the `server` fixture takes none),
and plain HTTP calls to it with the standard library (the client under test is the server)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .conftest import Server, free_port, openstack_cli


@contextmanager
def running_server(tmp: Path, db: str, *options: str, env: dict[str, str] | None = None,
                   name: str = "server", cafile: Path | None = None,
                   wrap: Callable[[list[str]], list[str]] | None = None) -> Iterator[Server]:
    """`vmqos server --listen 127.0.0.1:PORT --db DB OPTIONS...`, up before the body runs, stopped after;
    over https, trusting `cafile`, when it is given (the options then hold --tls-cert and --tls-key);
    `wrap` turns the command line into the one that runs it (a sandbox that execs it: the same process)."""
    port = free_port()
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    log_path = tmp / f"{name}.log"
    log = open(log_path, "w")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))} | (env or {})
    argv = [sys.executable, "-m", "vmqos.cli.main", "server", "--listen", f"127.0.0.1:{port}", "--db", db, *options]
    proc = subprocess.Popen(wrap(argv) if wrap else argv, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                            env=child_env)
    url = f"{'https' if cafile else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1, context=context) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start: {log_path.read_text()}")
            time.sleep(0.1)
        started = Server(url, db, openstack_cli(), tmp, proc.pid)
        try:
            yield started
        finally:
            started.close_cli()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, Any, Any]:
    """(status, headers (case-insensitive), JSON body or None) of one request; an HTTP error status is an
    answer, not a raise. `context`: the TLS context of an https URL (the CA it trusts)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, answer_headers, raw = exc.code, exc.headers, exc.read()
    return status, answer_headers, json.loads(raw) if raw else None


def password_auth(user: str, password: str, project: str) -> dict[str, Any]:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}


def token(url: str, user: str, password: str, project: str,
          context: ssl.SSLContext | None = None) -> tuple[str, dict[str, Any]]:
    """A token from the Keystone at `url` (its base, without /v3) and the token body."""
    status, headers, body = call("POST", f"{url}/v3/auth/tokens", password_auth(user, password, project),
                                 context=context)
    assert status == 201, body
    return headers["X-Subject-Token"], body["token"]
