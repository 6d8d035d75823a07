"""nftables through its JSON interface: one atomic transaction per change, and the table read back.

`nft -j -f -` applies a whole list of commands as one kernel transaction: either every chain of
the change is swapped or none is, so a port never runs with half a rule set.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence

from vmqos.core.errors import KernelError
from vmqos.core.observed import CounterValue, ForeignHook, NftState
from vmqos.core.plan.diff import Operation
from vmqos.core.plan.objects import NFT_FAMILY, NFT_TABLE, NftChain, NftSet, limit_from_json, rule_from_expr
from vmqos.drivers.nft_json import _set_decl, _table, encode, transaction
from vmqos.drivers.process import check_netns, run

__all__ = ["Nft", "TRANSACTION_TIMEOUT_S", "_set_decl", "encode", "transaction"]

# Registering a netdev base chain costs time in proportion to the namespace's devices (kernel
# 6.18), so a transaction of 20,000 base chains (10,000 ports) runs for minutes.
TRANSACTION_TIMEOUT_S = 1800

_CHAIN = re.compile(r"^\s*chain (.+) \{\s*$")


def _unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


def hook_devices(declaration: str) -> tuple[str, list[str]] | None:
    """(hook, devices) of a base chain's `type ... hook H device "D" | devices = { D1, D2 } priority P;`
    line as nft lists it; None for a line that declares no hook.

    Read word by word: a device name holds no whitespace (the kernel refuses it), so the words
    between `{` and the last `}` before `priority` are the devices, each but the last followed by
    the `,` nft writes after it (a name may end with a `,` or be `}` itself)."""
    words = declaration.split()
    if "hook" not in words[:-1]:
        return None
    at = words.index("hook")
    hook, rest = words[at + 1], words[at + 2:]
    end = rest.index("priority") if "priority" in rest else len(rest)
    if rest[:1] == ["device"] and end >= 2:
        return hook, [_unquote(rest[1])]
    if rest[:3] == ["devices", "=", "{"] and end >= 4 and rest[end - 1] == "}":
        items = rest[3:end - 1]
        return hook, [_unquote(w[:-1] if i < len(items) - 1 and w.endswith(",") else w) for i, w in enumerate(items)]
    return hook, []


def table_hooks(family: str, table: str, listing: str) -> list[ForeignHook]:
    """Every (chain, device) hook of one table's text listing (`nft list table FAMILY TABLE`)."""
    hooks: list[ForeignHook] = []
    chain = None
    for line in listing.splitlines():
        opened = _CHAIN.match(line)
        if opened:
            chain = _unquote(opened.group(1).strip())
            continue
        if chain is None or not line.strip():
            continue
        found = hook_devices(line) if line.split()[0] == "type" else None  # a base chain declares it first
        if found is not None:
            hooks += [ForeignHook(family, table, chain, found[0], dev) for dev in found[1]]
        chain = None
    return hooks


def _json_devices(dev: object) -> list[str] | None:
    """A chain's devices from nft's JSON ("dev": a name or a list of names); None when nft left
    them out (nft 1.0.6 does, for every netdev chain)."""
    if isinstance(dev, str):
        return [dev]
    if isinstance(dev, list) and all(isinstance(d, str) for d in dev):
        return list(dev)
    return None


class Nft:
    def __init__(self, netns: str | None = None) -> None:
        check_netns(netns)
        self.netns = netns

    def apply(self, ops: Sequence[Operation]) -> None:
        if not ops:
            return
        self.run_encoded(*encode(transaction(ops)))

    def encode(self, ops: Sequence[Operation]) -> tuple[str, int]:
        """The transaction of `ops`, for `run_encoded` (built while something else runs)."""
        return encode(transaction(ops))

    def run_commands(self, cmds: list[dict[str, Any]]) -> None:
        self.run_encoded(*encode(cmds))

    def run_encoded(self, payload: str, commands: int) -> None:
        """Run a transaction `encode` made (a caller may build it while the devices are created)."""
        done = run(["nft", "-j", "-f", "-"], self.netns, input=payload, check=False, timeout=TRANSACTION_TIMEOUT_S)
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.startswith("Error")]
            raise KernelError(f"nftables transaction ({commands} commands) failed, nothing applied: "
                              f"{lines[0] if lines else done.stderr.strip()}")

    def read(self, devices: Iterable[str] | None = None) -> NftState:
        """vmqos's table (chains, rules, counters, sets without their elements) and other tables' base
        chains on `devices`."""
        done = run(["nft", "-j", "-t", "list", "ruleset", NFT_FAMILY], self.netns, check=False)
        if done.returncode != 0:
            raise KernelError(f"nft list ruleset failed: {done.stderr.strip()}")
        state = NftState()
        watched = set(devices) if devices is not None else None
        rules: dict[str, list[Any]] = {}
        decls: dict[str, dict[str, Any]] = {}
        foreign_tables: set[str] = set()  # tables whose hooks nft's JSON does not name: read as text
        for item in json.loads(done.stdout or '{"nftables": []}')["nftables"]:
            (kind, body), = item.items()
            ours = body.get("table") == NFT_TABLE
            if kind == "counter" and ours:
                state.counters[body["name"]] = CounterValue(body.get("packets", 0), body.get("bytes", 0))
            elif kind == "chain" and ours:
                decls[body["name"]] = body
            elif kind == "limit" and ours:
                limit = limit_from_json(body)
                if limit is not None:
                    state.limits[limit.name] = limit
            elif kind == "set" and ours:
                kinds = body.get("type", ())
                state.sets[body["name"]] = NftSet(body["name"], tuple([kinds] if isinstance(kinds, str) else kinds),
                                                  body.get("size", 0), body.get("timeout", 0))
            elif kind == "chain" and "hook" in body:  # a base chain of another table: drift on its devices
                devices = _json_devices(body.get("dev"))
                if devices is None:
                    foreign_tables.add(body["table"])
                else:
                    state.foreign += [ForeignHook(NFT_FAMILY, body["table"], body["name"], body["hook"], dev)
                                      for dev in devices if watched is None or dev in watched]
            elif kind == "rule" and ours:
                rules.setdefault(body["chain"], []).append(rule_from_expr(body["expr"]))
        for name, body in decls.items():
            # nft 1.0.6 leaves a netdev chain's device out of its JSON: the caller knows it from the name.
            dev = body.get("dev", "")
            state.chains[name] = NftChain(name, body.get("hook", ""), dev if isinstance(dev, str) else ",".join(dev),
                                          body.get("prio", 0), tuple(rules.get(name, ())))
        for table in sorted(foreign_tables):
            state.foreign += [hook for hook in self._hooks(table) if watched is None or hook.device in watched]
        return state

    def _hooks(self, table: str) -> list[ForeignHook]:
        """Base chains of another netdev table, with their devices (read from nft's text listing)."""
        done = run(["nft", "list", "table", NFT_FAMILY, table], self.netns, check=False)
        if done.returncode != 0:
            raise KernelError(f"nft list table {NFT_FAMILY} {table} failed: {done.stderr.strip()}")
        return table_hooks(NFT_FAMILY, table, done.stdout)

    def set_elements(self, name: str) -> list[tuple[tuple[str, ...], CounterValue]]:
        """A set's elements (their key parts) with their counters; empty when there is no such set."""
        done = run(["nft", "-j", "list", "set", NFT_FAMILY, NFT_TABLE, name], self.netns, check=False)
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return []
            raise KernelError(f"nft list set {name} failed: {done.stderr.strip()}")
        out: list[tuple[tuple[str, ...], CounterValue]] = []
        for item in json.loads(done.stdout or '{"nftables": []}')["nftables"]:
            for elem in item.get("set", {}).get("elem", ()):
                body = elem.get("elem", elem) if isinstance(elem, dict) else {}
                value = body.get("val") if isinstance(body, dict) else None
                parts = value.get("concat") if isinstance(value, dict) else None
                counter = body.get("counter") or {}
                if parts:
                    out.append((tuple(str(p) for p in parts),
                                CounterValue(counter.get("packets", 0), counter.get("bytes", 0))))
        return out

    def counters(self) -> dict[str, CounterValue]:
        """Every named counter of vmqos's table in one listing (empty when there is no table)."""
        done = run(["nft", "-j", "list", "counters", "table", NFT_FAMILY, NFT_TABLE], self.netns, check=False)
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return {}
            raise KernelError(f"nft list counters failed: {done.stderr.strip()}")
        out: dict[str, CounterValue] = {}
        for item in json.loads(done.stdout or '{"nftables": []}')["nftables"]:
            body = item.get("counter")
            if body is not None and body.get("table") == NFT_TABLE:
                out[body["name"]] = CounterValue(body.get("packets", 0), body.get("bytes", 0))
        return out

    def remove_table_if_empty(self) -> bool:
        state = self.read()
        if state.chains or state.counters or state.limits:
            return False  # the sets are shared: they stay as long as a port's chain may feed them
        done = run(["nft", "-j", "list", "tables", NFT_FAMILY], self.netns, check=False)
        listed = json.loads(done.stdout or '{"nftables": []}')["nftables"]
        if any(item.get("table", {}).get("name") == NFT_TABLE for item in listed):
            self.run_commands([{"delete": {"table": _table()}}])
            return True
        return False
