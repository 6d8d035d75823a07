"""What a port's segmenting TBF leaves dropped beyond what its root HTB counted, read only where it can have moved.

Below ~52 Mbit/s each HTB leaf queues in a TBF that segments GSO aggregates (`queues.leaf_queue`);
segments it drops while it takes others are counted on the TBF alone, so the root HTB, the one
counter the sampler reads per direction, undercounts drops and offered traffic at low rates
(`flows.unseen_leaf_drops` says exactly what it misses). Both read paths add, per device, the
difference read from the TBF and its HTB class.

Reading two more objects per leaf on every pass would cost what the whole pass may cost at 10,000
ports (issue 17). It is not needed: a TBF can drop only while something is enqueued through the
root, and any such enqueue leaves a trace on the root: an aggregate refused whole is a root drop,
one taken in part puts segments in the root's queue, which are still there (qlen > 0) or were
sent (its packets moved). So while a root's (packets, drops) stay what they were when its leaves
were last read, and it holds nothing, its leaves' difference is what it was: `LeafMemo` keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from vmqos.core.plan.handles import handle_int
from vmqos.core.plan.planner import PortPlan
from vmqos.core.plan.tc_objects import Qdisc

TBF_KIND = "tbf"


@dataclass(frozen=True)
class TbfLeaf:
    """A planned segmenting TBF: the HTB leaf class it is under (its parent) and its own handle."""

    dev: str
    classid: int
    handle: int


def tbf_leaves(plans: Mapping[str, PortPlan]) -> dict[str, tuple[TbfLeaf, ...]]:
    """Device -> the TBF leaves the plans put under its HTB (the port's and its IFB's)."""
    out: dict[str, list[TbfLeaf]] = {}
    for plan in plans.values():
        for obj in plan.objects:
            if isinstance(obj, Qdisc) and obj.qdisc_kind == TBF_KIND and obj.parent not in ("root", "ingress"):
                out.setdefault(obj.dev, []).append(TbfLeaf(obj.dev, handle_int(obj.parent), handle_int(obj.handle)))
    return {dev: tuple(leaves) for dev, leaves in out.items()}


Signature = tuple[int, int, int]  # the root's sent packets, drops and queue length


class LeafMemo:
    """Per device: the root's signature when its leaves were last read, and what they added then."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Signature, int]] = {}

    def known(self, dev: str, signature: Signature) -> int | None:
        """The leaves' unseen drops, if the root has not moved since they were read; else None."""
        seen = self._seen.get(dev)
        if seen is None or signature[2] != 0 or seen[0] != signature:
            return None
        return seen[1]

    def remember(self, dev: str, signature: Signature, unseen: int) -> None:
        self._seen[dev] = (signature, unseen)

    def clear(self) -> None:
        """Forget every device (one came or went: a name may now be another device)."""
        self._seen.clear()
