"""Two steps the reconciler's tests share (fake kernel and real): apply a host state, and ask whether the
kernel holds exactly its plans."""

from __future__ import annotations

from typing import Any

from vmqos.core.model.host import HostState
from vmqos.core.plan.diff import diff
from vmqos.core.plan.host import plan_host
from vmqos.reconcile.execute import Reconciler


def settle(rec: Reconciler, st: HostState, **kw: Any):
    """Reconcile `st`; every port must succeed."""
    results, record = rec.reconcile(plan_host(st), **kw)
    assert all(r.error is None for r in results), [r.error for r in results]
    return results, record


def in_sync(rec: Reconciler, st: HostState) -> bool:
    """Whether what the kernel holds is the plan, read back: nothing left to do."""
    plans = plan_host(st)
    seen = rec.observe(sorted(plans))
    return all(not diff(plans[p].objects, seen.objects[p]) for p in plans)
