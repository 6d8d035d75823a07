"""Readers and writers for the formats operators already have.

Every format module has `read(text, **options) -> QosDocument` and
`write(doc, **options) -> str`; conversion between formats goes through the canonical model,
never from one format's units to another's.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vmqos.core.errors import InvalidValue

# name -> module; `effective` is a target only and lives in vmqos.core.desired.effective.
FORMATS: dict[str, str] = {
    "nova": "vmqos.core.formats.nova",
    "libvirt": "vmqos.core.formats.libvirt",
    "domiftune": "vmqos.core.formats.domiftune",
    "neutron": "vmqos.core.formats.neutron",
    "cinder": "vmqos.core.formats.cinder",
    "vmqos": "vmqos.core.formats.hostfile",
}


def get_format(name: str) -> ModuleType:
    try:
        return importlib.import_module(FORMATS[name])
    except KeyError:
        raise InvalidValue("format", name, f"use one of {', '.join(FORMATS)}") from None
