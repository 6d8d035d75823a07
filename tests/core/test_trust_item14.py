"""Issue 13 item 14 ("Trust"): `vmqos convert` prints each note once, on stderr, for every --to
format; the vmqos writer no longer repeats it as a `# info:` comment in the converted output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmqos.core.formats import FORMATS

NOTE = "--outbound: not given: virsh leaves this direction unchanged; read as no limit"


@pytest.mark.parametrize("dst", [*(f for f in FORMATS if f != "cinder"), "effective"])  # cinder: disks only
def test_item14_convert_prints_a_note_once_on_stderr(dst):
    env = {k: v for k, v in os.environ.items() if k != "VMQOS_DEBUG"}
    result = subprocess.run([sys.executable, "-m", "vmqos.cli.main", "convert", "--from", "domiftune", "--to", dst,
                             "-"], input="--inbound 0\n", capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(NOTE) == 1 and NOTE not in result.stdout
