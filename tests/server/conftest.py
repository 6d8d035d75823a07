"""The server tier: `vmqos server` in a subprocess on a free loopback port, driven by the real `openstack` CLI.

The in-process API tests run on both back ends (the `db_url` fixture: a SQLite file and a fresh
database of the throw-away PostgreSQL cluster, tests/pgcluster.py). The real-CLI modules run on
SQLite, and those marked `both_backends` (the seeds' commands) on PostgreSQL too: each CLI call
is a new Python process of about a second, and the whole CLI tier twice would take most of the
suite's budget for what the in-process tests already prove on both. No root: the server touches
no kernel. The client is python-openstackclient, unmodified, in its
own virtualenv (it pulls many packages that must not move the project's pins): $VMQOS_OPENSTACK_CLI,
else .venv-osc/bin/openstack in the checkout (`make test` installs it there).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pgcluster import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-secret"
PASSWORD = "user-secret"
# name -> (project, role)
USERS = {"alice": ("demo", "member"), "rita": ("demo", "reader"), "bob": ("other", "member")}


def openstack_cli() -> Path:
    path = Path(os.environ.get("VMQOS_OPENSTACK_CLI") or ROOT / ".venv-osc" / "bin" / "openstack")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the openstack client is not at {path}: python3 -m venv .venv-osc && "
                    ".venv-osc/bin/pip install python-openstackclient==10.5.0 (or set VMQOS_OPENSTACK_CLI)")
    return path


def vmqos(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    db: str
    cli: Path
    cwd: Path
    pid: int | None = None  # the server's process

    def openstack(self, *args: str, user: str = "admin", project: str | None = None,
                  password: str | None = None) -> subprocess.CompletedProcess[str]:
        project = project or ("admin" if user == "admin" else USERS[user][0])
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env |= {"OS_AUTH_URL": f"{self.url}/v3", "OS_USERNAME": user, "OS_PROJECT_NAME": project,
                "OS_PASSWORD": password or (ADMIN_PASSWORD if user == "admin" else PASSWORD),
                "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                "OS_IDENTITY_API_VERSION": "3", "HOME": str(self.cwd)}
        return subprocess.run([str(self.cli), *args], cwd=self.cwd, env=env, capture_output=True, text=True,
                              timeout=60)

    def json(self, *args: str, **kw: Any) -> Any:
        result = self.openstack(*args, "-f", "json", **kw)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The `server` fixture's back ends: both for a module marked both_backends, else SQLite."""
    if "server" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize("server", BACKENDS if both else BACKENDS[:1], indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    openstack_cli()  # no client: fail before a server is made
    tmp = tmp_path_factory.mktemp("vq-server")
    if request.param == "sqlite":
        db = f"sqlite:///{tmp / 'vmqos.db'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        name = cluster.create_database()
        request.addfinalizer(lambda: cluster.drop_database(name))
        db = cluster.url(name)
    init = vmqos("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db, cwd=tmp)
    assert init.returncode == 0, init.stderr
    for name, (project, role) in USERS.items():
        made = vmqos("server", "user", name, "--password", PASSWORD, "--project", project, "--role", role,
                     "--db", db, cwd=tmp)
        assert made.returncode == 0, made.stderr
    from .serving import running_server  # it imports this module's Server: imported here, not at the top

    with running_server(tmp, db) as started:
        yield started


# A throw-away CA and a server certificate for 127.0.0.1 (the TLS tests), made with Debian's openssl CLI as
# an operator's own CA would issue them.
EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
SERVER_EXTENSIONS = """\
subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    cert: Path
    key: Path


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("Debian's openssl CLI is not installed: apt-get install openssl (`make` installs it)")
    d = tmp_path_factory.mktemp("vq-pki")
    openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vmqos test CA",
            cwd=d)
    openssl("req", *EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text(SERVER_EXTENSIONS)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    return Pki(d, d / "ca.pem", d / "server.pem", d / "server.key")
