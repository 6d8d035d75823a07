"""The drivers open a namespace, never create one (pyroute2's default is O_CREAT)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from pyroute2 import IPRoute
from pyroute2.netns import create_socket

from vmqos.core.errors import NotFound
from vmqos.drivers.privileges import open_in_netns
from vmqos.drivers.process import NETNS_DIR

pytestmark = pytest.mark.kernel


def test_a_namespace_deleted_after_its_check_is_not_found_and_not_created(netns):
    """The race of `check_netns` then the open: the namespace goes in between."""
    subprocess.run(["ip", "netns", "del", netns], check=True)
    path = os.path.join(NETNS_DIR, netns)
    with pytest.raises(NotFound, match=netns):
        open_in_netns(netns, IPRoute)  # TcNetlink's opener
    with pytest.raises(NotFound, match=netns):  # the counter reader's
        open_in_netns(netns, lambda **ns: create_socket(family=socket.AF_NETLINK, socket_type=socket.SOCK_RAW,
                                                        proto=0, **ns))
    assert not os.path.exists(path), "a namespace was created by opening it"
