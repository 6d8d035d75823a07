"""The model's own rules: ranges, directions, DSCP, classes, CPU conversion, disk conflicts, checks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.errors import ConflictError, InvalidValue, KernelLimitError, VmqosError
from vmqos.core.model import (
    BandwidthLimit,
    CpuQos,
    Direction,
    DirectionQos,
    DiskQos,
    NetworkQos,
    TrafficClass,
    TrafficMatch,
    shares_to_weight,
    weight_to_shares,
)
from vmqos.core.model.checks import check_network


def test_direction_aliases():
    assert Direction.parse("inbound") is Direction.INGRESS
    assert Direction.parse("Outbound") is Direction.EGRESS
    with pytest.raises(InvalidValue, match="ingress"):
        Direction.parse("up")


@pytest.mark.parametrize("kwargs,field", [
    ({"rate_bps": 0}, "rate"), ({"rate_bps": -5}, "rate"), ({"rate_bps": 10, "peak_bps": 5}, "peak"),
    ({"rate_bps": 10, "burst_bytes": 0}, "burst"),
])
def test_bandwidth_limit_refuses(kwargs, field):
    with pytest.raises(InvalidValue) as err:
        BandwidthLimit(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("mark", [42, 2, 50, 57, -1, 64])
def test_invalid_dscp_marks_name_the_valid_ones(mark):
    with pytest.raises(InvalidValue, match="26"):
        DirectionQos(dscp=mark)


def test_dscp_is_egress_only_and_min_not_above_max():
    with pytest.raises(ConflictError, match="egress"):
        NetworkQos(ingress=DirectionQos(dscp=26))
    with pytest.raises(ConflictError, match="minimum"):
        DirectionQos(bandwidth=BandwidthLimit(1000), min_bps=2000)


def test_classes_need_a_limit_a_default_and_shares_within_100():
    web = TrafficClass("web", 50, TrafficMatch("tcp", (80, 443)))
    mail = TrafficClass("mail", 30, TrafficMatch("tcp", (25,)))
    rest = TrafficClass("rest", 20)
    DirectionQos(bandwidth=BandwidthLimit(10**8), classes=(web, mail, rest))
    with pytest.raises(ConflictError, match="bandwidth limit"):
        DirectionQos(classes=(web, rest))
    with pytest.raises(ConflictError, match="exceed"):
        DirectionQos(bandwidth=BandwidthLimit(10**8), classes=(web, TrafficClass("m", 60, TrafficMatch("udp"))))
    with pytest.raises(ConflictError, match="rest"):
        DirectionQos(bandwidth=BandwidthLimit(10**8), classes=(web, mail))
    with pytest.raises(InvalidValue, match="protocol"):
        TrafficMatch(None, (80,))


def test_oci_weight_conversion():
    assert [shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 100, 10000]
    assert weight_to_shares(100) == 1024 or shares_to_weight(weight_to_shares(100)) == 100


@given(st.integers(min_value=1, max_value=10000))
def test_weight_to_shares_inverts(weight):
    assert shares_to_weight(weight_to_shares(weight)) >= weight
    shares = weight_to_shares(weight)
    assert shares == 2 or shares_to_weight(shares - 1) < weight


def test_cpu_ranges_and_the_cgroup_v2_trap():
    with pytest.raises(InvalidValue, match="cpu_shares"):
        CpuQos(shares=0)
    with pytest.raises(InvalidValue, match="cpu_period"):
        CpuQos(period_us=500)
    big = CpuQos(shares=10240)
    big.check_host(cgroup_v2=False, raw_shares_to_weight=True)
    big.check_host(cgroup_v2=True, raw_shares_to_weight=False)
    with pytest.raises(InvalidValue, match="LP#1978489"):
        big.check_host(cgroup_v2=True, raw_shares_to_weight=True)
    assert CpuQos(quota_us=20000, period_us=100000).cpus == pytest.approx(0.2)


def test_disk_total_excludes_read_write_and_bursts_need_bases():
    with pytest.raises(ConflictError, match="total_bytes_sec"):
        DiskQos(total_bytes_sec=10, read_bytes_sec=5)
    with pytest.raises(ConflictError, match="total_iops_sec_max"):
        DiskQos(total_iops_sec=10, total_iops_sec_max=20, write_iops_sec_max=30)
    with pytest.raises(InvalidValue):
        DiskQos(read_iops_sec=100, read_iops_sec_max=50)
    with pytest.raises(ConflictError, match="_max_length"):
        DiskQos(read_iops_sec=100, read_iops_sec_max_length=5)
    assert DiskQos(total_bytes_sec=10, read_iops_sec=5).items() == {"total_bytes_sec": 10, "read_iops_sec": 5}


def _net(**bw):
    return NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(**bw)))


def test_burst_below_one_frame_is_refused_with_the_fix():
    with pytest.raises(InvalidValue) as err:
        check_network(_net(rate_bps=10**7, burst_bytes=1000))
    assert err.value.field == "ingress.burst" and "1514" in str(err.value)
    with pytest.raises(InvalidValue):
        check_network(_net(rate_bps=10**7, burst_bytes=9000), mtu=9000)


def test_bursts_of_seconds_warn_and_beyond_the_tick_field_fail():
    notes = check_network(_net(rate_bps=262_144_000, peak_bps=524_288_000, burst_bytes=128 * 2**20))
    assert len(notes) == 1 and "4.1 s" in notes[0].message
    assert check_network(_net(rate_bps=10**8, burst_bytes=125_000)) == []
    with pytest.raises(KernelLimitError, match="tick"):
        check_network(_net(rate_bps=8000, burst_bytes=10**6))
    with pytest.raises(KernelLimitError, match="kbps"):
        check_network(_net(rate_bps=10**15))


def test_every_error_is_a_vmqos_error():
    for exc in (InvalidValue, ConflictError, KernelLimitError):
        assert issubclass(exc, VmqosError)


def test_port_spec_checks_its_name_mtu_and_egress_mode():
    from vmqos.core.model.host import EgressMode, PortSpec

    assert PortSpec("tap-a", egress_mode="police").egress_mode is EgressMode.POLICE
    for bad in ({"device": "a/b"}, {"device": "x" * 16}, {"device": "tap-a", "mtu": 40},
                {"device": "tap-a", "egress_mode": "drop"}):
        with pytest.raises(InvalidValue):
            PortSpec(**bad)


def test_port_spec_window_clamp_is_off_unless_asked_and_a_bool():
    from vmqos.core.model.host import PortSpec

    assert PortSpec("tap-a").window_clamp is False  # opt-in: it rewrites the tenant's TCP headers
    assert PortSpec("tap-a", window_clamp=True).window_clamp is True
    for bad in ("on", 1, None):
        with pytest.raises(InvalidValue, match=r"^port tap-a\.window_clamp: .* is not valid: use true or false$"):
            PortSpec("tap-a", window_clamp=bad)


def test_a_device_name_refuses_exactly_what_the_per_character_check_refused():
    """check_device_name tests the whole name with isprintable() and a set (the agent checks every row's
    device); the per-character test it replaced, over every code point, in the middle of a good name."""
    from vmqos.core.model.host import _NOT_IN_DEVICE_NAMES, check_device_name

    def refused(name: str) -> bool:
        try:
            check_device_name(name)
        except InvalidValue:
            return True
        return False

    before = [c for c in map(chr, range(0x110000))
              if c in _NOT_IN_DEVICE_NAMES or c.isspace() or not c.isprintable()]
    assert [c for c in map(chr, range(0x110000)) if refused(f"ta{c}p")] == before
    assert not refused("tap-x.y_z~1")
