"""The CNI plugin's protocol without a kernel: variables, configuration, the bandwidth plugin's keys and units,
and the specification's error object (code, msg, details on stdout, exit 1), never a traceback."""

from __future__ import annotations

import io
import json

import pytest

from vmqos.cni.main import run
from vmqos.core.formats.cni import (
    NO_BURST_BITS,
    CniError,
    host_candidates,
    read_config,
    read_request,
    result_of,
)
from vmqos.core.model.host import EgressMode

PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"}, {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                       {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/vqc"}],
        "ips": [{"interface": 2, "address": "10.1.0.2/24", "gateway": "10.1.0.1"}]}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/run/netns/vqc", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}


def conf(**extra):
    return json.dumps({"cniVersion": "1.0.0", "name": "vqnet", "type": "vmqos-cni", "prevResult": PREV, **extra})


def invoke(env, stdin):
    out = io.StringIO()
    code = run(env, stdin.encode() if isinstance(stdin, str) else stdin, out)
    text = out.getvalue()
    return code, json.loads(text) if text.strip() else None


def test_runtime_bandwidth_is_the_bandwidth_plugins_units_and_directions():
    cfg = read_config(conf(runtimeConfig={"bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 80_000,
                                                        "egressRate": 5_000_000, "egressBurst": 40_000}}))
    assert cfg.qos.ingress.bandwidth.rate_bps == 10_000_000  # towards the container: the host veth's root
    assert cfg.qos.ingress.bandwidth.burst_bytes == 10_000  # bits / 8
    assert cfg.qos.egress.bandwidth.rate_bps == 5_000_000
    assert cfg.qos.egress.bandwidth.burst_bytes == 5_000


def test_the_configurations_own_bandwidth_wins_over_runtime_config():
    cfg = read_config(conf(ingressRate=1_000_000, ingressBurst=8_000,
                           runtimeConfig={"bandwidth": {"ingressRate": 9_000_000, "ingressBurst": 8_000}}))
    assert cfg.qos.ingress.bandwidth.rate_bps == 1_000_000


def test_kubernetes_no_burst_sentinels_get_vmqos_default_burst():
    for sentinel in (NO_BURST_BITS, 2**32 - 1, (2**32 - 1) * 8 - 1, (2**32 - 1) * 8):  # kubelet, containerd, CRI-O
        cfg = read_config(conf(runtimeConfig={"bandwidth": {"ingressRate": 10_000_000, "ingressBurst": sentinel}}))
        assert cfg.qos.ingress.bandwidth.burst_bytes is None
        assert "no burst" in cfg.notes[0]


def test_vmqos_keys():
    cfg = read_config(conf(egressRate=5_000_000, egressPeak=8_000_000, egressPacketRate=2000, ingressPacketRate=3000,
                           ingressPacketBurst=50, dscp=18, egressMode="police", policy="gold",
                           vmqosDatabase="/tmp/x.db"))
    assert cfg.qos.egress.bandwidth.peak_bps == 8_000_000
    assert cfg.qos.egress.packet_rate.pps == 2000 and cfg.qos.ingress.packet_rate.burst_packets == 50
    assert cfg.qos.egress.dscp == 18 and cfg.qos.ingress.dscp is None
    assert cfg.egress_mode is EgressMode.POLICE and cfg.policy == "gold" and cfg.database == "/tmp/x.db"
    assert host_candidates(cfg) == ("cni0", "veth1234")


def test_add_hands_back_prev_result_unchanged_under_the_configurations_version():
    cfg = read_config(json.dumps({"cniVersion": "0.4.0", "name": "n", "prevResult": {**PREV, "cniVersion": "0.4.0"}}))
    assert result_of(cfg) == {**PREV, "cniVersion": "0.4.0"}


@pytest.mark.parametrize("extra, code, words", [
    ({"ingressBurst": 800}, 7, "if burst is set, rate must also be set"),
    ({"ingressRate": -1}, 7, "whole number"),
    ({"egressPeak": 9}, 7, "egressRate"),
    ({"egressRate": 10_000_000, "egressPeak": 1_000_000}, 7, "peak"),
    ({"dscp": 42}, 7, "DSCP"),
    ({"egressMode": "fast"}, 7, "shape"),
    ({"cniVersion": "0.2.0"}, 1, "not supported"),
    ({"name": ""}, 7, "no name"),
])
def test_bad_configurations_are_the_specs_error_objects(extra, code, words):
    status, answer = invoke(ENV, conf(**extra))
    assert status == 1
    assert answer["code"] == code and words in answer["msg"] + answer.get("details", ""), answer
    assert answer["cniVersion"]


def test_not_json_is_code_6():
    status, answer = invoke(ENV, "{nope")
    assert status == 1 and answer["code"] == 6


@pytest.mark.parametrize("missing", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])
def test_missing_variables_are_code_4(missing):
    status, answer = invoke({k: v for k, v in ENV.items() if k != missing}, conf())
    assert status == 1 and answer["code"] == 4 and missing in answer["msg"]


def test_del_needs_no_netns():
    assert read_request({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).command == "DEL"


@pytest.mark.parametrize("command", ["GC", "STATUS", "FROB", ""])
def test_commands_it_does_not_speak_are_code_4(command):
    status, answer = invoke({**ENV, "CNI_COMMAND": command}, conf())
    assert status == 1 and answer["code"] == 4


def test_version():
    status, answer = invoke({"CNI_COMMAND": "VERSION"}, b"")
    assert status == 0
    assert answer == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_add_without_prev_result_says_to_chain_it(tmp_path):
    body = json.dumps({"cniVersion": "1.0.0", "name": "n", "vmqosDatabase": str(tmp_path / "vq.db")})
    status, answer = invoke(ENV, body)
    assert status == 1 and answer["code"] == 7 and "chained" in answer["msg"]


def test_check_is_refused_below_0_4_0(tmp_path):
    body = json.dumps({"cniVersion": "0.3.1", "name": "n", "prevResult": PREV, "vmqosDatabase": str(tmp_path / "d.db")})
    status, answer = invoke({**ENV, "CNI_COMMAND": "CHECK"}, body)
    assert status == 1 and answer["code"] == 1


def test_del_of_what_was_never_added_succeeds(tmp_path):
    status, answer = invoke({**ENV, "CNI_COMMAND": "DEL"}, conf(vmqosDatabase=str(tmp_path / "vq.db")))
    assert (status, answer) == (0, None)


def test_a_bug_is_an_error_object_not_a_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    import vmqos.services.ports as ports

    monkeypatch.setattr(ports, "open_store", broken)
    status, answer = invoke({**ENV, "CNI_COMMAND": "DEL"}, conf())
    assert status == 1 and answer["code"] == 5 and "KeyError" in answer["msg"]
    assert "Traceback" not in capsys.readouterr().err


def test_cni_error_carries_details():
    assert CniError(7, "m", "d").as_json("0.4.0") == {"cniVersion": "0.4.0", "code": 7, "msg": "m", "details": "d"}
