"""Kernel tier (root, ext4), trust (issue 13 item 8): `chattr +i` on the database under a running
monitor ends it with one line and exit status 1, never SIGBUS without a word."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmqos.store import Store

pytestmark = pytest.mark.kernel

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _chattr(flag: str, paths: list[Path]) -> bool:
    existing = [str(p) for p in paths if p.exists()]
    return not existing or subprocess.run(["chattr", flag, *existing], capture_output=True).returncode == 0


def test_an_immutable_database_stops_the_monitor_with_one_line(netns, tmp_path):
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr")
    db = tmp_path / "vmqos.db"
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    env = {**os.environ, "PYTHONPATH": SRC}
    config = tmp_path / "monitor.yaml"
    config.write_text("interval: 0.05\nusage: {interval: 0.05}\n")  # a write to the store every pass
    Store(f"sqlite:///{db}").close()  # made (and migrated) first, as on a host: the monitor's start is quick
    proc = subprocess.Popen([sys.executable, "-c", "from vmqos.cli.main import main; main()", "monitor", "--netns",
                             netns, "--db", f"sqlite:///{db}", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not all(p.exists() for p in files) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)  # a few passes, writing
        if not _chattr("+i", files):
            pytest.skip("chattr +i does not work on this filesystem")
        try:
            out, err = proc.communicate(timeout=10)
        finally:
            _chattr("-i", files)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _chattr("-i", files)
    assert proc.returncode == 1, (proc.returncode, err)  # -7 is SIGBUS
    lines = [line for line in err.splitlines() if "immutable" in line]
    assert lines and str(db) in lines[0] and "chattr -i" in lines[0], err
    assert "Traceback" not in err and "Fatal Python error" not in err
