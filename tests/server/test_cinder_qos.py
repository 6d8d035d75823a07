"""Cinder QoS specs, volume types and volumes, driven by the real `openstack` CLI against `vmqos server`.

The seed's `openstack volume qos create --consumer front-end --property ...`, associated with a
type, ends as the DiskQos of a volume of that type, read back through
services.cinder_volumes.volume_disk_qos from the server's own database (per-GB keys at the
volume's size). Refusals are checked with the client's words and, over plain HTTP, with Cinder's
own bodies: `{"badRequest": {"code": 400, "message": "Invalid qos specs: ..."}}`, itemNotFound,
forbidden; a project never sees another's volume.
"""

from __future__ import annotations

import pytest

from tests.server.rest import call
from vmqos.core.model import DiskQos
from vmqos.services import cinder_volumes
from vmqos.store import Store

pytestmark = pytest.mark.server


def _disk(server, volume_id):
    with Store(server.db) as store:
        return cinder_volumes.volume_disk_qos(store, volume_id)


def test_a_front_end_spec_ends_as_the_disk_qos_of_a_volume_of_its_type(server):
    spec = server.json("volume", "qos", "create", "--consumer", "front-end", "--property", "total_iops_sec=500",
                       "--property", "total_bytes_sec=10240000", "qos-fe")
    assert (spec["name"], spec["consumer"]) == ("qos-fe", "front-end")
    assert spec["properties"] == {"total_iops_sec": "500", "total_bytes_sec": "10240000"}
    vtype = server.json("volume", "type", "create", "--description", "front-end limited", "limited")
    assert (vtype["name"], vtype["is_public"], vtype["description"]) == ("limited", True, "front-end limited")
    assert server.openstack("volume", "qos", "associate", "qos-fe", "limited").returncode == 0
    assert server.json("volume", "qos", "show", "qos-fe")["associations"] == ["limited"]
    assert [(q["Name"], q["Associations"]) for q in server.json("volume", "qos", "list")] == [("qos-fe", ["limited"])]

    volume = server.json("volume", "create", "--size", "10", "--type", "limited", "vol-a", user="alice")
    assert (volume["size"], volume["type"], volume["status"], volume["name"]) == (10, "limited", "available", "vol-a")
    assert _disk(server, volume["id"]).disk == DiskQos(total_iops_sec=500, total_bytes_sec=10_240_000)

    # set and unset change what the volume gets; per-GB keys scale with its size (Cinder's computation)
    changed = server.openstack("volume", "qos", "set", "--property", "total_iops_sec_per_gb=30", "qos-fe")
    assert changed.returncode == 0, changed.stderr
    assert server.openstack("volume", "qos", "unset", "--property", "total_iops_sec", "qos-fe").returncode == 0
    assert server.json("volume", "qos", "show", "qos-fe")["properties"] == \
        {"total_bytes_sec": "10240000", "total_iops_sec_per_gb": "30"}
    assert _disk(server, volume["id"]).disk == DiskQos(total_iops_sec=300, total_bytes_sec=10_240_000)

    # `volume set --size` extends (os-extend) and the per-GB key follows; --name renames (PUT)
    grown = server.openstack("volume", "set", "--size", "20", "--name", "vol-b", "vol-a", user="alice")
    assert grown.returncode == 0, grown.stderr
    assert _disk(server, volume["id"]).disk == DiskQos(total_iops_sec=600, total_bytes_sec=10_240_000)
    assert server.openstack("volume", "set", "--name", "vol-a", "vol-b", user="alice").returncode == 0

    shown = server.json("volume", "show", "vol-a", user="alice")
    assert (shown["id"], shown["type"], shown["size"]) == (volume["id"], "limited", 20)
    assert [(v["Name"], v["Size"], v["Status"]) for v in server.json("volume", "list", user="rita")] == \
        [("vol-a", 20, "available")]

    # a type in use and a spec in use stay; taken apart they go
    kept = server.openstack("volume", "qos", "delete", "qos-fe")
    assert kept.returncode == 1 and "Qos specs still in use." in kept.stderr
    assert server.openstack("volume", "qos", "disassociate", "--volume-type", "limited", "qos-fe").returncode == 0
    assert _disk(server, volume["id"]).disk is None
    assert server.openstack("volume", "qos", "associate", "qos-fe", "limited").returncode == 0
    assert server.openstack("volume", "qos", "disassociate", "--all", "qos-fe").returncode == 0
    assert "associations" not in server.json("volume", "qos", "show", "qos-fe")
    in_use = server.openstack("volume", "type", "delete", "limited")
    assert in_use.returncode == 1 and "Target volume type is still in use." in in_use.stderr
    assert server.openstack("volume", "delete", "vol-a", user="alice").returncode == 0
    assert server.json("volume", "list", user="alice") == []
    assert server.openstack("volume", "type", "delete", "limited").returncode == 0
    assert server.openstack("volume", "qos", "delete", "qos-fe").returncode == 0
    assert server.json("volume", "qos", "list") == []


def test_a_back_end_spec_is_stored_as_given_and_puts_nothing_on_the_host(server):
    made = call(server, "POST", "/volume/v3/{project}/qos-specs", json={"qos_specs": {"name": "qos-be",
                                                                                      "maxIOPS": "5000"}})
    assert made.json()["qos_specs"]["consumer"] == "back-end"  # Cinder's default (the CLI's is both)
    assert server.json("volume", "qos", "show", "qos-be")["properties"] == {"maxIOPS": "5000"}
    server.json("volume", "type", "create", "storage")
    assert server.openstack("volume", "qos", "associate", "qos-be", "storage").returncode == 0
    volume = server.json("volume", "create", "--size", "1", "--type", "storage", "vol-b", user="alice")
    qos = _disk(server, volume["id"])
    assert qos.consumer == "back-end" and qos.disk is None and "never applied on the host" in qos.notes[0].message
    # turning it front-end would hand its unknown key to the host: refused
    refused = server.openstack("volume", "qos", "set", "--property", "consumer=front-end", "qos-be")
    assert refused.returncode == 1 and "Invalid qos specs: 'maxIOPS' is not a front-end key" in refused.stderr
    assert server.openstack("volume", "delete", "vol-b", user="alice").returncode == 0
    assert server.openstack("volume", "type", "delete", "storage").returncode == 0
    assert server.openstack("volume", "qos", "delete", "qos-be").returncode == 0


def test_bad_qos_specs_are_refused_with_cinders_bodies(server):
    path = "/volume/v3/{project}/qos-specs"
    cases = [
        ({"name": "q1", "consumer": "front-end", "total_iops_sec": "lots"},
         "Invalid qos specs: total_iops_sec: 'lots' is not valid"),
        ({"name": "q2", "consumer": "front-end", "iops_galore": "1"},
         "Invalid qos specs: 'iops_galore' is not a front-end key"),
        ({"name": "q3", "consumer": "front-end", "total_iops_sec": "100", "read_iops_sec": "50"},
         "Invalid qos specs: total_iops_sec cannot be combined with read_iops_sec"),
        ({"name": "q4", "consumer": "sideways"}, "Invalid qos specs: Valid consumer of QoS specs are:"),
        ({"name": "q5", "consumer": "front-end", "total_iops_sec": 100},
         'Invalid input received: Value for key "total_iops_sec" is not a string or unicode'),
    ]
    for body, message in cases:
        refused = call(server, "POST", path, json={"qos_specs": body})
        assert refused.status_code == 400, refused.text
        assert list(refused.json()) == ["badRequest"] and refused.json()["badRequest"]["code"] == 400
        assert refused.json()["badRequest"]["message"].startswith(message), refused.json()
    cli = server.openstack("volume", "qos", "create", "--consumer", "front-end", "--property", "total_bytes_sec=-5",
                           "q6")
    assert cli.returncode == 1 and "BadRequestException: 400" in cli.stderr
    assert "Invalid qos specs: total_bytes_sec: -5 is not valid: must be at least 0" in cli.stderr
    assert server.json("volume", "qos", "list") == []

    # a per-GB key must fit QEMU's range at the size of every volume it applies to
    server.json("volume", "qos", "create", "--consumer", "both", "--property", "total_bytes_sec_per_gb=1000000000000",
                "per-gb")
    server.json("volume", "type", "create", "huge")
    assert server.openstack("volume", "qos", "associate", "per-gb", "huge").returncode == 0
    too_big = server.openstack("volume", "create", "--size", "2000", "--type", "huge", "vol-h", user="alice")
    assert too_big.returncode == 1 and "above QEMU's maximum" in too_big.stderr
    missing = call(server, "GET", "/volume/v3/{project}/qos-specs/nope")
    assert missing.json() == {"itemNotFound": {"code": 404, "message": "No such QoS spec nope."}}
    assert missing.headers["OpenStack-API-Version"] == "volume 3.0"
    # --force takes an associated spec from its types before it deletes it
    assert server.openstack("volume", "qos", "delete", "--force", "per-gb").returncode == 0
    assert call(server, "GET", "/volume/v3/{project}/types").json()["volume_types"][0]["qos_specs_id"] is None
    assert server.openstack("volume", "type", "delete", "huge").returncode == 0


def test_projects_see_their_volumes_and_only_the_admin_manages_qos(server):
    mine = server.json("volume", "create", "--size", "1", "mine", user="alice")
    assert mine["type"] is None and mine["os-vol-tenant-attr:tenant_id"] != ""
    assert server.json("volume", "list", user="bob") == []
    hidden = server.openstack("volume", "show", mine["id"], user="bob")
    assert hidden.returncode == 1 and f"No Volume found for {mine['id']}" in hidden.stderr
    theirs = call(server, "GET", f"/volume/v3/{{project}}/volumes/{mine['id']}", "bob")
    assert theirs.status_code == 404
    assert theirs.json() == {"itemNotFound": {"code": 404, "message": f"Volume {mine['id']} could not be found."}}
    assert call(server, "DELETE", f"/volume/v3/{{project}}/volumes/{mine['id']}", "bob").status_code == 404
    # the admin sees every project's volumes only when it asks
    assert server.json("volume", "list") == []
    assert [v["ID"] for v in server.json("volume", "list", "--all-projects")] == [mine["id"]]

    reader = server.openstack("volume", "create", "--size", "1", "nope", user="rita")
    assert reader.returncode == 1 and "Policy doesn't allow volume:create to be performed." in reader.stderr
    no_delete = call(server, "DELETE", f"/volume/v3/{{project}}/volumes/{mine['id']}", "rita")
    assert no_delete.json() == {"forbidden": {"code": 403,
                                              "message": "Policy doesn't allow volume:delete to be performed."}}
    member = server.openstack("volume", "qos", "create", "--property", "total_iops_sec=1", "mine", user="alice")
    assert member.returncode == 1
    assert "Policy doesn't allow volume_extension:qos_specs_manage:create to be performed." in member.stderr
    no_type = server.openstack("volume", "type", "create", "mine", user="alice")
    assert no_type.returncode == 1 and "Policy doesn't allow volume_extension:type_create" in no_type.stderr
    other_project = call(server, "GET", "/volume/v3/not-mine/volumes", "alice")
    assert other_project.json() == {"badRequest": {"code": 400, "message": "Malformed request url"}}
    assert server.openstack("volume", "delete", "mine", user="alice").returncode == 0


def test_a_private_type_is_seen_by_the_projects_it_names(server):
    made = server.json("volume", "type", "create", "--private", "--project", "demo", "--property", "color=gold",
                       "gold")
    assert made["is_public"] is False and made["properties"] == {"color": "gold"}
    demo = call(server, "GET", "/v3/projects?name=demo").json()["projects"][0]["id"]
    assert server.json("volume", "type", "show", "gold")["access_project_ids"] == [demo]
    assert [t["Name"] for t in server.json("volume", "type", "list", user="alice")] == ["gold"]
    assert server.json("volume", "type", "list", user="bob") == []
    assert server.openstack("volume", "create", "--size", "1", "--type", "gold", "v", user="bob").returncode == 1
    # a project's member sees the type but not its admin-only extra specs
    assert server.json("volume", "type", "show", "gold", user="alice")["properties"] == {}
    assert server.openstack("volume", "type", "set", "--name", "golden", "--property", "shine=yes",
                            "gold").returncode == 0
    assert server.openstack("volume", "type", "unset", "--property", "color", "--project", "demo",
                            "golden").returncode == 0
    shown = server.json("volume", "type", "show", "golden")
    assert shown["properties"] == {"shine": "yes"} and shown["access_project_ids"] == []
    assert server.json("volume", "type", "list", user="alice") == []
    assert server.openstack("volume", "type", "delete", "golden").returncode == 0
