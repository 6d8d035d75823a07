"""A TBF leaf's bucket and queue, decoded from `tc -j -r` and from netlink alike (pure but /proc's psched).

The namespace-wide read (`tc -s -j -r qdisc show`) and the per-device netlink read must give the
same objects. iproute2's plain print cuts a TBF's bucket to whole microseconds at its rate (37,462
bytes where the kernel holds 15,624 ticks, 37,498 bytes, at 300 Mbit/s) and its queue to a latency;
`-r` adds the raw ticks and the limit, which decode exactly as the netlink attributes do.
"""

from __future__ import annotations

from vmqos.drivers.tc_decode import _raw_from_json, tbf_burst_bytes, ticks_per_usec

# `tc -j -r qdisc show` on iproute2 6.1 for `tbf rate 300mbit burst 37500 limit 75000` under an HTB leaf.
RAW = {"kind": "tbf", "handle": "1010:", "parent": "1:10",
       "options": {"rate": 37500000, "burst": 37462, "burst_raw": "3d08", "lat": 1001, "limit": 75000}}


def test_the_raw_print_decodes_as_the_netlink_attributes_do():
    got = _raw_from_json(RAW)
    assert (got.rate_bytes, got.limit_bytes) == (37_500_000, 75_000)
    assert got.burst_bytes == tbf_burst_bytes(0x3D08, 37_500_000)
    assert got.burst_bytes == round(0x3D08 / ticks_per_usec() * 37.5)  # 37,498 with 64 ns ticks


def test_without_raw_fields_the_plain_print_is_read_as_printed():
    plain = {**RAW, "options": {"rate": 37500000, "burst": 37462, "lat": 1001}}
    got = _raw_from_json(plain)
    assert (got.burst_bytes, got.limit_bytes) == (37_462, 75_000)
