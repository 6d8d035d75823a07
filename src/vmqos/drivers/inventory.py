"""Every object of vmqos's naming in a network namespace, in three listings (`ip`, `tc`, `nft`).

`check` and `apply --prune` compare it with the ports vmqos knows (`vmqos.core.plan.orphans`):
what a crash left behind is found by its name, not by a record that was never written.
"""

from __future__ import annotations

import json
from typing import Any

from vmqos.core.errors import KernelError
from vmqos.core.plan.objects import NFT_FAMILY, NFT_TABLE
from vmqos.core.plan.orphans import DEFAULT_MINOR, IFB_NAME, ROOT_HANDLE, Inventory
from vmqos.drivers.process import check_netns, run


def _json(argv: list[str], netns: str | None, *, missing_ok: bool = False) -> Any:
    done = run(argv, netns, check=False, timeout=300)
    if done.returncode != 0:
        if missing_ok and "No such file or directory" in done.stderr:
            return None
        raise KernelError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[:300]}")
    try:
        return json.loads(done.stdout or "null")
    except json.JSONDecodeError as exc:
        raise KernelError(f"{' '.join(argv)} printed JSON that does not parse: {exc}") from None


def _is_vmqos_root(item: dict[str, Any]) -> bool:
    if not item.get("root") or item.get("kind") != "htb" or item.get("handle") != ROOT_HANDLE:
        return False
    try:
        return int(str((item.get("options") or {}).get("default", "")), 0) == DEFAULT_MINOR
    except ValueError:
        return False


def vmqos_inventory(netns: str | None) -> Inventory:
    """The links (vmqos's IFBs among them), the devices under vmqos's HTB root, and the chains and
    counters of vmqos's nft table, in `netns`."""
    check_netns(netns)
    links: set[str] = set()
    ifbs: set[str] = set()
    for link in _json(["ip", "-j", "-d", "link", "show"], netns) or []:
        name = link.get("ifname", "")
        links.add(name)
        if IFB_NAME.match(name) and (link.get("linkinfo") or {}).get("info_kind") == "ifb":
            ifbs.add(name)
    roots = {item.get("dev", "") for item in _json(["tc", "-j", "qdisc", "show"], netns) or []
             if _is_vmqos_root(item)}
    chains: set[str] = set()
    counters: set[str] = set()
    listed = _json(["nft", "-j", "list", "table", NFT_FAMILY, NFT_TABLE], netns, missing_ok=True)
    for item in (listed or {}).get("nftables", []):
        (kind, body), = item.items()
        if kind == "chain" and body.get("table") == NFT_TABLE:
            chains.add(body["name"])
        elif kind == "counter" and body.get("table") == NFT_TABLE:
            counters.add(body["name"])
    return Inventory(frozenset(links), frozenset(ifbs), frozenset(roots), frozenset(chains), frozenset(counters))
