"""`vmqos-cni`'s `vmqosServer` without a kernel or a server: the key read and refused as the spec's error
object, the credentials file read without ever echoing its values, a policy looked up by name among
what a client sees (none, two, one with rules), and a server that is down: ADD fails with code 11
within the timeout, DEL still succeeds. The real server and kernel: tests/kernel/test_cni_server.py."""

from __future__ import annotations

import io
import json
import logging
import socket
import time

import pytest

from vmqos.cni.main import run
from vmqos.core.errors import ConflictError, InvalidValue
from vmqos.core.formats.cni import SERVER_TIMEOUT_S, CniError, CniServer, read_config
from vmqos.services.server_client import NeutronPolicy
from vmqos.services.server_policies import CredentialsError, policy_by_name, read_credentials

SECRET = "s3cret-do-not-print"
PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "veth1234"}, {"name": "eth0", "sandbox": "/run/netns/vqc"}]}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/run/netns/vqc", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}


def conf(**extra):
    return json.dumps({"cniVersion": "1.0.0", "name": "vqnet", "type": "vmqos-cni", "prevResult": PREV, **extra})


def refused(server, fragment):
    with pytest.raises(CniError) as caught:
        read_config(conf(policy="gold", vmqosServer=server))
    assert caught.value.code == 7 and fragment in caught.value.msg, caught.value.msg
    assert SECRET not in str(caught.value)
    return caught.value


def test_vmqos_server_is_read_with_its_defaults():
    cfg = read_config(conf(policy="gold", vmqosServer={"url": "https://vq.example:9696/",
                                                       "credentialsFile": "/etc/vmqos/cni.json"}))
    assert cfg.server == CniServer("https://vq.example:9696", "/etc/vmqos/cni.json", None, SERVER_TIMEOUT_S)
    cfg = read_config(conf(policy="gold", vmqosServer={"url": "http://127.0.0.1:9696", "credentialsFile": "/c.json",
                                                       "caCert": "/etc/vmqos/ca.pem", "timeoutSeconds": 2}))
    assert cfg.server == CniServer("http://127.0.0.1:9696", "/c.json", "/etc/vmqos/ca.pem", 2.0)
    assert read_config(conf(policy="gold")).server is None


def test_vmqos_server_errors_name_the_key_and_never_a_secret():
    refused("http://x", "vmqosServer is not an object")
    refused({"url": "http://x", "credentialsFile": "/c", "password": SECRET}, "vmqosServer.password: credentials")
    refused({"url": "http://x", "credentialsFile": "/c", "frob": 1}, "vmqosServer.frob is not a key")
    refused({"url": "vq.example:9696", "credentialsFile": "/c"}, "vmqosServer.url")
    refused({"url": "http://x"}, "vmqosServer.credentialsFile: None")
    refused({"url": "http://x", "credentialsFile": "cni.json"}, "vmqosServer.credentialsFile: 'cni.json'")
    refused({"url": "http://x", "credentialsFile": "/c", "caCert": 3}, "vmqosServer.caCert: a int")
    for bad in (0, -1, 61, True, "5"):
        refused({"url": "http://x", "credentialsFile": "/c", "timeoutSeconds": bad}, "vmqosServer.timeoutSeconds")


def test_credentials_file_shapes_and_errors(tmp_path):
    path = tmp_path / "cred.json"
    path.write_text(json.dumps({"username": "cni", "password": SECRET, "project_name": "demo",
                                "user_domain_name": "Default"}))
    assert read_credentials(str(path)) == {"OS_USERNAME": "cni", "OS_PASSWORD": SECRET, "OS_PROJECT_NAME": "demo",
                                           "OS_USER_DOMAIN_NAME": "Default"}
    path.write_text(json.dumps({"auth": {"username": "cni", "password": SECRET, "project_name": "demo",
                                         "auth_url": "https://ks/v3"}}))  # a clouds.yaml cloud, as JSON
    assert read_credentials(str(path))["OS_AUTH_URL"] == "https://ks/v3"
    path.write_text(json.dumps({"OS_USERNAME": "cni", "OS_PASSWORD": SECRET, "OS_PROJECT_NAME": "demo"}))
    assert read_credentials(str(path))["OS_PASSWORD"] == SECRET
    for body, fragment in (({"username": "cni", "project_name": "demo", "user_domain_name": SECRET},
                            "OS_PASSWORD missing"),
                           ({"username": "cni", "password": SECRET, "project_name": "demo", "pasword": SECRET},
                            "'pasword' is not a key"),
                           ({"username": "cni", "password": 5, "project_name": "demo"}, "password is not a"),
                           ([SECRET], "not a JSON object")):
        path.write_text(json.dumps(body))
        with pytest.raises(CredentialsError) as caught:
            read_credentials(str(path))
        assert fragment in str(caught.value) and SECRET not in str(caught.value), str(caught.value)
    path.write_text("username: cni\npassword: " + SECRET)
    with pytest.raises(CredentialsError, match="is not JSON") as caught:
        read_credentials(str(path))
    assert SECRET not in str(caught.value)
    with pytest.raises(CredentialsError, match="cannot be read"):
        read_credentials(str(tmp_path / "absent.json"))


class FakeClient:
    """What policy_by_name needs of a ServerClient: its URL and the policies its credentials see."""

    url = "http://vq.example:9696"

    def __init__(self, policies):
        self.policies = [NeutronPolicy.model_validate(p) for p in policies]

    def qos_policies(self, name=None):
        return [p for p in self.policies if name is None or p.name == name]


GOLD_RULES = [{"id": "r1", "type": "bandwidth_limit", "max_kbps": 8000, "max_burst_kbps": 800, "direction": "egress",
               "qos_policy_id": "p1"},
              {"id": "r2", "type": "bandwidth_limit", "max_kbps": 20000, "direction": "ingress"},
              {"id": "r3", "type": "packet_rate_limit", "max_kpps": 3, "direction": "egress"},
              {"id": "r4", "type": "dscp_marking", "dscp_mark": 26}]


def test_policy_by_name_reads_the_rules_both_directions():
    found = policy_by_name(FakeClient([{"id": "p1", "name": "gold", "rules": GOLD_RULES},
                                       {"id": "p2", "name": "silver", "rules": []}]), "gold")
    assert found.policy_id == "p1" and found.policy.name == "gold" and found.policy.origin == "neutron"
    qos = found.policy.qos
    assert qos.egress.bandwidth.rate_bps == 8_000_000 and qos.egress.bandwidth.burst_bytes == 100_000
    assert qos.ingress.bandwidth.rate_bps == 20_000_000
    assert qos.egress.packet_rate.pps == 3000 and qos.egress.dscp == 26


def test_policy_by_name_refuses_none_and_two():
    with pytest.raises(InvalidValue, match="no Neutron QoS policy of that name is visible on http://vq.example"):
        policy_by_name(FakeClient([{"id": "p2", "name": "silver"}]), "gold")
    with pytest.raises(ConflictError, match=r"2 Neutron QoS policies named 'gold' .*\(p1, p3\)"):
        policy_by_name(FakeClient([{"id": "p1", "name": "gold"}, {"id": "p3", "name": "gold"}]), "gold")


def invoke(env, stdin):
    out = io.StringIO()
    code = run(env, stdin.encode(), out)
    return code, json.loads(out.getvalue()) if out.getvalue().strip() else None


@pytest.fixture
def credentials(tmp_path):
    path = tmp_path / "cred.json"
    path.write_text(json.dumps({"username": "cni", "password": SECRET, "project_name": "demo"}))
    return str(path)


def test_a_server_that_never_answers_fails_add_within_the_timeout_and_del_still_works(tmp_path, credentials,
                                                                                        caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        body = conf(policy="gold", vmqosDatabase=str(tmp_path / "vq.db"),
                    vmqosServer={"url": url, "credentialsFile": credentials, "timeoutSeconds": 1})
        started = time.monotonic()
        status, answer = invoke(ENV, body)
        took = time.monotonic() - started
    assert status == 1 and answer["code"] == 11, answer
    assert "'gold'" in answer["msg"] and url in answer["msg"] and "not started without its limits" in answer["details"]
    assert took < 15, f"ADD waited {took:.1f} s for a server with timeoutSeconds 1"  # the default would be 30 s
    status, answer = invoke({**ENV, "CNI_COMMAND": "DEL"}, body)  # DEL never asks the server
    assert (status, answer) == (0, None)
    assert SECRET not in caplog.text + json.dumps(answer) + "".join(capsys.readouterr())


def test_a_refused_connection_is_code_11_and_a_bad_credentials_file_is_code_7(tmp_path, credentials):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        status, answer = invoke(ENV, conf(policy="gold", vmqosServer={"url": f"http://127.0.0.1:{port}",
                                                                      "credentialsFile": credentials}))
    assert status == 1 and answer["code"] == 11 and SECRET not in json.dumps(answer)
    status, answer = invoke(ENV, conf(policy="gold", vmqosServer={"url": "http://127.0.0.1:9",
                                                                  "credentialsFile": str(tmp_path / "none.json")}))
    assert status == 1 and answer["code"] == 7 and "cannot be read" in answer["msg"], answer
