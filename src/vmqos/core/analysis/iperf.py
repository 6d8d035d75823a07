"""What the tools of a verification print, read into the judge's types (pure)."""

from __future__ import annotations

import json
import re

from vmqos.core.analysis.judge import RateSample, Rtt
from vmqos.core.analysis.rates import FlowRate

# `ping -D -n`: "[1796218276.457221] 64 bytes from 10.247.0.130: icmp_seq=2 ttl=63 time=0.065 ms"
_REPLY = re.compile(r"^\[(\d+(?:\.\d+)?)\].*\bicmp_seq=(\d+)\b.*\btime=(\d+(?:\.\d+)?) ms")


def ping_replies(text: str, start_epoch: float) -> list[Rtt]:
    """Each reply of `ping -D` output, timed from `start_epoch` (ping's stamps are wall-clock)."""
    out = []
    for line in text.splitlines():
        match = _REPLY.match(line.strip())
        if match:
            out.append(Rtt(float(match.group(1)) - start_epoch, round(float(match.group(3)) * 1000)))
    return out


_TRANSMITTED = re.compile(r"^(\d+) packets transmitted", re.M)


def ping_transmitted(text: str) -> int | None:
    """How many echo requests ping sent, from its closing statistics (None when it printed none)."""
    match = _TRANSMITTED.search(text)
    return int(match.group(1)) if match else None


def first_address(ip_json: str) -> str | None:
    """The first global IPv4 address in `ip -j addr show` output, else the first global IPv6 one
    (None when there is neither); link-local and host addresses do not reach a peer."""
    found: dict[str, str] = {}
    for link in json.loads(ip_json or "[]"):
        for info in link.get("addr_info", ()):
            family = info.get("family")
            if family in ("inet", "inet6") and info.get("scope", "global") == "global" and not info.get("tentative"):
                found.setdefault(family, str(info["local"]))
    return found.get("inet") or found.get("inet6")


def rate_sample(rate: FlowRate, start_s: float, backlog_start_bytes: int) -> RateSample:
    """One sampler interval as the judge reads it, `start_s` seconds after the load started."""
    return RateSample(start_s, start_s + rate.seconds, rate.offered_bps, rate.delivered_bps, rate.offered_pps,
                      rate.delivered_pps, backlog_start_bytes, rate.backlog_bytes)
