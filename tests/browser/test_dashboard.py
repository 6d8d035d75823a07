"""Browser tier: the dashboard in Debian's headless Chromium (playwright), against a lab fleet.

One lab fleet for the module (a server in its control namespace, one lab host with an agent and one
instance, vm1 on tap-vm1), set up through the server's own APIs: a QoS policy of 3 Mbit/s egress on a
Neutron port bound to the host's tap-vm1, and a second project with its member bob. Then, in the
page itself:
- log in; open the port while iperf3 runs from vm1: its delivered rate settles at the limit in the
  chart's data (the series the page hands uPlot);
- change the policy's rate in the form: the kernel's limit follows (the agent's read-back of its
  HTB class, as tests/kernel/test_fleet.py reads it) and so does the chart; a bad value gives the
  API's own message;
- a SYN flood (hping3) from vm1: an event and a quarantine appear, and are lifted from the page;
- bob, of another project, sees none of it.
The views' screenshots go to a directory of the session, and to docs/dashboard-*.png (the README
shows them) when VMQOS_UPDATE_SCREENSHOTS=1: a test run does not rewrite the checkout.

Cost: about a minute and a half (the fleet's start ~15 s, two traffic phases of ~15 s, a flood of 6 s
and its detection, the lift).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kernel.conftest import _missing, require
from vmqos.core.errors import NotFound
from vmqos.core.plan.tc_objects import HtbClass
from vmqos.drivers.process import in_netns
from vmqos.lab import fleet as fleets
from vmqos.lab.fleet_topology import SERVER_ADDRESS, SERVER_PORT, Fleet
from vmqos.lab.traffic import running
from vmqos.services.ports import open_store, show_port

from .relay import Relay

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.traffic]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS = Path(__file__).resolve().parents[2] / "docs"
if os.environ.get("VMQOS_UPDATE_SCREENSHOTS") != "1":
    DOCS = Path(tempfile.mkdtemp(prefix="vq-screens-"))  # still taken: a view that cannot render fails
    atexit.register(shutil.rmtree, DOCS, True)
PASSWORD = "dashboard-pw"
WAIT_S = 25.0


@dataclass
class Lab:
    name: str
    fleet: Fleet
    url: str
    admin_password: str
    policy_id: str
    rule_id: str
    page: Any  # playwright's Page, logged in as admin
    browser: Any

    @property
    def host(self) -> str:
        return self.fleet.host(1).name

    def kernel_egress(self) -> int | None:
        """The egress rate tap-vm1's HTB class holds, in sync with the agent's desired state (None: not yet).
        Read in a thread of its own: pyroute2 runs an asyncio loop, and playwright's sync API holds this
        thread's."""
        with ThreadPoolExecutor(1, thread_name_prefix="vq-readback") as pool:
            return pool.submit(self._kernel_egress).result()

    def _kernel_egress(self) -> int | None:
        cache = f"sqlite:///{fleets.state_dir(self.name) / f'agent-{self.host}.db'}"
        try:
            with open_store(cache, read_only=True) as store:
                shown = show_port(store, self.fleet.host(1).netns, "tap-vm1")
        except NotFound:
            return None
        rate = shown.desired.egress.rate_bps
        held = shown.kernel.in_sync and any(isinstance(o, HtbClass) and o.rate_bps == rate
                                            for o in shown.kernel.objects)
        return rate if held else None


def until(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    start = time.monotonic()
    while not (found := check()):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)
    return found


def _setup(url: str, admin_password: str, host: str) -> tuple[str, str]:
    """bw-limiter (3 Mbit/s egress) on a port bound to the host's tap-vm1; project other with member bob."""
    with httpx.Client(base_url=url, timeout=30) as http:
        def token(user: str, password: str, project: str) -> dict[str, str]:
            body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
            answer = http.post("/v3/auth/tokens", json=body)
            answer.raise_for_status()
            return {"X-Auth-Token": answer.headers["X-Subject-Token"]}

        admin = token("admin", admin_password, "admin")

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = http.post(path, json=body, headers=admin)
            assert answer.status_code == 201, answer.text
            return dict(answer.json())

        policy = post("/v2.0/qos/policies", {"policy": {"name": "bw-limiter"}})["policy"]
        rule = post(f"/v2.0/qos/policies/{policy['id']}/bandwidth_limit_rules",
                    {"bandwidth_limit_rule": {"max_kbps": 3000, "max_burst_kbps": 300, "direction": "egress"}})
        net = post("/v2.0/networks", {"network": {"name": "dash-net"}})["network"]
        post("/v2.0/ports", {"port": {"network_id": net["id"], "name": "vm1-port", "qos_policy_id": policy["id"],
                                      "binding:host_id": host, "binding:profile": {"device": "tap-vm1"}}})
        project = post("/v3/projects", {"project": {"name": "other"}})["project"]
        user = post("/v3/users", {"user": {"name": "bob", "password": PASSWORD}})["user"]
        role = http.get("/v3/roles", params={"name": "member"}, headers=admin).json()["roles"][0]
        http.put(f"/v3/projects/{project['id']}/users/{user['id']}/roles/{role['id']}",
                 headers=admin).raise_for_status()
        return policy["id"], rule["bandwidth_limit_rule"]["id"]


def log_in(page: Any, url: str, user: str, password: str, project: str) -> None:
    page.goto(url + "/")
    page.fill("#login input[name=username]", user)
    page.fill("#login input[name=password]", password)
    page.fill("#login input[name=project]", project)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#whoami:has-text('" + user + "')")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require("kernel", _missing())
    for tool in ("iperf3", "hping3"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}: run `make test`, which installs it")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}: run `make test`, which installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    name = f"vq{uuid.uuid4().hex[:5]}"
    relay = None
    try:
        fleets.fleet_up(name, 1, 1)
        fleet = Fleet(name, 1)
        relay = Relay(fleet.ctl_ns, (SERVER_ADDRESS, SERVER_PORT))
        admin_password = fleets.admin_env(name)["OS_PASSWORD"]
        policy_id, rule_id = _setup(relay.url, admin_password, fleet.host(1).name)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.set_default_timeout(WAIT_S * 1000)
                log_in(page, relay.url, "admin", admin_password, "admin")
                yield Lab(name, fleet, relay.url, admin_password, policy_id, rule_id, page, browser)
            finally:
                browser.close()
    finally:
        if relay is not None:
            relay.close()
        fleets.fleet_down(name)


def _series(page: Any) -> dict[str, list[Any]]:
    """The data the port page's rate chart (uPlot, egress shown) draws: its x and its four lines."""
    data = page.evaluate("() => window.vmqos.charts && window.vmqos.charts.rates.data") or [[]] * 5
    return dict(zip(("at", "offered", "delivered", "dropped", "limit"), data))


def _settled_at(page: Any, limit: int) -> float | None:
    """The median delivered rate of the chart's last 5 points, if they were all drawn against `limit`, all
    within 0.85-1.10 of it (a TCP flow's sawtooth, the bucket's burst), their median within 0.90-1.05."""
    s = _series(page)
    delivered, limits = s.get("delivered", [])[-5:], s.get("limit", [])[-5:]
    if len(delivered) < 5 or any(v != limit for v in limits):
        return None
    median = statistics.median(delivered)
    steady = all(0.85 * limit <= v <= 1.10 * limit for v in delivered)
    return median if steady and 0.90 * limit <= median <= 1.05 * limit else None


def _iperf(lab: Lab, seconds: int) -> Any:
    host = lab.fleet.host(1)
    wan = host.lab.wan
    return running(["iperf3", "-c", wan.address, "-t", str(seconds), "-C", "cubic"], host.lab.instance(1).netns,
                   delay=0.3)


def test_logged_in_an_admin_sees_the_port_deliver_at_its_limit_in_the_chart(lab: Lab):
    page, host = lab.page, lab.host
    until("the policy's 3 Mbit/s on the kernel", lambda: lab.kernel_egress() == 3_000_000)
    wan = lab.fleet.host(1).lab.wan
    with running(["iperf3", "-s", "-B", wan.address], wan.netns, delay=0.3), _iperf(lab, 40):
        page.goto(f"{lab.url}/#/port/{host}/tap-vm1")
        page.wait_for_selector("#limits-table tr[data-field='rate_bps']")
        settled = until("delivered settling at 3 Mbit/s in the chart", lambda: _settled_at(page, 3_000_000))
        assert "neutron policy" in page.inner_text("#limits-table")
        page.screenshot(path=str(DOCS / "dashboard-port.png"), full_page=True)
        offered = _series(page)["offered"][-5:]
        page.goto(f"{lab.url}/#/host/{host}")
        page.wait_for_selector("#ports tr[data-key='tap-vm1/egress']")
        page.screenshot(path=str(DOCS / "dashboard-host.png"), full_page=True)
        page.fill("#filter", "no-such-port")  # the filter: rows go, and come back
        page.wait_for_selector("#ports tr[data-key='tap-vm1/egress']", state="detached")
        page.fill("#filter", "tap-vm1")
        page.wait_for_selector("#ports tr[data-key='tap-vm1/egress']")
        page.goto(f"{lab.url}/#/fleet")
        page.wait_for_selector(f"#hosts tr[data-key='{host}'] .badge.in_sync")
        page.wait_for_selector("#top tr[data-key$='tap-vm1/egress']")
        page.screenshot(path=str(DOCS / "dashboard-fleet.png"), full_page=True)
    # the sender offered the limit (so the limit, not the sender, held the rate): the median second of the
    # last five, since one starved second on a shared machine read 2.30 of 3 Mbit/s (2026-12-07)
    assert settled <= 1.05 * 3_000_000 and statistics.median(offered) >= 0.9 * 3_000_000, (settled, offered)


def test_a_rate_changed_in_the_form_reaches_the_kernel_and_the_chart_and_a_bad_value_gets_the_apis_message(lab: Lab):
    page = lab.page
    page.goto(f"{lab.url}/#/policies")
    form = f"form.rule[data-rule='{lab.rule_id}']"
    page.fill(f"{form} input[name=max_kbps]", "fast")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f"{form} .rule-error:has-text('is not an integer')")
    assert "Invalid input for operation: 'fast' is not an integer." in page.inner_text(f"{form} .rule-error")
    page.screenshot(path=str(DOCS / "dashboard-policies.png"), full_page=True)
    page.fill(f"{form} input[name=max_kbps]", "5000")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f"{form} .rule-error:has-text('saved')")
    until("5 Mbit/s on the kernel", lambda: lab.kernel_egress() == 5_000_000)
    wan = lab.fleet.host(1).lab.wan
    with running(["iperf3", "-s", "-B", wan.address], wan.netns, delay=0.3), _iperf(lab, 40):
        page.goto(f"{lab.url}/#/port/{lab.host}/tap-vm1")
        page.wait_for_selector("#limits-table tr[data-field='rate_bps']:has-text('5.00 Mbit/s')")
        until("delivered following to 5 Mbit/s in the chart", lambda: _settled_at(page, 5_000_000))


def test_a_flood_is_an_event_and_a_quarantine_lifted_from_the_page(lab: Lab):
    page = lab.page
    before = until("the port's own limit on the kernel", lab.kernel_egress)
    page.goto(f"{lab.url}/#/events")
    page.wait_for_selector("#no-quarantines")
    vm = lab.fleet.host(1).lab.instance(1)
    wan = lab.fleet.host(1).lab.wan
    flood = subprocess.Popen(in_netns(["timeout", "6", "hping3", "--flood", "-S", "-p", "80", "-q", wan.address],
                                      vm.netns), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page.wait_for_selector("#quarantines tr[data-device='tap-vm1'] button.lift")
        page.wait_for_selector("table.events tr[data-kind='quarantined']")
    finally:
        flood.wait(timeout=30)
    # the flood over: every detection it started has ended (lifted while one of the triggers still holds,
    # the monitor would quarantine the port again, as it should)
    page.wait_for_function("() => { const n = (k) => document.querySelectorAll(`table.events tr[data-kind='${k}']`)"
                           ".length; return n('ended') > 0 && n('ended') >= n('detected'); }")
    page.screenshot(path=str(DOCS / "dashboard-events.png"), full_page=True)
    limits = page.evaluate(f"() => fetch('/dashboard/api/hosts/{lab.host}/ports/tap-vm1').then(r => r.json())"
                           ".then(p => p.limits.map(l => [l.direction, l.field, l.value, l.source]))")
    assert ["egress", "rate_bps", 1_000_000, "quarantine"] in limits, limits  # the stricter source wins
    page.click("#quarantines tr[data-device='tap-vm1'] button.lift")
    try:
        page.wait_for_selector("#no-quarantines")
    except Exception:
        kinds = page.eval_on_selector_all("table.events tr", "rows => rows.map(r => r.innerText)")
        raise AssertionError(f"the quarantine was not lifted; events: {kinds}") from None
    page.wait_for_selector("table.events tr[data-kind='lift_requested']")
    page.wait_for_selector("table.events tr[data-kind='lifted']")
    until("the port's own limit back on the kernel, in sync", lambda: lab.kernel_egress() == before)
    kinds = page.eval_on_selector_all("table.events tr", "rows => rows.map(r => r.dataset.kind)")
    assert kinds.index("lifted") < kinds.index("lift_requested") < kinds.index("quarantined"), kinds  # newest first


def test_a_member_of_another_project_sees_none_of_it(lab: Lab):
    context = lab.browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_S * 1000)
        log_in(page, lab.url, "bob", PASSWORD, "other")
        page.goto(f"{lab.url}/#/fleet")
        page.wait_for_function("() => window.vmqos.frames > 0")
        assert page.eval_on_selector_all("#hosts tbody tr", "rows => rows.length") == 0
        assert page.eval_on_selector_all("#top tbody tr", "rows => rows.length") == 0
        page.goto(f"{lab.url}/#/port/{lab.host}/tap-vm1")
        page.wait_for_selector("#stream-error")
        assert "device tap-vm1 on host" in page.inner_text("#stream-error")
        page.goto(f"{lab.url}/#/events")
        page.wait_for_selector("#no-quarantines")
        assert page.eval_on_selector_all("table.events tr", "rows => rows.length") == 0
        page.goto(f"{lab.url}/#/policies")
        page.wait_for_selector("#policies :text('No policy you may see.')")
        # the page's own session cannot reach the admin's port, whatever it asks
        status = page.evaluate(f"() => fetch('/dashboard/api/hosts/{lab.host}/ports/tap-vm1').then(r => r.status)")
        assert status == 404
    finally:
        context.close()
