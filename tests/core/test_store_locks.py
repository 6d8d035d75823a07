"""A long-running process's writes stay visible to the others after another process came and went.

`Store` checks its SQLite file before each write (`store.health`). It once read the file's chattr
flags by opening and closing the file, and closing any descriptor of a file drops every POSIX lock
the process holds on it, SQLite's included: the next process to close its last connection then
took itself for the last one, checkpointed and deleted the WAL, and the long-running process (the
API server, the monitor) went on committing into the unlinked WAL, seen by no other process.
"""

from __future__ import annotations

import subprocess
import sys

from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.store import Store


def _state(*devices: str) -> HostState:
    return HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d),)) for d in devices})


def _in_another_process(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_write_after_another_process_closed_its_connection_is_seen_by_a_third(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    with Store(url) as mine:
        mine.save("s", _state("a1"))  # checks the file first, as every write does
        _in_another_process("from vmqos.store import Store; from vmqos.core.model.host import *; "
                            f"Store({url!r}).save('s', HostState(instances={{'b': InstanceSpec('b', "
                            "ports=(PortSpec('b'),))}))")
        mine.save("s", _state("a1", "a2"))
        seen = _in_another_process("from vmqos.store import Store; "
                                   f"print(sorted(p.device for _, p in Store({url!r}, read_only=True).load('s')"
                                   ".ports()))")
    assert seen == "['a1', 'a2']"
