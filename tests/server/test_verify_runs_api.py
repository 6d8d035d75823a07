"""A port's verify runs at /v1 in process, on SQLite and PostgreSQL: upload, list, the plot served back
byte for byte, who may do what (as the port), the plot's cap, and the newest KEEP kept per port."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from vmqos.services.verify_wire import MAX_PLOT_BYTES
from vmqos.store.verify_runs import KEEP

from .inproc import add_agent, headers, made, policy, port, running_api

pytestmark = pytest.mark.server


def png(width: int = 3, height: int = 2, pad: int = 0) -> bytes:
    """A real PNG (grey pixels), with `pad` bytes of an ancillary chunk to make it as big as wanted."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    extra = chunk(b"vqPd", b"\x00" * pad) if pad else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + extra
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def run_body(at: str = "2026-12-07T01:00:00Z", *, ok: bool = True, plot: bytes | None = None,
             direction: str = "egress") -> dict:
    body = {"at": at, "direction": direction, "traffic": "tcp", "duration_s": 5.0,
            "limit": {"rate_bps": 3_000_000, "burst_bytes": 37_500}, "metric": "bit/s", "judged_limit": 3_000_000,
            "offered": 3_400_000, "achieved": 2_990_000 if ok else 3_600_000, "error": -0.0033 if ok else 0.2,
            "first_second_peak": 3_500_000, "ok": ok, "verdict": "pass" if ok else "over the limit",
            "reasons": ["achieved 2.99 Mbit/s, within 5 % of 3 Mbit/s" if ok else "20 % over the limit"]}
    if plot is not None:
        body["plot_png"] = base64.b64encode(plot).decode()
    return body


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        for name, host in (("agent-h1", "h1"), ("agent-h2", "h2")):
            add_agent(client.app.state.store, name, host)
        yield client


@pytest.fixture()
def tap(api) -> str:
    """Alice's Neutron port bound to h1, with a 3 Mbit/s policy: its device."""
    admin, alice = headers(api), headers(api, "alice", "demo")
    mine = policy(api, alice, "mine", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=alice), "network")
    hers = port(api, alice, net["id"], "hers", qos_policy_id=mine)
    api.put(f"/v2.0/ports/{hers['id']}", json={"port": {"binding:host_id": "h1"}}, headers=admin).raise_for_status()
    return "tap" + hers["id"][:11]


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["NeutronError"]["message"])


def test_a_run_is_uploaded_listed_and_its_plot_served_to_who_may_read_the_port(api, tap):
    agent, alice, bob = headers(api, "agent-h1", "service"), headers(api, "alice", "demo"), headers(api, "bob", "other")
    other_agent = headers(api, "agent-h2", "service")
    base = f"/v1/hosts/h1/ports/{tap}/verify-runs"
    picture = png(40, 30)
    made_run = api.post(base, json=run_body(plot=picture), headers=agent)
    assert made_run.status_code == 201, made_run.text
    first = made_run.json()["run"]
    assert (first["host"], first["device"], first["ok"], first["has_plot"], first["achieved"]) == \
        ("h1", tap, True, True, 2_990_000)
    second = api.post(base, json=run_body("2026-12-07T01:05:00Z", ok=False, direction="ingress"),
                      headers=headers(api)).json()["run"]  # an admin may upload too; no plot
    assert second["has_plot"] is False

    listed = api.get(base, headers=alice).json()["runs"]  # her port: she reads its runs, newest first
    assert [(r["id"], r["verdict"], r["direction"]) for r in listed] == \
        [(second["id"], "over the limit", "ingress"), (first["id"], "pass", "egress")]
    assert "plot_png" not in listed[0] and listed[1]["reasons"] == run_body()["reasons"]
    assert listed[1]["limit"] == {"rate_bps": 3_000_000, "peak_bps": None, "burst_bytes": 37_500, "pps": None}

    image = api.get(f"{base}/{first['id']}/plot.png", headers=alice)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == picture  # byte for byte
    _error(api.get(f"{base}/{second['id']}/plot.png", headers=alice), 404)  # uploaded without one
    _error(api.get(f"/v1/hosts/h1/ports/{tap}/verify-runs/999999/plot.png", headers=alice), 404)

    for path in (base, f"{base}/{first['id']}/plot.png"):  # another project: the port does not exist for bob
        _error(api.get(path, headers=bob), 404)
    _error(api.post(base, json=run_body(), headers=bob), 403)  # a member uploads nothing
    _error(api.post(base, json=run_body(), headers=alice), 403)
    _error(api.post(base, json=run_body(), headers=other_agent), 403)  # another host's agent
    _error(api.post("/v1/hosts/h1/ports/vq-unknown/verify-runs", json=run_body(), headers=agent), 404)
    _error(api.get(f"/v1/hosts/h2/ports/{tap}/verify-runs/{first['id']}/plot.png", headers=headers(api)), 404)
    assert len(api.get(base, headers=alice).json()["runs"]) == 2  # none of the refused ones was kept


def test_the_plot_is_capped_and_must_be_a_png(api, tap):
    agent = headers(api, "agent-h1", "service")
    base = f"/v1/hosts/h1/ports/{tap}/verify-runs"
    assert api.post(base, json=run_body(plot=png(pad=MAX_PLOT_BYTES - 200)), headers=agent).status_code == 201
    too_big = run_body(plot=png(pad=MAX_PLOT_BYTES))
    assert "at most" in _error(api.post(base, json=too_big, headers=agent), 400)  # read, then refused
    huge = run_body(plot=png(pad=MAX_PLOT_BYTES * 2))
    assert "too large" in _error(api.post(base, json=huge, headers=agent), 413)  # refused by its length
    not_png = run_body()
    not_png["plot_png"] = base64.b64encode(b"GIF89a" + b"\x00" * 20).decode()
    assert "not a PNG" in _error(api.post(base, json=not_png, headers=agent), 400)
    not_base64 = run_body()
    not_base64["plot_png"] = "%%% not base64 %%%"
    assert "base64" in _error(api.post(base, json=not_base64, headers=agent), 400)
    bad_direction = {**run_body(), "direction": "sideways"}
    _error(api.post(base, json=bad_direction, headers=agent), 400)
    assert len(api.get(base, headers=agent).json()["runs"]) == 1


def test_only_the_newest_runs_of_a_port_are_kept(api, tap):
    agent = headers(api, "agent-h1", "service")
    base = f"/v1/hosts/h1/ports/{tap}/verify-runs"
    ids = [api.post(base, json=run_body(f"2026-12-07T02:{i:02d}:00Z", plot=png(i + 1, 1)), headers=agent)
           .json()["run"]["id"] for i in range(KEEP + 3)]
    listed = api.get(base, headers=agent).json()["runs"]
    assert [r["id"] for r in listed] == ids[::-1][:KEEP]  # the three oldest were pruned
    _error(api.get(f"{base}/{ids[0]}/plot.png", headers=agent), 404)
    assert api.get(f"{base}/{ids[-1]}/plot.png", headers=agent).content == png(KEEP + 3, 1)
    assert [r["id"] for r in api.get(base, params={"limit": 2}, headers=agent).json()["runs"]] == ids[::-1][:2]


def test_the_dashboard_port_view_lists_the_runs_and_its_cookie_reads_the_plot(api, tap):
    agent, bob = headers(api, "agent-h1", "service"), headers(api, "bob", "other")
    base = f"/v1/hosts/h1/ports/{tap}/verify-runs"
    view = api.get(f"/dashboard/api/hosts/h1/ports/{tap}", headers=headers(api)).json()
    assert view["verify_runs"] == [] and "--server" in view["verify"]
    picture = png(5, 4)
    made_run = api.post(base, json=run_body(plot=picture), headers=agent).json()["run"]
    api.cookies.clear()
    answer = api.post("/dashboard/session", json={"username": "alice", "password": "pw", "project": "demo"})
    assert answer.status_code == 200, answer.text
    view = api.get(f"/dashboard/api/hosts/h1/ports/{tap}").json()  # the cookie alone, as the page reads
    assert [(r["id"], r["verdict"], r["has_plot"]) for r in view["verify_runs"]] == [(made_run["id"], "pass", True)]
    assert "newest first" in view["verify"]
    image = api.get(f"{base}/{made_run['id']}/plot.png")  # what the page's <img> asks, with the cookie only
    assert image.status_code == 200 and image.content == picture
    api.cookies.clear()
    assert api.get(f"{base}/{made_run['id']}/plot.png").status_code == 401  # no cookie, no token
    _error(api.get(f"/dashboard/api/hosts/h1/ports/{tap}", headers=bob), 404)
