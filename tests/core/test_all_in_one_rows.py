"""What `vmqos server --all-in-one` wants on its host: the host's desired rows, read as its agent reads them.

No root, no kernel: the source of the all-in-one's enforcer (`services.neutron_enforcer.host_wanted`)
over a SQLite store, and its one-time cleanup of the `neutron:` policies an earlier all-in-one named.
The kernel side (the same rows placed, changed live, released) is tests/kernel/test_all_in_one.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmqos.core.errors import InvalidValue
from vmqos.core.model.host import HostState, InstanceSpec, Policy, PortSpec, UplinkSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.services import fleet_desired
from vmqos.services.enforcer import WantedUplink
from vmqos.services.neutron_enforcer import NeutronEnforcer, host_wanted
from vmqos.store import Store
from vmqos.store import fleet as desired_records
from vmqos.store import fleet_uplinks

GOLD = Policy("gold", NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(8_000_000, None, 10_000))))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Store(f"sqlite:///{tmp_path / 'vmqos.db'}") as opened:
        yield opened


def _uplink(store: Store, host: str, device: str | None, capacity: int | None) -> None:
    with desired_records.desired_writer(store, "the test's uplink") as w:
        fleet_uplinks.write(w, host, device, capacity, False)


def test_it_wants_the_native_rows_and_the_uplink_of_its_own_host_named_as_the_agent_names_them(store: Store) -> None:
    fleet_desired.set_port(store, "h1", "vqx0", GOLD, addresses=["10.0.0.5"])
    fleet_desired.set_port(store, "h2", "vqx1", GOLD)  # another host's row: not this host's business
    _uplink(store, "h1", "vqw0", 100_000_000)

    wanted = host_wanted(store, "h1")
    assert set(wanted.ports) == {"vqx0"}
    row = wanted.ports["vqx0"]
    assert row.policy == Policy("fleet:vqx0", GOLD.qos, row.policy.origin)  # the agent's name, one per device
    assert (row.port_id, row.addresses) == ("", ("10.0.0.5",))
    assert "this server (native)" in row.origin
    assert wanted.uplink is not None and wanted.uplink.spec == UplinkSpec("vqw0", 100_000_000, False)

    fleet_desired.clear_port(store, "h1", "vqx0")
    _uplink(store, "h1", None, None)
    released = host_wanted(store, "h1")
    assert released.ports == {} and released.uplink == WantedUplink(None, None)  # the uplink goes too


def test_the_first_pass_forgets_only_the_unused_policies_of_an_earlier_all_in_one(store: Store) -> None:
    old_unused, old_used = Policy("neutron:a", GOLD.qos), Policy("neutron:b", GOLD.qos)
    state = HostState(policies={"neutron:a": old_unused, "neutron:b": old_used, "gold": GOLD},
                      instances={"vm": InstanceSpec("vm", ports=(PortSpec("tap0", policy="neutron:b"),))})
    store.save("vqscope", state)
    NeutronEnforcer(store, "h1", "vqscope").forget_old_policies()
    assert set(store.load("vqscope").policies) == {"neutron:b", "gold"}  # a host file's policy is not the enforcer's


def test_a_host_name_no_row_can_have_is_one_line_before_anything_starts(store: Store) -> None:
    with pytest.raises(InvalidValue, match="host"):
        NeutronEnforcer(store, "a/b", None).preflight()
