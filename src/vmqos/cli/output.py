"""Printing shared by the commands: notes on stderr, JSON on stdout, tables through Rich."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console

from vmqos.core.model.document import Note
from vmqos.services.serialize import to_json

# Piped output keeps whole lines: tables are read by people in logs and by grep, not at 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
stdout = Console(highlight=False, soft_wrap=True, width=_WIDTH)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def print_notes(notes: Iterable[Note]) -> None:
    for note in notes:
        style = "yellow" if note.level == "warning" else "cyan"
        stderr.print(f"[{style}]{note.level}[/]: {note.field}: {note.message}", markup=True)


def print_json(data: Any) -> None:
    """Any result or plain data, through the one serializer (`vmqos.services.serialize`)."""
    sys.stdout.write(json.dumps(to_json(data), indent=2, sort_keys=False) + "\n")


def print_text(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
