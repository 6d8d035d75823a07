"""A long-running writer's commits survive another process opening and closing the same SQLite file.

The writer checks its file before every write (store/health.py). It used to open and close the
-shm file to read its flags, which drops the fcntl lock SQLite holds on it in that process; the
next process to close its last connection then thought itself alone, deleted the WAL, and every
later commit of the writer went to the unlinked file (found when the server's tests read a flavor
back through services while `vmqos server` ran). Real processes, a real file, no root.
"""

from __future__ import annotations

import subprocess
import sys

from vmqos.core.model.host import HostState
from vmqos.store import Store

_WRITER = """
import sys
from vmqos.core.model.host import HostState
from vmqos.store import Store
store = Store(sys.argv[1])
for line in sys.stdin:
    store.save("", HostState(), summary=line.strip())
    print("saved", flush=True)
"""


def test_commits_stay_visible_after_another_process_closes_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdin is not None and writer.stdout is not None

    def save(summary: str) -> None:
        writer.stdin.write(summary + "\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "saved"

    try:
        save("first")
        with Store(url) as reader:  # opens, reads and closes its last connection: `vmqos port show`
            assert reader.revisions("")[0].summary == "first"
        save("second")
        with Store(url) as reader:
            assert [r.summary for r in reader.revisions("")] == ["second", "first"]
        assert (tmp_path / "shared.db-wal").exists()
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
    with Store(url) as after:
        assert [r.summary for r in after.revisions("")] == ["second", "first"]
