"""Cinder-style volume types (a QoS spec with a consumer) and volumes (a size, an attachment)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmqos.core.errors import InvalidValue

CONSUMERS = ("front-end", "back-end", "both")
DEFAULT_CONSUMER = "back-end"  # Cinder's: such specs never reach the hypervisor


def _name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name.strip() or "/" in name or len(name) > 255:
        raise InvalidValue(f"{kind} name", name, f"a {kind} name is 1 to 255 characters without '/'")
    return name


@dataclass(frozen=True)
class VolumeType:
    """A volume type and its QoS spec, as Cinder keeps them: the specs are stored as given.

    Only `front-end` and `both` specs are enforced on the host; `back-end` specs are for the
    storage back end and are only stored and shown.
    """

    name: str
    consumer: str = DEFAULT_CONSUMER
    specs: dict[str, str] = field(default_factory=dict)
    qos_name: str | None = None  # the QoS spec's own name, when it came from a Cinder file

    def __post_init__(self) -> None:
        _name("volume type", self.name)
        if self.consumer not in CONSUMERS:
            raise InvalidValue("consumer", self.consumer, "use front-end, back-end or both (Cinder's default is "
                                                          "back-end, which is never applied on the host)")
        for key, value in self.specs.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise InvalidValue(f"spec {key!r}", value, "a QoS spec is key=value text")


@dataclass(frozen=True)
class Volume:
    """A volume of `size_gb` GiB; attached when `instance` and `device` (its block device) are set."""

    name: str
    type: str | None
    size_gb: int
    instance: str | None = None
    device: str | None = None  # a host block device for a lab instance, a target (vdb) for a VM

    def __post_init__(self) -> None:
        _name("volume", self.name)
        if isinstance(self.size_gb, bool) or not isinstance(self.size_gb, int) or not 1 <= self.size_gb <= 2**31:
            raise InvalidValue("size", self.size_gb, "a volume size is a whole number of GiB, at least 1")
        if (self.instance is None) != (self.device is None):
            raise InvalidValue("attachment", (self.instance, self.device), "an attachment names both the "
                                                                             "instance and the device")

    @property
    def attached(self) -> bool:
        return self.instance is not None
