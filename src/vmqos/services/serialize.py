"""The one way from a use case's result to JSON: what `--json` prints and what the API will send.

The results are frozen dataclasses (`vmqos.services.results`); `to_json` walks them field by
field, in declaration order, so the field order IS the key order of the output. A field whose
JSON key differs from its name, that is left out, left out when None, or that needs a
conversion first says so in its metadata (`json_field`), never in a hand-written `as_json`.
Values of the lower rooms that already know their JSON form (`PortResult`, `Enforced`, `Flow`,
`Note`, `EffectiveInstance`, `DomainInfo`, ...) keep it: their `as_json()` is called.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Callable, Mapping

from vmqos.core.plan.objects import Qdisc

_META = "vmqos.json"


def json_field(key: str | None = None, *, skip: bool = False, omit_none: bool = False,
               encode: Callable[[Any], Any] | None = None) -> Mapping[str, Any]:
    """Metadata for `dataclasses.field(metadata=...)`: how `to_json` writes that field."""
    return {_META: {"key": key, "skip": skip, "omit_none": omit_none, "encode": encode}}


def to_json(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, str, int, float, bool, None); key order kept."""
    if isinstance(value, Enum):  # before str and int: EgressMode is a str Enum
        return value.value
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    as_json = getattr(value, "as_json", None)
    if callable(as_json) and not isinstance(value, type):
        return to_json(as_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            how = f.metadata.get(_META) or {}
            if how.get("skip"):
                continue
            item = getattr(value, f.name)
            if item is None and how.get("omit_none"):
                continue
            if how.get("encode") is not None:
                item = how["encode"](item)
            out[how.get("key") or f.name] = to_json(item)
        return out
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    raise TypeError(f"{type(value).__name__} has no JSON form: give it fields or an as_json()")


def kernel_object_json(obj: Any) -> dict[str, Any]:
    """A tc or nft object as `port show` lists it: kind, key, and the values it holds."""
    data: dict[str, Any] = {"kind": obj.kind, "key": [str(k) for k in obj.key]}
    for name in ("rate_bps", "ceil_bps", "burst_bytes", "cburst_bytes", "quantum", "limit_bytes", "qdisc_kind",
                 "redirect_to", "flowid"):
        if getattr(obj, name, None) is not None:
            data[name] = getattr(obj, name)
    if isinstance(obj, Qdisc) and obj.default_minor is not None:
        data["default_minor"] = obj.default_minor
    if getattr(obj, "prio", 0) and obj.kind == "class":
        data["prio"] = obj.prio
    return data
