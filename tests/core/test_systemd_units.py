"""contrib/systemd's units, judged by systemd's own tools (systemd is not PID 1 here: nothing is started).

`systemd-analyze verify` loads each unit as systemd would and reports unknown keys, bad values and a
command that is not executable: its ExecStart names /usr/bin/vmqos (where a package installs it), so
a copy whose ExecStart names this checkout's vmqos is verified, the only line changed.
`systemd-analyze security --offline=yes` scores the sandbox from 0 (locked down) to 10 (none): the
server, which needs no privilege, must stay "OK" at 2.0 or less, the agent, which keeps two
capabilities and uid 0 for the files it writes, at 4.0 or less (1.2 and 3.3 when written).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
EXPOSURE_AT_MOST = {"vmqos-server.service": 2.0, "vmqos-agent.service": 4.0}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd; `make` installs it): the units are not "
                    "verified")
    vmqos = Path(sys.executable).parent / "vmqos"
    if not vmqos.exists():
        pytest.fail(f"{vmqos} is missing: `make` (pip install -e .) installs the vmqos command")
    tmp = tmp_path_factory.mktemp("vq-units")
    copies = {}
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text()
        assert text.count("ExecStart=/usr/bin/vmqos ") == 1, unit.name
        (tmp / unit.name).write_text(text.replace("ExecStart=/usr/bin/vmqos ", f"ExecStart={vmqos} "))
        copies[unit.name] = tmp / unit.name
    assert set(copies) == set(EXPOSURE_AT_MOST)
    return copies


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120, cwd="/")


@pytest.mark.parametrize("name", sorted(EXPOSURE_AT_MOST))
def test_systemd_analyze_verify_finds_nothing(installed, name):
    """Not even a warning: systemd ignores an unknown key with one ("Unknown key … ignoring"), and a
    misspelt hardening option would silently protect nothing."""
    done = _analyze("verify", str(installed[name]))
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(EXPOSURE_AT_MOST))
def test_systemd_analyze_security_scores_the_sandbox(installed, name):
    done = _analyze("security", "--offline=yes", "--no-pager", str(installed[name]))
    assert done.returncode == 0, done.stderr
    overall = [line for line in done.stdout.splitlines() if "Overall exposure level" in line]
    assert len(overall) == 1, done.stdout
    level = float(overall[0].split(":", 1)[1].split()[0])
    assert level <= EXPOSURE_AT_MOST[name], done.stdout


def test_a_verify_that_finds_a_misspelt_option_fails(installed, tmp_path):
    """The check above can fail: one misspelt hardening key is reported."""
    text = installed["vmqos-server.service"].read_text().replace("ProtectHome=yes", "ProtectHom=yes")
    broken = tmp_path / "vmqos-server.service"
    broken.write_text(text)
    done = _analyze("verify", str(broken))
    assert "Unknown key 'ProtectHom'" in done.stdout + done.stderr
