"""libvirt's QoS quantities, shared by the libvirt, Nova and domiftune formats.

Units (qos-semantics.md §1.1): `average`, `peak` and `floor` are kB/s (1000 bytes, so 8000
bit/s, `LIBVIRT_RATE_BPS`) and `burst` is KiB (1024 bytes, `LIBVIRT_BURST_BYTES`), because
libvirt hands them to tc as `kbps` and `kb`. Every attribute is an unsigned int; 0 or absent
means unset. The three formats state the same quantities with other spellings (XML attributes,
`quota:vif_*` extra specs, virsh options), so the conversion to and from the model lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmqos.core.errors import InvalidValue, UnsupportedError
from vmqos.core.formats._common import strict_int
from vmqos.core.model import BandwidthLimit, CpuQos, DirectionQos, NetworkQos, Note
from vmqos.core.units import LIBVIRT_BURST_BYTES, LIBVIRT_RATE_BPS, to_unit

# libvirt's bandwidth fields are C unsigned ints (virsh: "rate larger than maximum 4294967295").
UINT_MAX = 2**32 - 1
BANDWIDTH_ATTRS = ("average", "peak", "burst", "floor")
UNITS_FIX = (
    f"libvirt takes an unsigned integer from 0 to {UINT_MAX}: average, peak and floor in kB/s "
    "(1 kB = 1000 bytes), burst in KiB; 0 or absent means unset"
)
# Unit tuples (average, peak, burst, floor) in libvirt units; 0 = unset.
Units = tuple[int, int, int, int]
NO_UNITS: Units = (0, 0, 0, 0)


def libvirt_uint(field: str, value: Any, fix: str = UNITS_FIX) -> int:
    """An unsigned int as libvirt's bandwidth fields take it (0..4294967295), or InvalidValue naming `field`.

    libvirt parses them with virStrToLong_ullp, which refuses any `-` sign (even `-0`) and takes a
    `+`; only ASCII digits count (strict_int), so `²` or `٥` are refused as libvirt refuses them.
    """
    try:
        return strict_int(field, value, minimum=0, maximum=UINT_MAX, signs="+")
    except InvalidValue:
        raise InvalidValue(field, value, fix) from None


def direction_from_units(
    name: Callable[[str], str], *, outbound: bool, average: int = 0, peak: int = 0, burst: int = 0, floor: int = 0
) -> tuple[DirectionQos, list[Note]]:
    """One direction from libvirt units (kB/s, KiB; 0 = unset) in canonical units, with notes.

    `name(attr)` gives the field name used in errors and notes for `average`, `peak`, `burst`
    or `floor`. As libvirt: a floor is inbound only, and peak or burst need an average or a
    floor; with only a floor, libvirt installs no rate limit, so peak and burst are ignored.
    """
    notes: list[Note] = []
    if floor and outbound:
        raise InvalidValue(
            name("floor"), floor,
            "libvirt accepts floor only on inbound (a guaranteed minimum towards the instance); "
            "remove it, or use the neutron format for an egress minimum bandwidth",
        )
    if not average and (peak or burst):
        if not floor:
            raise InvalidValue(
                name("average"), average,
                "average or floor are mandatory: libvirt refuses peak or burst without an average rate",
            )
        notes.append(Note(name("peak" if peak else "burst"),
                          "ignored: without an average libvirt installs no rate limit, only the floor"))
        peak = burst = 0
    if peak and peak < average:
        raise InvalidValue(name("peak"), peak, f"peak must be at least average ({average} kB/s)")
    if floor and average and floor > average:
        raise InvalidValue(name("floor"), floor,
                           f"the floor (a guaranteed minimum) must not exceed average ({average} kB/s)")
    limit = None
    if average:
        limit = BandwidthLimit(
            rate_bps=average * LIBVIRT_RATE_BPS,
            peak_bps=peak * LIBVIRT_RATE_BPS or None,
            burst_bytes=burst * LIBVIRT_BURST_BYTES or None,
        )
        if outbound and peak:
            notes.append(Note(
                name("peak"),
                "libvirt's own tc policer drops peak on outbound (it polices at the average rate); "
                "vmqos enforces it", "info"))
    return DirectionQos(bandwidth=limit, min_bps=floor * LIBVIRT_RATE_BPS or None), notes


def _unsupported(fmt: str, field: str, what: str, fix: str) -> UnsupportedError:
    return UnsupportedError(f"{fmt}: {field}: {what}; {fix}")


def direction_to_units(fmt: str, where: str, qos: DirectionQos, *, floor_ok: bool) -> Units:
    """One direction as libvirt units (average, peak, burst, floor; 0 = unset), or UnsupportedError.

    `where` is `ingress` or `egress`; `floor_ok` says whether the target has a floor for it.
    Values that are not whole kB/s or KiB are rounded to the nearest unit (at least 1).
    """
    if qos.packet_rate is not None:
        raise _unsupported(fmt, f"{where}.packet_rate", f"{fmt} has no packet-rate limit",
                           "use the neutron format (packet_rate_limit rule) or the vmqos format")
    if qos.min_pps is not None:
        raise _unsupported(fmt, f"{where}.min_pps", f"{fmt} has no minimum packet rate",
                           "use the neutron format (minimum_packet_rate rule)")
    if qos.dscp is not None:
        raise _unsupported(fmt, f"{where}.dscp", f"{fmt} cannot mark DSCP",
                           "use the neutron format (dscp_marking rule) or the vmqos format")
    if qos.classes:
        raise _unsupported(fmt, f"{where}.classes", f"{fmt} has no traffic classes", "use the vmqos format")
    if qos.min_bps is not None and not floor_ok:
        side = "libvirt's floor is inbound only" if where == "egress" else f"{fmt} has no minimum bandwidth"
        raise _unsupported(fmt, f"{where}.min_bps", side,
                           "use the neutron format (minimum_bandwidth rule) for a guaranteed minimum")
    floor = to_unit(qos.min_bps, LIBVIRT_RATE_BPS)[0] if qos.min_bps else 0
    limit = qos.bandwidth
    if limit is None:
        return 0, 0, 0, floor
    return (
        to_unit(limit.rate_bps, LIBVIRT_RATE_BPS)[0],
        to_unit(limit.peak_bps, LIBVIRT_RATE_BPS)[0] if limit.peak_bps else 0,
        to_unit(limit.burst_bytes, LIBVIRT_BURST_BYTES)[0] if limit.burst_bytes else 0,
        floor,
    )


def network_to_units(fmt: str, qos: NetworkQos | None, *, inbound_floor_ok: bool) -> tuple[Units, Units]:
    """(inbound, outbound) libvirt units of a network QoS; all zero when there is none."""
    if qos is None:
        return NO_UNITS, NO_UNITS
    if qos.min_pps_any is not None:
        raise _unsupported(fmt, "min_pps_any", f"{fmt} has no minimum packet rate",
                           "use the neutron format (minimum_packet_rate rule)")
    return (direction_to_units(fmt, "ingress", qos.ingress, floor_ok=inbound_floor_ok),
            direction_to_units(fmt, "egress", qos.egress, floor_ok=False))


def cpu_from_values(names: dict[str, str], shares: int | None, period: int | None, quota: int | None) -> CpuQos | None:
    """CpuQos from libvirt's/Nova's integers: period 0 and quota <= 0 mean unset (quota -1 = no cap).

    `names` maps `shares`, `period` and `quota` to the field names used in errors.
    """
    if shares == 0:
        raise InvalidValue(
            names["shares"], 0,
            "libvirt and the kernel refuse 0 shares (the Nova API accepts it); use 2 to 262144 "
            "(at most 10000 on cgroup v2 hosts), or leave it out for the default weight",
        )
    try:
        cpu = CpuQos(shares=shares, period_us=period or None, quota_us=quota if quota and quota > 0 else None)
    except InvalidValue as exc:
        raise InvalidValue(names[exc.field.removeprefix("cpu_")], exc.value, exc.fix) from None
    return None if cpu.is_empty else cpu


def shares_notes(field: str, cpu: CpuQos | None) -> list[Note]:
    """A warning for shares that libvirt refuses on cgroup v2 hosts (LP#1978489), for Nova's and libvirt's
    readers: `vm set` refuses them on such a host, a conversion cannot know the host and says so."""
    warning = None if cpu is None else cpu.libvirt_v2_warning()
    return [] if warning is None else [Note(field, warning)]
