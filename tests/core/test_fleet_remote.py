"""services.fleet_remote.native_body: what `vmqos port set --server` sends, without a server (pure given the
device's current view): the local command's edit applied to the server's native policy, in canonical units."""

from __future__ import annotations

import pytest

from vmqos.core.desired.ports import PortChange
from vmqos.core.errors import VmqosError
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.core.model.host import EgressMode, Policy
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.services.fleet_remote import native_body
from vmqos.services.fleet_wire import Port


def _port(source: str | None, policy: dict | None, name: str | None = "native:tap1") -> Port:
    return Port(host="h1", device="tap1", port_id=None, source=source,  # type: ignore[arg-type]
                policy_name=name, policy=policy, desired_revision=1, applied_revision=None, status="unknown",
                message="", reported_at=None, rates=None, quarantine=None)


def _qos(body) -> NetworkQos:
    return policy_from_data("x", body.policy).qos


def test_an_absent_direction_keeps_the_servers_value_and_zero_clears_it():
    current = _port("native", {"ingress": {"rate": "8mbit"}, "egress": {"rate": "2mbit", "burst": "10kb"}})
    body = native_body(current, PortChange(outbound="0"))
    assert body.policy_name == "native:tap1"
    assert _qos(body) == NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(8_000_000)))
    body = native_body(current, PortChange(inbound="1000,2000,64,500"))
    ingress = _qos(body).ingress
    assert ingress.bandwidth == BandwidthLimit(8_000_000, 16_000_000, 65_536) and ingress.min_bps == 4_000_000
    assert _qos(body).egress.bandwidth == BandwidthLimit(2_000_000, None, 10_240)


def test_a_neutron_port_or_no_port_starts_empty_and_a_file_replaces_the_policy():
    neutron = _port("neutron", {"egress": {"rate": "3mbit"}}, "neutron:abc")
    body = native_body(neutron, PortChange(inbound="125,0,0"))
    assert body.policy_name is None
    assert _qos(body) == NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(1_000_000)))
    gold = Policy("gold", NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(5_000_000))))
    body = native_body(None, PortChange(policy=gold, inbound="125,0,0"))
    assert body.policy_name == "gold" and _qos(body).egress.bandwidth == BandwidthLimit(5_000_000)
    assert _qos(body).ingress.bandwidth == BandwidthLimit(1_000_000)


def test_a_policy_id_makes_the_port_follow_that_policy_whatever_it_held():
    current = _port("native", {"ingress": {"rate": "8mbit"}})
    body = native_body(current, PortChange(policy_name="5f0c-gold"))
    assert (body.policy_id, body.policy, body.policy_name) == ("5f0c-gold", None, None)


@pytest.mark.parametrize(("change", "message"), [
    (PortChange(outbound="100,0,0,5"), "--outbound: 5 is not valid: libvirt accepts floor only on inbound"),
    (PortChange(inbound="abc"), "--inbound: 'abc' is not valid"),
    (PortChange(policy_name="gold", inbound="125,0,0"), "--policy: 'gold' is not valid: with a policy's id leave "
                                                        "--inbound/--outbound out"),
    (PortChange(egress_mode=EgressMode.POLICE), "--egress-mode: 'police' is not valid: leave it out with --server"),
    (PortChange(window_clamp=True), "--window-clamp: 'on' is not valid: leave it out with --server"),
    (PortChange(window_clamp=False), "--window-clamp: 'off' is not valid: leave it out with --server"),
])
def test_what_the_server_cannot_hold_or_the_local_command_refuses_is_refused(change, message):
    with pytest.raises(VmqosError) as caught:
        native_body(None, change)
    assert str(caught.value).startswith(message)
