"""The base of every kernel object vmqos plans: an identity (`key`), a deletion rank, and `matches`.

Each object has a `key` (its identity on the host: device and handle, chain name, ...) and
compares equal to an observed object when the kernel would behave the same. The tc objects
(`tc_objects`) and the nftables objects (`nft_objects`) both derive from it, so the diff and the
executor can treat a plan as one list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class KernelObject:
    kind: ClassVar[str] = "object"
    # Deletion order: higher rank goes first (filters before classes before qdiscs before links).
    delete_rank: ClassVar[int] = 0

    @property
    def key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    @property
    def device(self) -> str | None:
        return None

    def matches(self, observed: "KernelObject") -> bool:
        """Whether `observed` already does what this planned object asks."""
        return self == observed

    def describe(self) -> str:
        return " ".join(str(part) for part in self.key)
