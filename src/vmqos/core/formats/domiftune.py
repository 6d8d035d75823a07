"""`virsh domiftune` arguments: `--inbound average,peak,burst[,floor] --outbound average,peak,burst`.

Values are in libvirt's units (qos-semantics.md §1.6): average, peak and floor in kB/s (8000
bit/s), burst in KiB (1024 bytes). As virsh: fields may be left out or empty (`12800`,
`1000,,100`), 0 in a field means unset, a direction whose fields are all 0 (`0`) is cleared,
peak or burst need an average (or, inbound, a floor), a floor is inbound only and every value
is an unsigned int (at most 4294967295) of ASCII digits, with an optional `+` but never a `-`
(virsh's virStrToLong_ullp). Unlike virsh, a value with no number at all (`,,,`) is refused
rather than read as a clear: `0` says that. `--live`, `--config` and `--current` are accepted and
ignored; a leading `virsh domiftune DOMAIN INTERFACE` (or `--domain`/`--interface`) is
accepted and the interface becomes the document's name.

A direction that is not given is left unchanged by virsh; `read()` reads it as no limit and
says so in an info note. `write()` always states both directions, so that applying its output
gives exactly the document's limits: a direction without a limit is written `0` (clear), and an
empty document gives `--inbound 0 --outbound 0`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import Enum
from typing import Any

from vmqos.core.errors import FormatError, InvalidValue, UnsupportedError, shown
from vmqos.core.formats._common import ascii_int, check_size
from vmqos.core.formats.libvirt_units import (
    BANDWIDTH_ATTRS,
    UINT_MAX,
    direction_from_units,
    network_to_units,
)
from vmqos.core.model import BandwidthLimit, DirectionQos, NetworkQos, Note, QosDocument

FORMAT = "domiftune"
OPTIONS = ("--inbound", "--outbound")
FLAGS = ("--live", "--config", "--current")
NAMED = ("--domain", "--interface")
_VALUE_FIX = {
    "--inbound": f"expected average,peak,burst[,floor] as unsigned integers from 0 to {UINT_MAX} "
                 "(average, peak and floor in kB/s, burst in KiB), e.g. 1000,2000,100; 0 clears the direction",
    "--outbound": f"expected average,peak,burst as unsigned integers from 0 to {UINT_MAX} "
                  "(average and peak in kB/s, burst in KiB), e.g. 12800,0,0; 0 clears the direction",
}


class Clear(Enum):
    """The sentinel of a direction given as `0`: remove its limit."""

    CLEAR = "clear"

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR = Clear.CLEAR
# A direction as given: a limit (or None with only a floor) and a floor in bit/s (or None).
DirectionArg = tuple[BandwidthLimit | None, int | None]


@dataclass(frozen=True)
class DomiftuneArgs:
    """What a domiftune command line says; `inbound`/`outbound` are None when not given (unchanged)."""

    inbound: DirectionArg | Clear | None = None
    outbound: DirectionArg | Clear | None = None
    domain: str | None = None
    interface: str | None = None
    notes: tuple[Note, ...] = ()


def _field(option: str, text: str, attr: str, field: str) -> int:
    """One field as virsh's virStrToLong_ullp reads it: an optional `+`, never a `-`, ASCII digits."""
    try:
        value = ascii_int(f"{option} {attr}", field, signs="+")
    except InvalidValue as exc:
        raise InvalidValue(option, text, f"{attr} {shown(field.strip())}: {exc.fix}; {_VALUE_FIX[option]}") from None
    if value > UINT_MAX:
        raise InvalidValue(option, text, f"{attr} {value} is above {UINT_MAX}; {_VALUE_FIX[option]}")
    return value


def _fields(option: str, text: str) -> list[int]:
    fields = text.split(",")
    if not text.strip() or len(fields) > 4:
        raise InvalidValue(option, text, ("too many fields; " if text.strip() else "") + _VALUE_FIX[option])
    if not any(field.strip() for field in fields):
        # virsh reads `,,,` as all zeros and clears the direction; a value without a single number is
        # far likelier a slip (a script's empty variables) than a request to remove the limit.
        raise InvalidValue(option, text, "no field has a value (write 0 to clear the direction); "
                                         + _VALUE_FIX[option])
    values = [_field(option, text, attr, field) if field.strip() else 0
              for attr, field in zip(BANDWIDTH_ATTRS, fields)]
    return values + [0] * (4 - len(values))


def _parse_direction(option: str, text: str) -> tuple[DirectionArg | Clear, list[Note]]:
    if option not in OPTIONS:
        raise InvalidValue("option", option, "use --inbound or --outbound")
    values = _fields(option, text)
    if not any(values):
        return CLEAR, []
    qos, notes = direction_from_units(lambda attr: option, outbound=option == "--outbound",
                                      **dict(zip(BANDWIDTH_ATTRS, values)))
    return (qos.bandwidth, qos.min_bps), notes


def parse_direction(option: str, text: str) -> DirectionArg | Clear:
    """One `--inbound`/`--outbound` value: CLEAR when every field is 0, else (limit or None, floor_bps or None)."""
    return _parse_direction(option, text)[0]


def parse_direction_arg(option: str, text: str) -> BandwidthLimit | None:
    """A `--inbound`/`--outbound` value without a floor as a BandwidthLimit; None when it clears (`0`)."""
    parsed = parse_direction(option, text)
    if parsed is CLEAR:
        return None
    limit, floor = parsed
    if floor is not None:
        raise InvalidValue(option, text, "a floor (4th field) is not accepted here; give average,peak,burst")
    return limit


def _split(text: str) -> list[str]:
    check_size(FORMAT, text)
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        raise FormatError(FORMAT, f"cannot split the arguments: {exc}") from None
    if tokens[:1] == ["virsh"]:
        if "domiftune" not in tokens:
            raise FormatError(FORMAT, "a virsh command line must run domiftune")
        tokens = tokens[tokens.index("domiftune") + 1:]
    elif tokens[:1] == ["domiftune"]:
        tokens = tokens[1:]
    return tokens


def parse_args(text: str) -> DomiftuneArgs:
    """The options of a domiftune command line (see the module docstring)."""
    tokens = _split(text)
    given: dict[str, Any] = {}
    positional: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("-"):
            positional.append(token)
            continue
        option, has_value, value = token.partition("=")
        if option in FLAGS and not has_value:
            continue
        if option not in OPTIONS + NAMED:
            raise InvalidValue(option, token, f"domiftune takes {', '.join(OPTIONS + FLAGS + NAMED)}")
        if not has_value:
            if index >= len(tokens):
                raise InvalidValue(option, None, _VALUE_FIX.get(option, "expects a value"))
            value = tokens[index]
            index += 1
        if option in given:
            raise InvalidValue(option, value, "given twice; give each option once")
        given[option] = value
    for option, value in zip(NAMED, positional):
        if option in given:
            raise InvalidValue(option, value, f"given both as {option} and as a positional argument")
        given[option] = value
    if len(positional) > 2:
        raise InvalidValue("arguments", positional, "domiftune takes at most a domain and an interface")
    directions: dict[str, DirectionArg | Clear | None] = dict.fromkeys(OPTIONS)
    notes: list[Note] = []
    for option in OPTIONS:
        if option in given:
            directions[option], more = _parse_direction(option, given[option])
            notes += more
    return DomiftuneArgs(
        inbound=directions["--inbound"], outbound=directions["--outbound"],
        domain=given.get("--domain"), interface=given.get("--interface"), notes=tuple(notes),
    )


def _direction(arg: DirectionArg | Clear | None) -> DirectionQos:
    if arg is None or arg is CLEAR:
        return DirectionQos()
    limit, floor = arg
    return DirectionQos(bandwidth=limit, min_bps=floor)


def read(text: str, **options: Any) -> QosDocument:
    """domiftune arguments as a QosDocument; a cleared or missing direction has no limit."""
    args = parse_args(text)
    network = NetworkQos(ingress=_direction(args.inbound), egress=_direction(args.outbound))
    notes = list(args.notes) + [
        Note(option, "not given: virsh leaves this direction unchanged; read as no limit", "info")
        for option, arg in zip(OPTIONS, (args.inbound, args.outbound)) if arg is None
    ]
    return QosDocument(name=args.interface, network=None if network.is_empty else network, notes=tuple(notes))


def _value(units: tuple[int, ...]) -> str:
    if not any(units):
        return "0"
    return ",".join(str(value) for value in (units if units[3] else units[:3]))


def write(doc: QosDocument, **options: Any) -> str:
    """`--inbound A,P,B[,F] --outbound A,P,B`, unset fields as 0, a direction without limit as `0`.

    Options: `interface=` picks that entry of `doc.interfaces` (else the one network QoS of the
    document is used); `domain=` prefixes `virsh domiftune DOMAIN INTERFACE` (the interface is
    `interface=` or the document's name). Rates that are not whole kB/s and bursts that are
    not whole KiB are rounded to the nearest unit (at least 1). Packet rates, DSCP, traffic
    classes and an egress minimum raise UnsupportedError.
    """
    interface = options.get("interface")
    qos: NetworkQos | None = doc.interfaces[interface] if interface is not None and interface in doc.interfaces \
        else doc.single_network(FORMAT)
    inbound, outbound = network_to_units(FORMAT, qos, inbound_floor_ok=True)
    line = f"--inbound {_value(inbound)} --outbound {_value(outbound)}"
    domain = options.get("domain")
    if domain:
        target = interface or doc.name
        if not target:
            raise UnsupportedError("domiftune: a command line for a domain needs the interface; pass interface=")
        line = f"virsh domiftune {shlex.quote(domain)} {shlex.quote(target)} {line}"
    return line + "\n"
