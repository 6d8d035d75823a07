"""Kernel tier: a sample's time is the time its counters were read, and a pass leaves the collector alone.

Issue 17's sampler was reverted because, in the full suite, rates read 5 times low (1.84 of a
10 Mbit/s limit) and `verify` read its counters "on time only 0 times": a pass stamped its time,
then built its layout, which ran a full collection of the process's heap (seconds in a test
session, twice on a first pass), and only then read the counters; the rate of the next interval
divided what the counters moved in 2 s by 2 s plus those seconds. These tests pin the order (no
preparation between the stamp and the dumps, on every kind of pass) and the absence of any
collection or freeze, on both decoding paths; a few tenths of a second each.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

import pytest

from tests.kernel.conftest import sh
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.host import plan_host
from vmqos.drivers import counter_arrays
from vmqos.drivers.counter_arrays import ArrayReader
from vmqos.drivers.counters import CounterReader
from vmqos.monitor import sample_layout
from vmqos.monitor.sampler import Sampler

pytestmark = [pytest.mark.kernel]

PORTS = ("vqtm0", "vqtm1")
METHODS = [pytest.param("dumps"),
           pytest.param("arrays", marks=pytest.mark.skipif(not counter_arrays.available(),
                                                           reason="the compiled decoder is not built (make)"))]


def _plans(ports: tuple[str, ...]) -> dict[str, Any]:
    qos = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)))
    return plan_host(HostState(instances={
        f"vm{i}": InstanceSpec(f"vm{i}", ports=(PortSpec(port, limits=qos, egress_mode=EgressMode.SHAPE),))
        for i, port in enumerate(ports)}))


class _Log:
    """When each preparation step ended and each dump started, on the monotonic clock."""

    def __init__(self) -> None:
        self.prepared: list[tuple[str, float]] = []
        self.dumps: list[tuple[str, float]] = []

    def clear(self) -> None:
        self.prepared.clear()
        self.dumps.clear()

    def preparation(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def slow(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            time.sleep(0.01)  # a preparation takes time (a layout of 10,000 ports: a second)
            self.prepared.append((name, time.monotonic()))
            return out
        return slow

    def dump(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def logged(*args: Any, **kwargs: Any) -> Any:
            self.dumps.append((name, time.monotonic()))
            return fn(*args, **kwargs)
        return logged


@pytest.fixture
def log(monkeypatch):
    log = _Log()
    monkeypatch.setattr(Sampler, "_refresh_names", log.preparation("names", Sampler._refresh_names))
    monkeypatch.setattr(sample_layout.Slots, "of", log.preparation("layout", sample_layout.Slots.of))
    monkeypatch.setattr(sample_layout.Watched, "of", log.preparation("plans", sample_layout.Watched.of))
    for cls, names in ((ArrayReader, ("links", "qdiscs", "counters")), (CounterReader, ("links", "qdiscs",
                                                                                          "nft_counters"))):
        for name in names:
            monkeypatch.setattr(cls, name, log.dump(name, getattr(cls, name)))
    return log


def _stamped_after_preparing(sample: Any, log: _Log, what: str, *, prepares: bool = True) -> None:
    assert log.prepared or not prepares, f"{what}: the test meant this pass to prepare something"
    late = [(name, round(end - sample.monotonic, 4)) for name, end in log.prepared if end > sample.monotonic]
    assert not late, f"{what}: prepared after the sample's time stamp (name, seconds after it): {late}"
    read = {name for name, at in log.dumps if at >= sample.monotonic}
    assert read >= {"links", "qdiscs"} and read & {"counters", "nft_counters"}, \
        f"{what}: the dumps after the time stamp were {sorted(read)}"


@pytest.mark.parametrize("method", METHODS)
def test_a_sample_is_stamped_after_its_preparation_and_before_its_dumps(netns, log, method):
    assert sh(netns, f"ip link add {PORTS[0]} type veth peer name vqtn0 && ip link set {PORTS[0]} up"
              ).returncode == 0
    one, both = _plans(PORTS[:1]), _plans(PORTS)
    with Sampler(netns, method=method) as sampler:
        log.clear()
        _stamped_after_preparing(sampler.sample(one), log, "the first pass (names, layout)")
        assert sh(netns, f"ip link add {PORTS[1]} type veth peer name vqtn1").returncode == 0
        log.clear()
        _stamped_after_preparing(sampler.sample(one), log, "a pass after a device came (names again)")
        log.clear()
        _stamped_after_preparing(sampler.sample(both), log, "a pass with new plans (a new layout)")
        log.clear()
        steady = sampler.sample(both)
        _stamped_after_preparing(steady, log, "a pass with the same plans and devices", prepares=False)
    assert steady.ports.keys() == set(PORTS) and steady.ports[PORTS[1]].link is not None


@pytest.mark.parametrize("method", METHODS)
def test_a_pass_runs_no_collection_and_freezes_nothing(netns, method):
    """A collection walks the whole process (the test session's heap: seconds); a freeze is state
    every later test of the session inherits. The sampler may pause the collector, nothing more."""
    assert sh(netns, f"ip link add {PORTS[0]} type veth peer name vqtn0").returncode == 0
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    frozen = gc.get_freeze_count()
    enabled = gc.isenabled()
    one, both = _plans(PORTS[:1]), _plans(PORTS)
    with Sampler(netns, method=method) as sampler:
        gc.callbacks.append(seen)  # only around the passes: between them, collections are the process's own
        try:
            sampler.sample(one)
            sampler.sample(both)  # new plans: a new layout
        finally:
            gc.callbacks.remove(seen)
    assert collections == [], f"collections of these generations ran during the passes: {collections}"
    assert gc.get_freeze_count() == frozen and gc.isenabled() == enabled
