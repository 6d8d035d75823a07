"""The one undo mechanism: newest first, every step tried, failures reported."""

import pytest

from vmqos.core.undo import UndoLog


def test_rollback_runs_newest_first_and_keeps_going_past_a_failing_step():
    done: list[str] = []
    log = UndoLog()
    log.add("first", lambda: done.append("first"))

    def broken() -> None:
        raise OSError("read-only file system")

    log.add("second", broken)
    log.add("third", lambda: done.append("third"))
    assert log.rollback() == ["second: read-only file system"]
    assert done == ["third", "first"]
    assert len(log) == 0 and log.failures == ["second: read-only file system"]


def test_context_manager_commits_on_success_and_rolls_back_on_error():
    done: list[str] = []
    with UndoLog() as log:
        log.add("a", lambda: done.append("a"))
    assert done == [] and len(log) == 0
    with pytest.raises(ValueError):
        with UndoLog() as log:
            log.add("b", lambda: done.append("b"))
            raise ValueError("step two failed")
    assert done == ["b"]
