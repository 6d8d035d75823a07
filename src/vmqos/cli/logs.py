"""Where vmqos's log records go: configured once, by the CLI entry point, on the `vmqos` logger.

Logs are for operators reading journalctl, beside what each command prints (its report stays
the same: logs never replace it). Without -v, --log-level, --log-json or $VMQOS_LOG_LEVEL they
go nowhere, so that every command prints exactly what it printed before logging existed: the
failed ports and detections logged at WARNING are already in the command's own report.

Only the `vmqos` logger is configured, never the root logger: a library's records (pyroute2's,
sqlalchemy's) are left as Python leaves them, and -vv does not turn them into a flood.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vmqos.core.errors import InvalidValue

LOGGER = "vmqos"
ENV = "VMQOS_LOG_LEVEL"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
DEFAULT_LEVEL = logging.WARNING
HANDLER = "vmqos.cli"  # the name of the one handler `configure` installs, to find it again

# What every LogRecord carries; anything else on a record came from `extra=` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts (ISO 8601, UTC), level, logger, message, then
    the record's `extra=` fields and, when the message is %-formatted from one mapping
    (`log.info("%(ports)d ports", {"ports": 3})`), that mapping's keys too."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _utc(record.created), "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        if isinstance(record.args, Mapping):
            out.update((str(k), v) for k, v in record.args.items() if k not in out)
        out.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and k not in out)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-06T20:01:20.123Z INFO vmqos.reconcile.execute: message`: UTC, like the JSON lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when the record comes (a test's capture, a redirect)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # the handler's lock is held here
        super().emit(record)


def level_of(verbose: int = 0, log_level: str | None = None, environ: Mapping[str, str] | None = None) -> int | None:
    """The level asked for: --log-level, else -v (INFO) / -vv (DEBUG), else $VMQOS_LOG_LEVEL;
    None when nothing asked for logs."""
    if log_level is not None:
        name = log_level.strip().lower()
        if name not in LEVELS:
            raise InvalidValue("--log-level", log_level, f"one of {', '.join(LEVELS)}")
        return LEVELS[name]
    if verbose > 0:
        return logging.INFO if verbose == 1 else logging.DEBUG
    env = (os.environ if environ is None else environ).get(ENV, "").strip()
    if env:
        if env.lower() not in LEVELS:
            raise InvalidValue(ENV, env, f"one of {', '.join(LEVELS)} (or unset it)")
        return LEVELS[env.lower()]
    return None


def configure(verbose: int = 0, log_level: str | None = None, log_json: bool = False,
              environ: Mapping[str, str] | None = None) -> logging.Logger:
    """Set up the `vmqos` logger; calling it again replaces what an earlier call set up.

    Nothing asked for (no option, no $VMQOS_LOG_LEVEL): level WARNING and no output. Asked for:
    one handler on stderr at that level (WARNING with --log-json alone), text or JSON lines, and
    the records stop at `vmqos` (printed once, whatever handlers the root logger has)."""
    level = level_of(verbose, log_level, environ)
    logger = logging.getLogger(LOGGER)
    for old in list(logger.handlers):
        if old.get_name() == HANDLER:
            logger.removeHandler(old)
            old.close()
    handler: logging.Handler
    if level is None and not log_json:
        handler = logging.NullHandler()  # no "No handlers could be found", no lastResort
        logger.propagate = True
        logger.setLevel(DEFAULT_LEVEL)
    else:
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter() if log_json else TextFormatter())
        logger.propagate = False
        logger.setLevel(DEFAULT_LEVEL if level is None else level)
    handler.set_name(HANDLER)
    logger.addHandler(handler)
    return logger


def daemon_logs(*names: str) -> None:
    """The lines of these loggers on stderr at INFO, when no -v/--log-level asked for logs (then `vmqos`
    logs nowhere): an operator of a daemon (`server --all-in-one`, `agent`) must see a port that
    could not be limited and a server that went away."""
    if any(h.get_name() == HANDLER and not isinstance(h, logging.NullHandler)
           for h in logging.getLogger(LOGGER).handlers):
        return
    handler = StderrHandler()
    handler.setFormatter(TextFormatter())
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


HELP = """\b
Logging (to stderr; off unless asked for, so that output stays as it is):
  -v INFO (one line per reconcile pass, the monitor's actions), -vv DEBUG;
  --log-level LEVEL beats -v; --log-json: one JSON object per line (ts, level,
  logger, message and the record's fields); $VMQOS_LOG_LEVEL for daemons
  started without options.
Examples:
  vmqos -v apply -f host.yaml
  vmqos --log-json monitor --netns lab-host --config monitor.yaml
  VMQOS_LOG_LEVEL=info vmqos monitor --netns lab-host"""
