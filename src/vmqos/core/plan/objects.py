"""Kernel objects that enforce QoS, as plain values: what the planner emits and drivers read back.

Each object has a `key` (its identity on the host: device and handle, chain name, ...) and
compares equal to an observed object when the kernel would behave the same. Rates are bit/s and
sizes bytes here as everywhere; the renderers turn them into tc/nft syntax.

The types live by concern in `kernel_object` (the base), `tc_objects` and `nft_objects`; this
module gathers them so that a plan's consumers import them from one place.
"""

from vmqos.core.plan.kernel_object import KernelObject
from vmqos.core.plan.nft_objects import (
    FOREIGN_COUNTER,
    NFT_FAMILY,
    NFT_TABLE,
    TCP_FLAGS_MASK,
    NftChain,
    NftCounter,
    NftLimit,
    NftRule,
    NftSet,
    is_nft,
    limit_from_json,
    rule_from_expr,
)
from vmqos.core.plan.tc_objects import (
    OWN_QDISC_KINDS,
    Aqm,
    ForeignFilter,
    HtbClass,
    IfbLink,
    Policer,
    Qdisc,
    TcFilter,
    U32Filter,
    WindowClamp,
    is_foreign,
    is_program,
    policer,
)

__all__ = [
    "Aqm", "FOREIGN_COUNTER", "NFT_FAMILY", "NFT_TABLE", "OWN_QDISC_KINDS", "TCP_FLAGS_MASK", "ForeignFilter", "HtbClass",
    "IfbLink", "KernelObject", "NftChain", "NftCounter", "NftLimit", "NftRule", "NftSet", "Policer", "Qdisc", "TcFilter",
    "U32Filter", "WindowClamp", "is_foreign", "is_nft", "is_program", "limit_from_json", "policer", "rule_from_expr",
]
