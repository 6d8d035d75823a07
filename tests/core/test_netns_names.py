"""An empty or invalid namespace name is an error, never the host's own namespace (issue 13, item 6)."""

import pytest

from vmqos.core.errors import InvalidValue
from vmqos.core.model.host import check_netns_name
from vmqos.drivers.process import check_netns


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 256, "a\0b"])
def test_names_iproute2_refuses_are_refused(name):
    with pytest.raises(InvalidValue, match="network namespace name"):
        check_netns_name(name)


@pytest.mark.parametrize("name", ["lab-host", "x" * 255, "vq ns", "ns.1"])
def test_names_iproute2_takes_are_taken(name):
    assert check_netns_name(name) == name


def test_the_drivers_refuse_an_empty_namespace_before_touching_anything():
    """Was: /run/netns/ exists, so "" passed the existence check and pyroute2 opened the host's."""
    with pytest.raises(InvalidValue, match="--netns"):
        check_netns("")
    check_netns(None)  # the caller's own namespace, as before


def test_every_use_case_starts_by_refusing_an_empty_namespace(tmp_path):
    """`port set --config` writes no kernel: it must not store the change under the host's scope."""
    from vmqos.core.desired.ports import PortChange, scope_of
    from vmqos.services.ports import set_port
    from vmqos.store import Store

    assert scope_of(None) == "" and scope_of("lab-host") == "lab-host"
    with Store(f"sqlite:///{tmp_path}/s.db") as store:
        with pytest.raises(InvalidValue, match="--netns"):
            set_port(store, "", "tap-vq1", PortChange(inbound="1000"), live=False)
        assert store.load("").instances == {}
