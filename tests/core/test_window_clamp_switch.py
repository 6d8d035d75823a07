"""The per-port `window_clamp` switch, carried from the front ends to the planner as egress_mode is.

The planner's use of it (`plan_port(..., window_clamp=...)`) is tested with the planner; here: a
port's change keeps, sets or clears it, the host's planning hands each port's switch to plan_port
(with and without an uplink, whose guaranteed ports are planned a second time), `port set
--window-clamp` stores it and `port show --json` shows it (on the golden transcripts' fake kernel),
and `vmqos plan --window-clamp` hands it to plan_port. The host file and the store: their own tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_golden_output import fake_kernel  # noqa: F401 (a fixture: the fake reconciler of the transcripts)

import vmqos.cli.plan as plan_cli
import vmqos.core.plan.host as plan_host_module
from vmqos.cli.main import main
from vmqos.core.desired.ports import PortChange, changed_port
from vmqos.core.model.host import HostState, InstanceSpec, Policy, PortSpec, UplinkSpec
from vmqos.core.model.network import DirectionQos, NetworkQos
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.planner import plan_port
from vmqos.store import Store

MBIT = 1_000_000


def _port(state: HostState, device: str) -> PortSpec:
    return next(port for _, port in state.ports() if port.device == device)


def test_a_port_change_sets_keeps_and_clears_the_window_clamp() -> None:
    state, port = changed_port(HostState(), "tap-wc", PortChange(outbound="12800,0,0"))
    assert port.window_clamp is False  # a new port: off, the default
    state, port = changed_port(state, "tap-wc", PortChange(window_clamp=True))
    assert port.window_clamp is True and _port(state, "tap-wc").window_clamp is True
    state, port = changed_port(state, "tap-wc", PortChange(outbound="6400,0,0"))
    assert port.window_clamp is True  # None: unchanged, as egress_mode
    state, port = changed_port(state, "tap-wc", PortChange(window_clamp=False))
    assert port.window_clamp is False and _port(state, "tap-wc").window_clamp is False


@pytest.fixture
def plan_port_calls(monkeypatch: pytest.MonkeyPatch) -> Any:
    """plan_port's keyword arguments per device, as plan_host calls it (its cache emptied around the test)."""
    calls: dict[str, list[dict[str, Any]]] = {}

    def spy(device: str, effective: Any, **kwargs: Any) -> Any:
        calls.setdefault(device, []).append(kwargs)
        return plan_port(device, effective, **kwargs)

    plan_host_module._plan.cache_clear()
    monkeypatch.setattr(plan_host_module, "plan_port", spy)
    yield calls
    plan_host_module._plan.cache_clear()


def test_plan_host_hands_each_ports_window_clamp_to_plan_port(plan_port_calls: Any) -> None:
    qos = NetworkQos(egress=DirectionQos(min_bps=10 * MBIT), ingress=DirectionQos(min_bps=10 * MBIT))
    state = HostState(policies={"g": Policy("g", qos)}, instances={
        "vm1": InstanceSpec("vm1", ports=(PortSpec("tap-wc-on", policy="g", window_clamp=True, addresses=("10.0.0.1",)),
                                          PortSpec("tap-wc-off", policy="g", addresses=("10.0.0.2",))))})
    plan_host(state, uplink=False)
    assert [c["window_clamp"] for c in plan_port_calls["tap-wc-on"]] == [True]
    assert [c["window_clamp"] for c in plan_port_calls["tap-wc-off"]] == [False]

    plan_port_calls.clear()
    plan_host_module._plan.cache_clear()
    plans = plan_host(HostState(policies=state.policies, instances=state.instances,
                                uplink=UplinkSpec("wan0", 100 * MBIT)))
    assert "wan0" in plans
    # guaranteed ports are planned again with the uplink's mark: the switch goes along, the uplink stays the uplink
    assert [(c["window_clamp"], c["uplink"]) for c in plan_port_calls["tap-wc-on"]] == [(True, None), (True, "wan0")]
    assert [(c["window_clamp"], c["uplink"]) for c in plan_port_calls["tap-wc-off"]] == [(False, None),
                                                                                       (False, "wan0")]


def _vmqos(*args: str) -> Any:
    try:
        return main(list(args))
    except SystemExit as exc:
        return exc.code


def test_port_set_window_clamp_is_stored_kept_and_shown(fake_kernel: Any, capsys: Any,  # noqa: F811
                                                       tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    db = ["--db", url]

    def stored() -> bool:
        with Store(url) as store:
            return _port(store.load(""), "tap-wc").window_clamp

    def shown() -> Any:
        capsys.readouterr()
        assert _vmqos("port", "show", "tap-wc", "--json", *db) == 0
        return json.loads(capsys.readouterr().out)["window_clamp"]

    assert _vmqos("port", "set", "tap-wc", "--outbound", "12800,0,0", "--window-clamp", "on", "--json", *db) == 0
    assert stored() is True and shown() is True
    assert _vmqos("port", "set", "tap-wc", "--outbound", "6400,0,0", *db) == 0
    assert stored() is True  # left out: unchanged
    assert _vmqos("port", "set", "tap-wc", "--window-clamp", "off", *db) == 0
    assert stored() is False and shown() is False
    capsys.readouterr()
    assert _vmqos("port", "set", "tap-wc", "--window-clamp", "maybe", *db) == 2
    assert "'maybe' is not one of 'on', 'off'" in capsys.readouterr().err


def test_port_set_help_says_the_window_clamp_is_opt_in_with_an_example(capsys: Any) -> None:
    assert _vmqos("port", "set", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--window-clamp [on|off]" in text and "opt-in" in text and "shape mode only" in text
    assert "vmqos port set tap-vm1 --window-clamp on" in text


def test_plan_window_clamp_reaches_plan_port(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    seen: list[bool] = []

    def spy(device: str, effective: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["window_clamp"])
        return plan_port(device, effective, **kwargs)

    monkeypatch.setattr(plan_cli, "plan_port", spy)
    assert _vmqos("plan", "--port", "tap-wc", "--outbound", "12800,0,0", "--window-clamp", "on", "--json") == 0
    assert _vmqos("plan", "--port", "tap-wc", "--outbound", "12800,0,0", "--json") == 0
    assert seen == [True, False]  # off unless asked
