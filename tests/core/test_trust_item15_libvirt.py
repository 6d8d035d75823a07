"""Issue 13 item 15 ("Trust"), libvirt XML: the input is bounded before it is parsed, and its
unsigned fields are read as libvirt's virStrToLong_ullp reads them (no `-`, not even `-0`; only
ASCII digits)."""

from __future__ import annotations

import time

import pytest

from vmqos.core.errors import FormatError, InvalidValue
from vmqos.core.formats import libvirt, nova
from vmqos.core.formats._common import MAX_DOCUMENT_CHARS


def test_item15_libvirt_input_is_bounded_before_parsing():
    """A 44 MB domain XML took 12 s and 966 MB; now it is refused before the parser sees it."""
    interface = "<interface type='network'><bandwidth><inbound average='1'/></bandwidth></interface>"
    text = "<domain><devices>" + interface * (44_000_000 // len(interface)) + "</devices></domain>"
    started = time.monotonic()
    with pytest.raises(FormatError, match=f"a libvirt document has at most {MAX_DOCUMENT_CHARS}"):
        libvirt.read(text)
    assert time.monotonic() - started < 1.0


def test_item15_libvirt_a_large_but_real_domain_is_read():
    interface = "<interface><target dev='vnet{}'/><bandwidth><inbound average='1'/></bandwidth></interface>"
    text = "<domain><devices>" + "".join(interface.format(i) for i in range(500)) + "</devices></domain>"
    assert len(libvirt.read(text).interfaces) == 500


@pytest.mark.parametrize("attr", ["average", "peak", "burst", "floor"])
def test_item15_libvirt_uint_refuses_minus_zero_as_libvirt_does(attr):
    """virStrToLong_ullp refuses any '-' (memchr(s, '-', ...)), so libvirt refuses average='-0'."""
    extra = "" if attr == "average" else " average='100'"
    with pytest.raises(InvalidValue) as err:
        libvirt.read(f"<bandwidth><inbound {attr}='-0'{extra}/></bandwidth>")
    assert err.value.field == f"inbound.{attr}"


def test_item15_libvirt_uint_takes_a_plus_as_strtoull_does():
    assert libvirt.read("<bandwidth><inbound average='+10'/></bandwidth>").network.ingress.bandwidth.rate_bps == 80_000


def test_item15_nova_vif_minus_zero_is_refused_too():
    """Nova writes the extra spec's string as it is into the XML (designer.set_vif_bandwidth_config),
    so quota:vif_inbound_average=-0 becomes average='-0', which libvirt refuses."""
    with pytest.raises(InvalidValue) as err:
        nova.read("quota:vif_inbound_average=-0")
    assert err.value.field == "quota:vif_inbound_average"


@pytest.mark.parametrize("value", ["²", "1²", "٥", "５", "1_0", "0x10", " 1 0"])
def test_item15_libvirt_uint_refuses_what_is_not_ascii_digits(value):
    with pytest.raises(InvalidValue) as err:
        libvirt.read(f"<bandwidth><outbound average='{value}'/></bandwidth>")
    assert err.value.field == "outbound.average"
