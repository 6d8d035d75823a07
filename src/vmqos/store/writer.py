"""One writer per scope at a time, across threads and processes: `Store.writer(scope)`.

A change of a port is load -> change -> reconcile the kernel -> save. A database transaction
cannot span it (the kernel work takes seconds to minutes, and SQLite would block every other
scope's writers meanwhile), so two writers of one port would each load and each change the
kernel, interleaving on one device; a save writes only the rows that changed and refuses a stale
one (`vmqos.store.delta`), but by then the kernel holds a mix. The writer lock is held around the
whole sequence instead:

* SQLite (one host): an exclusive `flock` on a lock file per scope, next to the database
  (`vmqos.db.locks/<hash of the scope>`); the kernel releases it when its holder dies, so a
  `kill -9` leaves no stale lock behind.
* PostgreSQL (a fleet): `pg_try_advisory_lock` on a connection of its own, held open for as
  long as the lock; the server releases it when that connection goes (a crash, a kill -9).
* An in-memory SQLite database lives in one process: a lock of that process.

The lock is re-entrant in one thread (a use case calls another through the same store), and a
writer that waits says so in the log, so an operator sees why `port set` has not returned.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from vmqos.core.errors import ConflictError, VmqosError

log = logging.getLogger(__name__)

WAIT_S = 3600.0  # a whole-host apply of 10,000 ports takes minutes; an hour means the holder is stuck
_POLL_S = 0.02
# "vmw": the first key of the writer locks; not "vmq" (0x766D71), which each write transaction takes
# for itself (Store._tx) on another connection: the same key would make a writer wait for itself.
_ADVISORY_CLASS = 0x766D77

_memory_locks: dict[tuple[str, str], threading.Lock] = {}
_memory_guard = threading.Lock()
_held = threading.local()  # (pid, url, scope) -> depth, per thread: the lock is re-entrant in one thread


def _depth() -> dict[tuple[int, str, str], int]:
    depth: dict[tuple[int, str, str], int] | None = getattr(_held, "depth", None)
    if depth is None:
        depth = _held.depth = {}
    return depth


def lock_dir(database: str) -> Path:
    """Where a SQLite database's lock files live: beside it, so every process that opens it finds them."""
    return Path(f"{database}.locks")


@contextmanager
def opening(database: str) -> Iterator[None]:
    """Openers of one SQLite file take turns: turning a new file to WAL and creating its tables
    fail with "database is locked" (no busy wait) when two processes do it at once."""
    directory = lock_dir(database)
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(directory / "open", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield  # a read-only place: nobody can create the tables there either; opening says why
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class WriterLocks:
    """The writer locks of one store (one URL); `hold(scope)` is `Store.writer(scope)`."""

    def __init__(self, engine: Engine, url: str, shown: str, wait_s: float = WAIT_S) -> None:
        self._engine, self._url, self._shown, self.wait_s = engine, url, shown, wait_s
        parsed = make_url(url)
        self._postgres = parsed.get_backend_name() == "postgresql"
        database = parsed.database or ""
        memory = parsed.get_backend_name() == "sqlite" and (database in ("", ":memory:") or "mode=memory" in database)
        self._dir = None if self._postgres or memory else lock_dir(database)

    @contextmanager
    def hold(self, scope: str) -> Iterator[None]:
        depth = _depth()
        # Per database, not per Store: two Stores of one thread share the lock; and per process: a
        # child forked while its parent held the lock does not hold it.
        key = (os.getpid(), self._url, scope)
        if depth.get(key):
            depth[key] += 1
            try:
                yield
            finally:
                depth[key] -= 1
            return
        acquire = self._postgres_lock if self._postgres else self._file_lock if self._dir else self._memory_lock
        with acquire(scope):
            depth[key] = 1
            try:
                yield
            finally:
                del depth[key]

    def _busy(self, scope: str, where: str) -> ConflictError:
        return ConflictError(f"scope {scope!r}: another vmqos has been changing it for over {self.wait_s:g} s "
                             f"({where}); find it (`fuser -v {where}` for a lock file) and stop it, then retry")

    def _wait(self, scope: str, try_once: Callable[[], bool], where: str) -> None:
        deadline = time.monotonic() + self.wait_s
        said = False
        while not try_once():
            if not said:
                log.info("scope %r: waiting for another vmqos writer to finish (%s)", scope, where,
                         extra={"scope": scope})
                said = True
            if time.monotonic() >= deadline:
                raise self._busy(scope, where)
            time.sleep(_POLL_S)

    @contextmanager
    def _file_lock(self, scope: str) -> Iterator[None]:
        assert self._dir is not None
        path = self._dir / hashlib.sha256(scope.encode()).hexdigest()[:16]
        try:
            self._dir.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise VmqosError(f"cannot take the writer lock of scope {scope!r} ({path}): {exc.strerror or exc}; "
                             "the directory of the database must be writable") from None
        try:
            def try_once() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    return False

            self._wait(scope, try_once, str(path))
            yield
        finally:
            os.close(fd)  # releases the flock

    @contextmanager
    def _memory_lock(self, scope: str) -> Iterator[None]:
        with _memory_guard:
            lock = _memory_locks.setdefault((self._url, scope), threading.Lock())
        self._wait(scope, lambda: lock.acquire(blocking=False), "a lock of this process")
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _postgres_lock(self, scope: str) -> Iterator[None]:
        """A session advisory lock, on a connection held for as long as the lock; a waiter holds none
        between its tries, so a hundred waiting threads do not empty the pool the holder writes through."""
        key = {"a": _ADVISORY_CLASS, "b": zlib.crc32(scope.encode()) - 2**31}
        held: list[Connection] = []

        def try_once() -> bool:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                if conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), key).scalar():
                    held.append(conn)
                    return True
            except BaseException:
                conn.close()
                raise
            conn.close()
            return False

        try:
            self._wait(scope, try_once, f"advisory lock ({key['a']}, {key['b']}) in {self._shown}")
        except SQLAlchemyError as exc:
            raise VmqosError(f"cannot take the writer lock of scope {scope!r} in {self._shown}: "
                             f"{_first_line(exc)}") from None
        conn = held[0]
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), key)
            except SQLAlchemyError:
                conn.invalidate()  # its session is gone, and the server released the lock with it
            finally:
                conn.close()


def _first_line(exc: SQLAlchemyError) -> str:
    message = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0]
