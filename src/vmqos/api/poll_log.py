"""The access log without a line per long-poll answer: a summary line per minute instead.

uvicorn writes one access line per request ("uvicorn.access"). A fleet's agents long-poll their
desired state: at one change a thousand of them are answered at once and poll again, and idle ones
are answered empty every `wait` seconds, so the long poll's 200s were nearly every line of the log
and about 12 % of the server's event loop at a change (formatting and writing a line: ~14 µs of CPU
each to /dev/null, more to a pipe; docs/benchmarks.md §7). The operator's access log stays for every
other request and for every long poll that did not succeed (401, 403, 410, 422...: the agent that
has a problem is still named, line by line). The long poll's 200s are counted instead, and once per
SUMMARY_S (when there were any) one line on uvicorn's own logger says how many answers went to how
many hosts:

    INFO:     long poll: 30,512 answers (200) to 1,000 hosts in the last 60 s (one line per answer is not logged)

The filter drops the record before any handler formats or writes it; uvicorn still builds the
record (~5 µs). `vmqos server` keeps every line when asked (`--log-every-poll`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable

ACCESS_LOGGER = "uvicorn.access"
SUMMARY_LOGGER = "uvicorn.error"  # uvicorn's own lines ("Application startup complete."): the access
# logger's formatter expects exactly an access line's five arguments
SUMMARY_S = 60.0
EVERY_POLL_ENV = "VMQOS_LOG_EVERY_POLL"  # "1": every answer's line, as uvicorn writes it (`vmqos server --log-every-poll`)
_POLL = re.compile(r"/v1/hosts/([^/?]+)/desired/changes(?:\?|$)")
_QUIET = (200, 304)


class PollSummary(logging.Filter):
    """Drops the access lines of the long poll's successful answers and counts them by host."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.answers = 0
        self.hosts: set[str] = set()
        self.since = clock()
        self.enabled = True
        self._lock = threading.Lock()  # `--workers` are processes; a test's threads may share one logger

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not self.enabled or not isinstance(args, tuple) or len(args) != 5 or args[4] not in _QUIET \
                or args[1] != "GET":
            return True
        found = _POLL.match(str(args[2]))
        if found is None:
            return True
        with self._lock:
            self.answers += 1
            self.hosts.add(found.group(1))
        return False

    def line(self) -> str | None:
        """The summary of the answers counted since the last one (None if there were none), counted again from 0."""
        with self._lock:
            now = self.clock()
            answers, hosts, since = self.answers, len(self.hosts), self.since
            self.answers, self.hosts, self.since = 0, set(), now
        if answers == 0:
            return None
        return (f"long poll: {answers:,} answers (200) to {hosts:,} hosts in the last {now - since:.0f} s "
                f"(one line per answer is not logged)")

    def flush(self) -> None:
        said = self.line()
        if said is not None:
            logging.getLogger(SUMMARY_LOGGER).info(said)


SUMMARY = PollSummary()


def install() -> PollSummary:
    """The one summary filter on uvicorn's access logger (idempotent: every application of the process shares it)."""
    logging.getLogger(ACCESS_LOGGER).addFilter(SUMMARY)
    return SUMMARY


async def summarize(summary: PollSummary, every_s: float = SUMMARY_S) -> None:
    """Say the summary every `every_s` seconds until cancelled (the application's lifespan), and once more then."""
    try:
        while True:
            await asyncio.sleep(every_s)
            summary.flush()
    finally:
        summary.flush()
