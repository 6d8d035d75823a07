"""The server tier's warm `openstack` client (osc_cli.py) answers as an exec of the console script does.

The tier's ~600 CLI calls run as forked children of a client that imported python-openstackclient
once per server. These tests hold it to the plain exec, call by call: the same exit status, stdout
and stderr for a success in JSON, a Neutron error, a refused password and an argparse error — and
each call's state stays its own (a failed call does not leak into the next one). The demo's relay
(osc_relay.py: an `openstack` executable whose calls are the warm client's children) answers as the
warm client does.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import replace

import pytest

from .conftest import ADMIN_PASSWORD, PASSWORD, USERS
from .osc_cli import console_script_python
from .osc_relay import OpenstackRelay

pytestmark = pytest.mark.server

# Each: (user, password or None, args). Deterministic outputs only (no generated IDs, no times).
CALLS = [
    ("admin", None, ("network", "qos", "policy", "list", "-f", "json")),
    ("alice", None, ("network", "qos", "policy", "show", "no-such-policy")),
    ("alice", "wrong-password", ("network", "qos", "policy", "list")),
    ("admin", None, ("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--no-such-option", "p")),
    ("rita", None, ("network", "qos", "policy", "create", "refused-for-a-reader")),
    ("admin", None, ("network", "qos", "policy", "show", "vq-fork", "-f", "value", "-c", "name", "-c", "shared")),
]


def test_the_cli_in_use_is_the_warm_client(server):
    assert os.environ.get("VMQOS_OSC_EXEC") != "1", "the test compares the warm client with an exec: unset it"
    assert console_script_python(server.cli) is not None, f"{server.cli} is not openstackclient's console script"
    server.json("network", "qos", "policy", "list")
    assert server._forks is not None  # the call went through the fork server


def test_every_call_answers_as_an_exec_does(server, monkeypatch):
    server.json("network", "qos", "policy", "create", "vq-fork")
    codes = set()
    for user, password, args in CALLS:
        warm = server.openstack(*args, user=user, password=password)
        monkeypatch.setenv("VMQOS_OSC_EXEC", "1")
        plain = server.openstack(*args, user=user, password=password)
        monkeypatch.delenv("VMQOS_OSC_EXEC")
        assert (warm.returncode, warm.stdout, warm.stderr) == (plain.returncode, plain.stdout, plain.stderr), args
        codes.add(warm.returncode)
    assert codes == {0, 1, 2}  # success, errors from the server (1) and from argparse (2) all compared


def test_a_hung_call_times_out_and_the_next_call_works(server):
    """A call that outlives its timeout is killed and raises as subprocess.run does; the next one runs."""
    forks = server._forks
    assert forks is not None
    with socket.socket() as silent:  # listens, never accepts, never answers: the client waits
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        env = server._cli_env() | {"OS_AUTH_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/v3",
                                   "OS_USERNAME": "admin", "OS_PASSWORD": "x", "OS_PROJECT_NAME": "admin",
                                   "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
        with pytest.raises(subprocess.TimeoutExpired):
            forks.run(("network", "qos", "policy", "list"), env, server.cwd, timeout=3)
    assert server.json("network", "qos", "policy", "show", "vq-fork")["name"] == "vq-fork"


@pytest.fixture(scope="module")
def relay(server):
    python = console_script_python(server.cli)
    assert python is not None, f"{server.cli} is not openstackclient's console script"
    with OpenstackRelay(server.cli, python) as made:
        yield made


def _relayed(server, relay, args, user="admin", password=None, timeout=60.0):
    """`openstack ARGS` as server.openstack would run it, but through the relay's executable."""
    project = "admin" if user == "admin" else USERS[user][0]
    env = server._cli_env() | {
        "OS_AUTH_URL": f"{server.url}/v3", "OS_USERNAME": user, "OS_PROJECT_NAME": project,
        "OS_PASSWORD": password or (ADMIN_PASSWORD if user == "admin" else PASSWORD),
        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3"}
    return subprocess.run([str(relay.command), *args], cwd=server.cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_the_relay_answers_as_the_warm_client_and_a_killed_relay_takes_its_call_with_it(server, relay):
    """The demo's relay (osc_relay.py) against the warm client, which the test above holds to an exec."""
    server.json("network", "qos", "policy", "create", "vq-relay")
    codes = set()
    for user, password, args in CALLS[1:4] + [("admin", None, ("network", "qos", "policy", "show", "vq-relay",
                                                                "-f", "value", "-c", "name"))]:
        relayed = _relayed(server, relay, args, user, password)
        warm = server.openstack(*args, user=user, password=password)
        assert (relayed.returncode, relayed.stdout, relayed.stderr) == (warm.returncode, warm.stdout, warm.stderr)
        codes.add(relayed.returncode)
    assert codes == {0, 1, 2}
    with socket.socket() as silent:  # the call hangs; its relay is killed on the timeout, and its child with it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hung = server.url.rsplit(":", 1)[0] + f":{silent.getsockname()[1]}"
        with pytest.raises(subprocess.TimeoutExpired):
            _relayed(replace(server, url=hung), relay, ("network", "qos", "policy", "list"), timeout=3)
    assert _relayed(server, relay, ("network", "qos", "policy", "show", "vq-relay", "-f", "value", "-c", "name"),
                    ).stdout == "vq-relay\n"
    assert relay.close() == [1, 1, 2, 0, -9, 0]  # every call served, the hung one killed (SIGKILL)
