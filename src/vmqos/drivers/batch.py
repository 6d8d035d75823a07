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


# A last line that fails without changing anything (no device name holds '/'), so that its
# "Command failed" proves that the tool read the batch to its end: tc and ip exit on some errors
# (an unterminated quote, a duplicate or missing argument) without a word about the lines after.
_SENTINEL = {"tc": "qdisc show dev vq/none", "ip": "link show dev vq/none"}


def run_batch(tool: str, lines: Sequence[str], netns: str | None) -> list[LineFailure]:
    """Run `lines` (without the leading tool name) as one batch; return the lines that failed.

    Every line that did not demonstrably run is failed: a line iproute2 would read differently
    from a shell is not sent at all (`unfit_for_batch`), and when the tool stops before its last
    line, every line after the last one it reported is failed, never taken as done."""
    if not lines:
        return []
    failures: list[LineFailure] = []
    sent: list[int] = []  # batch line number - 1 -> index into `lines`
    for index, line in enumerate(lines):
        why = unfit_for_batch(line)
        if why is None:
            sent.append(index)
        else:
            failures.append(LineFailure(index, f"not run: {why}", errnos.EINVAL))
    if not sent:
        return failures
    text = "\n".join([*(lines[i] for i in sent), _SENTINEL[tool]]) + "\n"
    done = run([tool, "-force", "-batch", "-"], netns, input=text, check=False, timeout=600)
    pending: list[str] = []
    last = -1  # the last line (0-based, of the batch) the tool reported: every line up to it ran
    finished = False
    for line in (done.stderr or "").splitlines():
        match = _FAILED.match(line.strip())
        if not match:
            pending.append(line.strip())
            continue
        number = int(match.group(1)) - 1
        if number == len(sent):
            finished = True
        elif 0 <= number < len(sent):
            message = "; ".join(p for p in pending if p) or "failed"
            failures.append(LineFailure(sent[number], message, guess_errno(pending[-1] if pending else "")))
            last = max(last, number)
        pending = []
    if not finished:
        said = [p for p in pending if p] or [f"exit {done.returncode}"]
        why = said[-1]  # what the tool said last, before it exited
        failures += [LineFailure(sent[n], f"not known to have run: {tool} -batch stopped before its end ({why})",
                                 None) for n in range(last + 1, len(sent))]
    return sorted(failures, key=lambda f: f.index)
