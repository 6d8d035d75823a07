"""Issue 13 item 13 ("Trust"): enums matched as the peers match them, numbers read as the peers read
them, and values real Neutron databases hold imported with a warning and a fix-up instead of refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmqos.cli.main import main
from vmqos.core.errors import InvalidValue
from vmqos.core.formats import domiftune, neutron
from vmqos.core.model import BandwidthLimit
from vmqos.core.model.checks import check_network


def policy(*rules: dict) -> str:
    return json.dumps({"policy": {"name": "p", "rules": list(rules)}})


def bw(max_kbps: int, burst: int | None = None, **extra: object) -> dict:
    rule: dict = {"type": "bandwidth_limit", "max_kbps": max_kbps, **extra}
    if burst is not None:
        rule["max_burst_kbps"] = burst
    return rule


# ------------------------------------------------------------------------------- Neutron enums, exactly


@pytest.mark.parametrize("direction", ["Egress", "INGRESS", " egress", "egress ", "Any"])
@pytest.mark.parametrize("rtype", ["bandwidth_limit", "minimum_bandwidth", "packet_rate_limit", "minimum_packet_rate"])
def test_item13_neutron_direction_matches_exactly(rtype, direction):
    """neutron-lib validates direction with 'type:values' (`data not in valid_values`): `Egress` is refused."""
    key = {"bandwidth_limit": "max_kbps", "minimum_bandwidth": "min_kbps", "packet_rate_limit": "max_kpps",
           "minimum_packet_rate": "min_kpps"}[rtype]
    with pytest.raises(InvalidValue) as err:
        neutron.read(policy({"type": rtype, key: 1000, "direction": direction}))
    assert err.value.field == "policy.rules[0].direction" and "lower case" in str(err.value)


def test_item13_neutron_exact_directions_are_still_read():
    qos = neutron.read(policy(bw(1000, 100, direction="ingress"), bw(2000, 200, direction="egress"))).network
    assert qos.ingress.bandwidth.rate_bps == 1_000_000 and qos.egress.bandwidth.rate_bps == 2_000_000


@pytest.mark.parametrize("direction", ["Egress", "egress ", "ingress"])
def test_item13_neutron_dscp_direction_matches_exactly(direction):
    with pytest.raises(InvalidValue):
        neutron.read(policy({"type": "dscp_marking", "dscp_mark": 26, "direction": direction}))


@pytest.mark.parametrize("rtype", ["Bandwidth_Limit", "BANDWIDTH-LIMIT", " bandwidth_limit", "bandwidth limit"])
def test_item13_neutron_rule_type_matches_exactly(rtype):
    """Neutron's own names, or the openstack client's `--type` spellings (bandwidth-limit); nothing else."""
    with pytest.raises(InvalidValue) as err:
        neutron.read(policy({"type": rtype, "max_kbps": 1000}))
    assert err.value.field == "policy.rules[0].type"
    assert neutron.read(policy({"type": "bandwidth-limit", "max_kbps": 1000})).network is not None


# ---------------------------------------------------------------------------- Neutron max_kbps 0


def test_item13_neutron_max_kbps_0_is_read_as_no_limit_with_a_warning():
    doc = neutron.read(policy(bw(0, 500, direction="ingress"), bw(3000, 300)))
    assert doc.network.ingress.bandwidth is None
    assert doc.network.egress.bandwidth == BandwidthLimit(3_000_000, burst_bytes=37_500)
    [note] = [n for n in doc.notes if n.field == "policy.rules[0].max_kbps"]
    assert note.level == "warning" and "no limit" in note.message and "max_burst_kbps 500 ignored" in note.message


def test_item13_neutron_max_kbps_0_with_a_minimum_does_not_conflict():
    """0 is no limit, so a guaranteed minimum under it is no min > max conflict."""
    doc = neutron.read(policy(bw(0), {"type": "minimum_bandwidth", "min_kbps": 5000}))
    assert doc.network.egress.bandwidth is None and doc.network.egress.min_bps == 5_000_000


def test_item13_neutron_max_kbps_0_is_imported_by_convert(tmp_path: Path, capsys):
    path = tmp_path / "policy.json"
    path.write_text(policy(bw(0)))
    assert main(["convert", "--from", "neutron", "--to", "nova", str(path)]) == 0
    assert "max_kbps is 0" in capsys.readouterr().err


# --------------------------------------------------------------------- Neutron sub-frame bursts


@pytest.mark.parametrize("burst", [1, 8, 12])
def test_item13_neutron_sub_frame_burst_is_raised_with_a_note(burst):
    doc = neutron.read(policy(bw(1000, burst)))
    assert doc.network.egress.bandwidth == BandwidthLimit(1_000_000, burst_bytes=neutron.MIN_BURST_KBIT * 125)
    [note] = [n for n in doc.notes if n.field == "policy.rules[0].max_burst_kbps"]
    assert f"{burst} kbit ({burst * 125} bytes)" in note.message
    assert f"raised to {neutron.MIN_BURST_KBIT} kbit ({neutron.MIN_BURST_KBIT * 125} bytes" in note.message
    assert check_network(doc.network) == []  # the planner's check accepts what was refused before


def test_item13_neutron_burst_of_one_frame_or_more_is_kept():
    doc = neutron.read(policy(bw(1000, 13)))  # 1625 bytes: more than one 1514-byte frame
    assert doc.network.egress.bandwidth.burst_bytes == 1625 and not doc.notes


def test_item13_min_burst_kbit_holds_two_full_frames_and_writes_back_exactly():
    assert neutron.MIN_BURST_KBIT * 125 >= 2 * 1514 > (neutron.MIN_BURST_KBIT - 1) * 125
    doc = neutron.read(policy(bw(1000, 1)))
    assert json.loads(neutron.write(doc, exact=True))["policy"]["rules"][0]["max_burst_kbps"] == neutron.MIN_BURST_KBIT


# ---------------------------------------------------------------------------- virsh's numbers


@pytest.mark.parametrize(("text", "average"), [("+100", 100), ("+100,+200,+10", 100), (" +7", 7), ("0100", 100)])
def test_item13_domiftune_accepts_a_leading_plus_as_virsh(text, average):
    """virsh parses each field with virStrToLong_ullp (g_ascii_strtoull): a leading + is taken."""
    limit, floor = domiftune.parse_direction("--inbound", text)
    assert limit.rate_bps == average * 8000 and floor is None


@pytest.mark.parametrize("text", ["-100", "-0", "100,-5,10", "+-5", "++5"])
def test_item13_domiftune_refuses_a_minus_as_virsh(text):
    """virStrToLong_ullp refuses any `-` (strtoull alone would wrap -1 to 2^64-1)."""
    with pytest.raises(InvalidValue) as err:
        domiftune.parse_direction("--inbound", text)
    assert err.value.field == "--inbound"


def test_item13_domiftune_plus_on_the_command_line(capsys):
    assert main(["plan", "--port", "tap-vm1", "--inbound", "+100"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("text", [",,,", ",", ", ,", ",,"])
def test_item15_domiftune_commas_without_values_do_not_clear(text):
    """virsh would read `,,,` as 0 and clear the direction; vmqos asks for the explicit 0."""
    with pytest.raises(InvalidValue, match="no field has a value") as err:
        domiftune.parse_direction("--inbound", text)
    assert err.value.field == "--inbound"
    assert domiftune.parse_direction("--inbound", "0") is domiftune.CLEAR
    assert domiftune.parse_direction("--inbound", "0,,") is domiftune.CLEAR


# ------------------------------------------------------------------------------- item 14 (part)


def test_item14_domiftune_read_notes_a_missing_direction_once():
    """The note is made once here; `convert --to vmqos` shows it on stderr and as a file comment."""
    notes = domiftune.read("--inbound 0").notes
    assert [n.field for n in notes] == ["--outbound"]
