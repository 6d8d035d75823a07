"""Observed kernel objects vs planned ones -> the ordered operations that get from one to the other.

Replace-only: an object that exists is changed in place (`tc class replace`, a chain's rules
swapped in one nft transaction), never deleted and re-added, so a live change never passes
through an unlimited or everything-dropped state. New objects are created in plan order
(the IFB and its queues before the nft chain that forwards to them), stale ones are deleted last,
children before parents. Nothing changed -> no operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from vmqos.core.plan.objects import HtbClass, IfbLink, KernelObject, Qdisc, TcFilter


@dataclass(frozen=True)
class Operation:
    action: str  # "create", "replace", "recreate" or "delete"
    obj: KernelObject
    old: KernelObject | None = None

    @property
    def disruptive(self) -> bool:
        """A `recreate` is the one change the kernel does not allow in place (an HTB root's own options)."""
        return self.action == "recreate"

    def describe(self) -> str:
        return f"{self.action} {self.obj.describe()}"


def contains(container: KernelObject, obj: KernelObject) -> bool:
    """Whether deleting `container` removes `obj` with it."""
    if container is obj or obj.device is None or container.device != obj.device:
        return False
    if isinstance(container, IfbLink):
        return True
    if isinstance(container, Qdisc):
        if container.parent == "ingress":  # an ingress qdisc's filters (ffff:), or a clsact's (ffff:fff2, ffff:fff3)
            return isinstance(obj, TcFilter) and obj.parent.startswith(container.handle)
        if container.parent == "root":
            return (isinstance(obj, HtbClass)
                    or (isinstance(obj, TcFilter) and not obj.parent.startswith("ffff:"))
                    or (isinstance(obj, Qdisc) and obj.parent not in ("root", "ingress")))
        return False
    if isinstance(container, HtbClass):
        return (isinstance(obj, Qdisc) and obj.parent == container.classid) or \
            (isinstance(obj, HtbClass) and obj.parent == container.classid)
    return False


def _delete_order(obj: KernelObject) -> tuple[int, int]:
    depth = obj.depth if isinstance(obj, HtbClass) else 0
    return (-obj.delete_rank, -depth)


def diff(planned: Sequence[KernelObject], observed: Iterable[KernelObject]) -> list[Operation]:
    seen = {o.key: o for o in observed}
    wanted = {p.key for p in planned}
    ops: list[Operation] = []
    recreated: list[KernelObject] = []
    for obj in planned:
        if any(contains(root, obj) for root in recreated):
            ops.append(Operation("create", obj))
            continue
        old = seen.get(obj.key)
        if old is None:
            ops.append(Operation("create", obj))
        elif not obj.matches(old):
            if isinstance(obj, Qdisc) and isinstance(old, Qdisc) and not obj.replace_in_place(old):
                ops.append(Operation("recreate", obj, old))
                recreated.append(old)
            else:
                ops.append(Operation("replace", obj, old))
    # Shared objects (the accounting sets) are used by other ports: never a port's to delete.
    stale = [o for o in seen.values() if o.key not in wanted and not getattr(o, "shared", False)]
    stale = [o for o in stale if not any(contains(c, o) for c in stale + recreated)]
    ops += [Operation("delete", o) for o in sorted(stale, key=_delete_order)]
    return ops


def replay(observed: Iterable[KernelObject], ops: Sequence[Operation]) -> list[KernelObject]:
    """The objects present after `ops` run, as the kernel would leave them (for tests and dry runs)."""
    state = {o.key: o for o in observed}
    for op in ops:
        if op.action in ("delete", "recreate"):
            gone = op.obj if op.action == "delete" else op.old
            assert gone is not None
            for key, obj in list(state.items()):
                if key == gone.key or contains(gone, obj):
                    del state[key]
        if op.action != "delete":
            state[op.obj.key] = op.obj
    return list(state.values())
