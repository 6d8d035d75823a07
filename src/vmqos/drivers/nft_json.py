"""nftables transactions as nft's JSON commands (pure: building them starts no process).

Apart from the driver that runs them (`nft`) so that a transaction can be built ahead, while
the devices it needs are created, and read by the in-memory fake kernel the same way.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from vmqos.core.plan.diff import Operation
from vmqos.core.plan.objects import NFT_FAMILY, NFT_TABLE, NftChain, NftCounter, NftLimit, NftSet


def _table() -> dict[str, str]:
    return {"family": NFT_FAMILY, "name": NFT_TABLE}


def _chain_ref(name: str) -> dict[str, str]:
    return {"family": NFT_FAMILY, "table": NFT_TABLE, "name": name}


def _chain_decl(chain: NftChain) -> dict[str, Any]:
    return {**_chain_ref(chain.name), "type": "filter", "hook": chain.hook, "dev": chain.dev,
            "prio": chain.priority, "policy": "accept"}


def _set_decl(st: NftSet) -> dict[str, Any]:
    # nft 1.0.6's JSON has no "dynamic" flag: the update rules of the same transaction add it.
    return {"family": NFT_FAMILY, "table": NFT_TABLE, "name": st.name, "type": list(st.key_types),
            "flags": ["timeout"], "timeout": st.timeout_s, "size": st.size, "stmt": [{"counter": None}]}


def _rules(chain: NftChain) -> list[dict[str, Any]]:
    return [{"add": {"rule": {"family": NFT_FAMILY, "table": NFT_TABLE, "chain": chain.name, "expr": rule.expr()}}}
            for rule in chain.rules]


def transaction(ops: Sequence[Operation]) -> list[dict[str, Any]]:
    """The JSON commands of one transaction; creates and replaces before deletes."""
    cmds: list[dict[str, Any]] = [{"add": {"table": _table()}}]
    deletes: list[dict[str, Any]] = []
    sets: set[str] = set()
    for op in ops:
        obj = op.obj
        if isinstance(obj, NftSet):
            if op.action == "delete":
                deletes.append({"delete": {"set": {"family": NFT_FAMILY, "table": NFT_TABLE, "name": obj.name}}})
            elif obj.name not in sets:  # every port's plan lists the shared sets
                sets.add(obj.name)
                cmds.insert(1, {"add": {"set": _set_decl(obj)}})  # before any rule that feeds it
            continue
        if isinstance(obj, NftCounter):
            ref = {"counter": {"family": NFT_FAMILY, "table": NFT_TABLE, "name": obj.name}}
            if op.action == "delete":
                deletes.append({"delete": ref})
            else:
                cmds.append({"add": ref})
            continue
        if isinstance(obj, NftLimit):  # named by its values: never replaced, only created and deleted
            if op.action == "delete":
                deletes.append({"delete": {"limit": {"family": NFT_FAMILY, "table": NFT_TABLE, "name": obj.name}}})
            else:
                cmds.append({"add": {"limit": obj.decl()}})
            continue
        assert isinstance(obj, NftChain)
        if op.action == "delete":
            deletes.insert(0, {"delete": {"chain": _chain_ref(obj.name)}})  # chains before their counters
            continue
        old = op.old
        if op.action == "create":
            cmds.append({"add": {"chain": _chain_decl(obj)}})
        elif isinstance(old, NftChain) and (old.hook, old.dev, old.priority) != (obj.hook, obj.dev, obj.priority):
            cmds += [{"delete": {"chain": _chain_ref(obj.name)}}, {"add": {"chain": _chain_decl(obj)}}]
        else:
            cmds.append({"flush": {"chain": _chain_ref(obj.name)}})
        cmds += _rules(obj)
    return cmds + deletes


def encode(cmds: list[dict[str, Any]]) -> tuple[str, int]:
    """The JSON text of one transaction, and its number of commands (for the error message)."""
    return json.dumps({"nftables": cmds}, separators=(",", ":")), len(cmds)
