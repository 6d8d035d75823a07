"""An agent in a process of its own, over a file-backed fake server (tests/fakefeed.py): what
tests/kernel/test_agent.py kills with -9 and starts again.

    python -m tests.kernel.agent_proc STATE.json CACHE_URL NETNS HOST [RESYNC_S]
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from tests.fakefeed import FakeFeed, FakeServer
from vmqos.agent.daemon import AgentSettings, serve
from vmqos.cli.logs import configure


def main() -> int:
    state, cache, netns, host = sys.argv[1:5]
    resync = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
    configure(verbose=1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings = AgentSettings("http://fake", host, netns, resync_s=resync, wait_s=0.5, report_s=0.5,
                             backoff_max_s=0.5, use_libvirt=False, monitor=None)
    serve(settings, FakeFeed(FakeServer(Path(state))), cache, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
