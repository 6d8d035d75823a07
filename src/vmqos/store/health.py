"""Whether a SQLite file a long-running process opened is still the one at its path, and writable.

SQLite keeps its file open: deleted, the process goes on writing to the unlinked inode and every
event and quarantine it records is lost when it exits; replaced, it writes to the old one. Made
immutable (`chattr +i`) while open, the next write to the WAL index, which SQLite maps in memory,
kills the process with SIGBUS (the kernel refuses the page fault) and no message at all. A
monitor therefore checks, once a pass and before it writes, that the path still names the file
it opened and that none of the three files (database, -wal, -shm) is immutable or append-only:
a stat and three statx calls (which open nothing: see `_flags`), nothing beside the cost of a
pass. Every write transaction checks the same first (nothing beside a commit), which leaves a
window of microseconds, not a pass.

It stops rather than reopening: a new file at the path is empty (reopening would forget the
desired state and the quarantines in force), and an immutable one cannot be written at all; what
to do is the operator's to decide, and a supervisor restarts the monitor once it is done.

On PostgreSQL there is no file to watch: the same check, once a pass, asks the server (one
`SELECT 1` on a pooled connection, which the pool's pre-ping replaces if the server restarted),
and a server that went away, or a database that was dropped, stops the process the same way.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import logging
import os
import struct
import sys
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from vmqos.core.errors import VmqosError

# statx(2)'s attributes, the bits chattr's +i and +a set (FS_IMMUTABLE_FL and FS_APPEND_FL have the same values)
STATX_ATTR_IMMUTABLE = 0x10
STATX_ATTR_APPEND = 0x20
FS_IMMUTABLE_FL, FS_APPEND_FL = STATX_ATTR_IMMUTABLE, STATX_ATTR_APPEND
_AT_FDCWD = -100
_STATX_BASIC_STATS = 0x7FF
_FIX = "vmqos stopped before writing, so that nothing is recorded where nobody will read it"


_abandoned: list[Any] = []


def _exit_without_closing() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(1)


def abandon(engine: Any) -> None:
    """Leave an engine's connections open until the process ends, and end it with exit status 1
    without closing them: closing the last connection checkpoints the WAL, which writes its mapped
    index, and a write to the mapping of an immutable file is SIGBUS. The committed transactions
    stay in the WAL, which SQLite recovers at the next open once the file is writable again."""
    if not _abandoned:
        atexit.register(_exit_without_closing)
    _abandoned.append(engine)


class DatabaseGone(VmqosError):
    """The database file under a running process was deleted, replaced or made unwritable."""


def _flags(path: str) -> int:
    """The file's inode flags (chattr's i and a), 0 where the filesystem has none or it does not exist.

    Read with statx(2) on the path, never by opening the file: closing ANY descriptor of a file
    releases every POSIX lock this process holds on it, and SQLite's locks on the database, its
    -wal and its -shm are POSIX locks. A check that opened and closed them (an ioctl did) dropped
    this process's hold on the WAL index: another process closing the database then believed it
    was the last one and deleted the -wal and -shm under it, so that every commit after that went
    to an unlinked file and was lost, or reset the index under its mapping (SIGBUS)."""
    statx = getattr(_libc(), "statx", None)
    if statx is None:  # a C library older than glibc 2.28: no way to ask without opening
        return 0
    buf = ctypes.create_string_buffer(256)  # struct statx
    if statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_BASIC_STATS, buf) != 0:
        return 0
    attributes, supported = struct.unpack_from("=Q", buf, 8)[0], struct.unpack_from("=Q", buf, 56)[0]
    return int(attributes & supported)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class FileWatch:
    """The identity of an open SQLite file (device and inode), to compare its path with later."""

    path: str
    dev: int
    ino: int

    @classmethod
    def of(cls, path: str) -> FileWatch | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(path, st.st_dev, st.st_ino)

    def frozen(self) -> bool:
        """Whether the database or its WAL files are immutable or append-only now."""
        return any(_flags(p) & (FS_IMMUTABLE_FL | FS_APPEND_FL)
                   for p in (self.path, f"{self.path}-wal", f"{self.path}-shm"))

    def check(self) -> None:
        """Raise DatabaseGone (one line: what happened, how to fix it) unless all is well."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise DatabaseGone(f"the database file {self.path} was deleted while vmqos had it open: restore it "
                               f"(or name another with --db) and start again; {_FIX}") from None
        except OSError as exc:
            raise DatabaseGone(f"the database file {self.path} cannot be read ({exc.strerror or exc}); {_FIX}") from None
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            raise DatabaseGone(f"the database file {self.path} was replaced by another file while vmqos had it "
                               f"open: start again to use the new one; {_FIX}")
        for path in (self.path, f"{self.path}-wal", f"{self.path}-shm"):
            flags = _flags(path)
            if flags & (FS_IMMUTABLE_FL | FS_APPEND_FL):
                what, attr = ("immutable", "i") if flags & FS_IMMUTABLE_FL else ("append-only", "a")
                raise DatabaseGone(f"the database file {path} was made {what}: vmqos cannot write it (writing "
                                   f"would kill it with SIGBUS); `chattr -{attr} {path}` and start again; {_FIX}")
        if not os.access(self.path, os.W_OK) or not os.access(os.path.dirname(self.path) or ".", os.W_OK):
            raise DatabaseGone(f"the database file {self.path} (or its directory) is no longer writable: make it "
                               f"writable and start again; {_FIX}")


class ServerWatch:
    """A PostgreSQL database a long-running process writes to: whether its server still answers."""

    def __init__(self, engine: Engine, shown: str) -> None:
        self._engine, self._shown = engine, shown

    def frozen(self) -> bool:
        return False  # closing a PostgreSQL connection writes nothing anywhere: always safe

    def check(self) -> None:
        """Raise DatabaseGone (one line) unless the server answers a query in the database."""
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            message = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
            why = (message.strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseGone(f"the database {self._shown} went away ({why}): start its server again (or name "
                               f"another database with --db) and start vmqos again; {_FIX}") from None
