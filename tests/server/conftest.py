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

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pgcluster import BACKENDS

from .osc_cli import OpenstackForks, console_script_python, exec_openstack

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


def in_process(*args: str) -> None:
    """`vmqos ARGS` in this process, for a fixture's set-up: the commands themselves are tested as processes
    (test_identity_cli, test_tls, test_server_sandbox...); here four interpreters a server (~1.5 s of CPU) saved."""
    from vmqos.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert code == 0, f"vmqos {' '.join(args)}: exit {code}: {err.getvalue()}{out.getvalue()}"


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
    _forks: OpenstackForks | None = field(default=None, repr=False, compare=False)

    def _cli_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | {"HOME": str(self.cwd)}

    def _run_cli(self, args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """The real CLI as a child of a warm client made at the first call (tests/server/osc_cli.py), or an
        exec per call when VMQOS_OSC_EXEC=1 or the CLI is not openstackclient's console script."""
        python = None if os.environ.get("VMQOS_OSC_EXEC") == "1" else console_script_python(self.cli)
        if python is None:
            return exec_openstack(self.cli, args, env, self.cwd, timeout=60)
        if self._forks is None:
            self._forks = OpenstackForks(self.cli, python, self._cli_env(), self.cwd)
            weakref.finalize(self, self._forks.close)  # at the latest when the session ends
        return self._forks.run(args, env, self.cwd, timeout=60)

    def close_cli(self) -> None:
        """End the warm client, if a call made one (the fixtures that stop a server call this)."""
        if self._forks is not None:
            self._forks.close()
            self._forks = None

    def openstack(self, *args: str, user: str = "admin", project: str | None = None,
                  password: str | None = None) -> subprocess.CompletedProcess[str]:
        project = project or ("admin" if user == "admin" else USERS[user][0])
        env = self._cli_env() | {
            "OS_AUTH_URL": f"{self.url}/v3", "OS_USERNAME": user, "OS_PROJECT_NAME": project,
            "OS_PASSWORD": password or (ADMIN_PASSWORD if user == "admin" else PASSWORD),
            "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3"}
        return self._run_cli(args, env)

    def json(self, *args: str, **kw: Any) -> Any:
        result = self.openstack(*args, "-f", "json", **kw)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The `server` fixture's back ends: both for a module marked both_backends, else SQLite."""
    if "server" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize("server", BACKENDS if both else BACKENDS[:1], indirect=True, scope="module")


# The fuzz test's back-end sets (tests/server/test_fuzz.py): `[sqlite]` is contained in `[sqlite+postgresql]`,
# which sends every generated case to both servers. When the selection (-m, -k) keeps both, `[sqlite]` is
# deselected: one generation instead of two, nothing proved less. Trylast: after -m/-k have deselected.
FUZZ_TEST = ("test_fuzz.py", "test_no_server_error_and_json_errors")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def fuzz_set(item: pytest.Item) -> str | None:
        callspec = getattr(item, "callspec", None)
        if (item.path.name, getattr(item, "originalname", None)) == FUZZ_TEST and callspec is not None:
            return str(callspec.id)
        return None

    sets = {fuzz_set(item) for item in items}
    if {"sqlite", "sqlite+postgresql"} <= sets:
        contained = [item for item in items if fuzz_set(item) == "sqlite"]
        items[:] = [item for item in items if fuzz_set(item) != "sqlite"]
        config.hook.pytest_deselected(items=contained)


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
    in_process("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db)
    for name, (project, role) in USERS.items():
        in_process("server", "user", name, "--password", PASSWORD, "--project", project, "--role", role, "--db", db)
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
