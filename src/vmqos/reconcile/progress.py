"""How far a long reconcile pass is, told to whoever watches it (the CLI's bars, later the agent).

Pure bookkeeping: which ports each apply phase still holds; the callback decides how to show it.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Iterable, Mapping, Sequence

# How far a long pass is, for an operator watching 10,000 ports being applied: (phase, done, total),
# done and total counted in ports. The service reports the first and last phases, the reconciler
# the rest; a phase with nothing to do is not reported. Called from two threads (nft runs beside
# ip and tc), so a receiver must not assume one thread.
Progress = Callable[[str, int, int], None]
PHASES = ("planning", "reading back", "links", "queues", "nft", "deletions", "saving")


class PhaseProgress:
    """Counts the ports each apply phase is done with and tells `Progress` (from two threads): a
    port is done with a phase when every step of it that holds the port ran (nft: up to three
    transactions; deletions: tc, then ip), whether it succeeded or failed."""

    def __init__(self, progress: Progress | None, steps: Mapping[str, Sequence[Iterable[str]]]) -> None:
        self._progress, self._lock = progress, threading.Lock()
        self._left = {phase: Counter(p for step in found for p in step) for phase, found in steps.items()}
        self._total = {phase: len(left) for phase, left in self._left.items() if left}
        for phase, total in self._total.items():
            if progress:
                progress(phase, 0, total)

    def done(self, phase: str, ports: Iterable[str]) -> None:
        if self._progress is None or phase not in self._total:
            return
        with self._lock:
            left = self._left[phase]
            left.subtract(list(ports))
            left += Counter()  # drops the ports that reached zero
            self._progress(phase, self._total[phase] - len(left), self._total[phase])
