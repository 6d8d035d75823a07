"""Kernel tier: a port lowered below 4.8 Mbit/s converges (issue 13 item 7).

HTB sets a class's quantum only while the class is a leaf (sch_htb `htb_change_class`: `if
(!cl->level)`); the port's bucket 1:1 has children, so it keeps the quantum it was created with,
whatever a later `tc class replace` asks. vmqos planned rate/8/r2q for it, clamped to 60000, which
differs from the created value below 4.8 Mbit/s: `check` never passed and every `port set`
rewrote 1:1. An inner class's quantum is unused by HTB, so the plan no longer compares it.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.kernel.test_reconcile import _cli
from vmqos.core.plan.objects import HtbClass
from vmqos.drivers.tc_netlink import TcNetlink

pytestmark = pytest.mark.kernel


@pytest.fixture
def ports(netns):
    subprocess.run(["ip", "-n", netns, "link", "add", "vqa0", "type", "veth", "peer", "name", "vqb0"], check=True)
    for dev in ("vqa0", "vqb0"):
        subprocess.run(["ip", "-n", netns, "link", "set", dev, "up"], check=True)
    return netns


def _quanta(netns: str, dev: str) -> dict[str, int]:
    """classid -> quantum, as netlink reports it (iproute2 6.1 prints an inner class's quantum nowhere)."""
    with TcNetlink(netns) as tc:
        held = tc.read([dev])[dev].objects or []
    return {o.classid: o.quantum for o in held if isinstance(o, HtbClass)}


@pytest.mark.parametrize("mode", ["shape", "police"])
def test_a_port_lowered_below_the_quantum_clamp_converges_and_a_repeat_writes_nothing(ports, tmp_path, mode):
    db = f"sqlite:///{tmp_path}/vq.db"
    common = ["--netns", ports, "--db", db]
    seen = {}
    for kbyte_s in (1250, 600, 375, 125):  # 10, 4.8, 3 and 1 Mbit/s, both directions
        rate = f"{kbyte_s},0,0"
        code, out = _cli("port", "set", "vqa0", "--inbound", rate, "--outbound", rate, "--egress-mode", mode,
                         "--json", *common)
        assert code == 0, out
        seen[kbyte_s * 8 // 1000] = _quanta(ports, "vqa0")
        print(f"{mode} {kbyte_s * 8 / 1000:g} Mbit/s: quantum per class {seen[kbyte_s * 8 // 1000]}")
        code, out = _cli("check", "--json", *common)
        assert code == 0, f"check after `port set` at {kbyte_s * 8 // 1000} Mbit/s: {out}"
        code, out = _cli("port", "set", "vqa0", "--inbound", rate, "--outbound", rate, "--egress-mode", mode,
                         "--json", *common)
        assert code == 0 and json.loads(out)["writes"] == 0, out
    print(f"quantum per class after each rate (Mbit/s): {seen}")
