"""The command line as operators use it: real entry point, real files, one clear line on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmqos.cli.demo import demo_dir
from vmqos.cli.main import main

DEMO = Path(demo_dir())
VMQOS = [sys.executable, "-m", "vmqos.cli.main"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VMQOS_DEBUG"}
    return subprocess.run([*VMQOS, *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)


def test_plan_json_for_the_resquota_flavor(capsys):
    assert main(["plan", "--port", "tap-vm1", "--flavor", str(DEMO / "m1.resquota.specs"), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out) >= {"port", "ingress", "egress", "commands"}
    ingress = out["ingress"]
    assert (ingress["rate_bps"], ingress["peak_bps"], ingress["burst_bytes"]) == (262_144_000, 524_288_000, 134_217_728)
    assert ingress["pps"] is None and ingress["dscp"] is None and ingress["source"]["rate_bps"] == "flavor m1.resquota"
    assert any("classid 1:1 htb rate 262144kbit ceil 262144kbit burst 128mb cburst 128mb" in c for c in out["commands"])
    # the default leaf: the rate less the sparse class's 2 % (5242 kbit/s), up to the peak
    assert any("classid 1:10 htb rate 256902kbit ceil 524288kbit" in c for c in out["commands"])
    assert "seconds" in captured.err and "128 MiB" in captured.err


def test_plan_json_for_the_seed_policies(capsys):
    assert main(["plan", "--port", "tap-vm2", "--policy", str(DEMO / "bw-limiter.json"), "--json"]) == 0
    egress = json.loads(capsys.readouterr().out)["egress"]
    assert (egress["rate_bps"], egress["burst_bytes"]) == (3_000_000, 37_500)
    assert egress["source"]["rate_bps"] == "port policy bw-limiter"
    assert main(["plan", "--port", "tap-vm3", "--policy", str(DEMO / "dscp-marking.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["egress"]["dscp"] == 26 and out["egress"]["rate_bps"] is None
    assert any("ip dscp set 26" in c for c in out["commands"])


def test_convert_reads_stdin_and_prints_effective_json():
    result = run("convert", "--from", "domiftune", "--to", "effective", "--json", "-", stdin="--outbound 12800,0,0\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["network"]["egress"]["rate_bps"] == 102_400_000


def test_convert_nova_to_libvirt_matches_the_seed_xml():
    result = run("convert", "--from", "nova", "--to", "libvirt", str(DEMO / "m1.resquota.specs"))
    assert result.returncode == 0, result.stderr
    assert '<inbound average="32768" peak="65536" burst="131072"' in result.stdout
    assert "<shares>512</shares>" in result.stdout


@pytest.mark.parametrize("args,stdin,needle", [
    (("plan", "--port", "tap0", "--inbound", "10,abc"), None, "--inbound"),
    (("plan", "--port", "tap0", "--inbound", "-5"), None, "--inbound"),
    (("convert", "--from", "neutron", "--to", "nova", "-"),
     '{"policy": {"rules": [{"type": "dscp_marking", "dscp_mark": 42}]}}', "42"),
    (("convert", "--from", "libvirt", "--to", "nova", "-"), "<bandwidth><inbound average='1'></bandwidth>", "line"),
    (("convert", "--from", "neutron", "--to", "effective", "/nonexistent/policy.json"), None, "No such file"),
    (("plan", "--port", "bad/name"), None, "--port"),
    (("convert", "--from", "yaml", "--to", "nova", "-"), "", "yaml"),
])
def test_bad_input_is_one_line_on_stderr_without_traceback(args, stdin, needle):
    result = run(*args, stdin=stdin)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert needle in result.stderr
    assert len(lines) <= 3, result.stderr  # click usage errors carry a usage line and a hint


def test_help_has_examples():
    for command in ("convert", "plan"):
        result = run(command, "--help")
        assert result.returncode == 0 and "Examples:" in result.stdout
