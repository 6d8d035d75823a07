"""`vmqos uplink set|show|unset --server URL --host HOST`: a host's uplink on a server (issue 16).

The server records a host's uplink (`/v1/hosts/{host}/uplink`) and the host's agent plans it; guarantees
that add up to more than the capacity are refused by the agent's plan (`core.plan.uplink`), later, as the
uplink's status. A command line that answered "ok" and left the refusal to a later `show` would mislead,
so `set_uplink` asks the same core check first, over the guarantees of the host's ports as the server has
them (GET /v1/ports?host=): an uplink the agent would refuse is refused here, in the agent's words, and
nothing is written. With `oversubscribe` the check's warnings (each guarantee scaled down) come back as
notes. A port whose guarantee changes after the uplink is set is still the agent's to refuse: `show`
prints the uplink's status and the agent's one line.

Values arrive typed (`UplinkSpec`: the core's own checks, the capacity in bit/s); the CLI parses the
operator's units (`10gbit`) with the rest of the CLI's parser and names its option in errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.core.model.document import Note
from vmqos.core.model.host import UplinkSpec
from vmqos.core.plan.uplink import check_guarantees
from vmqos.core.units import parse_rate
from vmqos.services.fleet_wire import HostUplink, Port, Uplink
from vmqos.services.server_client import ServerClient


def uplink_spec(device: str, capacity: str, oversubscribe: bool) -> UplinkSpec:
    """The operator's --device and --capacity (tc units, e.g. 10gbit) as an UplinkSpec; errors name the option."""
    try:
        bps = parse_rate(capacity)
    except InvalidValue as exc:
        raise InvalidValue("--capacity", capacity, exc.fix) from None
    try:
        return UplinkSpec(device, bps, oversubscribe)
    except InvalidValue as exc:
        option = {"uplink.device": "--device", "uplink.capacity": "--capacity"}.get(exc.field, exc.field)
        raise InvalidValue(option, capacity if option == "--capacity" else exc.value, exc.fix) from None


@dataclass(frozen=True)
class Guarantees:
    """The host's ports' guaranteed minimums as the server has them, bit/s per device and direction."""

    towards: dict[str, int]  # ingress: towards the instance
    sent: dict[str, int]  # egress: from the instance


def guarantees(ports: Iterable[Port]) -> Guarantees:
    """Each port's `min` per direction, read from its desired policy (host file form); released rows skip."""
    towards: dict[str, int] = {}
    sent: dict[str, int] = {}
    for p in ports:
        if p.policy is None or p.source is None:
            continue
        try:
            qos = policy_from_data(p.policy_name or f"native:{p.device}", p.policy, path=("policy",)).qos
        except VmqosError:
            continue  # a row this client cannot read is the agent's to judge
        if qos.ingress.min_bps:
            towards[p.device] = qos.ingress.min_bps
        if qos.egress.min_bps:
            sent[p.device] = qos.egress.min_bps
    return Guarantees(towards, sent)


@dataclass(frozen=True)
class UplinkSet:
    """What `set_uplink` did: the uplink as the server now has it, and the warnings of oversubscribe."""

    uplink: HostUplink
    notes: tuple[Note, ...] = ()


def set_uplink(client: ServerClient, host: str, spec: UplinkSpec) -> UplinkSet:
    """Refuse what the host's agent would refuse (Oversubscribed, nothing written), else PUT the uplink."""
    found = guarantees(client.ports(host))
    notes = check_guarantees(spec, found.towards, found.sent)
    answer = client.set_uplink(Uplink(device=spec.device, capacity_bps=spec.capacity_bps,
                                      oversubscribe=spec.oversubscribe), host)
    return UplinkSet(answer, tuple(notes))


def show_uplink(client: ServerClient, host: str) -> HostUplink:
    """The host's uplink and its agent's last word on it (ServerNotFound: the host has none)."""
    return client.uplink(host)


def unset_uplink(client: ServerClient, host: str) -> None:
    """Remove the host's uplink (ServerNotFound: it has none); its agent releases the uplink's tree."""
    client.clear_uplink(host)
