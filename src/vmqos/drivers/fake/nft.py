"""The fake kernel's nftables: the JSON transactions the real driver builds, applied all or nothing.

The commands are those `vmqos.drivers.nft_json` writes (the same builder the real driver sends
to `nft -j -f -`), read back into plan objects with `rule_from_expr`, as the real read does.
A transaction that the kernel would refuse (a rule counting into a missing counter, a chain on
or forwarding to a device that does not exist, deleting what is not there) leaves nothing applied.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Sequence

from vmqos.core.observed import CounterValue, NftState
from vmqos.core.plan.diff import Operation
from vmqos.core.plan.objects import NFT_TABLE, NftChain, NftSet, limit_from_json, rule_from_expr
from vmqos.drivers.fake.kernel import FakeKernel
from vmqos.drivers.nft_json import encode, transaction
from vmqos.drivers.protocols import Encoded

ENOENT = "Could not process rule: No such file or directory"


class _Refused(Exception):
    pass


def describe(cmd: dict[str, Any]) -> str:
    """One command as a short text for the journal and for injected failures: `add chain to_tap1`."""
    (verb, body), = cmd.items()
    (kind, spec), = body.items()
    name = spec.get("chain") if kind == "rule" else spec.get("name")
    return f"{verb} {kind} {name}"


class FakeNft:
    """`NftDriver` over the fake kernel."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def read(self, devices: Iterable[str] | None = None) -> NftState:
        watched = set(devices) if devices is not None else None
        with self.kernel.lock:
            self.kernel.record("read", "nft")
            k = self.kernel
            return NftState(dict(k.chains), dict(k.counters),
                            [h for h in k.foreign_hooks if watched is None or h.device in watched], dict(k.sets),
                            dict(k.limits))

    def apply(self, ops: Sequence[Operation]) -> None:
        if not ops:
            return
        self.run_encoded(*self.encode(ops))

    def encode(self, ops: Sequence[Operation]) -> Encoded:
        return encode(transaction(ops))

    def run_encoded(self, payload: str, commands: int) -> None:
        self.kernel.check_nft_timeout()
        cmds = json.loads(payload)["nftables"]
        k = self.kernel
        with k.lock:
            saved = (k.table, copy.copy(k.chains), copy.copy(k.counters), copy.copy(k.sets), copy.copy(k.limits))
            try:
                for cmd in cmds:
                    injected = k.injected(describe(cmd))
                    if injected is not None:
                        raise _Refused(injected.message)
                    self._one(cmd)
            except _Refused as exc:
                k.table, k.chains, k.counters, k.sets, k.limits = saved
                k.record("nft", f"{describe(cmd)}: {exc}", ok=False)
                raise k.nft_error(commands, str(exc)) from None
            for cmd in cmds:
                k.record("nft", describe(cmd))
        k.changed()

    def remove_table_if_empty(self) -> bool:
        k = self.kernel
        with k.lock:
            if k.chains or k.counters or k.limits or not k.table:
                return False
            k.table = False
            k.sets.clear()
            k.record("nft", f"delete table {NFT_TABLE}")
        k.changed()
        return True

    # -- one command -----------------------------------------------------------------------------

    def _one(self, cmd: dict[str, Any]) -> None:
        k = self.kernel
        (verb, body), = cmd.items()
        (kind, spec), = body.items()
        if kind == "table":
            if verb == "add":
                k.table = True
            elif verb == "delete":
                k.table = False
                k.chains.clear()
                k.counters.clear()
                k.sets.clear()
                k.limits.clear()
            return
        if not k.table:
            raise _Refused(ENOENT)
        name = spec.get("name")
        if kind == "set":
            if verb == "add":
                types = spec.get("type", ())
                k.sets.setdefault(name, NftSet(name, tuple([types] if isinstance(types, str) else types),
                                               spec.get("size", 0), spec.get("timeout", 0)))
            elif name not in k.sets or any(name in c.sets() for c in k.chains.values()):
                raise _Refused(ENOENT if name not in k.sets else "Could not process rule: Device or resource busy")
            else:
                del k.sets[name]
        elif kind == "counter":
            if verb == "add":
                k.counters.setdefault(name, CounterValue(0, 0))
            elif name not in k.counters or any(name in c.counters() for c in k.chains.values()):
                raise _Refused(ENOENT if name not in k.counters else "Could not process rule: Device or resource busy")
            else:
                del k.counters[name]
        elif kind == "limit":
            if verb == "add":  # as the kernel: an existing limit object is left as it is
                limit = limit_from_json(spec)
                if limit is None:
                    raise _Refused(f"unsupported limit {spec}")
                k.limits.setdefault(name, limit)
            elif name not in k.limits or any(name in c.limits() for c in k.chains.values()):
                raise _Refused(ENOENT if name not in k.limits else "Could not process rule: Device or resource busy")
            else:
                del k.limits[name]
        elif kind == "chain":
            self._chain(verb, name, spec)
        elif kind == "rule":
            self._rule(spec)
        else:
            raise _Refused(f"unknown object {kind}")

    def _chain(self, verb: str, name: str, spec: dict[str, Any]) -> None:
        k = self.kernel
        old = k.chains.get(name)
        if verb == "add":
            new = NftChain(name, spec["hook"], spec["dev"], spec["prio"], ())
            if old is not None:
                if (old.hook, old.dev, old.priority) != (new.hook, new.dev, new.priority):
                    raise _Refused("Could not process rule: File exists")
                return
            if new.dev not in k.devices:
                raise _Refused(ENOENT)
            k.chains[name] = new
        elif old is None:
            raise _Refused(ENOENT)
        elif verb == "flush":
            k.chains[name] = NftChain(old.name, old.hook, old.dev, old.priority, ())
        elif verb == "delete":
            del k.chains[name]
        else:
            raise _Refused(f"unknown command {verb}")

    def _rule(self, spec: dict[str, Any]) -> None:
        k = self.kernel
        chain = k.chains.get(spec["chain"])
        if chain is None:
            raise _Refused(ENOENT)
        rule = rule_from_expr(spec["expr"])
        if rule.counter and rule.counter not in k.counters:
            raise _Refused(ENOENT)
        if rule.limit_name and rule.limit_name not in k.limits:
            raise _Refused(ENOENT)
        if rule.account_set and rule.account_set not in k.sets:
            raise _Refused(ENOENT)
        if rule.fwd_to and rule.fwd_to not in k.devices:
            raise _Refused(ENOENT)
        k.chains[chain.name] = NftChain(chain.name, chain.hook, chain.dev, chain.priority, chain.rules + (rule,))
