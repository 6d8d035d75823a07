"""What every format reads into and writes from: the QoS of one instance, plus notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmqos.core.errors import UnsupportedError
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.network import NetworkQos


@dataclass(frozen=True)
class Note:
    """Something the operator should know about a conversion: a default applied, a value rounded."""

    field: str
    message: str
    level: str = "warning"  # "warning" or "info"

    def __str__(self) -> str:
        return f"{self.level}: {self.field}: {self.message}"

    def as_json(self) -> dict[str, str]:
        """The one JSON form of a note, in every `--json` output and (later) the API."""
        return {"level": self.level, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class QosDocument:
    """The QoS of one instance as a format states it.

    `network` applies to every interface and `disk` to every disk unless `interfaces` or
    `disks` (keyed by target device, e.g. `vnet0`, `vda`) say otherwise.
    """

    name: str | None = None
    network: NetworkQos | None = None
    cpu: CpuQos | None = None
    disk: DiskQos | None = None
    interfaces: dict[str, NetworkQos] = field(default_factory=dict)
    disks: dict[str, DiskQos] = field(default_factory=dict)
    notes: tuple[Note, ...] = ()

    def with_notes(self, *notes: Note) -> "QosDocument":
        from dataclasses import replace

        return replace(self, notes=self.notes + tuple(notes))

    def single_network(self, fmt: str) -> NetworkQos | None:
        """The one network QoS a per-instance format (Nova, domiftune) can state, or an error."""
        distinct = {q for q in self.interfaces.values()}
        if self.network is not None:
            distinct.add(self.network)
        if len(distinct) > 1:
            names = ", ".join(sorted(self.interfaces)) or "the document"
            raise UnsupportedError(
                f"{fmt}: the interfaces ({names}) have different bandwidth settings, but {fmt} states one "
                "for all of them; convert one interface at a time"
            )
        return next(iter(distinct), None)

    def single_disk(self, fmt: str) -> DiskQos | None:
        distinct = {d for d in self.disks.values()}
        if self.disk is not None:
            distinct.add(self.disk)
        if len(distinct) > 1:
            raise UnsupportedError(
                f"{fmt}: the disks ({', '.join(sorted(self.disks))}) have different limits, but {fmt} states one "
                "for all of them; convert one disk at a time"
            )
        return next(iter(distinct), None)
