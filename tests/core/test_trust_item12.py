"""Issue 13 item 12 ("Trust"): `vmqos convert` warns on shares libvirt refuses on cgroup v2 hosts
(above 10000, LP#1978489), and for Nova and libvirt input shows the cpu.weight libvirt really
writes there (the shares, unconverted) instead of the OCI conversion vmqos itself would use."""

from __future__ import annotations

import json

import pytest

from vmqos.cli.main import main
from vmqos.core.errors import InvalidValue
from vmqos.core.formats import libvirt, nova
from vmqos.core.model.cpu import CpuQos

NOVA = "quota:cpu_shares={}\n"
LIBVIRT = "<cputune><shares>{}</shares></cputune>\n"


@pytest.mark.parametrize(("reader", "text", "field"), [(nova, NOVA, "quota:cpu_shares"),
                                                       (libvirt, LIBVIRT, "cputune.shares")])
def test_item12_readers_warn_on_shares_above_10000(reader, text, field):
    doc = reader.read(text.format(10001))
    assert [(n.field, n.level) for n in doc.notes] == [(field, "warning")]
    assert "cgroup v2" in doc.notes[0].message and "at most 10000" in doc.notes[0].message
    assert reader.read(text.format(10000)).notes == ()


def test_item12_the_warning_is_what_vm_set_refuses():
    cpu = CpuQos(shares=20000)
    with pytest.raises(InvalidValue) as err:
        cpu.check_host(cgroup_v2=True, raw_shares_to_weight=True)
    assert err.value.fix.endswith(cpu.libvirt_v2_warning().split("; ", 1)[1])


def test_item12_a_domain_warns_too():
    doc = libvirt.read("<domain><name>d</name><cputune><shares>262144</shares></cputune></domain>")
    assert [n.field for n in doc.notes] == ["cputune.shares"]


@pytest.mark.parametrize(("src", "text"), [("nova", NOVA), ("libvirt", LIBVIRT)])
def test_item12_convert_warns_and_shows_the_weight_libvirt_writes(tmp_path, capsys, src, text):
    path = tmp_path / "in"
    path.write_text(text.format(20000))
    assert main(["convert", "--from", src, "--to", "effective", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "refuses 20000" in captured.err
    assert "shares 20000 (cgroup v2 weight 20000, written unconverted by libvirt)" in captured.out
    path.write_text(text.format(512))
    assert main(["convert", "--from", src, "--to", "effective", "--json", str(path)]) == 0
    cpu = json.loads(capsys.readouterr().out)["cpu"]
    assert (cpu["shares"], cpu["weight"], cpu["weight_written_by"]) == (512, 512, "libvirt (unconverted)")
    assert main(["convert", "--from", src, "--to", "libvirt", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_item12_other_inputs_keep_the_oci_weight(tmp_path, capsys):
    path = tmp_path / "host.yaml"
    path.write_text("version: 1\ninstances:\n  vm1: {cpu: {shares: 512}}\n")
    assert main(["convert", "--from", "vmqos", "--to", "effective", str(path)]) == 0
    assert "shares 512 (cgroup v2 weight 59)" in capsys.readouterr().out
    assert main(["convert", "--from", "vmqos", "--to", "effective", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["cpu"] == {"shares": 512, "weight": 59, "period_us": None,
                                                          "quota_us": None, "cpus": None}
