"""Issue 13 item 10 ("Trust"): `<inbound average='0'/>` is no limit, as libvirt reads it.

libvirt's virNetDevBandwidthParseRate only requires the average (or floor) attribute to be
present; with average and floor 0 it installs nothing and its formatter drops the element. Nova
writes exactly this for quota:vif_inbound_average=0 (the string "0" is truthy in its config).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vmqos.core.errors import InvalidValue
from vmqos.core.formats import libvirt, nova
from vmqos.core.model import BandwidthLimit, DirectionQos, NetworkQos


def test_item10_inbound_average_0_is_no_limit_with_an_info_note():
    doc = libvirt.read("<bandwidth><inbound average='0'/></bandwidth>")
    assert doc.network is None
    assert [(n.field, n.level) for n in doc.notes] == [("inbound", "info")]
    assert "no limit" in doc.notes[0].message


def test_item10_average_0_beside_a_real_direction_keeps_that_direction():
    doc = libvirt.read("<bandwidth><inbound average='1000'/><outbound average='0'/></bandwidth>")
    assert doc.network == NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate_bps=8_000_000)))
    assert [n.field for n in doc.notes] == ["outbound"]


def test_item10_average_0_with_peak_ignores_the_peak_as_libvirt_does():
    doc = libvirt.read("<bandwidth><inbound average='0' peak='500' burst='64'/></bandwidth>")
    assert doc.network is None and "peak and burst ignored" in doc.notes[0].message


def test_item10_no_average_and_no_floor_attribute_is_still_refused():
    """libvirt: "Missing mandatory average or floor attributes"."""
    with pytest.raises(InvalidValue, match="mandatory"):
        libvirt.read("<bandwidth><inbound/></bandwidth>")
    with pytest.raises(InvalidValue, match="mandatory"):
        libvirt.read("<bandwidth><outbound peak='10'/></bandwidth>")


@pytest.mark.parametrize("way", ["inbound", "outbound"])
def test_item10_round_trip_nova_to_libvirt_to_model_agrees(way):
    """What Nova reads from quota:vif_*_average=0, and what the reader makes of the XML Nova writes for it."""
    from_nova = nova.read(f"quota:vif_{way}_average=0")
    nova_xml = f"<domain><devices><interface><target dev='tap0'/><bandwidth><{way} average='0'/></bandwidth>" \
               "</interface></devices></domain>"
    from_xml = libvirt.read(nova_xml)
    assert from_nova.network is None and from_xml.interfaces == {"tap0": NetworkQos()}
    assert replace(libvirt.read(f"<bandwidth><{way} average='0'/></bandwidth>"), notes=()) \
        == replace(from_nova, notes=())
