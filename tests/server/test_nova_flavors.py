"""Nova flavors with `quota:*` extra specs, driven by the real `openstack` CLI against `vmqos server`.

The seed's flavor (seeds/003: `flavor create`, then `flavor set --property quota:...` with all nine
keys) ends as the vmqos model's QoS, read back through services.flavors.flavor_qos from the
server's own database. Refusals are checked with the client's words and, over plain HTTP, with
Nova's own bodies: `{"badRequest": {"code": 400, "message": ...}}`, itemNotFound, forbidden,
conflictingRequest, and the microversion headers.
"""

from __future__ import annotations

import pytest

from tests.server.rest import call
from vmqos.core.model import BandwidthLimit, DiskQos
from vmqos.services import flavors
from vmqos.store import Store

pytestmark = pytest.mark.server

SEED_PROPERTIES = {
    "quota:cpu_shares": "512", "quota:disk_read_bytes_sec": "1000000", "quota:disk_write_bytes_sec": "1024000",
    "quota:vif_outbound_average": "32768", "quota:vif_outbound_peak": "65536", "quota:vif_outbound_burst": "131072",
    "quota:vif_inbound_average": "32768", "quota:vif_inbound_peak": "65536", "quota:vif_inbound_burst": "131072",
}
NOVA = "compute 2.61"  # what openstacksdk asks for flavors


def _flavor_qos(server, flavor_id):
    with Store(server.db) as store:
        return flavors.flavor_qos(store, flavor_id)


def test_the_seed_flavor_ends_as_the_models_qos(server):
    created = server.json("flavor", "create", "--ram", "1024", "--disk", "20", "--vcpus", "1", "m1.resquota")
    assert (created["ram"], created["disk"], created["vcpus"], created["os-flavor-access:is_public"]) == \
        (1024, 20, 1, True)
    assert created["properties"] == {} and created["swap"] == 0 and created["OS-FLV-EXT-DATA:ephemeral"] == 0
    args = [arg for key, value in SEED_PROPERTIES.items() for arg in ("--property", f"{key}={value}")]
    done = server.openstack("flavor", "set", "m1.resquota", *args)
    assert done.returncode == 0, done.stderr

    shown = server.json("flavor", "show", "m1.resquota")
    assert shown["properties"] == SEED_PROPERTIES and shown["id"] == created["id"]
    assert shown["access_project_ids"] is None and shown["rxtx_factor"] == 1.0

    qos = _flavor_qos(server, created["id"])
    assert qos.name == "m1.resquota" and qos.qos.cpu is not None and qos.qos.cpu.shares == 512
    assert qos.qos.disk == DiskQos(read_bytes_sec=1_000_000, write_bytes_sec=1_024_000)
    # libvirt's units: average and peak in kB/s (8000 bit/s), burst in KiB
    expected = BandwidthLimit(rate_bps=32768 * 8000, peak_bps=65536 * 8000, burst_bytes=131072 * 1024)
    assert qos.qos.network is not None
    assert qos.qos.network.ingress.bandwidth == expected and qos.qos.network.egress.bandwidth == expected

    listed = server.json("flavor", "list", "--long", user="alice")
    assert [(f["Name"], f["Properties"]) for f in listed] == [("m1.resquota", SEED_PROPERTIES)]

    unset = server.openstack("flavor", "unset", "--property", "quota:cpu_shares", "--property",
                             "quota:vif_inbound_peak", "m1.resquota")
    assert unset.returncode == 0, unset.stderr
    left = server.json("flavor", "show", created["id"])["properties"]
    assert left == {k: v for k, v in SEED_PROPERTIES.items() if k not in ("quota:cpu_shares", "quota:vif_inbound_peak")}
    after = _flavor_qos(server, created["id"])
    assert after.qos.cpu is None and after.qos.network.ingress.bandwidth.peak_bps is None

    assert server.openstack("flavor", "delete", "m1.resquota").returncode == 0
    assert server.json("flavor", "list") == []


def test_a_private_flavor_is_seen_by_the_projects_it_names(server):
    made = server.json("flavor", "create", "--ram", "512", "--disk", "1", "--vcpus", "1", "--private",
                       "--project", "demo", "--description", "for demo only", "m1.private")
    assert made["os-flavor-access:is_public"] is False and made["description"] == "for demo only"
    demo = call(server, "GET", "/v3/projects?name=demo").json()["projects"][0]["id"]
    assert server.json("flavor", "show", "m1.private")["access_project_ids"] == [demo]
    assert [f["Name"] for f in server.json("flavor", "list", user="alice")] == ["m1.private"]
    assert server.json("flavor", "list", user="bob") == []
    hidden = server.openstack("flavor", "show", made["id"], user="bob")
    assert hidden.returncode == 1 and f"No Flavor found for {made['id']}" in hidden.stderr
    # the admin lists private flavors only when asked (Nova's is_public filter)
    assert server.json("flavor", "list") == []
    assert [f["Name"] for f in server.json("flavor", "list", "--all")] == ["m1.private"]

    other = call(server, "GET", "/v3/projects?name=other").json()["projects"][0]["id"]
    assert server.openstack("flavor", "set", "--project", "other", "m1.private").returncode == 0
    assert sorted(server.json("flavor", "show", "m1.private")["access_project_ids"]) == sorted([demo, other])
    assert server.openstack("flavor", "unset", "--project", "demo", "m1.private").returncode == 0
    assert server.json("flavor", "list", user="alice") == []
    again = call(server, "POST", f"/compute/v2.1/flavors/{made['id']}/action",
                 json={"addTenantAccess": {"tenant": other}}, version=NOVA)
    assert again.status_code == 409 and again.json() == {"conflictingRequest": {"code": 409, "message": (
        f"Flavor access already exists for flavor {made['id']} and project {other} combination.")}}
    nobody = call(server, "POST", f"/compute/v2.1/flavors/{made['id']}/action",
                  json={"addTenantAccess": {"tenant": "no-such-project"}}, version=NOVA)
    assert nobody.json() == {"badRequest": {"code": 400, "message": "Project ID no-such-project is not a valid project."}}
    assert server.openstack("flavor", "delete", "m1.private").returncode == 0


def test_bad_quota_values_are_refused_with_novas_bodies(server):
    made = server.json("flavor", "create", "--ram", "512", "--disk", "1", "--vcpus", "1", "m1.strict")
    specs = f"/compute/v2.1/flavors/{made['id']}/os-extra_specs"
    cases = {
        "quota:vif_inbound_average": ("abc", "Validation failed; 'abc' is not a valid integer value."),
        "quota:cpu_shares": ("-1", "Validation failed; '-1' is less than the min value of '0'."),
        "quota:bogus": ("1", "Validation failed; extra spec 'quota:bogus' does not appear to be a valid extra spec."),
        "quota:vif_outbound_burst": ("4294967296", "Validation failed; quota:vif_outbound_burst: '4294967296' is not "
                                                   "valid: an unsigned integer from 0 to 4294967295"),
    }
    for key, (value, message) in cases.items():
        refused = call(server, "POST", specs, json={"extra_specs": {key: value}}, version=NOVA)
        assert refused.status_code == 400, refused.text
        assert list(refused.json()) == ["badRequest"] and refused.json()["badRequest"]["code"] == 400
        assert refused.json()["badRequest"]["message"].startswith(message)
        assert refused.headers["OpenStack-API-Version"] == NOVA
        assert refused.headers["X-OpenStack-Nova-API-Version"] == "2.61"
    # the real client shows the same words and fails
    cli = server.openstack("flavor", "set", "--property", "quota:disk_total_iops_sec=lots", "m1.strict")
    assert cli.returncode == 1 and "Validation failed; 'lots' is not a valid integer value." in cli.stderr
    # a value that is fine alone is checked with the stored ones: a total beside a read is refused (libvirt)
    ok = call(server, "PUT", f"{specs}/quota:disk_read_bytes_sec", json={"quota:disk_read_bytes_sec": 1000},
              version=NOVA)
    assert ok.status_code == 200 and ok.json() == {"quota:disk_read_bytes_sec": 1000}
    both = call(server, "POST", specs, json={"extra_specs": {"quota:disk_total_bytes_sec": "5000"}}, version=NOVA)
    assert both.status_code == 400 and "total_bytes_sec" in both.json()["badRequest"]["message"]
    assert call(server, "GET", specs, version=NOVA).json() == {"extra_specs": {"quota:disk_read_bytes_sec": "1000"}}
    # keys outside the quota: namespace are kept as Nova keeps them
    kept = call(server, "POST", specs, json={"extra_specs": {"hw:cpu_policy": "dedicated"}}, version=NOVA)
    assert kept.status_code == 200
    mismatch = call(server, "PUT", f"{specs}/quota:cpu_shares", json={"quota:cpu_period": "100"}, version=NOVA)
    assert mismatch.json() == {"badRequest": {"code": 400, "message": "Request body and URI mismatch"}}
    assert server.openstack("flavor", "delete", "m1.strict").returncode == 0


def test_readers_and_members_are_refused_as_nova_refuses_them(server):
    refused = server.openstack("flavor", "create", "--ram", "512", "--vcpus", "1", "nope", user="alice")
    assert refused.returncode == 1
    assert "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed." in refused.stderr
    made = server.json("flavor", "create", "--ram", "512", "--disk", "1", "--vcpus", "1", "m1.shared")
    no_set = server.openstack("flavor", "set", "--property", "quota:cpu_shares=100", "m1.shared", user="rita")
    assert no_set.returncode == 1
    assert "Policy doesn't allow os_compute_api:os-flavor-extra-specs:create to be performed." in no_set.stderr
    gone = call(server, "DELETE", f"/compute/v2.1/flavors/{made['id']}", "alice", version=NOVA)
    assert gone.status_code == 403 and gone.json() == {"forbidden": {"code": 403, "message": (
        "Policy doesn't allow os_compute_api:os-flavor-manage:delete to be performed.")}}
    # a reader reads the flavor and its extra specs
    assert server.json("flavor", "show", "m1.shared", user="rita")["properties"] == {}
    assert server.openstack("flavor", "delete", "m1.shared").returncode == 0


def test_nova_answers_not_found_conflict_and_microversions(server):
    missing = call(server, "GET", "/compute/v2.1/flavors/nope", version=NOVA)
    assert missing.status_code == 404
    assert missing.json() == {"itemNotFound": {"code": 404, "message": "Flavor nope could not be found."}}
    body = {"flavor": {"name": "m1.twice", "ram": 512, "vcpus": 1, "disk": 1, "id": "twice"}}
    assert call(server, "POST", "/compute/v2.1/flavors", json=body, version=NOVA).status_code == 200
    twice = call(server, "POST", "/compute/v2.1/flavors", json=body, version=NOVA)
    assert twice.json() == {"conflictingRequest": {"code": 409, "message": "Flavor with name m1.twice already exists."}}
    bad_ram = call(server, "POST", "/compute/v2.1/flavors", version=NOVA,
                   json={"flavor": {"name": "m1.zero", "ram": 0, "vcpus": 1, "disk": 1}})
    assert bad_ram.json()["badRequest"]["message"] == \
        "Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1"

    # the version documents, and what each microversion shows
    root = call(server, "GET", "/compute/").json()["versions"]
    assert [(v["id"], v["min_version"], v["version"]) for v in root] == [("v2.1", "2.1", "2.102")]
    old = call(server, "GET", "/compute/v2.1/flavors/twice").json()["flavor"]  # no header: 2.1
    assert "description" not in old and "extra_specs" not in old and old["swap"] == ""
    new = call(server, "GET", "/compute/v2.1/flavors/twice", version="compute latest")
    assert new.headers["OpenStack-API-Version"] == "compute 2.102"
    assert "rxtx_factor" not in new.json()["flavor"] and new.json()["flavor"]["extra_specs"] == {}
    too_new = call(server, "GET", "/compute/v2.1/flavors/twice", version="compute 2.200")
    assert too_new.status_code == 406 and too_new.json()["computeFault"]["message"] == \
        "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.102."
    assert call(server, "DELETE", "/compute/v2.1/flavors/twice", version=NOVA).status_code == 202
