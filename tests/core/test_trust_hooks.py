"""Issue 13 item 5 ("Trust"): another table's base chain on a managed port is drift, whatever the
number of devices it hooks, and an apply does not vouch for a port's limits beside it unless forced.

nft 1.0.6 (ours) leaves a netdev chain's devices out of its JSON, so they are read from its text
listing, which writes one device as `device "tap1"` and several as `devices = { tap1, tap2 }`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from vmqos.core.desired.ports import empty_plan
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.observed import ForeignHook
from vmqos.core.plan.host import plan_host
from vmqos.drivers import nft as nft_driver
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.reconcile.execute import Reconciler

LISTING_1_0_6 = """table netdev foreign {
\tchain multi {
\t\ttype filter hook ingress devices = { tap-vm1, tap-vm2 } priority -1000; policy accept;
\t\tfwd to "elsewhere"
\t}

\tchain single {
\t\ttype filter hook egress device "tap-vm3" priority 0; policy accept;
\t}

\tchain odd {
\t\ttype filter hook ingress devices = { a,, }, b } priority -1; policy accept;
\t}

\tchain regular {
\t\tcounter
\t}
}
"""


def test_every_device_of_a_multi_device_chain_is_read_from_the_listing() -> None:
    hooks = nft_driver.table_hooks("netdev", "foreign", LISTING_1_0_6)
    assert [(h.chain, h.hook, h.device) for h in hooks] == [
        ("multi", "ingress", "tap-vm1"), ("multi", "ingress", "tap-vm2"), ("single", "egress", "tap-vm3"),
        ("odd", "ingress", "a,"), ("odd", "ingress", "}"), ("odd", "ingress", "b")]


@pytest.mark.parametrize("line, expected", [
    ('type filter hook ingress device "tap1" priority -500; policy accept;', ("ingress", ["tap1"])),
    ("type filter hook ingress devices = { tap1, tap2 } priority -1000; policy accept;", ("ingress", ["tap1", "tap2"])),
    ('type filter hook ingress devices = { "tap1", "tap2" } priority 0;', ("ingress", ["tap1", "tap2"])),
    ("type filter hook ingress priority 0; policy accept;", ("ingress", [])),
    ("counter packets 0 bytes 0", None),
])
def test_a_chain_declaration_gives_its_hook_and_devices(line: str, expected) -> None:
    assert nft_driver.hook_devices(line) == expected


def _nft_run(ruleset: list[dict], listing: str):
    def run(argv, netns=None, *, input=None, timeout=120, check=True):
        if "-j" in argv:
            return SimpleNamespace(returncode=0, stdout=json.dumps({"nftables": ruleset}), stderr="")
        return SimpleNamespace(returncode=0, stdout=listing, stderr="")
    return run


def test_the_driver_reads_foreign_hooks_from_json_when_nft_names_them_else_from_the_listing(monkeypatch) -> None:
    chain = {"family": "netdev", "table": "foreign", "name": "multi", "handle": 1, "type": "filter",
             "hook": "ingress", "prio": -1000, "policy": "accept"}
    monkeypatch.setattr(nft_driver, "run", _nft_run([{"chain": chain}], LISTING_1_0_6))
    seen = nft_driver.Nft(None).read(["tap-vm1", "tap-vm2"])
    assert {(h.chain, h.device) for h in seen.foreign} == {("multi", "tap-vm1"), ("multi", "tap-vm2")}
    newer = {**chain, "dev": ["tap-vm1", "tap-vm2"]}  # nft >= 1.0.7 names them, as a list or a string
    monkeypatch.setattr(nft_driver, "run", _nft_run([{"chain": newer}], "no listing expected"))
    seen = nft_driver.Nft(None).read(["tap-vm2"])
    assert [(h.chain, h.device) for h in seen.foreign] == [("multi", "tap-vm2")]


QOS = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)))


def _plans(*devices: str):
    return plan_host(HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=QOS),)) for d in devices}))


def test_apply_refuses_a_port_a_foreign_chain_hooks_unless_forced_and_clears_it_freely() -> None:
    kernel = FakeKernel(["tap-vm1", "tap-vm2", "tap-vm3"])
    kernel.foreign_hooks += [ForeignHook("netdev", "foreign", "multi", "ingress", d) for d in ("tap-vm1", "tap-vm2")]
    tc, nft, batch = fake_drivers(kernel)
    rec = Reconciler(tc=tc, nft=nft, batch=batch)
    results, record = rec.reconcile(_plans("tap-vm1", "tap-vm2", "tap-vm3"))
    errors = {r.port: r.error for r in results}
    assert errors["tap-vm3"] is None and set(record) == {"tap-vm3"}
    for port in ("tap-vm1", "tap-vm2"):
        assert errors[port] and "drift" in errors[port] and "netdev table foreign chain multi" in errors[port]
        assert "--force" in errors[port] and not kernel.objects(port)  # nothing written
    results, record = rec.reconcile(_plans("tap-vm1", "tap-vm2"), force=True)
    assert all(r.error is None for r in results) and set(record) == {"tap-vm1", "tap-vm2"}
    results, record = rec.reconcile({"tap-vm1": empty_plan("tap-vm1")})  # clearing is not held up
    assert results[0].error is None and record == {"tap-vm1": None} and not kernel.objects("tap-vm1")
