"""Nova's extra-spec validators outside `quota:` (hw:, hw_rng:, hw_video:, os:), in process on both back
ends: from microversion 2.86 a known key's value is checked and an unknown key of a validated namespace
refused, with Nova's messages (nova/api/validation/extra_specs/base.py, validators.py); before 2.86,
and for namespaces vmqos does not validate, the spec is stored as given."""

from __future__ import annotations

import pytest

from vmqos.services.nova_extra_specs import check_extra_spec
from vmqos.services.openstack_input import Fault

from .inproc import headers, running_api

pytestmark = pytest.mark.server
V286 = {"OpenStack-API-Version": "compute 2.86"}


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        yield client


def _refusal(name: str, value: str) -> str:
    with pytest.raises(Fault) as caught:
        check_extra_spec(name, value)
    assert caught.value.http_status == 400
    return str(caught.value)


def test_the_rules_and_messages_of_novas_validators():
    for name, value in (("hw:cpu_policy", "dedicated"), ("hw:numa_nodes", "2"), ("hw:numa_cpus.0", "0-3,^2"),
                        ("hw:numa_mem.1", "2048"), ("hw:mem_page_size", "2MiB"), ("hw_rng:allowed", " Yes"),
                        ("hw:redirected_usb_ports", "15"), ("os:secure_boot", "required"),
                        ("vmware:hw_version", "anything"), ("no_namespace", "x"), ("hw_video:ram_max_mb", "0")):
        check_extra_spec(name, value)  # accepted: no exception
    assert _refusal("hw:cpu_policy", "pinned") == "Validation failed; 'pinned' is not one of: dedicated, shared, mixed."
    assert _refusal("hw:numa_nodes", "0") == "Validation failed; '0' is less than the min value of '1'."
    assert _refusal("hw:numa_nodes", "two") == "Validation failed; 'two' is not a valid integer value."
    assert _refusal("hw:redirected_usb_ports", "16") == "Validation failed; '16' is greater than the max value of '15'."
    assert _refusal("hw_rng:allowed", "maybe") == "Validation failed; 'maybe' is not a valid boolean-like value."
    assert _refusal("hw:mem_page_size", "huge") == \
        "Validation failed; 'huge' is not of the format '(large|small|any|\\d+([kKMGT]i?)?(b|bit|B)?)'."
    assert _refusal("hw:numa_cpus.x", "0") == \
        "Validation failed; extra spec 'hw:numa_cpus.x' does not appear to be a valid extra spec."
    assert _refusal("hw_rng:rate", "1") == \
        "Validation failed; extra spec 'hw_rng:rate' does not appear to be a valid extra spec."


def test_the_api_checks_them_from_2_86_and_stores_them_before(api):
    admin = headers(api)
    made = api.post("/compute/v2.1/flavors", headers=admin,
                    json={"flavor": {"name": "pinned", "ram": 512, "vcpus": 2, "disk": 1}})
    assert made.status_code == 200, made.text
    specs = f"/compute/v2.1/flavors/{made.json()['flavor']['id']}/os-extra_specs"
    refused = api.post(specs, headers=admin | V286, json={"extra_specs": {"hw:cpu_policy": "pinned"}})
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"badRequest": {"code": 400, "message":
                                             "Validation failed; 'pinned' is not one of: dedicated, shared, mixed."}}
    unknown = api.put(f"{specs}/hw:cpu_polcy", headers=admin | V286, json={"hw:cpu_polcy": "dedicated"})
    assert unknown.status_code == 400 and "'hw:cpu_polcy' does not appear to be a valid extra spec" in unknown.text
    assert api.get(specs, headers=admin).json() == {"extra_specs": {}}
    good = {"hw:cpu_policy": "dedicated", "hw:numa_nodes": "1", "quota:cpu_shares": "512"}
    assert api.post(specs, headers=admin | V286, json={"extra_specs": good}).status_code == 200
    old = api.post(specs, headers=admin | {"OpenStack-API-Version": "compute 2.85"},
                   json={"extra_specs": {"hw:cpu_polcy": "whatever"}})
    assert old.status_code == 200, old.text  # before 2.86 Nova stores what it does not know
    assert api.get(specs, headers=admin).json()["extra_specs"] == good | {"hw:cpu_polcy": "whatever"}
    quota = api.post(specs, headers=admin | {"OpenStack-API-Version": "compute 2.61"},
                     json={"extra_specs": {"quota:cpu_shares": "-1"}})
    assert quota.status_code == 400  # quota: keys at every microversion: vmqos enforces them
