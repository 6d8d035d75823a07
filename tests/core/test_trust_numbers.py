"""Issue 13 item 15 ("Trust"): bad numbers and oversized input end as one-line VmqosErrors naming the
field, never as an internal error (exit 70). Only ASCII digits are numbers; sizes are bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmqos.cli.main import main
from vmqos.core.errors import FormatError, InvalidValue, UnitError, VmqosError
from vmqos.core.formats import cinder, domiftune, neutron, nova
from vmqos.core.formats._common import load_json, strict_int
from vmqos.core.units import parse_rate, parse_size, parse_time

HUGE = "1" * 5000  # beyond Python's 4,300-digit int() limit
MAX_DIGITS = 20  # units.MAX_DIGITS: 2^64-1 has 20 digits
MAX_DEPTH = 32  # _common.MAX_DEPTH
MAX_DOCUMENT_CHARS = 4 * 1024 * 1024  # _common.MAX_DOCUMENT_CHARS
BAD_NUMBERS = ["5²", "--5", HUGE, "١٠٠", "１００", "1_000", "\x1c5"]


def nova_line(value: str) -> str:
    return f"quota:cpu_shares={value}\n"


def neutron_policy(value: object) -> str:
    return json.dumps({"policy": {"name": "p", "rules": [{"type": "bandwidth_limit", "max_kbps": value}]}})


def cinder_spec(value: object) -> str:
    return json.dumps({"qos_specs": {"consumer": "front-end", "specs": {"total_bytes_sec": value}}})


READERS = {
    "nova": (nova.read, nova_line, "quota:cpu_shares"),
    "neutron": (neutron.read, neutron_policy, "policy.rules[0].max_kbps"),
    "cinder": (cinder.read, cinder_spec, "total_bytes_sec"),
    "domiftune": (domiftune.read, lambda v: f"--outbound {v}", "--outbound"),
}


def cli(tmp_path: Path, fmt: str, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "input"
    path.write_text(text)
    code = main(["convert", "--from", fmt, "--to", "effective", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("fmt", sorted(READERS))
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=["superscript", "double-minus", "5000-digits", "arabic-indic",
                                                    "full-width", "underscore", "control-char"])
def test_item15_a_bad_number_is_a_one_line_error_naming_the_field(fmt, value, tmp_path, capsys):
    read, make, field = READERS[fmt]
    with pytest.raises(InvalidValue) as err:
        read(make(value))
    assert err.value.field == field
    assert len(str(err.value)) < 700 and "\n" not in str(err.value)  # never the 5,000 digits whole
    code, stderr = cli(tmp_path, fmt, make(value), capsys)
    assert code == 2 and "internal error" not in stderr and field in stderr


@pytest.mark.parametrize("value", ["٥", "５", "²"])
def test_item15_other_scripts_digits_are_not_applied(value):
    """str.isdigit() and int() accept them: `quota:cpu_shares=٥١٢` was applied as 512."""
    with pytest.raises(InvalidValue):
        nova.read(nova_line(value * 3))
    with pytest.raises(InvalidValue):
        strict_int("f", value)


def test_item15_domiftune_superscript_as_port_set_and_plan_take_it(tmp_path, capsys):
    with pytest.raises(InvalidValue) as err:
        domiftune.parse_direction("--inbound", "5²")
    assert err.value.field == "--inbound"
    assert main(["plan", "--port", "tap-vm1", "--inbound", "5²"]) == 2
    assert "internal error" not in capsys.readouterr().err


@pytest.mark.parametrize("value", ["--5", "-5", "5-"])
def test_item15_double_minus_and_signs(value):
    with pytest.raises(InvalidValue) as err:
        nova.read(f"quota:cpu_quota={value}\n" if value != "-5" else "quota:cpu_shares=-5\n")
    assert err.value.field.startswith("quota:cpu_")


def test_item15_more_digits_than_any_value_is_refused_in_every_format():
    long = "9" * (MAX_DIGITS + 1)
    for fmt, (read, make, field) in READERS.items():
        with pytest.raises(InvalidValue, match=f"{MAX_DIGITS + 1} digits|more than {MAX_DIGITS}") as err:
            read(make(long))
        assert err.value.field == field, fmt


def test_item15_json_integers_beyond_python_limit_are_refused_naming_the_field():
    for fmt, text in (("neutron", neutron_policy(0).replace('"max_kbps": 0', f'"max_kbps": {HUGE}')),
                      ("cinder", cinder_spec(0).replace('"total_bytes_sec": 0', f'"total_bytes_sec": {HUGE}'))):
        read, _make, field = READERS[fmt]
        with pytest.raises(InvalidValue) as err:
            read(text)
        assert err.value.field == field and "5000 digits" in str(err.value)


@pytest.mark.parametrize("fmt", ["neutron", "cinder", "nova"])
def test_item15_deeply_nested_json_is_a_format_error(fmt, tmp_path, capsys):
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(FormatError, match=f"more than {MAX_DEPTH} levels"):
        READERS[fmt][0](text)
    code, stderr = cli(tmp_path, fmt, text, capsys)
    assert code == 2 and "internal error" not in stderr


def test_item15_brackets_inside_strings_do_not_count_as_nesting():
    assert load_json("neutron", json.dumps({"name": "[" * 1000})) == {"name": "[" * 1000}


def test_item15_documents_are_bounded_in_size():
    with pytest.raises(FormatError, match="characters"):
        load_json("cinder", " " * (MAX_DOCUMENT_CHARS + 1))
    with pytest.raises(FormatError, match="characters"):
        nova.read("#" * (MAX_DOCUMENT_CHARS + 1))
    with pytest.raises(FormatError, match="characters"):
        domiftune.read("--inbound 1 " + " " * MAX_DOCUMENT_CHARS)


@pytest.mark.parametrize("text", ["1e999999999mbit", "1e21bit", "1e-999999999kbit", "1" * 5000 + "mbit",
                                  "5²mbit", "٥mbit"],
                         ids=["exp-overflow", "exp-21", "exp-underflow", "5000-digits", "superscript", "arabic"])
def test_item15_quantities_with_huge_exponents_or_other_digits_are_unit_errors(text):
    for parse in (parse_rate, parse_size, parse_time):
        with pytest.raises(UnitError):
            parse(text)


def test_item15_the_limits_are_the_ones_these_tests_assume():
    from vmqos.core.formats import _common
    from vmqos.core import units

    assert (units.MAX_DIGITS, _common.MAX_DEPTH, _common.MAX_DOCUMENT_CHARS) == (MAX_DIGITS, MAX_DEPTH,
                                                                                MAX_DOCUMENT_CHARS)


def test_item15_a_huge_value_is_shortened_in_messages():
    from vmqos.core.errors import shown

    assert len(shown(HUGE)) < 80 and "5002 characters" in shown(HUGE)
    assert "digits" in shown(10**5000)  # repr() of it raises ValueError beyond 4,300 digits
    assert len(str(InvalidValue("f", 10**5000, "fix"))) < 100


def test_item15_cinder_per_gb_values_are_capped_at_qemus_maximum_naming_the_per_gb_key():
    spec = {"qos_specs": {"consumer": "front-end", "specs": {"read_iops_sec_per_gb": str(10**12)}}}
    with pytest.raises(InvalidValue) as err:
        cinder.read(json.dumps(spec), size_gb=10_000)
    assert err.value.field == "read_iops_sec_per_gb"
    assert "10000 GiB" in str(err.value) and "10^15" in str(err.value)
    # Far above u64 (20-digit key times a 20-digit size) is refused the same way, not produced.
    spec["qos_specs"]["specs"] = {"read_iops_sec_per_gb": "9" * MAX_DIGITS}
    with pytest.raises(InvalidValue, match="10\\^15"):
        cinder.read(json.dumps(spec), size_gb=int("9" * MAX_DIGITS))
    # A cap below QEMU's maximum makes the product acceptable, as Cinder computes it.
    spec["qos_specs"]["specs"] = {"read_iops_sec_per_gb": str(10**12), "read_iops_sec_max": "5000"}
    assert cinder.read(json.dumps(spec), size_gb=10_000).disk.read_iops_sec == 5000


def test_item15_every_error_above_is_a_vmqos_error():
    assert issubclass(InvalidValue, VmqosError) and issubclass(FormatError, VmqosError)
