"""What the agent finds on its host for `register`: ports, libvirt domains, lab instances.

Each part is read on its own, and one that cannot be read is left out with one log line: a host
without libvirt still registers its taps.
"""

from __future__ import annotations

import logging

from vmqos.core.errors import VmqosError
from vmqos.core.fleet.inventory import PORT_KINDS, Domain, HostInventory, HostPort, read_domain
from vmqos.drivers.libvirt_events import LifecycleWatcher
from vmqos.drivers.link_events import LinkWatcher
from vmqos.services.agent_cache import lab_instances
from vmqos.store import Store

log = logging.getLogger(__name__)


def gather(netns: str | None, store: Store, libvirt: LifecycleWatcher | None) -> HostInventory:
    ports: tuple[HostPort, ...] = ()
    domains: list[Domain] = []
    try:
        with LinkWatcher(netns) as links:
            ports = tuple(HostPort(link.name, link.kind, link.mac) for link in links.links(remember=False)
                          if link.kind in PORT_KINDS)
    except (VmqosError, OSError) as exc:
        log.warning("inventory: the links could not be listed: %s", exc)
    if libvirt is not None:
        try:
            for xml, state in libvirt.domains():
                try:
                    domains.append(read_domain(xml, state))
                except VmqosError as exc:
                    log.warning("inventory: a libvirt domain's XML could not be read: %s", exc)
        except VmqosError as exc:
            log.warning("inventory: %s", exc)
    try:
        instances = lab_instances(store, netns)
    except VmqosError as exc:
        log.warning("inventory: the lab instances could not be read: %s", exc)
        instances = ()
    return HostInventory(ports, tuple(domains), instances)
