"""The bodies of a port's verify runs at /v1 (docs/fleet-protocol.md): what `vmqos verify --server` uploads
and what the server answers, one definition for both ends (as services.fleet_wire).

A run is one direction of `vmqos verify` (`--direction both` uploads two): its summary (the limit it was
judged against, what was offered and achieved, the verdict and why) and its plot, a PNG sent as base64
and capped at MAX_PLOT_BYTES so that a port's kept runs stay a few megabytes of the database.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from vmqos.services.fleet_wire import Count, Instant, Text, Wire

MAX_PLOT_BYTES = 2 * 1024 * 1024  # a verify plot is ~60 KB (9x6 in at 100 dpi); 2 MB leaves room for any
MAX_PLOT_BASE64 = (MAX_PLOT_BYTES + 2) // 3 * 4
MAX_UPLOAD_BYTES = MAX_PLOT_BASE64 + 256 * 1024  # the whole body: the plot's base64 and the summary's JSON
MAX_REASONS = 20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Rate = Annotated[float, Field(ge=0, le=1e15)]


def decode_png(value: str) -> bytes:
    """The PNG a base64 text holds; ValueError naming the fix when it is not one."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("plot_png is not base64 (RFC 4648, with padding): send base64.b64encode(png_bytes)") \
            from None
    if len(data) > MAX_PLOT_BYTES:
        raise ValueError(f"plot_png holds {len(data)} bytes: at most {MAX_PLOT_BYTES} (the server's cap)")
    if not data.startswith(PNG_MAGIC):
        raise ValueError("plot_png is not a PNG (its first 8 bytes are not the PNG signature)")
    return data


def _png(value: str | None) -> str | None:
    if value is not None:
        decode_png(value)
    return value


class VerifyLimit(Wire):
    """The port's limits in the run's direction, as `vmqos verify` read them (null: none)."""

    rate_bps: Count | None = None
    peak_bps: Count | None = None
    burst_bytes: Count | None = None
    pps: Count | None = None


class VerifyRunUpload(Wire):
    """One finished direction of `vmqos verify`."""

    at: Instant = Field(description="when the run's load started")
    direction: Literal["ingress", "egress"] = Field(description="the instance's point of view")
    traffic: Literal["tcp", "udp", "small-packets"]
    duration_s: Annotated[float, Field(ge=0, le=3600)]
    limit: VerifyLimit
    metric: Literal["bit/s", "packet/s"] = Field(description="the unit offered, achieved and judged_limit are in")
    judged_limit: Rate | None = Field(description="what the run was judged against; null: no limit")
    offered: Rate
    achieved: Rate
    error: Annotated[float, Field(ge=-1e6, le=1e6)] | None = Field(description="(achieved - limit) / limit")
    first_second_peak: Rate | None = None
    ok: bool = Field(description="pass (true) or fail")
    verdict: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="pass, over the limit, below the limit, not enough load offered, no limit")
    reasons: Annotated[list[Text], Field(max_length=MAX_REASONS)] = Field(default_factory=list)
    plot_png: Annotated[str, Field(max_length=MAX_PLOT_BASE64), AfterValidator(_png)] | None = Field(
        None, description=f"the plot, a PNG in base64, at most {MAX_PLOT_BYTES} bytes once decoded")


class VerifyRun(Wire):
    """A stored run, without its plot (GET .../verify-runs/{id}/plot.png serves it)."""

    id: int
    host: str
    device: str
    uploaded_at: datetime
    has_plot: bool
    at: datetime
    direction: Literal["ingress", "egress"]
    traffic: Literal["tcp", "udp", "small-packets"]
    duration_s: float
    limit: VerifyLimit
    metric: Literal["bit/s", "packet/s"]
    judged_limit: float | None
    offered: float
    achieved: float
    error: float | None
    first_second_peak: float | None
    ok: bool
    verdict: str
    reasons: list[str]


class VerifyRunAnswer(Wire):
    run: VerifyRun


class VerifyRunList(Wire):
    runs: list[VerifyRun] = Field(description="newest first")
