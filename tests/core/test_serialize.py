"""The one serializer: results are walked in field order; metadata renames, skips and converts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

import pytest

from vmqos.core.model.document import Note
from vmqos.core.model.host import EgressMode
from vmqos.core.observed import ForeignHook
from vmqos.reconcile.execute import PortResult
from vmqos.services.results import ApplyReport, HostCheck, PortDrift, StoredOnly, VolumeInfo
from vmqos.services.serialize import json_field, to_json


def test_a_note_has_one_json_form():
    assert to_json(Note("rate", "rounded", "info")) == {"level": "info", "field": "rate", "message": "rounded"}
    assert list(Note("f", "m").as_json()) == ["level", "field", "message"]


def test_fields_in_order_with_renames_skips_and_omissions():
    class Colour(Enum):
        RED = "red"

    @dataclass(frozen=True)
    class Inner:
        name: str
        colour: Colour

    @dataclass(frozen=True)
    class Outer:
        b: int
        a: tuple[Inner, ...] = field(metadata=json_field("items"))
        hidden: str = field(default="x", metadata=json_field(skip=True))
        maybe: int | None = field(default=None, metadata=json_field(omit_none=True))
        doubled: int = field(default=2, metadata=json_field(encode=lambda v: v * 2))

    out = to_json(Outer(1, (Inner("n", Colour.RED),)))
    assert json.dumps(out) == '{"b": 1, "items": [{"name": "n", "colour": "red"}], "doubled": 4}'
    assert to_json(Outer(1, (), maybe=0))["maybe"] == 0
    assert to_json(EgressMode.POLICE) == "police"


def test_an_object_without_a_json_form_is_refused():
    with pytest.raises(TypeError, match="object has no JSON form"):
        to_json(object())


def test_apply_report_keys_as_before():
    report = ApplyReport([PortResult("tap1"), PortResult("tap2", error="gone")], [Note("tap1", "m")])
    assert not report.ok and report.writes == 0
    assert list(to_json(report)) == ["ok", "writes", "ports", "notes"]
    assert to_json(report)["ports"][1] == PortResult("tap2", error="gone").as_json()
    assert to_json(StoredOnly()) == {"ok": True, "writes": 0, "ports": [], "stored_only": True}


def test_drift_keys_as_before():
    hook = ForeignHook("netdev", "filter", "in", "ingress", "tap1")
    drift = PortDrift("tap1", missing_device=False, operations=["add class"], foreign_hooks=[hook])
    assert not drift.ok
    assert to_json(HostCheck([drift])) == {"ok": False, "ports": [{
        "port": "tap1", "ok": False, "missing_device": False, "operations_needed": ["add class"],
        "foreign_nft_hooks": ["netdev filter in (ingress)"]}]}
    assert PortDrift("tap2", missing_device=False, operations=[], foreign_hooks=[]).ok


def test_volume_writes_only_after_a_live_change():
    info = VolumeInfo("v1", None, 1, None, None, None, {}, {}, ())
    assert "writes" not in to_json(info)
    assert list(to_json(VolumeInfo("v1", None, 1, None, None, None, {}, {}, (), 2)))[-1] == "writes"
