"""One undo mechanism for every change that must be all or nothing.

A change that touches several things (cgroup files, a domain's live parameters, the store, the
kernel objects of a port) records, before each step, how to put back what that step replaces.
When a later step fails, the recorded steps run newest first; a step that itself fails does not
stop the others, and what failed is reported, so that the operator learns what was not restored
instead of being told that nothing changed. The log itself does no I/O: it only calls the steps
its owner gave it, which keeps it in the core and usable by every room above it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Callable


class UndoLog:
    """Steps that put back what a change did, run newest first when the change fails.

    Used as a context manager, an exception leaving the block rolls back and is re-raised;
    a block that ends normally keeps everything (nothing to undo any more)."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self.failures: list[str] = []  # what the last rollback could not put back, with why

    def add(self, what: str, step: Callable[[], object]) -> None:
        """Record how to undo a step that is about to run (or just ran); `what` names it in a report
        ("" when the step's own error already says what it was)."""
        self._steps.append((what, step))

    def __len__(self) -> int:
        return len(self._steps)

    def rollback(self) -> list[str]:
        """Run every recorded step, newest first; return (and keep in `failures`) those that failed."""
        failures: list[str] = []
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - every other step must still run
                failures.append(f"{what}: {exc}" if what else str(exc))
        self.failures = failures
        return failures

    def commit(self) -> None:
        """The change succeeded: forget the steps."""
        self._steps.clear()

    def __enter__(self) -> "UndoLog":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()
