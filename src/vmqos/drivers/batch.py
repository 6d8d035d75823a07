"""Bulk tc and ip changes: one `tc -batch` / `ip -batch` process for a whole change.

A `tc` process dumps every link of the namespace before its first request, which costs tens of
milliseconds on a host with thousands of ports; one batch pays that once for all commands
(kernel-lab-facts.md §4: 3,000 objects in 0.095 s, against 48 s for one process each). `-force`
keeps going after a failed line and names it, so a failure is tied to its port and only that
port is rolled back. But tc and ip exit on some errors without naming the line or running the
rest: a line is sent only when iproute2 reads it as a shell does, and a last line that must fail
proves the batch was read to its end; otherwise the lines after the last one reported are failed.
"""

from __future__ import annotations

import errno as errnos
import os
import re
from typing import Sequence

from vmqos.core.plan.batch_line import unfit_for_batch
from vmqos.drivers.process import run
from vmqos.drivers.protocols import LineFailure

__all__ = ["LineFailure", "guess_errno", "run_batch"]

_FAILED = re.compile(r"^Command failed (?:-|\S+):(\d+)$")
_STRERROR = {os.strerror(code): code for code in errnos.errorcode}
_TEXT_ERRNO = (
    ("Cannot find device", errnos.ENODEV),
    ("Exclusivity flag on", errnos.EEXIST),
    ("Specified qdisc kind is unknown", errnos.EOPNOTSUPP),
    ("Change operation not supported", errnos.EOPNOTSUPP),
    ("Operation not permitted", errnos.EPERM),
)


def guess_errno(message: str) -> int | None:
    """The errno behind a tc/ip error line ("RTNETLINK answers: File exists", "Error: ...")."""
    if message.startswith("RTNETLINK answers: "):
        return _STRERROR.get(message.removeprefix("RTNETLINK answers: ").strip())
    for text, code in _TEXT_ERRNO:
        if text in message:
            return code
    return errnos.EINVAL if message.startswith("Error:") else None


# A line that fails without changing anything (no device name holds '/'): its "Command failed"
# proves that the tool read the batch up to it. tc and ip exit on some errors (an unterminated
# quote, a duplicate or missing argument) without a word about that line or the ones after; one
# such proof every CHUNK lines (35 us each) bounds what an exit leaves unknown to one chunk.
_SENTINEL = {"tc": "qdisc show dev vq/none", "ip": "link show dev vq/none"}
CHUNK = 16


def run_batch(tool: str, lines: Sequence[str], netns: str | None) -> list[LineFailure]:
    """Run `lines` (without the leading tool name) as one batch; return the lines that failed.

    Every line that did not demonstrably run is failed, and no other: a line iproute2 would read
    differently from a shell is not sent at all (`unfit_for_batch`); when the tool stops, the
    lines of the chunk it stopped in that it did not report are failed, and the lines after that
    chunk, which never ran, go in a new batch."""
    failures: list[LineFailure] = []
    todo: list[int] = []  # indices into `lines` still to send
    for index, line in enumerate(lines):
        why = unfit_for_batch(line)
        if why is None:
            todo.append(index)
        else:
            failures.append(LineFailure(index, f"not run: {why}", errnos.EINVAL))
    while todo:
        reported, proven, stopped = _one_batch(tool, [lines[i] for i in todo], netns)
        failures += [LineFailure(todo[n], message, code) for n, (message, code) in reported.items()]
        if stopped is None:
            break
        unknown = range(proven, min(proven + CHUNK, len(todo)))
        failures += [LineFailure(todo[n], f"not known to have run: {tool} -batch stopped here ({stopped})", None)
                     for n in unknown if n not in reported]
        todo = todo[unknown.stop:]
    return sorted(failures, key=lambda f: f.index)


def _one_batch(tool: str, lines: Sequence[str], netns: str | None
               ) -> tuple[dict[int, tuple[str, int | None]], int, str | None]:
    """One process: the lines it reported failed (index -> message, errno), how many lines it is
    proven to have read, and what it said last if it stopped before the end (None: it did not)."""
    text: list[str] = []
    at: list[int] = []  # batch line number - 1 -> index into `lines`, or -1 - (lines proven) for a proof
    for n, line in enumerate(lines):
        text.append(line)
        at.append(n)
        if (n + 1) % CHUNK == 0 or n + 1 == len(lines):
            text.append(_SENTINEL[tool])
            at.append(-1 - (n + 1))
    done = run([tool, "-force", "-batch", "-"], netns, input="\n".join(text) + "\n", check=False, timeout=600)
    reported: dict[int, tuple[str, int | None]] = {}
    proven = 0
    pending: list[str] = []
    for line in (done.stderr or "").splitlines():
        match = _FAILED.match(line.strip())
        if not match:
            pending.append(line.strip())
            continue
        number = int(match.group(1)) - 1
        if 0 <= number < len(at):
            where = at[number]
            if where < 0:
                proven = -1 - where
            else:
                said = [p for p in pending if p]
                reported[where] = ("; ".join(said) or "failed", guess_errno(said[-1] if said else ""))
        pending = []
    if proven == len(lines):
        return reported, proven, None
    said = [p for p in pending if p] or [f"exit {done.returncode}"]
    return reported, proven, said[-1]
