"""Version skew between vmqos's own components: what a peer of an adjacent version sends is read leniently.

Through a rolling upgrade an agent runs one version older or newer than its server. Every field the
protocol gained (a Desired row's `addresses`, a Changes answer's `uplink`, a Port's `policy_id`) was
added to `services.fleet_wire`'s models, which refuse unknown fields (`extra="forbid"`): an agent one
version older then refused every answer of a newer server, and a server refused the report of a newer
agent. Between our components the receiver now ignores a field it does not know and logs it once per
field (logger `vmqos.wire`, INFO), so an operator sees the skew without a line per request; what a
user sends (the public API's bodies, e.g. a native port's limits) stays strict, so a misspelt field
is still refused with its name. This is the lenient half of Neutron's agent/server contract without
oslo.versionedobjects' per-object version numbers: a field is only ever added, with a default, so
ignoring one is always safe for the older side.

Two ways in, one log:
- the agent and the CLI read the server's answers with `parse_from_peer` (strict first, then once more
  without the fields the model refused as unknown): the answer models stay strict for the server's
  own tests and for the models that double as user input (an Uplink is a PUT body too);
- the server reads an agent's bodies (Registration, Report and what they hold) with models that ignore
  unknown fields and call `note_unknown` (`FromAgent`, the base of those models in services.fleet_wire).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

LOG = logging.getLogger("vmqos.wire")
M = TypeVar("M", bound=BaseModel)

_noted: set[tuple[str, str]] = set()
_lock = threading.Lock()


def note_unknown(where: str, fields: Iterable[str]) -> list[str]:
    """Log each (where, field) the first time this process meets it; the fields logged now."""
    fresh = []
    with _lock:
        for field in sorted(fields):
            if (where, field) not in _noted:
                _noted.add((where, field))
                fresh.append(field)
    for field in fresh:
        LOG.info("ignoring field %r in %s: the peer is a newer vmqos (version skew during an upgrade?); "
                 "upgrade this side to use it (logged once per field)", field, where)
    return fresh


def forget_noted() -> None:
    """For tests: log every field again."""
    with _lock:
        _noted.clear()


def _field_path(loc: Sequence[int | str]) -> str:
    """('changes', 3, 'colour') -> 'changes[].colour': one name per field, whatever the row."""
    path = ""
    for step in loc:
        path += "[]" if isinstance(step, int) else (f".{step}" if path else str(step))
    return path


def _drop(data: Any, loc: Sequence[int | str]) -> bool:
    """Remove the key at `loc` from the parsed JSON `data`; a step that is not in it (pydantic names a
    union's member in its locations) is skipped. True when something was removed."""
    node = data
    for step in loc[:-1]:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def parse_from_peer(model: type[M], data: Any, where: str) -> M:
    """`data` (parsed JSON another vmqos component sent) as `model`, ignoring the fields the model does
    not know (each logged once, as `where` + its path). Any other error is raised as the model raises it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        unknown = [error["loc"] for error in exc.errors() if error["type"] == "extra_forbidden"]
        lenient = copy.deepcopy(data) if unknown else None
        dropped = [_field_path(loc) for loc in unknown if _drop(lenient, loc)]
        if not dropped:
            raise  # no unknown field, or none that could be removed: the model's own error, unchanged
    note_unknown(where, set(dropped))
    return model.model_validate(lenient)  # what is left refused raises as the model says it


class FromAgent(BaseModel):
    """A body only vmqos's agents send (a registration, a report, what they hold): a field this server does
    not know, from an agent one version newer, is ignored and logged once, never refused. The public API's
    bodies (a native port, an uplink) stay `fleet_wire.Wire` (extra="forbid"): a user's misspelt field is
    refused with its name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _newer_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = data.keys() - cls.model_fields.keys()
            if unknown:
                note_unknown(f"an agent's {cls.__name__}", unknown)
        return data
