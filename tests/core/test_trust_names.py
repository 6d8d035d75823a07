"""Issue 13 item 1 ("Trust"): every name vmqos carries into a command is refused at the model's edge
or carried faithfully: a tc/ip batch line reads back (as iproute2 6.1 reads it) as the words a shell
reads, and nft gets identifiers of its grammar and device names it cannot read as a set reference
('@...'), a wildcard ('d*') or an escape. A batch that stops early fails every line it did not run."""

from __future__ import annotations

import re
import shlex
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmqos.core.errors import FormatError, VmqosError
from vmqos.core.formats import hostfile
from vmqos.core.model.document import QosDocument
from vmqos.core.model.host import (
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
)
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
)
from vmqos.core.plan.batch_line import batch_words, unfit_for_batch
from vmqos.core.plan.diff import diff
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import chain_from, chain_to, ifb_name, nft_ident
from vmqos.core.plan.objects import is_nft
from vmqos.core.plan.render import tc_commands
from vmqos.drivers import batch as batch_driver
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.drivers.nft_json import transaction
from vmqos.reconcile.execute import Reconciler

# Every printable and control character, the ones the formats trip on first, and a sample of the rest.
SPECIAL = "#'\"\\*@$/:;&|<>(){}[]!?~`%^=+,. -_\t\n\r\x0b\x0c\x00\x1b\x7f\x85\xa0\u2028\ud800"
CHARS = st.one_of(st.sampled_from(SPECIAL), st.characters(min_codepoint=0, max_codepoint=0x7F),
                  st.characters())
NAMES = st.text(CHARS, min_size=0, max_size=18)
NFT_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a subset of nft's scanner `identifier`
QOS = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000), packet_rate=PacketRateLimit(1000)),
                 egress=DirectionQos(bandwidth=BandwidthLimit(5_000_000), dscp=18))


def _port_plan(device: str):
    return plan_host(HostState(instances={"i": InstanceSpec("i", ports=(PortSpec(device, limits=QOS),))}))[device]


@settings(max_examples=200, deadline=None)
@given(NAMES)
def test_a_device_name_is_refused_or_carried_faithfully_by_every_command(name: str) -> None:
    try:
        PortSpec(name, limits=QOS)
    except VmqosError as exc:
        assert "\n" not in str(exc)
        return
    ops = diff(_port_plan(name).objects, [])
    for op in ops:
        if is_nft(op.obj):
            continue
        for command in tc_commands(op):
            line = command.split(" ", 1)[1]
            assert unfit_for_batch(line) is None, (line, unfit_for_batch(line))
            assert batch_words(line) == shlex.split(line)
            assert op.obj.device in batch_words(line)  # the device, whole, as one word
    for cmd in transaction([op for op in ops if is_nft(op.obj)]):
        (_, body), = cmd.items()
        (kind, spec), = body.items()
        if kind in ("chain", "counter", "set"):
            assert NFT_IDENTIFIER.match(spec["name"]) and len(spec["name"]) < 256, spec["name"]
        if kind == "chain" and "dev" in spec:
            assert spec["dev"] == name
        for expr in spec.get("expr", ()):
            update = expr.get("set")
            if update:
                device = update["elem"]["concat"][0]
                assert device == name and not device.startswith("@") and "*" not in device and "\\" not in device
    assert re.fullmatch(r"vqi[0-9a-f]{12}", ifb_name(name))
    assert NFT_IDENTIFIER.match(chain_to(name)) and NFT_IDENTIFIER.match(chain_from(name))


@pytest.mark.parametrize("name", ["d#1", "a'b", 'a"b', "a\\b", "d*", "@x", "a\x01b", "a\x7fb", "a\u2028b",
                                  "a\xa0b", "a\rb", "a\x0bb"])
def test_names_no_batch_line_or_nft_can_carry_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(VmqosError, match="iproute2's batch lines and nft cannot carry"):
        PortSpec(name)


@pytest.mark.parametrize("name", ["tap-vm1", "vnet0", "a@b", "a$b", "é1", "ab*c"[:2], "x{y}", "a,b", "-x"])
def test_legal_names_that_need_no_escape_are_managed(name: str) -> None:
    assert PortSpec(name).device == name


@settings(max_examples=200, deadline=None)
@given(NAMES)
def test_policy_flavor_network_and_instance_names_are_printable_one_line_text(name: str) -> None:
    makers = (lambda: Policy(name, NetworkQos()), lambda: Flavor(name, QosDocument(name=name)),
              lambda: NetworkSpec(name), lambda: InstanceSpec(name))
    for make in makers:
        try:
            made = make()
        except VmqosError as exc:
            assert "\n" not in str(exc)
            continue
        assert made.name == name and name.isprintable()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab_-.0123456789abcdef"), min_size=1, max_size=15), min_size=2, max_size=6,
                unique=True))
def test_two_ports_never_share_an_nft_identifier(ports: list[str]) -> None:
    assert len({nft_ident(p) for p in ports}) == len(ports)


def test_a_port_named_like_another_ports_mangled_identifier_keeps_its_own_chains() -> None:
    mangled = nft_ident("tap-a")  # tap_a_ and six hex digits
    assert mangled.startswith("tap_a_") and nft_ident(mangled) != mangled
    assert chain_to(mangled) != chain_to("tap-a")


@settings(max_examples=200, deadline=None)
@given(st.text(CHARS, max_size=40))
def test_a_line_fit_for_a_batch_reads_as_a_shell_reads_it(line: str) -> None:
    if unfit_for_batch(line) is None:
        assert batch_words(line) == shlex.split(line) and "#" not in line and "\n" not in line


# -- the batch runner: every line that did not demonstrably run is failed -------------------------

def _tc_that(exits: set[str] = frozenset(), failing: set[str] = frozenset()):
    """A stand-in for `tc -force -batch -`: a line on a device of `failing` fails as tc reports it,
    one on a device of `exits` makes it exit without a word about that line or the ones after (as on
    a duplicate argument); `seen` lists the devices of the lines each process read."""
    seen: list[list[str]] = []

    def run(argv, netns, *, input, check, timeout):
        err: list[str] = []
        seen.append([])
        for number, line in enumerate(input.splitlines(), 1):
            dev = batch_words(line)[3]
            seen[-1].append(dev)
            if dev in exits:
                err.append('Error: duplicate "dev": "x" is the second value.')
                return SimpleNamespace(returncode=255, stderr="\n".join(err) + "\n", stdout="")
            if dev in failing or dev == "vq/none":
                err += [f'Cannot find device "{dev}"', f"Command failed -:{number}"]
        return SimpleNamespace(returncode=1 if err else 0, stderr="\n".join(err) + "\n", stdout="")

    return run, seen


def _lines(count: int) -> list[str]:
    return [f"qdisc replace dev p{i} root handle 1: htb default 10" for i in range(count)]


def test_a_batch_read_to_its_end_fails_only_the_lines_tc_named(monkeypatch) -> None:
    run, seen = _tc_that(failing={"p1"})
    monkeypatch.setattr(batch_driver, "run", run)
    failures = batch_driver.run_batch("tc", _lines(4), None)
    assert [(f.index, f.message) for f in failures] == [(1, 'Cannot find device "p1"')]
    assert seen == [["p0", "p1", "p2", "p3", "vq/none"]]  # the last line proves the batch was read to its end


def test_a_batch_that_stops_fails_the_unproven_lines_of_its_chunk_and_runs_the_rest(monkeypatch) -> None:
    run, seen = _tc_that(exits={"p3"}, failing={"p2"})
    monkeypatch.setattr(batch_driver, "run", run)
    monkeypatch.setattr(batch_driver, "CHUNK", 2)
    failures = batch_driver.run_batch("tc", _lines(6), None)
    assert [f.index for f in failures] == [2, 3]  # never the first line only, never the lines that ran
    assert failures[0].message == 'Cannot find device "p2"'
    assert "stopped here" in failures[1].message and "duplicate" in failures[1].message
    assert seen == [["p0", "p1", "vq/none", "p2", "p3"], ["p4", "p5", "vq/none"]]


def test_with_one_chunk_a_stop_fails_every_line_not_proven(monkeypatch) -> None:
    run, _ = _tc_that(exits={"p3"})
    monkeypatch.setattr(batch_driver, "run", run)
    assert [f.index for f in batch_driver.run_batch("tc", _lines(6), None)] == [0, 1, 2, 3, 4, 5]


def test_a_line_the_batch_reader_would_misread_is_not_sent_and_fails_alone(monkeypatch) -> None:
    run, seen = _tc_that()
    monkeypatch.setattr(batch_driver, "run", run)
    lines = ["qdisc replace dev p0 root handle 1: htb default 10", "qdisc replace dev 'd#1' root handle 1: htb",
             "qdisc replace dev 'a'\"'\"'b' root handle 1: htb", "qdisc replace dev p3 root handle 1: htb default 10"]
    failures = batch_driver.run_batch("tc", lines, None)
    assert [f.index for f in failures] == [1, 2] and all(f.message.startswith("not run:") for f in failures)
    assert seen == [["p0", "p3", "vq/none"]]


def test_the_reconciler_fails_only_the_port_whose_line_cannot_be_carried() -> None:
    """The fake batch refuses what the real runner would not send; the other ports are applied."""
    kernel = FakeKernel(["tap0", "tap1", "tap2"])
    tc, nft, batch = fake_drivers(kernel)
    plans = plan_host(HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=QOS),))
                                           for d in ("tap0", "tap1", "tap2")}))
    def sneaky(tool, lines, netns):  # tap1's root qdisc line as if its name had held a '#'
        return batch(tool, [line.replace("dev tap1 root", "dev 'tap1#' root") for line in lines], netns)

    results, record = Reconciler(tc=tc, nft=nft, batch=sneaky).reconcile(plans)
    errors = {r.port: r.error for r in results}
    assert errors["tap0"] is None and errors["tap2"] is None and "not run" in (errors["tap1"] or "")
    assert set(record) == {"tap0", "tap2"}


def test_a_host_file_with_a_port_named_d_hash_1_is_refused_whole_naming_the_line() -> None:
    """The issue's case: `d#1` among 20 good ports. Nothing of the file is applied, not the others
    either, and the error names the port's line and why."""
    ports = "".join(f"      - device: tap{i}\n        limits: {{ingress: {{rate: 10mbit}}}}\n" for i in range(20))
    text = ("version: 1\ninstances:\n  a:\n    ports:\n      - device: \"d#1\"\n"
            "        limits: {ingress: {rate: 10mbit}}\n" + ports)
    with pytest.raises(FormatError) as info:
        hostfile.read_host(text)
    assert info.value.line == 5 and "'d#1'" in str(info.value) and "batch lines" in str(info.value)
