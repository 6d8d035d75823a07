"""The shape of a lab fleet: names, addresses and refusals, without a kernel."""

from __future__ import annotations

import pytest

from vmqos.core.errors import InvalidValue
from vmqos.lab.fleet_topology import MAX_HOSTS, Fleet


def test_hosts_are_labs_with_a_management_address_each() -> None:
    fleet = Fleet("fleet", 3)
    hosts = fleet.all_hosts()
    assert [h.name for h in hosts] == ["fleet1", "fleet2", "fleet3"]
    assert [h.netns for h in hosts] == ["fleet1-host", "fleet2-host", "fleet3-host"]
    assert [h.mgmt_address for h in hosts] == ["10.248.0.11", "10.248.0.12", "10.248.0.13"]
    assert len({h.mgmt_peer for h in hosts}) == 3 and all(len(h.mgmt_peer) <= 15 for h in hosts)
    assert hosts[0].agent_user == "agent-fleet1"
    assert fleet.ctl_ns == "fleet-ctl" and fleet.auth_url == "http://10.248.0.1:9696/v3"


def test_every_host_name_is_a_valid_lab_name_at_the_longest() -> None:
    fleet = Fleet("abcdefg", MAX_HOSTS)
    assert fleet.host(MAX_HOSTS).lab.name == f"abcdefg{MAX_HOSTS}"


@pytest.mark.parametrize("name", ["", "1fleet", "abcdefgh", "Fleet", "fl-1", "fl_1", "fl 1"])
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidValue, match="fleet name"):
        Fleet(name, 2)


@pytest.mark.parametrize("hosts", [0, -1, MAX_HOSTS + 1, True, "2"])
def test_bad_host_counts_are_refused(hosts: object) -> None:
    with pytest.raises(InvalidValue, match="hosts"):
        Fleet("fleet", hosts)  # type: ignore[arg-type]


def test_a_host_outside_the_fleet_is_refused() -> None:
    with pytest.raises(InvalidValue, match="use 1 to 2"):
        Fleet("fleet", 2).host(3)
