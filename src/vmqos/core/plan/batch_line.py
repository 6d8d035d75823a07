"""How iproute2 (6.1) reads one line of `ip -batch` / `tc -batch`, so that vmqos never hands it a
line that means something other than what `vmqos plan` shows.

The renderer quotes for a POSIX shell (what an operator pastes). iproute2's batch reader is not a
shell: `getcmdline` cuts the line at the first '#' wherever it is, quoted or not; `makeargs`
splits on space, tab, CR and LF, takes a word that starts with ' or " up to the next same quote,
with no escapes; an unterminated quote makes the whole process exit, so every later line of the
batch silently does not run; a line ending in a backslash continues on the next one, which shifts
the line numbers its errors are reported by. A line is fit for a batch only when iproute2 reads
exactly the words a shell reads.
"""

from __future__ import annotations

import shlex

__all__ = ["batch_words", "unfit_for_batch"]

_SPACE = " \t\r\n"
_SPECIAL = frozenset("'\"\\#\n\0")


def _plain(line: str) -> bool:
    return _SPECIAL.isdisjoint(line)


class _Unterminated(ValueError):
    pass


def batch_words(line: str) -> list[str]:
    """The words iproute2's batch reader makes of `line` (ValueError: it would exit, "Unterminated
    quoted string")."""
    line = line.split("#", 1)[0]
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            break
        if line[i] in "'\"":
            end = line.find(line[i], i + 1)
            if end < 0:
                raise _Unterminated("Unterminated quoted string")
            words.append(line[i + 1:end])
        else:
            end = i
            while end < n and line[end] not in _SPACE:
                end += 1
            words.append(line[i:end])
        i = end + 1  # the character after a word (a space, or a closing quote) is overwritten by its end
    return words


def unfit_for_batch(line: str) -> str | None:
    """Why iproute2 would not read `line` as a shell does (None: it reads the same words)."""
    if _plain(line):  # no quote, escape, comment or line break: both split on blanks (most lines; shlex is slow)
        return None
    if "\n" in line or "\0" in line:
        return "a batch line cannot hold a newline or NUL"
    if line.endswith("\\"):
        return "a batch line ending in '\\' continues on the next line"
    if "#" in line:
        return "iproute2's batch reader cuts a line at '#' (a comment), even inside quotes"
    try:
        shell = shlex.split(line)
    except ValueError as exc:
        return f"the line is not valid shell quoting ({exc})"
    try:
        words = batch_words(line)
    except ValueError as exc:
        return f"iproute2 would stop the whole batch here ({exc})"
    if words != shell:
        return "iproute2's batch reader has no escapes: a quote inside a word splits it differently from a shell"
    return None
