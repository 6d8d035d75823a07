"""CPU QoS: relative shares (cgroup v1 `cpu.shares`, v2 `cpu.weight`) and a CFS quota/period.

cgroup v1 takes shares in [2, 262144] (1024 is the default); cgroup v2 takes weights in
[1, 10000] (100 is the default). vmqos converts with the OCI (runc) formula, which maps
2 -> 1, 1024 -> 100 and 262144 -> 10000. libvirt on cgroup v2 does not convert: it writes
`<shares>` raw into `cpu.weight`, which is why Nova's old default 1024 x vCPUs broke guests
with 10 or more vCPUs (LP#1978489). `check_host` refuses that case before it reaches a host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vmqos.core.errors import InvalidValue

# The fields of CpuQos, in the order files and tables list them.
CPU_FIELDS = ("shares", "period_us", "quota_us")
SHARES_MIN, SHARES_MAX, SHARES_DEFAULT = 2, 262144, 1024
WEIGHT_MIN, WEIGHT_MAX, WEIGHT_DEFAULT = 1, 10000, 100
PERIOD_MIN_US, PERIOD_MAX_US = 1000, 1_000_000
QUOTA_MIN_US = 1000
# The kernel's max_cfs_runtime (MAX_BW, 2^44 - 1 us) and libvirt's VIR_CGROUP_CPU_QUOTA_MAX: a larger
# quota is refused by both, so every `vm set` or apply of it would fail on the host.
QUOTA_MAX_US = 2**44 - 1


def shares_to_weight(shares: int) -> int:
    """OCI's log-quadratic conversion from cgroup v1 shares to a cgroup v2 weight."""
    if shares <= SHARES_MIN:
        return WEIGHT_MIN
    if shares >= SHARES_MAX:
        return WEIGHT_MAX
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10**exponent))


def weight_to_shares(weight: int) -> int:
    """The smallest v1 share count that converts to `weight` (the inverse used on read-back)."""
    if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise InvalidValue("cpu.weight", weight, f"a cgroup v2 weight is from {WEIGHT_MIN} to {WEIGHT_MAX}")
    low, high = SHARES_MIN, SHARES_MAX
    while low < high:  # shares_to_weight is monotonic
        mid = (low + high) // 2
        if shares_to_weight(mid) < weight:
            low = mid + 1
        else:
            high = mid
    return low


@dataclass(frozen=True)
class CpuQos:
    shares: int | None = None
    period_us: int | None = None
    quota_us: int | None = None  # None: no cap; the kernel's -1 is read as None

    def __post_init__(self) -> None:
        if self.shares is not None and not _int_in(self.shares, SHARES_MIN, SHARES_MAX):
            raise InvalidValue(
                "cpu_shares", self.shares,
                f"shares are from {SHARES_MIN} to {SHARES_MAX} (1024 is the default weight of a cgroup v1 group)",
            )
        if self.period_us is not None and not _int_in(self.period_us, PERIOD_MIN_US, PERIOD_MAX_US):
            raise InvalidValue(
                "cpu_period", self.period_us,
                f"the CFS period is from {PERIOD_MIN_US} to {PERIOD_MAX_US} microseconds (100000 is the default)",
            )
        if self.quota_us is not None and not _int_in(self.quota_us, QUOTA_MIN_US, QUOTA_MAX_US):
            raise InvalidValue(
                "cpu_quota", self.quota_us,
                f"the CFS quota is from {QUOTA_MIN_US} to {QUOTA_MAX_US} microseconds per period (the kernel's and "
                "libvirt's bounds); leave it out for no cap",
            )

    @property
    def weight(self) -> int | None:
        return None if self.shares is None else shares_to_weight(self.shares)

    @property
    def cpus(self) -> float | None:
        """The cap in CPUs that quota/period amounts to (0.2 = 20 % of one CPU)."""
        if self.quota_us is None:
            return None
        return self.quota_us / (self.period_us or 100_000)

    def check_host(self, *, cgroup_v2: bool, raw_shares_to_weight: bool) -> None:
        """Refuse what a host cannot take: libvirt on cgroup v2 writes shares raw into cpu.weight."""
        if self.shares is not None and cgroup_v2 and raw_shares_to_weight and self.shares > WEIGHT_MAX:
            raise InvalidValue(
                "cpu_shares", self.shares,
                f"this host uses cgroup v2 and libvirt writes shares unconverted into cpu.weight "
                f"({WEIGHT_MIN}..{WEIGHT_MAX}); {_raw_weight_fix(self.shares)}",
            )

    def libvirt_v2_warning(self) -> str | None:
        """The text of a Note for shares that libvirt on a cgroup v2 host refuses, or None.

        A converter does not know the host, so where `check_host` refuses it warns: libvirt writes
        the shares unconverted into cpu.weight (at most WEIGHT_MAX) and refuses more there.
        """
        if self.shares is None or self.shares <= WEIGHT_MAX:
            return None
        return (f"libvirt writes shares unconverted into cpu.weight ({WEIGHT_MIN}..{WEIGHT_MAX}) on cgroup v2 "
                f"hosts and refuses {self.shares} there; {_raw_weight_fix(self.shares)}")

    @property
    def is_empty(self) -> bool:
        return self == CpuQos()


def _raw_weight_fix(shares: int) -> str:
    return (f"use at most {WEIGHT_MAX}, e.g. {shares_to_weight(shares)} for the same relative weight "
            "(Nova LP#1978489)")


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
