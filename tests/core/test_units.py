"""The unit parser against iproute2's own tables (lib/utils_math.c get_rate64/get_size64, tc get_time)."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.errors import UnitError
from vmqos.core.units import (
    RATE_SUFFIXES,
    SIZE_SUFFIXES,
    bytes_to_kbit,
    format_rate,
    format_size,
    human_rate,
    human_size,
    kbit_to_bytes,
    parse_rate,
    parse_size,
    parse_time,
    to_unit,
)

# iproute2's `suffixes[]` verbatim: name and scale in bit/s (matched case-insensitively).
IPROUTE2_RATES = [
    ("bit", 1.), ("Kibit", 1024.), ("kbit", 1000.), ("mibit", 1024.*1024.), ("mbit", 1000000.),
    ("gibit", 1024.*1024.*1024.), ("gbit", 1000000000.), ("tibit", 1024.*1024.*1024.*1024.),
    ("tbit", 1000000000000.), ("Bps", 8.), ("KiBps", 8.*1024.), ("KBps", 8000.), ("MiBps", 8.*1024*1024.),
    ("MBps", 8000000.), ("GiBps", 8.*1024.*1024.*1024.), ("GBps", 8000000000.),
    ("TiBps", 8.*1024.*1024.*1024.*1024.), ("TBps", 8000000000000.),
]
# get_size64(): kb/k, mb/m, gb/g are 1024-based; kbit/mbit/gbit are those divided by 8; b and bare are bytes.
IPROUTE2_SIZES = [("b", 1), ("k", 1024), ("kb", 1024), ("m", 1024**2), ("mb", 1024**2), ("g", 1024**3),
                  ("gb", 1024**3), ("kbit", 128), ("mbit", 1024**2 // 8), ("gbit", 1024**3 // 8)]


@pytest.mark.parametrize("suffix,scale", IPROUTE2_RATES)
def test_every_iproute2_rate_suffix_in_any_case(suffix, scale):
    for spelling in (suffix, suffix.lower(), suffix.upper()):
        assert parse_rate(f"3{spelling}") == int(3 * scale)
    assert len(RATE_SUFFIXES) == len(IPROUTE2_RATES)


@pytest.mark.parametrize("suffix,scale", IPROUTE2_SIZES)
def test_every_iproute2_size_suffix(suffix, scale):
    assert parse_size(f"5{suffix}") == 5 * scale
    assert parse_size(f"5{suffix.upper()}") == 5 * scale
    assert len(SIZE_SUFFIXES) == len(IPROUTE2_SIZES)


@pytest.mark.parametrize("text,bps", [
    ("100mbit", 100_000_000), ("12500kbps", 100_000_000), ("1gibit", 1024**3), ("800000", 800_000),
    ("100mbps", 800_000_000), ("1.5mbit", 1_500_000), ("100 Mbit/s", 100_000_000), ("10 MB/s", 80_000_000),
    ("2 kB/s", 16000), ("1e3kbit", 1_000_000),
])
def test_rate_examples(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text,nbytes", [("64kb", 65536), ("1.5mb", 1_572_864), ("300kbit", 38400),
                                         ("1500", 1500), ("128mb", 134_217_728), ("1600b", 1600)])
def test_size_examples(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text,us", [("20ms", 20000), ("1s", 1_000_000), ("250", 250), ("1.5msec", 1500)])
def test_time_examples(text, us):
    assert parse_time(text) == us


@pytest.mark.parametrize("bad", ["", "abc", "-5mbit", "10 parsecs", "1.2.3mbit", "mbit", "nan", "inf"])
def test_bad_quantities_are_refused_with_the_field_named(bad):
    for parse, kind in ((parse_rate, "rate"), (parse_size, "size")):
        with pytest.raises(UnitError) as err:
            parse(bad)
        assert kind in str(err.value)


def test_negative_integers_and_bools_are_refused():
    for parse in (parse_rate, parse_size, parse_time):
        with pytest.raises(UnitError):
            parse(-1)
        with pytest.raises(UnitError):
            parse(True)


@given(st.integers(min_value=0, max_value=10**15))
def test_format_rate_round_trips_exactly(bps):
    assert parse_rate(format_rate(bps)) == bps


@given(st.integers(min_value=0, max_value=2**40))
def test_format_size_round_trips_exactly(nbytes):
    assert parse_size(format_size(nbytes)) == nbytes


@given(st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False), st.sampled_from(IPROUTE2_RATES))
def test_parse_rate_matches_iproute2_arithmetic(number, suffix_scale):
    suffix, scale = suffix_scale
    expected = int(Decimal(number) * Decimal(str(scale)))  # floor of the exact product, as strtod then (unsigned)
    assert parse_rate(f"{number}{suffix}") == expected


def test_format_picks_the_largest_exact_unit():
    assert format_rate(262_144_000) == "262144kbit"
    assert format_rate(3_000_000) == "3mbit"
    assert format_rate(1001) == "1001bit"
    assert format_size(134_217_728) == "128mb"
    assert format_size(37_500) == "37500b"


def test_human_forms():
    assert human_rate(262_144_000) == "262.144 Mbit/s"
    assert human_size(134_217_728) == "128 MiB"
    assert human_size(512) == "512 B"


@given(st.integers(min_value=1, max_value=10**12), st.sampled_from([8000, 1000, 1024]))
def test_to_unit_is_nearest_and_never_zero(value, unit):
    whole, exact = to_unit(value, unit)
    assert whole >= 1
    assert abs(whole * unit - value) <= unit // 2 or whole == 1
    assert exact == (value % unit == 0)


def test_neutron_burst_kbit():
    assert kbit_to_bytes(300) == 37_500
    assert bytes_to_kbit(37_500) == (300, True)


@pytest.mark.parametrize("text", ["9" * 6000 + "²mbit", " " * 5000 + "1", "1" + " " * 5000 + "x", ".5" * 3000],
                         ids=["digits", "leading-spaces", "inner-spaces", "fractions"])
def test_a_long_quantity_is_refused_by_its_length_before_any_pattern_reads_it(text):
    """A run of 6,000 digits ending in a stray character cost the old pattern O(n^2) steps (17 ms; 36,000
    digits, seconds): a CPU cost anyone who can send a rate could ask for. The length is checked first."""
    from vmqos.core.units import MAX_QUANTITY_CHARS, parse_rate
    with pytest.raises(UnitError, match=rf"{len(text)} characters; no rate needs more than {MAX_QUANTITY_CHARS}"):
        parse_rate(text)
    assert len(str(UnitError("rate", text[:40] + "...", "x"))) < 200


@pytest.mark.parametrize("text", ["5.", "5..1mbit", "1.2.3", ".", "e5", "1e", "--1"])
def test_the_one_way_pattern_refuses_what_the_old_one_refused(text):
    from vmqos.core.units import parse_rate
    with pytest.raises(UnitError):
        parse_rate(text)


@pytest.mark.parametrize(("text", "bps"), [(".5mbit", 500_000), ("1.5mbit", 1_500_000), ("2e3kbit", 2_000_000),
                                          (" 10 mbit ", 10_000_000), ("0.000001gbit", 1000)])
def test_the_one_way_pattern_reads_what_the_old_one_read(text, bps):
    from vmqos.core.units import parse_rate
    assert parse_rate(text) == bps
