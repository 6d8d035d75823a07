"""A CNI plugin's input (the CNI_* variables and the network configuration on stdin), read as vmqos's model.

The protocol is the CNI specification 1.0.0 (containernetworking/cni, SPEC.md): the runtime execs the
plugin with CNI_COMMAND (ADD, DEL, CHECK, VERSION), CNI_CONTAINERID, CNI_NETNS (a path), CNI_IFNAME,
CNI_ARGS and CNI_PATH, and writes the network configuration, with the previous plugin's result
(`prevResult`) and the runtime's capabilities (`runtimeConfig`), on stdin. vmqos is a chained plugin:
it never makes an interface, it limits the host side of the one the network plugin made, and it hands
`prevResult` back unchanged.

Limits come in the `bandwidth` plugin's own terms (plugins/meta/bandwidth: `ingressRate` in bit/s,
`ingressBurst` in bits, the same for egress; in the configuration itself or, when it has none of the
four keys, in `runtimeConfig.bandwidth`, where Kubernetes' `kubernetes.io/ingress-bandwidth` and
`egress-bandwidth` annotations arrive). Their directions are the container's, as vmqos's are: ingress
goes towards the container (the bandwidth plugin queues it on the host veth's root), egress is what the
container sends (the bandwidth plugin mirrors it from the host veth's ingress to an IFB). So ingressRate
is vmqos's `ingress.bandwidth.rate_bps` with no conversion; bursts are bits here, bytes inside (/ 8).

What the bandwidth plugin cannot say has keys of vmqos's own (README "Containers: vmqos-cni"): a peak
rate, a packet-rate limit per direction, a DSCP mark on what the container sends, the egress mode,
a named policy, and the database. `vmqosServer` names a vmqos server whose Neutron API the
policy's name is looked up on (read here into `CniServer`; the lookup is services.server_policies').

Kubernetes has no burst of its own: kubelet (dockershim) sent `math.MaxInt32` bits, containerd sends
`math.MaxUint32` and CRI-O `math.MaxUint32*8 - 1` (read in their sources), which the bandwidth plugin
takes literally: a 256 MiB to 4 GiB bucket that lets the first seconds through at line rate
(kubernetes#90838). vmqos reads a burst of 2^31 - 1 bits or more as "not given" and uses its own
default (10 ms at the rate), with a note; so it also takes CRI-O's older `math.MaxUint32*8`, which the
bandwidth plugin refuses ("burst cannot be more than 4GB").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vmqos.core.errors import VmqosError
from vmqos.core.model.host import EgressMode, check_device_name
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit, check_dscp

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")  # the versions with a prevResult to chain on
SPEC_VERSION = "1.0.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")
NO_BURST_BITS = 2**31 - 1  # kubelet's MaxInt32 "no burst" (containerd's MaxUint32 is above it)

# The specification's error codes (SPEC.md, "Error"): vmqos uses these.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11

BANDWIDTH_KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
SERVER_KEYS = ("url", "credentialsFile", "caCert", "timeoutSeconds")
SERVER_TIMEOUT_S = 5.0  # ADD waits at most this per request to the server (the runtime waits for ADD)
SERVER_TIMEOUT_MAX_S = 60.0


class CniError(VmqosError):
    """An error as the specification wants it on stdout: a code, a message, details."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        self.code, self.msg, self.details = code, msg, details
        super().__init__(msg + (f" ({details})" if details else ""))

    def as_json(self, cni_version: str = SPEC_VERSION) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class CniRequest:
    """The CNI_* variables of one invocation. The attachment's key is (network, container_id, ifname)."""

    command: str
    container_id: str = ""
    netns: str = ""  # a path (/run/netns/NAME, /proc/PID/ns/net); may be empty or gone on DEL
    ifname: str = ""
    args: str = ""
    path: str = ""


def read_request(env: Mapping[str, str]) -> CniRequest:
    """The invocation's variables, checked as libcni's skel checks them (code 4 when one is missing)."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        if command in ("GC", "STATUS"):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND {command} is of the CNI specification 1.1, which "
                                                f"vmqos-cni does not speak (it speaks {', '.join(SUPPORTED_VERSIONS)})")
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command!r}",
                       f"use one of {', '.join(COMMANDS)}")
    request = CniRequest(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""),
                         env.get("CNI_IFNAME", ""), env.get("CNI_ARGS", ""), env.get("CNI_PATH", ""))
    if command == "VERSION":
        return request
    needed = {"CNI_CONTAINERID": request.container_id, "CNI_IFNAME": request.ifname, "CNI_PATH": request.path}
    if command != "DEL":
        needed["CNI_NETNS"] = request.netns
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required environment variables missing: {', '.join(missing)}",
                       f"CNI_COMMAND {command} needs them (CNI specification 1.0.0, 'Parameters')")
    return request


@dataclass(frozen=True)
class CniInterface:
    """An interface of `prevResult`: `sandbox` is the container's netns path, empty on the host."""

    name: str
    sandbox: str = ""
    mac: str = ""


@dataclass(frozen=True)
class CniServer:
    """`vmqosServer`: the vmqos server (its Neutron API) that `policy` is looked up on at ADD.

    The credentials are a file's, never the configuration's: runtimes log the configuration and
    /etc/cni/net.d is readable by all; the file is the operator's (mode 0600, root's)."""

    url: str  # http(s)://HOST:PORT, the server's root (its Neutron API is /v2.0, its Keystone /v3)
    credentials_file: str  # an absolute path to a JSON object of OS_* values (README "Containers")
    ca_cert: str | None = None  # a PEM file of the CA that signed an https server's certificate
    timeout_s: float = SERVER_TIMEOUT_S


@dataclass(frozen=True)
class CniConfig:
    """The network configuration of one plugin of a list, as vmqos reads it.

    `qos` is what the container's port must hold (empty: nothing of vmqos's own or the runtime's);
    `raw_prev_result` is handed back as it came."""

    cni_version: str
    network: str
    qos: NetworkQos = field(default_factory=NetworkQos)
    egress_mode: EgressMode = EgressMode.SHAPE
    policy: str | None = None
    database: str | None = None
    server: CniServer | None = None
    raw_prev_result: dict[str, Any] | None = None
    interfaces: tuple[CniInterface, ...] = ()
    notes: tuple[str, ...] = ()


def _int(conf: Mapping[str, Any], key: str, what: str) -> int | None:
    value = conf.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CniError(INVALID_CONFIG, f"{key}: {value!r} is not valid: {what} is a whole number >= 0 "
                                       "(0 or absent: no limit)")
    return value or None


def _bandwidth(entry: Mapping[str, Any], where: str, direction: str, peak: int | None,
               notes: list[str]) -> BandwidthLimit | None:
    rate = _int(entry, f"{direction}Rate", "a rate in bit/s")
    burst = _int(entry, f"{direction}Burst", "a burst in bits")
    if rate is None and burst is not None:
        raise CniError(INVALID_CONFIG, f"{where}{direction}Burst: {burst} is set without {direction}Rate",
                       "if burst is set, rate must also be set (as the bandwidth plugin says)")
    if rate is None:
        if peak is not None:
            raise CniError(INVALID_CONFIG, f"{direction}Peak: {peak} is set without {direction}Rate",
                           f"give {direction}Rate too (a peak is above an average rate)")
        return None
    burst_bytes: int | None = None
    if burst is not None and burst >= NO_BURST_BITS:
        notes.append(f"{direction}Burst {burst} bits is a runtime's 'no burst' (Kubernetes' runtimes send "
                     "2^31-1, 2^32-1 or 2^35-9); vmqos uses its default burst (10 ms at the rate) instead of a "
                     f"{burst // 8 // 2**20} MiB bucket")
    elif burst is not None:
        burst_bytes = max(1, burst // 8)
    try:
        return BandwidthLimit(rate, peak, burst_bytes)
    except VmqosError as exc:
        raise CniError(INVALID_CONFIG, f"{where}{direction}: {exc}") from None


def _packet_rate(conf: Mapping[str, Any], direction: str) -> PacketRateLimit | None:
    pps = _int(conf, f"{direction}PacketRate", "a packet rate in packets/s")
    burst = _int(conf, f"{direction}PacketBurst", "a packet burst in packets")
    if pps is None:
        if burst is not None:
            raise CniError(INVALID_CONFIG, f"{direction}PacketBurst: {burst} is set without {direction}PacketRate",
                           f"give {direction}PacketRate too")
        return None
    return PacketRateLimit(pps, burst)


def _qos(conf: Mapping[str, Any], notes: list[str]) -> NetworkQos:
    runtime = conf.get("runtimeConfig") or {}
    if not isinstance(runtime, Mapping):
        raise CniError(DECODE_FAILURE, "runtimeConfig is not an object")
    entry: Mapping[str, Any] = conf
    where = ""
    if not any(key in conf for key in BANDWIDTH_KEYS):  # the bandwidth plugin's rule: the config's own wins
        entry = runtime.get("bandwidth") or {}
        where = "runtimeConfig.bandwidth."
        if not isinstance(entry, Mapping):
            raise CniError(DECODE_FAILURE, "runtimeConfig.bandwidth is not an object")
    dscp = conf.get("dscp")
    if dscp is not None:
        try:
            check_dscp(dscp, "dscp")
        except VmqosError as exc:
            raise CniError(INVALID_CONFIG, str(exc)) from None
    directions = {}
    for direction in ("ingress", "egress"):
        peak = _int(conf, f"{direction}Peak", "a peak rate in bit/s")
        directions[direction] = DirectionQos(
            bandwidth=_bandwidth(entry, where, direction, peak, notes),
            packet_rate=_packet_rate(conf, direction),
            dscp=dscp if direction == "egress" else None)
    return NetworkQos(ingress=directions["ingress"], egress=directions["egress"])


def _server(conf: Mapping[str, Any]) -> CniServer | None:
    """vmqosServer, checked; a message never repeats a value but the URL's (a password could be one)."""
    entry = conf.get("vmqosServer")
    if entry is None:
        return None
    fix = ('give {"url": "https://HOST:9696", "credentialsFile": "/etc/vmqos/cni-credentials.json"} '
           '(optional: "caCert", "timeoutSeconds")')
    if not isinstance(entry, Mapping):
        raise CniError(INVALID_CONFIG, "vmqosServer is not an object", fix)
    unknown = sorted(set(entry) - set(SERVER_KEYS))
    if unknown:
        secret = [k for k in unknown if any(w in k.lower() for w in ("password", "secret", "token"))]
        if secret:
            raise CniError(INVALID_CONFIG, f"vmqosServer.{secret[0]}: credentials do not belong in the network "
                                           "configuration (runtimes log it, /etc/cni/net.d is world-readable)",
                           "put them in the file that vmqosServer.credentialsFile names (mode 0600)")
        raise CniError(INVALID_CONFIG, f"vmqosServer.{unknown[0]} is not a key vmqos-cni knows",
                       f"its keys are {', '.join(SERVER_KEYS)}")
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise CniError(INVALID_CONFIG, f"vmqosServer.url: {url!r} is not valid",
                       "give the server's root URL, e.g. https://vmqos.example:9696")
    paths: dict[str, str | None] = {}
    for key in ("credentialsFile", "caCert"):
        value = entry.get(key)
        if value is None and key == "caCert":
            paths[key] = None
            continue
        if not isinstance(value, str) or not value.startswith("/"):
            shown = repr(value) if value is None or isinstance(value, str) else f"a {type(value).__name__}"
            raise CniError(INVALID_CONFIG, f"vmqosServer.{key}: {shown} is not valid",
                           "give an absolute path (the runtime's working directory is not yours)")
        paths[key] = value
    timeout = entry.get("timeoutSeconds", SERVER_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= SERVER_TIMEOUT_MAX_S:
        raise CniError(INVALID_CONFIG, f"vmqosServer.timeoutSeconds: {timeout!r} is not valid",
                       f"give seconds > 0 and <= {SERVER_TIMEOUT_MAX_S:g} (the runtime waits for ADD); default "
                       f"{SERVER_TIMEOUT_S:g}")
    credentials = paths["credentialsFile"]
    assert credentials is not None
    return CniServer(url.rstrip("/"), credentials, paths["caCert"], float(timeout))


def _interfaces(prev: Mapping[str, Any]) -> tuple[CniInterface, ...]:
    found = []
    for item in prev.get("interfaces") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise CniError(DECODE_FAILURE, "prevResult.interfaces holds an entry without a name")
        found.append(CniInterface(item["name"], str(item.get("sandbox") or ""), str(item.get("mac") or "")))
    return tuple(found)


def read_config(stdin: bytes | str) -> CniConfig:
    """The configuration on stdin; every problem is a CniError with the specification's code."""
    try:
        conf = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not JSON", str(exc)) from None
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not a JSON object")
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported",
                       f"vmqos-cni supports {', '.join(SUPPORTED_VERSIONS)}")
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(INVALID_CONFIG, "the network configuration has no name")
    notes: list[str] = []
    try:
        qos = _qos(conf, notes)
        mode = EgressMode(conf.get("egressMode") or "shape")
    except ValueError:
        raise CniError(INVALID_CONFIG, f"egressMode: {conf.get('egressMode')!r} is not valid",
                       "use shape (an IFB and HTB: exact) or police (dropped above the rate: cheaper)") from None
    except CniError:
        raise
    except VmqosError as exc:
        raise CniError(INVALID_CONFIG, str(exc)) from None
    for key in ("policy", "vmqosDatabase"):
        if conf.get(key) is not None and (not isinstance(conf[key], str) or not conf[key]):
            raise CniError(INVALID_CONFIG, f"{key}: {conf[key]!r} is not valid", "give a non-empty string")
    server = _server(conf)
    if server is not None and conf.get("policy") is None:
        notes.append("vmqosServer is set without a policy: the server is not asked anything")
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(DECODE_FAILURE, "prevResult is not a JSON object")
    return CniConfig(cni_version=version, network=name, qos=qos, egress_mode=mode, policy=conf.get("policy"),
                     database=conf.get("vmqosDatabase"), server=server, raw_prev_result=prev,
                     interfaces=_interfaces(prev) if prev else (), notes=tuple(notes))


def host_candidates(config: CniConfig) -> tuple[str, ...]:
    """The host-side interfaces of prevResult (no sandbox): where the container's veth peer must be one."""
    out = []
    for iface in config.interfaces:
        if not iface.sandbox:
            try:
                out.append(check_device_name(iface.name, "prevResult.interfaces.name"))
            except VmqosError:
                continue  # a name vmqos cannot carry is not a veth it would limit
    return tuple(out)


def result_of(config: CniConfig) -> dict[str, Any]:
    """What ADD prints: prevResult as it came, under the configuration's cniVersion (the spec's rule)."""
    out = dict(config.raw_prev_result or {})
    out["cniVersion"] = config.cni_version
    return out


def version_answer() -> dict[str, Any]:
    return {"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def instance_name(container_id: str) -> str:
    """The store's instance for a container: its id's first 12 characters, as podman and docker show it."""
    return "cni-" + container_id[:12]
