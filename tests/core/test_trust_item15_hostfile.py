"""Issue 13 item 15 ("Trust"), the host file: bounded in size, nesting and integer length, and a
file that is not UTF-8 is one line naming the place - never "internal error" (exit 70)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmqos.core.errors import FormatError
from vmqos.core.formats import hostfile
from vmqos.core.formats._common import MAX_DEPTH, MAX_DOCUMENT_CHARS

VMQOS = [sys.executable, "-m", "vmqos.cli.main"]


def apply_dry_run(path: Path, tmp_path: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`vmqos apply -f FILE --dry-run`, which reads a host file without root."""
    env = {k: v for k, v in os.environ.items() if k != "VMQOS_DEBUG"}
    return subprocess.run([*VMQOS, "apply", "-f", str(path), "--dry-run", "--db", f"sqlite:///{tmp_path}/v.db"],
                          input=stdin, capture_output=True, timeout=60, env=env)


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "internal error" not in err and err.startswith("vmqos: error: ") and err.count("\n") == 1, err
    return err


def test_item15_hostfile_integer_of_5000_digits_is_one_line_naming_the_place(tmp_path):
    path = tmp_path / "host.yaml"
    path.write_text("version: 1\nflavors:\n  f: {cpu: {shares: " + "9" * 5000 + "}}\n")
    err = one_line_error(apply_dry_run(path, tmp_path))
    assert "(line 3): flavors.f.cpu.shares: a number of 5000 digits" in err


@pytest.mark.parametrize("number", ["9" * 21, "-" + "1" * 21, "0x" + "f" * 5000, "1_" * 20 + "0"],
                         ids=["21-digits", "negative", "hex", "underscores"])
def test_item15_hostfile_integers_beyond_20_digits_are_refused(number):
    with pytest.raises(FormatError, match=r"cpu\.shares: a number of \d+ digits; no value vmqos takes"):
        hostfile.read_host(f"version: 1\nflavors:\n  f:\n    cpu: {{shares: {number}}}\n")


def test_item15_hostfile_a_quoted_number_of_5000_digits_is_shown_shortened():
    with pytest.raises(FormatError) as err:
        hostfile.read_host('version: 1\nflavors:\n  f: {cpu: {shares: "' + "9" * 5000 + '"}}\n')
    assert "flavors.f.cpu.shares: expected an integer" in str(err.value) and len(str(err.value)) < 200


def test_item15_hostfile_20_digits_still_reach_the_model():
    with pytest.raises(FormatError, match=r"line 4.*shares are from 2 to 262144"):
        hostfile.read_host("version: 1\nflavors:\n  f:\n    cpu: {shares: " + "9" * 20 + "}\n")


def test_item15_hostfile_5000_nested_brackets_are_one_line(tmp_path):
    path = tmp_path / "host.yaml"
    path.write_text("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    err = one_line_error(apply_dry_run(path, tmp_path))
    assert f"(line 2): nested more than {MAX_DEPTH} levels deep" in err


def test_item15_hostfile_aliases_and_merge_keys_count_towards_the_depth():
    chain = "version: 1\na0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" for i in range(1, 200))
    with pytest.raises(FormatError, match=f"with its aliases and merge keys, nested more than {MAX_DEPTH}"):
        hostfile.read_host(chain)
    merges = "version: 1\nm0: &m0 {k0: 1}\n" + "".join(f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: 1}}\n"
                                                       for i in range(1, 2000))
    with pytest.raises(FormatError, match=r"m\d+: with its aliases and merge keys, nested more than"):
        hostfile.read_host(merges)


def test_item15_hostfile_depth_of_a_real_file_is_fine():
    text = ("version: 1\npolicies:\n  p:\n    egress:\n      rate: 10mbit\n      classes:\n        - name: web\n          share: 60\n"
            "          match: {protocol: tcp, ports: [443]}\n        - {name: rest, share: 40}\n")
    assert hostfile.read_host(text).policies["p"].qos.egress.classes[0].match.ports == (443,)


def test_item15_hostfile_size_is_bounded_before_loading():
    with pytest.raises(FormatError, match=f"at most {MAX_DOCUMENT_CHARS}"):
        hostfile.read_host("version: 1\n" + "#" * MAX_DOCUMENT_CHARS + "\n")


def test_item15_hostfile_not_utf8_is_one_line_with_its_line(tmp_path):
    path = tmp_path / "host.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")
    err = one_line_error(apply_dry_run(path, tmp_path))
    assert f"{path} (line 2): not UTF-8 text: byte 0xe9 at column 6" in err


def test_item15_hostfile_not_utf8_on_standard_input_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VMQOS_DEBUG"}
    for lang in ("C", "C.UTF-8"):  # surrogateescape (C locale) or strict decoding: the same line
        result = subprocess.run([*VMQOS, "convert", "--from", "vmqos", "--to", "effective", "-"],
                                input=b"version: 1\n# caf\xe9\n", capture_output=True, timeout=60,
                                env={**env, "LC_ALL": lang, "PYTHONUTF8": "0"})
        err = one_line_error(result)
        assert "standard input (line 2): not UTF-8 text: byte 0xe9 at column 6" in err
