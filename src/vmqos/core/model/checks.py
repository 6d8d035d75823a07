"""Checks that need context (the port's MTU, the kernel's field widths), and the warnings they give.

These are the field failures of qos-semantics.md §5: a burst below one frame drops every
full-size packet (OVN LP#2153122); a burst of seconds lets line rate through after idle
(kubernetes#90838: 2 Gbit/s for a second under a 10 Mbit/s limit); a rate or burst that does
not fit the kernel's fields is truncated silently by older tools.
"""

from __future__ import annotations

from vmqos.core.errors import InvalidValue, KernelLimitError
from vmqos.core.model.document import Note
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.units import human_rate, human_size

ETH_HLEN = 14
DEFAULT_MTU = 1500  # a port's MTU when none is given
# psched ticks are 64 ns on this kernel family (/proc/net/psched 000003e8 00000040): 15.625 per µs.
PSCHED_TICKS_PER_SEC = 15_625_000
U32_MAX = 2**32 - 1
# HTB/TBF keep a bucket as a u32 count of psched ticks, tc's sizes are u32 bytes.
MAX_BURST_BYTES = U32_MAX
MAX_BUCKET_SECONDS = U32_MAX / PSCHED_TICKS_PER_SEC  # ~274.9 s
# The largest rate any front end can state (libvirt's unsigned int kB/s); larger is a typo.
MAX_RATE_BPS = U32_MAX * 8000
BURST_WARN_SECONDS = 1.0


def frame_bytes(mtu: int) -> int:
    """The largest frame on a port: what one full-size packet costs a limiter that counts frames."""
    return mtu + ETH_HLEN


def bucket_seconds(burst_bytes: int, rate_bps: int) -> float:
    return burst_bytes * 8 / rate_bps


def check_bandwidth(where: str, limit: BandwidthLimit, mtu: int) -> list[Note]:
    notes: list[Note] = []
    for name, rate in (("rate", limit.rate_bps), ("peak", limit.peak_bps)):
        if rate is not None and rate > MAX_RATE_BPS:
            raise KernelLimitError(
                f"{where}.{name}", rate, f"rates above {human_rate(MAX_RATE_BPS)} do not fit libvirt's and "
                "tc's fields and exceed any NIC; check the unit (kbps is kilobytes per second in tc)")
    burst = limit.burst_bytes
    if burst is None:
        return notes
    frame = frame_bytes(mtu)
    if burst < frame:
        raise InvalidValue(
            f"{where}.burst", burst,
            f"a burst smaller than one frame ({frame} bytes at MTU {mtu}) drops or stalls every full-size packet "
            f"(OVN LP#2153122); use at least {2 * frame} bytes, or leave it out for vmqos's time-based default")
    if burst > MAX_BURST_BYTES:
        raise KernelLimitError(f"{where}.burst", burst, f"tc's burst field holds at most {MAX_BURST_BYTES} bytes")
    seconds = bucket_seconds(burst, limit.rate_bps)
    if seconds > MAX_BUCKET_SECONDS:
        raise KernelLimitError(
            f"{where}.burst", burst,
            f"at {human_rate(limit.rate_bps)} this bucket is {seconds:.0f} s of traffic, beyond the kernel's "
            f"{MAX_BUCKET_SECONDS:.0f} s tick field; use a smaller burst")
    if seconds > BURST_WARN_SECONDS:
        notes.append(Note(
            f"{where}.burst",
            f"{human_size(burst)} is {seconds:.1f} s of traffic at {human_rate(limit.rate_bps)}: after an idle "
            f"period the instance may send at {'peak' if limit.peak_bps else 'line rate'} for seconds "
            "(kubernetes#90838); a burst of 10-100 ms of traffic is enough for TCP"))
    return notes


def check_direction(where: str, qos: DirectionQos, mtu: int) -> list[Note]:
    notes: list[Note] = []
    if qos.bandwidth is not None:
        notes += check_bandwidth(where, qos.bandwidth, mtu)
    if qos.min_bps is not None and qos.min_bps > MAX_RATE_BPS:
        raise KernelLimitError(f"{where}.min_bps", qos.min_bps, f"use at most {human_rate(MAX_RATE_BPS)}")
    return notes


def check_network(qos: NetworkQos, mtu: int = 1500) -> list[Note]:
    """Raise on what cannot work, and return warnings for what works badly."""
    return check_direction("ingress", qos.ingress, mtu) + check_direction("egress", qos.egress, mtu)
