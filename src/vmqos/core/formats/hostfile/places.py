"""Where things are in a host file: the path of an element, as the operator reads it, and its line.

Every other part of the reader speaks of places in the file the same way, so the way a path is
written (`instances.vm1.ports[0]`) and the way a model error becomes a FormatError at the line
of the element that caused it live here, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from vmqos.core.errors import FormatError, VmqosError

FMT = "vmqos"
Path = tuple[str | int, ...]


def where(path: Path) -> str:
    """A path as the operator reads it: `instances.vm1.ports[0].limits.egress`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "the top level"


def in_where(path: Path) -> str:
    return f"in {where(path)}" if path else "at the top level"


class Lines:
    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines

    def __call__(self, path: Path) -> int | None:
        """The line of `path`, or of the nearest enclosing element the file has."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def fail(self, path: Path, message: str) -> FormatError:
        return FormatError(FMT, message, line=self(path))

    @contextmanager
    def at(self, path: Path) -> Iterator[None]:
        """Turn what the model refuses into a FormatError at the line of the element being built."""
        try:
            yield
        except FormatError:
            raise
        except VmqosError as exc:
            raise FormatError(FMT, f"{where(path)}: {exc}", line=self(path)) from None

