"""Cinder volume update, os-extend and os-retype, in process on both back ends: the disk QoS a volume
gets (services.cinder_volumes.volume_disk_qos) follows its new size (per-GB keys) and its new type,
and the refusals are Cinder's (volume/api.py _extend and retype, schemas/volume_actions.py, wsgi)."""

from __future__ import annotations

import pytest

from vmqos.core.model import DiskQos
from vmqos.services import cinder_volumes, identity

from .inproc import headers, running_api

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url, readers=("rita",)) as client:
        client.db_url = db_url
        yield client


def _project(api, auth) -> str:
    return str(api.get("/v3/auth/tokens", headers=auth | {"X-Subject-Token": auth["X-Auth-Token"]})
               .json()["token"]["project"]["id"])


def _disk(api, volume_id: str) -> DiskQos | None:
    with identity.open_store(api.db_url) as store:
        return cinder_volumes.volume_disk_qos(store, volume_id).disk


def _typed(api, admin, project: str, name: str, specs: dict[str, str]) -> None:
    base = f"/volume/v3/{project}"
    spec = api.post(f"{base}/qos-specs", headers=admin, json={"qos_specs": {"name": name, "consumer": "front-end",
                                                                            **specs}})
    assert spec.status_code == 200, spec.text
    vtype = api.post(f"{base}/types", headers=admin, json={"volume_type": {"name": name}})
    assert vtype.status_code == 200, vtype.text
    tid = vtype.json()["volume_type"]["id"]
    linked = api.get(f"{base}/qos-specs/{spec.json()['qos_specs']['id']}/associate?vol_type_id={tid}", headers=admin)
    assert linked.status_code == 202, linked.text


def _fault(response, status: int) -> str:
    assert response.status_code == status, response.text
    ((_kind, body),) = response.json().items()
    return str(body["message"])


def test_extend_and_retype_carry_the_qos_and_update_renames(api):
    admin, alice = headers(api), headers(api, "alice", "demo")
    _typed(api, admin, _project(api, admin), "per-gb", {"total_iops_sec_per_gb": "30"})
    _typed(api, admin, _project(api, admin), "flat", {"total_bytes_sec": "10240000"})
    base = f"/volume/v3/{_project(api, alice)}/volumes"
    made = api.post(base, headers=alice, json={"volume": {"size": 10, "volume_type": "per-gb", "name": "v"}})
    assert made.status_code == 202, made.text
    vid = made.json()["volume"]["id"]
    assert _disk(api, vid) == DiskQos(total_iops_sec=300)

    extended = api.post(f"{base}/{vid}/action", headers=alice, json={"os-extend": {"new_size": "20"}})
    assert (extended.status_code, extended.content) == (202, b"")
    assert api.get(f"{base}/{vid}", headers=alice).json()["volume"]["size"] == 20
    assert _disk(api, vid) == DiskQos(total_iops_sec=600)

    retyped = api.post(f"{base}/{vid}/action", headers=alice, json={"os-retype": {"new_type": "flat"}})
    assert retyped.status_code == 202, retyped.text
    assert api.get(f"{base}/{vid}", headers=alice).json()["volume"]["volume_type"] == "flat"
    assert _disk(api, vid) == DiskQos(total_bytes_sec=10_240_000)

    renamed = api.put(f"{base}/{vid}", headers=alice,
                      json={"volume": {"name": " w ", "description": "d", "metadata": {"k": "v"}}})
    assert renamed.status_code == 200, renamed.text
    view = renamed.json()["volume"]
    assert (view["name"], view["description"], view["metadata"], view["size"]) == ("w", "d", {"k": "v"}, 20)
    cleared = api.put(f"{base}/{vid}", headers=alice, json={"volume": {"display_description": None}}).json()
    assert (cleared["volume"]["name"], cleared["volume"]["description"]) == ("w", None)


def test_cinders_refusals_of_extend_retype_and_update(api):
    admin, alice = headers(api), headers(api, "alice", "demo")
    _typed(api, admin, _project(api, admin), "huge", {"total_bytes_sec_per_gb": "1000000000000"})
    base = f"/volume/v3/{_project(api, alice)}/volumes"
    vid = api.post(base, headers=alice, json={"volume": {"size": 2}}).json()["volume"]["id"]
    action = f"{base}/{vid}/action"
    assert _fault(api.post(action, headers=alice, json={"os-extend": {"new_size": 2}}), 400) == \
        "Invalid input received: New size for extend must be greater than current size. (current: 2, extended: 2)."
    assert _fault(api.post(action, headers=alice, json={"os-extend": {"new_size": 0}}), 400) == \
        "Invalid input for field/attribute new_size. Value: 0. 0 is less than the minimum of 1"
    assert "'new_size' is a required property" in _fault(api.post(action, headers=alice, json={"os-extend": {}}), 400)
    assert _fault(api.post(action, headers=alice, json={"os-frobnicate": {}}), 400).startswith(
        "There is no such action: os-frobnicate.")
    assert _fault(api.post(action, headers=alice, json={"os-retype": {"new_type": "nope"}}), 404) == \
        "Volume type with name nope could not be found."
    # the huge type's per-GB spec does not read at 2,000 GiB: the retype is refused, nothing changes
    big = api.post(base, headers=alice, json={"volume": {"size": 2000}}).json()["volume"]["id"]
    assert "above QEMU's maximum" in _fault(api.post(f"{base}/{big}/action", headers=alice,
                                                     json={"os-retype": {"new_type": "huge"}}), 400)
    assert api.get(f"{base}/{big}", headers=alice).json()["volume"]["volume_type"] is None
    assert api.post(action, headers=alice, json={"os-retype": {"new_type": "huge"}}).status_code == 202
    assert _fault(api.post(action, headers=alice, json={"os-retype": {"new_type": "huge"}}), 400).startswith(
        "Invalid volume: Retype needs volume to be in available or in-use state")
    assert "above QEMU's maximum" in _fault(api.post(action, headers=alice,
                                                     json={"os-extend": {"new_size": 3000}}), 400)
    assert api.get(f"{base}/{vid}", headers=alice).json()["volume"]["size"] == 2
    assert "'size' was unexpected" in _fault(api.put(f"{base}/{vid}", headers=alice,
                                                     json={"volume": {"size": 5}}), 400)
    # a reader reads and is refused; another project's volume does not exist
    rita = headers(api, "rita", "demo")
    assert _fault(api.post(action, headers=rita, json={"os-extend": {"new_size": 3}}), 403) == \
        "Policy doesn't allow volume:extend to be performed."
    assert _fault(api.put(f"{base}/{vid}", headers=rita, json={"volume": {"name": "x"}}), 403) == \
        "Policy doesn't allow volume:update to be performed."
    bob = headers(api, "bob", "other")
    theirs = f"/volume/v3/{_project(api, bob)}/volumes/{vid}"
    assert _fault(api.post(f"{theirs}/action", headers=bob, json={"os-extend": {"new_size": 3}}), 404) == \
        f"Volume {vid} could not be found."
