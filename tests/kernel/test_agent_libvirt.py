"""Kernel tier, with libvirt's test driver: a domain that starts is a pass for its interfaces.

libvirt's test driver (`test:///default`) keeps its domains in the connection that made them and
sends that connection's lifecycle events, so the domain is started through the agent's own
connection (`agent.libvirt.conn`); its interface's target is a real tap in the namespace. Link
events, retries and resyncs are off: only the libvirt event can place the limit.
"""

from __future__ import annotations

import logging

import pytest

from tests.kernel.test_agent import RATE, Host, tap, wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.libvirt]

DOMAIN = """<domain type='test'>
  <name>vq-agent-dom</name>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='vqlv0'/></interface></devices>
</domain>"""


@pytest.fixture
def host(netns, tmp_path):
    pytest.importorskip("libvirt", reason="libvirt-python is missing: `pip install 'vmqos[libvirt]'`")
    h = Host(netns, tmp_path)
    try:
        yield h
    finally:
        h.stop()


def test_a_started_domain_gets_its_interfaces_limits(host, caplog):
    caplog.set_level(logging.INFO, logger="vmqos")
    host.server.put("vqlv0", RATE)
    agent = host.agent(use_libvirt=True, libvirt="test:///default", watch_links=False, retry_s=3600,
                       resync_s=3600)
    assert agent.libvirt is not None
    host.report(lambda r: bool(r["ports"]) and r["ports"][0]["status"] == "pending")
    tap(host.netns, "vqlv0")  # libvirt made the tap (here: the test does; the test driver makes none)
    assert not host.rates("vqlv0")
    agent.libvirt.conn.createXML(DOMAIN, 0)
    wait_for("the limit placed on the libvirt event", lambda: {2_000_000, 3_000_000} <= host.rates("vqlv0"))
    assert any("libvirt domain vq-agent-dom started: placing the limits of vqlv0" in r.getMessage()
               for r in caplog.records)
    registered = host.server.path.with_suffix(".registrations").read_text()
    assert '"name": "test"' in registered  # the test driver's own domain, in the inventory


def test_without_libvirtd_the_agent_says_so_once_and_goes_on(host, caplog):
    caplog.set_level(logging.INFO, logger="vmqos")
    agent = host.agent(use_libvirt=True, libvirt="qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert agent.libvirt is None
    lines = [r for r in caplog.records if r.getMessage().startswith("libvirt: not followed")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING  # asked for by URI: a warning
