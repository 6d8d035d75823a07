"""Core tier: `vmqos verify --server` uploads each finished run with its plot, and a failed upload is one
warning that loses nothing (a fake client; the server's side is tests/server/test_verify_runs_api.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from vmqos.cli.main import main
from vmqos.cli.verify_upload import Finished, upload_of, upload_runs
from vmqos.core.analysis.judge import Limit, Rtt, Traffic, judge
from vmqos.lab.traffic import TrafficResult
from vmqos.services.server_client import ServerUnreachable
from vmqos.services.verify_wire import VerifyRun, VerifyRunUpload, decode_png
from vmqos.verify.run import Run

MBIT = 1_000_000
AT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"plot" * 10


def _run(direction: str, achieved_bps: float) -> Run:
    from vmqos.core.analysis.judge import RateSample

    samples = tuple(RateSample(i * 0.1, (i + 1) * 0.1, 2 * achieved_bps, achieved_bps, 2 * achieved_bps / 12_000,
                               achieved_bps / 12_000, 200_000, 200_000) for i in range(30))
    idle, loaded = (Rtt(-0.5, 60),), tuple(Rtt(i * 0.1, 5_000) for i in range(30))
    j = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), samples, idle, loaded, 30)
    return Run(direction, Traffic.TCP, Limit(rate_bps=20 * MBIT), 3.0, "iperf3", samples, idle, loaded,
               TrafficResult("tcp", 3.5, achieved_bps, achieved_bps, retransmits=0), j)


class FakeServer:
    def __init__(self, fail_after: int | None = None) -> None:
        self.got: list[tuple[str, str | None, VerifyRunUpload]] = []
        self.fail_after = fail_after

    def upload_verify_run(self, device: str, run: VerifyRunUpload, host: str | None = None) -> VerifyRun:
        if self.fail_after is not None and len(self.got) >= self.fail_after:
            raise ServerUnreachable("http://vq.test is unreachable: connection refused")
        self.got.append((device, host, run))
        return VerifyRun(id=len(self.got), host=host or "", device=device, uploaded_at=AT, has_plot=True,
                         **run.model_dump(exclude={"plot_png"}))


def test_each_run_is_uploaded_with_its_summary_and_plot(tmp_path):
    plot = tmp_path / "p.png"
    plot.write_bytes(PNG)
    server, said, warned = FakeServer(), [], []
    runs = [Finished(_run("ingress", 20 * MBIT), AT, str(plot)), Finished(_run("egress", 30 * MBIT), AT, None)]
    ids = upload_runs(server, "tap-vm1", "h1", runs, ["a note"], said.append, warned.append)
    assert ids == [1, 2] and not warned and len(said) == 2
    (dev, host, first), (_, _, second) = server.got
    assert (dev, host, first.direction, first.ok, first.verdict) == ("tap-vm1", "h1", "ingress", True, "pass")
    assert first.limit.rate_bps == 20 * MBIT and first.judged_limit == 20 * MBIT and first.reasons[-1] == "a note"
    assert first.plot_png is not None and decode_png(first.plot_png) == PNG
    assert (second.ok, second.verdict, second.plot_png) == (False, "over the limit", None)


def test_a_failed_upload_is_one_warning_and_ends_the_uploads(tmp_path):
    server, said, warned = FakeServer(fail_after=0), [], []
    runs = [Finished(_run("ingress", 20 * MBIT), AT, None), Finished(_run("egress", 20 * MBIT), AT, None)]
    assert upload_runs(server, "tap-vm1", "h1", runs, [], said.append, warned.append) == []
    assert len(warned) == 1 and "unreachable" in warned[0] and "kept here" in warned[0] and not said
    missing_plot = [Finished(_run("ingress", 20 * MBIT), AT, str(tmp_path / "gone.png"))]
    warned.clear()
    assert upload_runs(FakeServer(), "tap-vm1", "h1", missing_plot, [], said.append, warned.append) == []
    assert len(warned) == 1 and "gone.png" in warned[0]


def test_the_summary_round_trips_through_the_wire():
    body = upload_of(_run("egress", 20 * MBIT), AT, PNG)
    again = VerifyRunUpload.model_validate_json(body.model_dump_json())
    assert again == body and base64.b64decode(again.plot_png or "") == PNG


def test_server_without_credentials_is_refused_before_any_traffic(capsys, monkeypatch):
    for name in ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "VMQOS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["verify", "vm1", "--lab", "vqx", "--server", "http://127.0.0.1:1", "--host", "h1"]) == 2
    assert "OS_USERNAME" in capsys.readouterr().err
    assert main(["verify", "vm1", "--lab", "vqx", "--host", "h1"]) == 2  # --host alone: the server is $VMQOS_URL
    assert "--server" in capsys.readouterr().err
