"""A port's verify runs on the server: uploaded by `vmqos verify --server`, listed, their plots served.

Authorized as the port itself (services.fleet_hosts.show_port decides): whoever may read the port
reads its runs, and another project's caller gets the same 404 as for the port; an upload is an
admin's or the port's host's service user's (services.fleet_access.check_host), as a report is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from vmqos.core.errors import NotFound
from vmqos.services import fleet_access as access
from vmqos.services import fleet_hosts
from vmqos.services.fleet_wire import check_host
from vmqos.services.identity import Caller
from vmqos.services.verify_wire import VerifyRun, VerifyRunUpload, decode_png
from vmqos.store import Store
from vmqos.store import verify_runs as records
from vmqos.store.verify_runs import KEEP, VerifyRunRecord


def _view(record: VerifyRunRecord) -> VerifyRun:
    summary = VerifyRunUpload.model_validate_json(record.summary)
    return VerifyRun(id=record.id, host=record.host, device=record.device, uploaded_at=record.uploaded_at,
                     has_plot=record.has_plot, **summary.model_dump(exclude={"plot_png"}))


def upload(store: Store, caller: Caller, host: str, device: str, body: VerifyRunUpload, *,
           now: datetime | None = None) -> VerifyRun:
    """Keep a finished run of a port the server knows (404 otherwise); the port keeps its KEEP newest."""
    access.check_host(caller, check_host(host), "uploading a verify run")
    fleet_hosts.show_port(store, caller, host, device)
    png = None if body.plot_png is None else decode_png(body.plot_png)
    summary = body.model_copy(update={"plot_png": None}).model_dump_json()
    new_id = records.add(store, host, device, body.at, body.ok, summary, png, now or datetime.now(UTC))
    return next(_view(r) for r in records.runs(store, host, device, limit=1) if r.id == new_id)


def list_runs(store: Store, caller: Caller, host: str, device: str, *, limit: int = KEEP) -> list[VerifyRun]:
    """The port's runs, newest first (at most KEEP are kept)."""
    found = fleet_hosts.show_port(store, caller, host, device)
    return runs_of(store, found.host, found.device, limit=limit)


def runs_of(store: Store, host: str, device: str, *, limit: int = KEEP) -> list[VerifyRun]:
    """The runs of a port its caller was shown (`show_port` decided that they may read it)."""
    return [_view(r) for r in records.runs(store, host, device, limit=max(1, min(limit, KEEP)))]


def plot(store: Store, caller: Caller, host: str, device: str, run_id: int) -> bytes:
    """A run's PNG, to whoever may read the port."""
    fleet_hosts.show_port(store, caller, host, device)
    found = records.plot(store, host, device, run_id)
    if found is None:
        raise NotFound(f"verify run {run_id} of {device} on host {host} has no plot: it was uploaded without one, "
                       f"or is not one of the port's {KEEP} newest (GET .../verify-runs lists them)")
    return found
