"""Quantities with iproute2's exact meanings, converted to vmqos's canonical integers.

Canonical units inside vmqos: rates in bit/s, sizes in bytes, packet rates in packet/s, times
in microseconds. This is the only module that knows what `kbps`, `kb` or `mibit` mean.

iproute2 (lib/utils_math.c) matches suffixes case-insensitively, so its traps are kept on
purpose: `kbps` is kilo*bytes* per second (8000 bit/s), `100mbps` is 800 Mbit/s, `kb` as a size
is 1024 bytes and `kbit` as a size is 128 bytes. A bare rate is bit/s, a bare size is bytes and
a bare time is microseconds.
"""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext

from vmqos.core.errors import InvalidValue, UnitError

# --- What a number is, for every reader: ASCII digits only, at most MAX_DIGITS of them. ---
# The largest value any format takes is a u64 (cgroup and QEMU fields; 2^64-1 has 20 digits);
# libvirt's uint has 10, Neutron's int32 10, QEMU's 10^15 16, Nova's cpu_quota down to -2^63 19.
# A longer run is a typo or an attack: Python's int() refuses more than 4,300 digits with a
# ValueError, and str.isdigit()/int() take superscripts, Arabic-Indic or full-width digits.
MAX_DIGITS = 20
ASCII_WHITESPACE = " \t\n\r\f\v"
# An optional sign and ASCII digits; `[0-9]` (not `\d`) so that no other script's digits match.
INTEGER = re.compile(r"([+-]?)([0-9]+)")


def parse_integer(field: str, text: str, *, signs: str = "+-") -> int:
    """`text` as an integer: an optional sign from `signs`, then 1 to MAX_DIGITS ASCII digits.

    Whitespace around the number is the caller's to strip (formats differ). Raises InvalidValue
    naming `field` for anything else: `--5`, `5²`, `٥`, `1_000`, a sign the format refuses
    (virsh's unsigned fields refuse `-`), or more than MAX_DIGITS digits.
    """
    match = INTEGER.fullmatch(text)
    if match is None:
        signed = {"+-": "an optional + or - sign and ", "+": "an optional + sign and ", "-": "an optional - sign and "}
        raise InvalidValue(field, text, f"expected an integer: {signed.get(signs, '')}the ASCII digits 0-9")
    sign, digits = match.groups()
    if sign and sign not in signs:
        raise InvalidValue(field, text, f"a {sign} sign is not accepted here; write the number without it"
                           if signs else "write the number without a sign")
    if len(digits) > MAX_DIGITS:
        raise InvalidValue(field, text, f"{len(digits)} digits: no value vmqos takes has more than {MAX_DIGITS}")
    return -int(digits) if sign == "-" else int(digits)

# iproute2 lib/utils_math.c `suffixes[]`, value in bit/s per unit; matched case-insensitively.
RATE_SUFFIXES: dict[str, int] = {
    "bit": 1,
    "kibit": 1024,
    "kbit": 1000,
    "mibit": 1024**2,
    "mbit": 1000**2,
    "gibit": 1024**3,
    "gbit": 1000**3,
    "tibit": 1024**4,
    "tbit": 1000**4,
    "bps": 8,
    "kibps": 8 * 1024,
    "kbps": 8000,
    "mibps": 8 * 1024**2,
    "mbps": 8 * 1000**2,
    "gibps": 8 * 1024**3,
    "gbps": 8 * 1000**3,
    "tibps": 8 * 1024**4,
    "tbps": 8 * 1000**4,
}

# iproute2 get_size64(): bytes per unit; matched case-insensitively; bare number = bytes.
SIZE_SUFFIXES: dict[str, int] = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "kbit": 1024 // 8,
    "mbit": 1024**2 // 8,
    "gbit": 1024**3 // 8,
}

# iproute2 get_time(): microseconds per unit; bare number = microseconds.
TIME_SUFFIXES: dict[str, int] = {
    "s": 1_000_000,
    "sec": 1_000_000,
    "secs": 1_000_000,
    "ms": 1000,
    "msec": 1000,
    "msecs": 1000,
    "us": 1,
    "usec": 1,
    "usecs": 1,
}

# Human spellings accepted on input, rewritten to the iproute2 suffix they mean.
_HUMAN_RATE = {"bit/s": "bit", "b/s": "Bps", "bits/s": "bit", "bytes/s": "Bps"}

# A quantity: ASCII digits, an optional fraction and exponent, a unit. re.ASCII keeps `\s` to ASCII
# whitespace (Unicode's includes the control characters 0x1c-0x1f).
# Every part can match in one way only (`[0-9]*\.?[0-9]+` could split a run of digits n ways, and a
# failed match of a long run then cost O(n^2): 6,000 digits took 17 ms, 36,000 seconds).
_NUMBER = re.compile(r"\s*((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?)\s*([A-Za-z/]*)\s*", re.ASCII)
# Bounds that keep Decimal exact and cheap: `1e999999999mbit` overflows Decimal's context, and a
# huge exponent or mantissa would build a huge integer before any range check sees it. What is
# left is small enough for the range checks of the model (check_bandwidth's MAX_RATE_BPS).
MAX_NUMBER_CHARS = 2 * MAX_DIGITS + 10
MAX_EXPONENT = MAX_DIGITS
# The whole quantity with its unit and spaces: refused before any pattern reads it.
MAX_QUANTITY_CHARS = MAX_NUMBER_CHARS + 30


def _split(kind: str, text: str) -> tuple[Decimal, str]:
    if len(text) > MAX_QUANTITY_CHARS:
        raise UnitError(kind, text[:40] + "...", f"{len(text)} characters; no {kind} needs more than "
                                                 f"{MAX_QUANTITY_CHARS} - " + _hint(kind))
    match = _NUMBER.fullmatch(text)
    if not match:
        raise UnitError(kind, text, _hint(kind))
    number, exponent, suffix = match.groups()
    if len(number) > MAX_NUMBER_CHARS:
        raise UnitError(kind, text, f"the number has {len(number)} characters; no {kind} needs more than "
                                    f"{MAX_NUMBER_CHARS} - " + _hint(kind))
    if exponent is not None and abs(int(exponent)) > MAX_EXPONENT:
        raise UnitError(kind, text, f"an exponent beyond +-{MAX_EXPONENT} is out of range - " + _hint(kind))
    try:
        return Decimal(number), suffix.lower()
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise UnitError(kind, text, _hint(kind)) from exc


def _hint(kind: str) -> str:
    if kind == "rate":
        return "write a non-negative number with a tc unit, e.g. 100mbit, 12500kbps, 1gibit or 800000 (bit/s)"
    if kind == "size":
        return "write a non-negative number with a tc unit, e.g. 64kb (65536 bytes), 1.5mb, 300kbit or 1500 (bytes)"
    return "write a non-negative number with a unit, e.g. 20ms, 1s, 500us or 250 (microseconds)"


def _rate_suffix(suffix: str) -> str:
    for human, tc in _HUMAN_RATE.items():
        if suffix.endswith(human) and suffix != human[:-2]:
            prefix = suffix[: -len(human)]
            if prefix in ("", "k", "ki", "m", "mi", "g", "gi", "t", "ti"):
                return prefix + tc.lower()
    return suffix


def _parse(kind: str, value: str | int, table: dict[str, int], bare: str) -> int:
    """One quantity: integers are already canonical; text is a number and a unit from `table`."""
    if isinstance(value, bool):
        raise UnitError(kind, value, _hint(kind))
    if isinstance(value, int):
        if value < 0:
            raise UnitError(kind, value, f"a {kind} cannot be negative; use 0 or leave it out")
        if value >= 10**MAX_DIGITS:
            raise UnitError(kind, value, f"no value vmqos takes has more than {MAX_DIGITS} digits; check the unit")
        return value
    number, suffix = _split(kind, str(value))
    if kind == "rate" and suffix:
        suffix = _rate_suffix(suffix)
    scale = table.get(suffix or bare)
    if scale is None:
        raise UnitError(kind, value, f"unknown {kind} unit {suffix!r}; " + _hint(kind))
    with localcontext() as exact:
        exact.prec = 2 * MAX_NUMBER_CHARS + MAX_EXPONENT  # every bounded number times a unit, exactly
        return int((number * scale).to_integral_value(ROUND_FLOOR))


def parse_rate(value: str | int) -> int:
    """Parse a rate as tc does (`100mbit`, `12500kbps`, `1gibit`, bare bit/s) into bit/s."""
    return _parse("rate", value, RATE_SUFFIXES, "bit")


def parse_size(value: str | int) -> int:
    """Parse a size as tc does (`64kb` = 65536, `1.5mb`, `300kbit` = 38400, bare bytes) into bytes."""
    return _parse("size", value, SIZE_SUFFIXES, "b")


def parse_time(value: str | int) -> int:
    """Parse a time as tc does (`20ms`, `1s`, bare microseconds) into microseconds."""
    return _parse("time", value, TIME_SUFFIXES, "us")


def format_rate(bps: int) -> str:
    """The exact tc spelling of a rate: the largest decimal unit that divides it (`262144kbit`)."""
    for suffix, scale in (("tbit", 1000**4), ("gbit", 1000**3), ("mbit", 1000**2), ("kbit", 1000)):
        if bps and bps % scale == 0:
            return f"{bps // scale}{suffix}"
    return f"{bps}bit"


def format_size(nbytes: int) -> str:
    """The exact tc spelling of a size: the largest binary unit that divides it (`128mb`)."""
    for suffix, scale in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if nbytes and nbytes % scale == 0:
            return f"{nbytes // scale}{suffix}"
    return f"{nbytes}b"


def _trim(number: float, digits: int) -> str:
    text = f"{number:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def human_rate(bps: float) -> str:
    """A rate for people: SI prefixes on bit/s (`262.144 Mbit/s`).

    A measured rate is a float (bytes counted over an interval): below 1 kbit/s it is rounded to
    whole bit/s, never printed as `548.8502154478151 bit/s`."""
    if bps < 1e3:
        bps = round(bps)  # 999.6 becomes 1000, which the loop shows as 1 kbit/s
    for suffix, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{_trim(bps / scale, 3)} {suffix}"
    return f"{bps} bit/s"


def human_size(nbytes: float) -> str:
    """A size for people: IEC prefixes on bytes (`128 MiB`); a float below 1 KiB is rounded to bytes."""
    if nbytes < 1024:
        nbytes = round(nbytes)
    for suffix, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= scale:
            return f"{_trim(nbytes / scale, 2)} {suffix}"
    return f"{nbytes} B"


def human_pps(pps: float) -> str:
    """A packet rate for people (`10,000 pkt/s`); a measured (float) rate is rounded to whole packets."""
    return f"{round(pps):,} pkt/s"


# --- The units of the formats operators already use, as multiples of canonical units. ---
# libvirt <bandwidth>, Nova quota:vif_* and virsh domiftune: rates in kB/s (1 kB = 1000 bytes),
# bursts in KiB (libvirt emits `kbps` and `kb` to tc, which iproute2 reads as 1000 B/s and 1024 B).
LIBVIRT_RATE_BPS = 8000
LIBVIRT_BURST_BYTES = 1024
# Neutron: max_kbps/min_kbps in kbit/s of 1000 bit (since LP#1884273); max_burst_kbps is a *size*
# in kilobits of 1000 bit, i.e. 125 bytes; packet rates in kpps of 1000 packets.
NEUTRON_RATE_BPS = 1000
NEUTRON_BURST_BITS = 1000
NEUTRON_KPPS = 1000


def to_unit(canonical: int, unit: int) -> tuple[int, bool]:
    """Express a canonical value in a coarser unit: nearest whole unit (at least 1), and whether exact."""
    whole, rest = divmod(canonical, unit)
    if rest * 2 >= unit:
        whole += 1
    if whole == 0 and canonical > 0:
        whole = 1
    return whole, rest == 0


def kbit_to_bytes(kbit: int) -> int:
    """Neutron's max_burst_kbps (kilobits of 1000 bit) as bytes, rounded down."""
    return kbit * NEUTRON_BURST_BITS // 8


def bytes_to_kbit(nbytes: int) -> tuple[int, bool]:
    """Bytes as Neutron kilobits (nearest, at least 1), and whether exact."""
    return to_unit(nbytes * 8, NEUTRON_BURST_BITS)
