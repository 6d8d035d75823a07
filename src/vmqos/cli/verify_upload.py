"""`vmqos verify --server URL --host HOST`: each finished direction, with its plot, kept on the server.

The upload comes after the local result is printed and its plots written: a server that is down,
refuses the credentials or does not know the port costs one warning line on stderr, never the run
(nor its exit status, which says whether the port held its limits, not whether a server heard of it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vmqos.core.errors import VmqosError
from vmqos.services.verify_wire import MAX_PLOT_BYTES, VerifyLimit, VerifyRun, VerifyRunUpload
from vmqos.verify.run import Run


class Uploader(Protocol):
    """What the upload needs of services.server_client.ServerClient (a fake in the tests)."""

    def upload_verify_run(self, device: str, run: VerifyRunUpload, host: str | None = None) -> VerifyRun: ...


@dataclass(frozen=True)
class Finished:
    """One direction as the command ended it: the run, when its load started, its PNG (None: --no-plot)."""

    run: Run
    at: datetime
    png_path: str | None


def upload_of(run: Run, at: datetime, png: bytes | None, notes: Sequence[str] = ()) -> VerifyRunUpload:
    """The server's summary of a run: its limit, what was offered and achieved, the verdict and why."""
    j, limit = run.judgement, run.limit
    return VerifyRunUpload(
        at=at, direction=run.direction, traffic=run.traffic.value, duration_s=run.duration_s,  # type: ignore[arg-type]
        limit=VerifyLimit(rate_bps=limit.rate_bps, peak_bps=limit.peak_bps, burst_bytes=limit.burst_bytes,
                          pps=limit.pps),
        metric=j.metric.value, judged_limit=j.limit, offered=j.offered, achieved=j.achieved,
        error=j.error, first_second_peak=j.first_second_peak, ok=j.verdict.ok, verdict=j.verdict.value,
        reasons=[j.reason, *notes], plot_png=None if png is None else base64.b64encode(png).decode())


def _png(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        data = f.read(MAX_PLOT_BYTES + 1)
    return data if len(data) <= MAX_PLOT_BYTES else None  # a plot over the cap goes without it


def upload_runs(client: Uploader, device: str, host: str, finished: Sequence[Finished], notes: Sequence[str],
                say: Callable[[str], None], warn: Callable[[str], None]) -> list[int]:
    """Upload each run; the ids the server gave. The first failure is one warning and ends the uploads."""
    ids = []
    for item in finished:
        try:
            body = upload_of(item.run, item.at, _png(item.png_path), notes)
            kept = client.upload_verify_run(device, body, host=host)
        except (VmqosError, OSError, ValueError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            warn(f"the run was not uploaded to the server ({first}); the result above and its plots are kept here")
            break
        ids.append(kept.id)
        say(f"uploaded {item.run.direction} run {kept.id} to host {host}'s port {device}")
    return ids
