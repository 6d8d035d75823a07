"""Run a CNI configuration list as a runtime does: exec each plugin with CNI_* and its configuration on stdin.

libcni's rules (containernetworking/cni, libcni/api.go), which Debian packages no cnitool for: ADD runs
the plugins in order, each one's result becomes the next one's `prevResult`; CHECK runs them in order
with the last ADD's result; DEL runs them in reverse order with the last result. Each plugin's
configuration is the list's entry plus `cniVersion`, `name` and, when asked, `runtimeConfig`.

Everything runs inside a "host" namespace (`ip netns exec HOST`): the bridge, the host-side veths and
vmqos's IFBs are made there, never in the machine's own namespace. Containers are namespaces too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
SRC = Path(__file__).resolve().parents[1] / "src"
PLUGINS = ("bridge", "host-local", "bandwidth", "loopback")


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for plugin in PLUGINS:
        if not (CNI_BIN / plugin).exists():
            return f"needs {CNI_BIN / plugin}: apt-get install containernetworking-plugins (`make deps`)"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"needs {tool}: run `make deps`"
    return None


def plugin_dir(tmp: Path) -> Path:
    """A CNI_PATH with Debian's plugins and `vmqos-cni`: a script that runs this checkout's code with the
    test's interpreter (the console script of an installed vmqos does the same)."""
    path = tmp / "cni-bin"
    path.mkdir(exist_ok=True)
    for plugin in PLUGINS:
        target = path / plugin
        if not target.exists():
            target.symlink_to(CNI_BIN / plugin)
    script = path / "vmqos-cni"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} "
                      "-c 'from vmqos.cni.main import main; main()'\n")
    script.chmod(0o755)
    return path


@dataclass
class Outcome:
    plugin: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def answer(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


def exec_plugin(host_ns: str, bin_dir: Path, plugin: str, command: str, conf: dict[str, Any], *,
                container_id: str, netns: str, ifname: str = "eth0", env: dict[str, str] | None = None,
                timeout: float = 60) -> Outcome:
    variables = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                 "CNI_IFNAME": ifname, "CNI_PATH": str(bin_dir), "PATH": os.environ.get("PATH", ""),
                 **(env or {})}
    done = subprocess.run(["ip", "netns", "exec", host_ns, str(bin_dir / plugin)], input=json.dumps(conf),
                          capture_output=True, text=True, timeout=timeout, env=variables)
    return Outcome(plugin, done.returncode, done.stdout, done.stderr)


@dataclass
class Chain:
    """A configuration list and the last ADD result of each container (what libcni caches)."""

    host_ns: str
    bin_dir: Path
    conflist: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)
    partial: dict[str, Any] = field(default_factory=dict)

    def _conf(self, plugin: dict[str, Any], prev: Any, runtime: dict[str, Any] | None) -> dict[str, Any]:
        conf = {**plugin, "cniVersion": self.conflist["cniVersion"], "name": self.conflist["name"]}
        if prev is not None:
            conf["prevResult"] = prev
        caps = plugin.get("capabilities") or {}
        if runtime:
            wanted = {k: v for k, v in runtime.items() if caps.get(k)}
            if wanted:
                conf["runtimeConfig"] = wanted
        conf.pop("capabilities", None)
        return conf

    def add(self, container_id: str, netns_path: str, runtime: dict[str, Any] | None = None,
            env: dict[str, str] | None = None, only: str | None = None) -> Outcome:
        """ADD through the list; `only`: that plugin alone, on the result of the last full ADD (the
        network plugins refuse a second ADD of a container; a chained plugin must not)."""
        prev = None
        plugins = self.conflist["plugins"]
        if only is not None:
            prev = self.results[container_id]
            plugins = [p for p in plugins if p["type"] == only]
        for plugin in plugins:
            out = exec_plugin(self.host_ns, self.bin_dir, plugin["type"], "ADD", self._conf(plugin, prev, runtime),
                              container_id=container_id, netns=netns_path, env=env)
            if out.returncode != 0:
                self.partial[container_id] = prev  # what the plugins before the failed one answered
                return out
            prev = out.answer
        if only is None:
            self.results[container_id] = prev
        return out

    def check(self, container_id: str, netns_path: str, runtime: dict[str, Any] | None = None) -> Outcome:
        prev = self.results[container_id]
        out = Outcome("", 0, "", "")
        for plugin in self.conflist["plugins"]:
            out = exec_plugin(self.host_ns, self.bin_dir, plugin["type"], "CHECK",
                              self._conf(plugin, prev, runtime), container_id=container_id, netns=netns_path)
            if out.returncode != 0:
                return out
        return out

    def delete(self, container_id: str, netns_path: str, runtime: dict[str, Any] | None = None,
               only: str | None = None) -> Outcome:
        prev = self.results.get(container_id)
        out = Outcome("", 0, "", "")
        for plugin in reversed(self.conflist["plugins"]):
            if only is not None and plugin["type"] != only:
                continue
            out = exec_plugin(self.host_ns, self.bin_dir, plugin["type"], "DEL", self._conf(plugin, prev, runtime),
                              container_id=container_id, netns=netns_path)
            if out.returncode != 0:
                return out
        return out


def conflist(name: str, subnet: str, bridge: str, chained: list[dict[str, Any]], data_dir: Path) -> dict[str, Any]:
    """bridge + host-local (the network; its leases in `data_dir`, not /var/lib/cni), then the chained
    plugins."""
    return {"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False, "hairpinMode": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(data_dir)}},
        *chained]}


def new_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def netns_add(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return f"/run/netns/{name}"


def netns_del(name: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-9", pid], check=False)
    subprocess.run(["ip", "netns", "del", name], check=False)


def links(ns: str, kind: str | None = None) -> list[str]:
    argv = ["ip", "-n", ns, "-j", "link", "show"] + (["type", kind] if kind else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [item["ifname"] for item in json.loads(out or "[]")]


def nft_chains(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "chains"], capture_output=True,
                         text=True).stdout
    return [item["chain"]["name"] for item in json.loads(out or "{}").get("nftables", []) if "chain" in item]


def address(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]
