"""vmqos's own host file: reading, every error with its line, JSON, the schema, round trips.

Tests marked `needs_nova` / `needs_neutron` read Nova extra specs or Neutron rules, which the
host file delegates to `vmqos.core.formats.nova` and `vmqos.core.formats.neutron`.
"""

from __future__ import annotations

import json
import string
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmqos
from vmqos.core.errors import FormatError, UnsupportedError, VmqosError
from vmqos.core.formats import get_format, hostfile
from vmqos.core.model import (
    VALID_DSCP_MARKS,
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    Note,
    PacketRateLimit,
    QosDocument,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.model.host import (
    EgressMode,
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
)

DEMO = Path(vmqos.__file__).parent / "demo" / "host.yaml"

needs_nova = pytest.mark.skipif(find_spec("vmqos.core.formats.nova") is None, reason="vmqos.core.formats.nova not written yet")
needs_neutron = pytest.mark.skipif(find_spec("vmqos.core.formats.neutron") is None,
                                   reason="vmqos.core.formats.neutron not written yet")


def y(text: str) -> str:
    """Inline YAML: line 1 is the first line after the opening quotes."""
    return textwrap.dedent(text).lstrip("\n")


def error(text: str) -> FormatError:
    with pytest.raises(FormatError) as info:
        hostfile.read_host(text)
    return info.value


# ------------------------------------------------------------------------------------- the demo


@needs_nova
@needs_neutron
def test_demo_file_reads_as_the_three_instances_of_the_seed() -> None:
    state = hostfile.read_host(DEMO.read_text())
    assert set(state.instances) == {"vm1", "vm2", "vm3"}
    assert [p.device for _, p in state.ports()] == ["tap-vm1", "tap-vm2", "tap-vm3"]

    vm1 = state.instances["vm1"]
    assert vm1.flavor == "m1.resquota"
    flavor = state.flavors["m1.resquota"].qos
    assert flavor.cpu is not None and flavor.cpu.shares == 512
    assert flavor.disk == DiskQos(read_bytes_sec=1_000_000, write_bytes_sec=1_024_000)
    assert flavor.network is not None
    for side in (flavor.network.ingress, flavor.network.egress):  # kB/s and KiB, as libvirt takes them
        assert side.bandwidth == BandwidthLimit(rate_bps=32768 * 8000, peak_bps=65536 * 8000,
                                                burst_bytes=131072 * 1024)

    assert state.instances["vm2"].ports[0].policy == "bw-limiter"
    bw = state.policies["bw-limiter"]
    assert bw.origin == "neutron"
    assert bw.qos.egress.bandwidth == BandwidthLimit(rate_bps=3_000_000, burst_bytes=300 * 1000 // 8)
    assert bw.qos.ingress.is_empty

    assert state.instances["vm3"].ports[0].policy == "dscp-marking"
    assert state.policies["dscp-marking"].qos == NetworkQos(egress=DirectionQos(dscp=26))

    tiers = state.policies["web-tiers"]
    assert tiers.origin == "vmqos"
    assert [c.name for c in tiers.qos.egress.classes] == ["web", "ssh", "rest"]
    assert tiers.qos.egress.classes[0].match == TrafficMatch(protocol="tcp", ports=(80, 443))
    assert tiers.qos.egress.bandwidth == BandwidthLimit(rate_bps=20_000_000, burst_bytes=65536)


@needs_nova
@needs_neutron
def test_demo_file_round_trips_and_reads_per_instance() -> None:
    state = hostfile.read_host(DEMO.read_text())
    assert hostfile.read_host(hostfile.write_host(state)) == state
    vm2 = hostfile.read(DEMO.read_text(), instance="vm2")
    assert vm2.name == "vm2" and set(vm2.interfaces) == {"tap-vm2"}
    assert vm2.interfaces["tap-vm2"] == state.policies["bw-limiter"].qos
    vm1 = hostfile.read(DEMO.read_text(), instance="vm1")
    assert vm1.cpu == CpuQos(shares=512) and vm1.disk == state.flavors["m1.resquota"].qos.disk
    assert vm1.interfaces == {}  # tap-vm1 has no policy; its network `private` has none either


def test_the_vmqos_format_name_resolves_to_this_module() -> None:
    assert get_format("vmqos") is hostfile


# ---------------------------------------------------------------------------- reading the format

FULL = y("""
    version: 1
    policies:
      gold:
        ingress: {rate: 100mbit, peak: 200mbit, burst: 1mb, pps: 20000, pps_burst: 2000, min: 10mbit}
        egress:  {rate: 12500kbps, burst: 256kb, dscp: 26, pps: 10000,
                  classes: [{name: web, share: 50, match: {protocol: tcp, ports: [80, 443]}},
                            {name: mail, share: 30, match: {protocol: tcp, ports: [25, 587]}},
                            {name: rest, share: 20}]}
      silver: {egress: {rate: 1000000}, min_pps_any: 5}
    flavors:
      small:
        cpu: {shares: 256}
        disk: {read_iops_sec: 100}
        network: {ingress: {rate: 8mbit}}
    networks:
      private: {policy: gold}
      public:
    instances:
      vm1:
        flavor: small
        cpu: {shares: 512, period_us: 100ms, quota_us: 20000}
        disks:
          vda: {read_bytes_sec: 10mb, write_bytes_sec: 1048576, read_bytes_sec_max: 20mb,
                read_bytes_sec_max_length: 5, size_iops_sec: 4kb, group_name: g1}
        ports:
          - device: tap-vm1
            network: private
            policy: silver
            egress_mode: police
            mtu: 9000
            limits: {egress: {rate: 100mbit}}
          - {device: tap-vm1b, network: public}
      vm2:
    """)


def test_reads_every_key_in_canonical_units() -> None:
    state = hostfile.read_host(FULL)
    gold = state.policies["gold"].qos
    assert gold.ingress == DirectionQos(
        bandwidth=BandwidthLimit(rate_bps=100_000_000, peak_bps=200_000_000, burst_bytes=1024 * 1024),
        packet_rate=PacketRateLimit(pps=20000, burst_packets=2000), min_bps=10_000_000)
    assert gold.egress.bandwidth == BandwidthLimit(rate_bps=100_000_000, burst_bytes=256 * 1024)  # 12500kbps
    assert gold.egress.dscp == 26 and gold.egress.packet_rate == PacketRateLimit(pps=10000)
    assert gold.egress.classes == (
        TrafficClass("web", 50, TrafficMatch(protocol="tcp", ports=(80, 443))),
        TrafficClass("mail", 30, TrafficMatch(protocol="tcp", ports=(25, 587))),
        TrafficClass("rest", 20),
    )
    assert state.policies["silver"] == Policy("silver", NetworkQos(
        egress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=1_000_000)), min_pps_any=5))
    assert state.flavors["small"] == Flavor("small", QosDocument(
        name="small", cpu=CpuQos(shares=256), disk=DiskQos(read_iops_sec=100),
        network=NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=8_000_000)))))
    assert state.networks == {"private": NetworkSpec("private", "gold"), "public": NetworkSpec("public")}
    vm1 = state.instances["vm1"]
    assert vm1.cpu == CpuQos(shares=512, period_us=100_000, quota_us=20_000)
    assert vm1.disks == {"vda": DiskQos(read_bytes_sec=10 * 2**20, write_bytes_sec=2**20,
                                        read_bytes_sec_max=20 * 2**20, read_bytes_sec_max_length=5,
                                        size_iops_sec=4096, group_name="g1")}
    assert vm1.ports == (
        PortSpec(device="tap-vm1", network="private", policy="silver", egress_mode=EgressMode.POLICE, mtu=9000,
                 limits=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=100_000_000)))),
        PortSpec(device="tap-vm1b", network="public"),
    )
    assert state.instances["vm2"] == InstanceSpec(name="vm2")


def test_json_input_is_read_by_the_same_parser() -> None:
    data = {"version": 1, "policies": {"p": {"egress": {"rate": "10mbit", "burst": 65536}}},
            "instances": {"vm1": {"ports": [{"device": "tap1", "policy": "p"}]}}}
    for indent in (None, 2, "\t"):
        state = hostfile.read_host(json.dumps(data, indent=indent))
        assert state.policies["p"].qos.egress.bandwidth == BandwidthLimit(rate_bps=10_000_000, burst_bytes=65536)
        assert state.instances["vm1"].ports == (PortSpec(device="tap1", policy="p"),)


def test_json_errors_carry_their_line() -> None:
    data = {"version": 1, "instances": {"vm1": {"ports": [{"device": "tap1", "mtu": 10}]}}}
    text = json.dumps(data, indent=2)
    err = error(text)
    assert err.line == text.splitlines().index("        {") + 1
    assert "MTU is from 68 to 65535" in str(err)
    err = error('{"version": 1,\n "instances": {"vm1": {"portz": []}}}')
    assert err.line == 2 and "did you mean 'ports'?" in str(err)
    err = error('{"version": 1,\n "instances": {\n')
    assert err.line == 3 and "not valid YAML or JSON" in str(err)


def test_anchors_and_merge_keys_are_expanded_with_explicit_keys_winning() -> None:
    state = hostfile.read_host(y("""
        version: 1
        policies:
          base: &base {egress: {rate: 10mbit}}
          copy: *base
        instances:
          vm1:
            ports:
              - &port {device: tap1, mtu: 9000, egress_mode: police}
              - {<<: *port, device: tap2}
        """))
    assert state.policies["copy"].qos == state.policies["base"].qos
    assert state.instances["vm1"].ports[1] == PortSpec(device="tap2", mtu=9000, egress_mode=EgressMode.POLICE)


def test_yaml_1_1_spellings_of_keys_stay_names() -> None:
    state = hostfile.read_host("version: 1\ninstances:\n  on: {}\n  101: {}\n  'null': {}\n")
    assert set(state.instances) == {"on", "101", "null"}


# ------------------------------------------------------------------------------- errors and lines

ERRORS = [
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - device: tap-vm1
                limits:
                  egress:
                    rat: 100mbit
        """, 8, ["unknown key 'rat' in instances.vm1.ports[0].limits.egress; did you mean 'rate'?"], id="unknown-key"),
    pytest.param(
        """
        version: 1
        policys: {}
        """, 2, ["unknown key 'policys' at the top level; did you mean 'policies'?"], id="unknown-top-key"),
    pytest.param(
        """
        version: 1
        instances:
          vm1: {ports: [{device: t1, zzz: 1}]}
        """, 3, ["unknown key 'zzz' in instances.vm1.ports[0]; expected one of: device, network"],
        id="unknown-key-no-suggestion"),
    pytest.param("version: 2\n", 1, ["version", "version 1"], id="version-2"),
    pytest.param("version: true\n", 1, ["version 1"], id="version-bool"),
    pytest.param("instances: {}\n", 1, ["missing key 'version' at the top level"], id="version-missing"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - network: private
        """, 5, ["missing key 'device' in instances.vm1.ports[0]"], id="missing-device"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - device: t
                mtu: big
        """, 6, ["instances.vm1.ports[0].mtu: expected an integer, got 'big'"], id="wrong-type"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - device: t
                egress_mode: drop
        """, 6, ["egress_mode", "'shape' or 'police'", "'drop'"], id="egress-mode"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - device: t
                window_clamp: maybe
        """, 6, ["instances.vm1.ports[0].window_clamp: expected true or false, got 'maybe'"], id="window-clamp"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports: tap1
        """, 4, ["instances.vm1.ports: expected a list"], id="not-a-list"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress:
              rate: 1.5
        """, 5, ["policies.p.egress.rate", "a rate such as 100mbit"], id="float-rate"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress: {burst: 64kb,
                     rate: 10 parsecs}
        """, 5, ["policies.p.egress.rate", "unknown rate unit 'parsecs'"], id="bad-rate-unit"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            disks:
              vda:
                read_bytes_sec: 10mbx
        """, 6, ["instances.vm1.disks.vda.read_bytes_sec", "unknown size unit 'mbx'"], id="bad-size-unit"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress:
              burst: 64kb
        """, 5, ["burst needs a rate"], id="burst-without-rate"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            ingress: {pps_burst: 5}
        """, 4, ["pps_burst needs pps"], id="pps-burst-without-pps"),
    # what the model refuses: the line of the mapping being built, the model's message kept
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress:
              rate: 10mbit
              peak: 5mbit
        """, 4, ["policies.p.egress: peak", "peak must be at least the average rate"], id="model-peak"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            ingress:
              dscp: 26
        """, 3, ["policies.p: dscp", "move the mark to egress"], id="model-ingress-dscp"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress:
              rate: 10mbit
              classes:
                - {name: a, share: 50, match: {protocol: tcp}}
                - {name: b, share: 60}
        """, 4, ["policies.p.egress: classes: shares add up to 110 %"], id="model-class-shares"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress:
              rate: 10mbit
              classes:
                - {name: rest, share: 100}
                - name: web
                  share: 10
                  match: {protocol: icmp, ports: [80]}
        """, 10, ["policies.p.egress.classes[1].match", "matching ports needs protocol tcp"],
        id="model-class-match"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            egress:
              rate: 10mbit
              classes:
                - {name: rest, share: 100}
                - {name: web, share: 0, match: {dscp: 10}}
        """, 8, ["policies.p.egress.classes[1]", "a share is a percentage from 1 to 100"], id="model-class-share"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            cpu: {shares: 1}
        """, 4, ["instances.vm1.cpu", "shares are from 2 to 262144"], id="model-cpu"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            disks:
              vda: {total_bytes_sec: 10mb,
                    read_bytes_sec: 1mb}
        """, 5, ["instances.vm1.disks.vda", "total_bytes_sec cannot be combined with read_bytes_sec"],
        id="model-disk-conflict"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - {device: tap-vm1}
              - {device: "tap/2"}
        """, 6, ["instances.vm1.ports[1]", "a Linux device name is 1 to 15 characters"], id="model-device-name"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - device: tap-vm1
                mtu: 40
        """, 5, ["instances.vm1.ports[0]", "an MTU is from 68 to 65535 bytes"], id="model-mtu"),
    # references
    pytest.param(
        """
        version: 1
        policies:
          gold: {}
        instances:
          vm1:
            ports:
              - device: t1
                policy: gol
        """, 8, ["instances.vm1.ports[0].policy: policy 'gol' is not defined under policies; did you mean 'gold'?"],
        id="undefined-port-policy"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - {device: t1, network: private}
        """, 5, ["network 'private' is not defined under networks (the file defines none)"],
        id="undefined-network"),
    pytest.param(
        """
        version: 1
        policies: {gold: {}, silver: {}}
        networks:
          private:
            policy: bronze
        """, 5, ["networks.private.policy: policy 'bronze' is not defined under policies (defined: gold, silver)"],
        id="undefined-network-policy"),
    pytest.param(
        """
        version: 1
        flavors:
          m1.small: {}
        instances:
          vm1:
            flavor: m1.smal
        """, 6, ["instances.vm1.flavor: flavor 'm1.smal' is not defined under flavors; did you mean 'm1.small'?"],
        id="undefined-flavor"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
            ports:
              - device: tap1
          vm2:
            ports:
              - device: tap2
              - device: tap1
        """, 9, ["instances.vm2.ports[1].device: 'tap1' is already a port of instance 'vm1' (line 5)"],
        id="duplicate-device"),
    pytest.param(
        """
        version: 1
        instances:
          vm1: {}
          vm2: {}
          vm1: {}
        """, 5, ["duplicate key 'vm1' in instances (first at line 3)"], id="duplicate-yaml-key"),
    pytest.param(
        """
        version: 1
        instances:
          "": {}
        """, 3, ["instances: an instance name cannot be empty"], id="empty-name"),
    pytest.param(
        """
        version: 1
        flavors:
          f:
            extra_specs: {"quota:cpu_shares": "512"}
            cpu: {shares: 4}
        """, 5, ["flavors.f: a flavor has either extra_specs or canonical cpu/disk/network, not both"],
        id="flavor-both-styles"),
    # YAML itself
    pytest.param(
        """
        version: 1
        instances:
          vm1: [
          x: 1
        """, 5, ["not valid YAML or JSON", "line 3"], id="yaml-unclosed"),
    pytest.param(
        """
        version: 1
        instances:
          vm1:
           ports: []
          ports: - x
        """, 5, ["not valid YAML or JSON"], id="yaml-syntax"),
    pytest.param("version: 1\nnetworks: !!python/object:os.system {}\n", 2,
                 ["networks: the YAML tag 'tag:yaml.org,2002:python/object:os.system' is not allowed"],
                 id="yaml-python-tag"),
    pytest.param("version: 1\nnetworks: {a: !!python/name:os.system x}\n", 2,
                 ["networks.a", "could not determine a constructor"], id="yaml-python-scalar"),
    pytest.param("version: 1\nnetworks: {a: !custom x}\n", 2, ["networks.a", "could not determine a constructor"],
                 id="yaml-unknown-tag"),
    pytest.param("version: 1\npolicies: &a {x: *a}\n", 2,
                 ["policies.x", "an alias refers to a mapping that contains it"], id="yaml-recursive-alias"),
    pytest.param("version: 1\n\x07\n", 2, ["not valid YAML or JSON", "not allowed"], id="control-character"),
    pytest.param("", 1, ["the file is empty"], id="empty"),
    pytest.param("# a list\n\n- 1\n", 3, ["expected a mapping with 'version: 1' at the top, not a list"],
                 id="not-a-mapping"),
    pytest.param("version: 1\n---\nversion: 1\n", 2, ["not valid YAML or JSON", "single document"], id="two-documents"),
]


@pytest.mark.parametrize(("text", "line", "parts"), ERRORS)
def test_every_error_names_its_line(text: str, line: int, parts: list[str]) -> None:
    err = error(y(text))
    assert err.fmt == "vmqos"
    assert err.line == line, str(err)
    for part in parts:
        assert part in str(err), str(err)
    assert str(err).startswith(f"vmqos (line {line}): ")


def test_of_several_errors_the_first_in_the_file_is_reported() -> None:
    err = error(y("""
        version: 1
        instances:
          vm1: {ports: [{device: t, mtu: x}]}
        policies:
          p: {egress: {rte: 1}}
        """))
    assert err.line == 3 and "(and 1 more error)" in str(err)


def test_a_billion_laughs_is_refused_quickly() -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    err = error("\n".join(lines) + "\n")
    assert "expands to more than" in str(err)


@needs_neutron
@pytest.mark.parametrize(("text", "line", "parts"), [
    pytest.param(
        """
        version: 1
        policies:
          p:
            neutron:
              rules:
                - {type: dscp_marking, dscp_mark: 26}
                - {type: bandwidth_limit, max_kbps: -1}
        """, 7, ["policies.p.neutron.rules[1].max_kbps", "must be at least 0"], id="neutron-rule-value"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            neutron:
              rules:
                - type: bandwidth_limit
                  max_kbps: 1000
                  max_burst_kbp: 100
        """, 8, ["unknown key 'max_burst_kbp' in policies.p.neutron.rules[0]; did you mean 'max_burst_kbps'?"],
        id="neutron-unknown-rule-key"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            neutron:
              rules: [{type: dscp_marking, dscp_mark: 26}]
            egress: {rate: 1mbit}
        """, 6, ["a policy is either neutron: {rules: [...]} or vmqos's ingress/egress, not both"],
        id="neutron-and-vmqos"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            neutron:
              name: q
              rules: []
        """, 5, ["policies.p.neutron.name: 'q' differs from the policy's key 'p'"], id="neutron-name"),
    pytest.param(
        """
        version: 1
        policies:
          p:
            neutron:
              rule: []
        """, 4, ["missing key 'rules' in policies.p.neutron"], id="neutron-missing-rules"),
])
def test_neutron_policy_errors_name_their_rule(text: str, line: int, parts: list[str]) -> None:
    err = error(y(text))
    assert err.line == line, str(err)
    for part in parts:
        assert part in str(err), str(err)


@needs_nova
def test_nova_extra_spec_errors_name_their_key() -> None:
    err = error(y("""
        version: 1
        flavors:
          f:
            extra_specs:
              "quota:cpu_shares": "512"
              "quota:vif_inbound_average": abc
        """))
    assert err.line == 6 and "flavors.f.extra_specs" in str(err) and "quota:vif_inbound_average" in str(err)
    err = error("version: 1\nflavors:\n  f:\n    extra_specs: {\"quota:cpu_shares\": [1]}\n")
    assert err.line == 4 and "string or an integer" in str(err)


@needs_neutron
def test_notes_of_neutron_policies_are_returned_and_reach_the_document() -> None:
    text = y("""
        version: 1
        policies:
          p:
            neutron:
              rules: [{type: bandwidth_limit, max_kbps: 10000}]
        instances:
          vm1:
            ports: [{device: tap1, policy: p}]
        """)
    state, notes = hostfile.read_host_with_notes(text)
    assert state.policies["p"].qos.egress.bandwidth == BandwidthLimit(rate_bps=10_000_000, burst_bytes=1_000_000)
    assert any("80 %" in n.message for n in notes)
    assert hostfile.read(text).notes == notes


# --------------------------------------------------------------------------------- read() and write()


def test_read_gives_one_instance_without_working_out_what_is_effective() -> None:
    doc = hostfile.read(FULL, instance="vm1")
    state = hostfile.read_host(FULL)
    assert doc.name == "vm1"
    assert doc.cpu == CpuQos(shares=512, period_us=100_000, quota_us=20_000)  # the instance's, not the flavor's
    assert doc.network == state.flavors["small"].qos.network and doc.disk == DiskQos(read_iops_sec=100)
    assert doc.disks == state.instances["vm1"].disks
    # tap-vm1: its own policy wins over its limits and its network's; tap-vm1b: public has no policy
    assert doc.interfaces == {"tap-vm1": state.policies["silver"].qos}


def test_read_port_falls_back_to_limits_then_network_policy_and_cpu_to_flavor() -> None:
    text = y("""
        version: 1
        policies: {gold: {egress: {rate: 1mbit}}}
        flavors: {f: {cpu: {shares: 100}}}
        networks: {private: {policy: gold}}
        instances:
          vm1:
            flavor: f
            ports:
              - {device: a, network: private, limits: {ingress: {rate: 2mbit}}}
              - {device: b, network: private}
        """)
    doc = hostfile.read(text)
    assert doc.cpu == CpuQos(shares=100)
    assert doc.interfaces == {
        "a": NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=2_000_000))),
        "b": NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=1_000_000))),
    }


def test_read_needs_an_instance_named_when_there_are_several() -> None:
    with pytest.raises(FormatError, match=r"2 instances \(vm1, vm2\); choose one"):
        hostfile.read(FULL)
    with pytest.raises(FormatError, match=r"no instance 'vm9'.*vm1, vm2"):
        hostfile.read(FULL, instance="vm9")
    assert hostfile.read(FULL, instance="vm2") == QosDocument(name="vm2")


def test_read_of_a_file_of_policies() -> None:
    one = "version: 1\npolicies:\n  gold: {egress: {rate: 5mbit}}\n"
    assert hostfile.read(one) == QosDocument(
        name="gold", network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=5_000_000))))
    two = one + "  silver: {}\n"
    with pytest.raises(FormatError, match=r"2 policies \(gold, silver\)"):
        hostfile.read(two)
    assert hostfile.read(two, instance="silver") == QosDocument(name="silver", network=NetworkQos())
    with pytest.raises(FormatError, match="nothing to convert"):
        hostfile.read("version: 1\n")


LIMIT = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=8_000_000, burst_bytes=65536)))


def test_write_puts_a_network_on_port0_and_a_disk_on_vda() -> None:
    doc = QosDocument(network=LIMIT, disk=DiskQos(read_iops_sec=5), cpu=CpuQos(shares=300))
    text = hostfile.write(doc)
    assert "port0" in text and "vda" in text and "8mbit" in text and "64kb" in text
    state = hostfile.read_host(text)
    assert state.instances["instance"] == InstanceSpec(
        name="instance", cpu=CpuQos(shares=300), ports=(PortSpec(device="port0", limits=LIMIT),),
        disks={"vda": DiskQos(read_iops_sec=5)})
    assert hostfile.read(text) == QosDocument(name="instance", cpu=CpuQos(shares=300), interfaces={"port0": LIMIT},
                                              disks={"vda": DiskQos(read_iops_sec=5)})


def test_write_keeps_a_default_next_to_per_device_values_in_a_flavor() -> None:
    other = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=1_000_000)))
    doc = QosDocument(name="web1", network=LIMIT, interfaces={"vnet0": other},
                      disk=DiskQos(read_iops_sec=5), disks={"vdb": DiskQos(write_iops_sec=7)})
    assert hostfile.read(hostfile.write(doc)) == doc


def test_write_refuses_interfaces_that_are_not_device_names_and_notes_become_comments() -> None:
    with pytest.raises(UnsupportedError, match="52:54:00:00:00:01"):
        hostfile.write(QosDocument(interfaces={"52:54:00:00:00:01": LIMIT}))
    text = hostfile.write(QosDocument(network=LIMIT).with_notes(Note("egress.burst", "rounded")))
    assert "# warning: egress.burst: rounded" in text
    assert hostfile.read(text).notes == ()


def test_write_host_writes_vmqos_style_with_tc_units() -> None:
    state = HostState(
        policies={"p": Policy("p", LIMIT, origin="neutron")},
        networks={"n": NetworkSpec("n", "p")},
        instances={"vm1": InstanceSpec("vm1", ports=(PortSpec("tap1", network="n", egress_mode=EgressMode.POLICE),),
                                       disks={"vda": DiskQos(read_bytes_sec=10 * 2**20, write_bytes_sec=1_000_000)})},
    )
    text = hostfile.write_host(state)
    assert "version: 1" in text
    assert "p: {egress: {rate: 8mbit, burst: 64kb}, origin: neutron}" in text
    assert "read_bytes_sec: 10mb" in text and "write_bytes_sec: 1000000" in text
    assert "egress_mode: police" in text and "mtu" not in text
    assert hostfile.read_host(text) == state


def test_a_ports_window_clamp_round_trips_and_its_default_is_not_written() -> None:
    text = y("""
        version: 1
        instances:
          vm1:
            ports:
              - {device: tap1, window_clamp: true}
              - {device: tap2, window_clamp: false}
              - {device: tap3}
        """)
    state = hostfile.read_host(text)
    assert [p.window_clamp for p in state.instances["vm1"].ports] == [True, False, False]
    written = hostfile.write_host(state)
    assert "{device: tap1, window_clamp: true}" in written
    assert written.count("window_clamp") == 1  # off, the default, is left out as egress_mode's shape is
    assert hostfile.read_host(written) == state
    assert hostfile.read_host(json.dumps(yaml.safe_load(written))) == state


# -------------------------------------------------------------------------------------------- schema


def test_schema_is_a_json_schema_of_the_file() -> None:
    schema = hostfile.schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert {"version", "policies", "flavors", "networks", "instances"} <= set(schema["properties"])
    assert schema["required"] == ["version"]
    assert "instances" in json.dumps(schema)
    refs = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert refs and all(ref.removeprefix("#/$defs/") in schema["$defs"] for ref in refs)
    direction = schema["$defs"]["DirectionWire"]
    assert direction["additionalProperties"] is False and "rate" in direction["properties"]


def test_schema_validates_the_demo_and_refuses_typos() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = hostfile.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(yaml.safe_load(DEMO.read_text()))
    assert list(validator.iter_errors(yaml.safe_load(FULL))) == []
    assert list(validator.iter_errors({"version": 1, "instances": {"vm1": {"portz": []}}}))


# ----------------------------------------------------------------------------------- round trips

NAME = st.text(alphabet=string.ascii_letters + string.digits + "-_.:", min_size=1, max_size=10)
DEVICE = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=15)
RATE = st.integers(1, 40_000_000).map(lambda k: k * 1000)
SIZE = st.integers(1, 2**32 - 1)
COUNT = st.integers(1, 10**7)


@st.composite
def bandwidths(draw: st.DrawFn) -> BandwidthLimit:
    rate = draw(RATE)
    peak = draw(st.none() | st.integers(rate // 1000, 80_000_000).map(lambda k: k * 1000))
    return BandwidthLimit(rate_bps=rate, peak_bps=peak, burst_bytes=draw(st.none() | SIZE))


@st.composite
def matches(draw: st.DrawFn) -> TrafficMatch:
    protocol = draw(st.sampled_from([None, "tcp", "udp", "sctp", "icmp", "icmpv6"]))
    ports: tuple[int, ...] = ()
    if protocol in ("tcp", "udp", "sctp"):
        ports = tuple(draw(st.lists(st.integers(1, 65535), max_size=3)))
    dscp = draw(st.sampled_from(sorted(VALID_DSCP_MARKS))) if protocol is None else \
        draw(st.none() | st.sampled_from(sorted(VALID_DSCP_MARKS)))
    return TrafficMatch(protocol=protocol, ports=ports, dscp=dscp)


@st.composite
def class_lists(draw: st.DrawFn) -> tuple[TrafficClass, ...]:
    shares = draw(st.lists(st.integers(1, 30), max_size=3))
    classes = [TrafficClass(f"c{i}", share, draw(matches())) for i, share in enumerate(shares)]
    return (*classes, TrafficClass("rest", 100 - sum(shares)))


@st.composite
def directions(draw: st.DrawFn, egress: bool) -> DirectionQos:
    bandwidth = draw(st.none() | bandwidths())
    packet_rate = draw(st.none() | st.builds(PacketRateLimit, COUNT, st.none() | COUNT))
    min_bps = draw(st.none() | RATE)
    if min_bps is not None and bandwidth is not None:
        min_bps = min(min_bps, bandwidth.rate_bps)
    min_pps = draw(st.none() | COUNT)
    if min_pps is not None and packet_rate is not None:
        min_pps = min(min_pps, packet_rate.pps)
    return DirectionQos(
        bandwidth=bandwidth, packet_rate=packet_rate, min_bps=min_bps, min_pps=min_pps,
        dscp=draw(st.none() | st.sampled_from(sorted(VALID_DSCP_MARKS))) if egress else None,
        classes=draw(class_lists()) if bandwidth is not None and draw(st.booleans()) else (),
    )


@st.composite
def networks(draw: st.DrawFn) -> NetworkQos:
    ingress = draw(st.just(DirectionQos()) | directions(egress=False))
    egress = draw(st.just(DirectionQos()) | directions(egress=True))
    any_pps = None if ingress.min_pps or egress.min_pps else draw(st.none() | COUNT)
    return NetworkQos(ingress=ingress, egress=egress, min_pps_any=any_pps)


@st.composite
def disks(draw: st.DrawFn) -> DiskQos:
    values: dict[str, object] = {}
    for kind in ("bytes", "iops"):
        scopes = draw(st.sampled_from([(), ("total",), ("read",), ("write",), ("read", "write")]))
        for scope in scopes:
            key = f"{scope}_{kind}_sec"
            values[key] = base = draw(st.integers(1, 10**10))
            if draw(st.booleans()):
                values[f"{key}_max"] = base + draw(st.integers(0, 10**10))
                if draw(st.booleans()):
                    values[f"{key}_max_length"] = draw(st.integers(1, 3600))
    values["size_iops_sec"] = draw(st.none() | st.integers(1, 2**20))
    values["group_name"] = draw(st.none() | st.text(string.ascii_letters + " -", min_size=1).filter(str.strip))
    return DiskQos(**values)  # type: ignore[arg-type]


CPUS = st.builds(CpuQos, st.none() | st.integers(2, 262144), st.none() | st.integers(1000, 1_000_000),
                 st.none() | st.integers(1000, 10**12))


@st.composite
def hosts(draw: st.DrawFn) -> HostState:
    policy_names = draw(st.lists(NAME, unique=True, max_size=3))
    policies = {n: Policy(n, draw(networks()), draw(st.sampled_from(["vmqos", "neutron"]))) for n in policy_names}
    flavors = {}
    for name in draw(st.lists(NAME, unique=True, max_size=2)):
        flavors[name] = Flavor(name, QosDocument(
            name=name, network=draw(st.none() | networks()), cpu=draw(st.none() | CPUS),
            disk=draw(st.none() | disks())))
    nets = {n: NetworkSpec(n, draw(st.none() | st.sampled_from(policy_names)) if policy_names else None)
            for n in draw(st.lists(NAME, unique=True, max_size=2))}
    instance_names = draw(st.lists(NAME, unique=True, max_size=3))
    devices = draw(st.lists(DEVICE.filter(lambda d: d not in (".", "..")), unique=True, max_size=5))
    owner = {d: draw(st.sampled_from(instance_names)) for d in devices} if instance_names else {}
    instances = {}
    for name in instance_names:
        ports = tuple(
            PortSpec(device=d, network=draw(st.none() | st.sampled_from(list(nets))) if nets else None,
                     policy=draw(st.none() | st.sampled_from(policy_names)) if policy_names else None,
                     limits=draw(st.none() | networks()), egress_mode=draw(st.sampled_from(EgressMode)),
                     window_clamp=draw(st.booleans()), mtu=draw(st.integers(68, 65535)))
            for d in devices if owner[d] == name)
        instances[name] = InstanceSpec(
            name=name, flavor=draw(st.none() | st.sampled_from(list(flavors))) if flavors else None,
            cpu=draw(st.none() | CPUS), ports=ports,
            disks=draw(st.dictionaries(st.sampled_from(["vda", "vdb", "sda", "hdc"]), disks(), max_size=2)))
    return HostState(policies=policies, flavors=flavors, networks=nets, instances=instances)


ROUND_TRIP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIP
@given(hosts())
def test_host_state_round_trips(state: HostState) -> None:
    text = hostfile.write_host(state)
    assert hostfile.read_host(text) == state
    assert hostfile.read_host(json.dumps(yaml.safe_load(text))) == state  # the same data as JSON


@st.composite
def documents(draw: st.DrawFn) -> QosDocument:
    return QosDocument(
        name=draw(st.none() | NAME), network=draw(st.none() | networks()), cpu=draw(st.none() | CPUS),
        disk=draw(st.none() | disks()),
        interfaces=draw(st.dictionaries(DEVICE.filter(lambda d: d not in (".", "..")), networks(), max_size=2)),
        disks=draw(st.dictionaries(st.sampled_from(["vda", "vdb", "sdc"]), disks(), max_size=2)),
    )


@ROUND_TRIP
@given(documents())
def test_document_round_trips_through_one_instance(doc: QosDocument) -> None:
    expected = QosDocument(
        name=doc.name or "instance",
        network=doc.network if doc.interfaces else None,
        interfaces=doc.interfaces or ({"port0": doc.network} if doc.network is not None else {}),
        disk=doc.disk if doc.disks else None,
        disks=doc.disks or ({"vda": doc.disk} if doc.disk is not None else {}),
        cpu=doc.cpu,
    )
    assert hostfile.read(hostfile.write(doc)) == expected


def test_errors_are_vmqos_errors_for_the_cli() -> None:
    assert issubclass(FormatError, VmqosError)
    assert error("version: 1\nx: 1\n").exit_code == 2
