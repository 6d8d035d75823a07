"""libvirt's domain lifecycle events (start, resume, migration in), and its domains for an inventory.

libvirt-python delivers events through an event loop the program runs: `virEventRegisterDefaultImpl`
once per process before the connection is opened, then `virEventRunDefaultImpl` in a thread of its
own; `domainEventRegisterAny(..., VIR_DOMAIN_EVENT_ID_LIFECYCLE, ...)` calls back on that thread. A
timer wakes the loop twice a second so that `stop` is heard. The callback gets the domain's name,
the event and the interfaces' target devices, read from its live XML at that moment (a started
domain's taps exist by then: libvirt creates them before it starts the CPUs).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from vmqos.core.errors import KernelError
from vmqos.drivers.libvirt_driver import DEFAULT_URI, _STATES, _module, parse_domain_xml

log = logging.getLogger(__name__)

# virDomainEventType
EVENTS = {0: "defined", 1: "undefined", 2: "started", 3: "suspended", 4: "resumed", 5: "stopped", 6: "shutdown",
          7: "pmsuspended", 8: "crashed"}
_loop_registered = False
_loop_lock = threading.Lock()


@dataclass(frozen=True)
class DomainEvent:
    domain: str
    event: str  # one of EVENTS' values
    detail: int
    devices: tuple[str, ...]  # the interfaces' target devices (taps) at the time of the event


class LifecycleWatcher:
    """One connection to `uri` with the lifecycle callback; `start()` runs the event loop thread."""

    def __init__(self, uri: str | None, on_event: Callable[[DomainEvent], None]) -> None:
        global _loop_registered
        self.lv = _module()
        with _loop_lock:
            if not _loop_registered:
                self.lv.virEventRegisterDefaultImpl()
                _loop_registered = True
        self.uri = uri or DEFAULT_URI
        try:
            self.conn = self.lv.open(self.uri)
        except self.lv.libvirtError as exc:
            raise KernelError(f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}") from None
        self.on_event = on_event
        self._stop = threading.Event()
        self._callback = self.conn.domainEventRegisterAny(None, self.lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                          self._lifecycle, None)
        self._timer = self.lv.virEventAddTimeout(500, lambda *_: None, None)
        self._thread = threading.Thread(target=self._run, name="vmqos-libvirt-events", daemon=True)

    def _lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        try:
            _, _, interfaces, _ = parse_domain_xml(dom.XMLDesc(0))
            devices = tuple(i.target for i in interfaces if i.target)
            self.on_event(DomainEvent(dom.name(), EVENTS.get(event, str(event)), detail, devices))
        except Exception:  # a callback must not kill libvirt's loop: one line, and go on
            log.exception("libvirt lifecycle event of a domain could not be handled")

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.lv.virEventRunDefaultImpl() < 0:
                log.warning("libvirt's event loop failed; lifecycle events stop (resyncs go on)")
                return

    def start(self) -> LifecycleWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        try:
            self.conn.domainEventDeregisterAny(self._callback)
            self.lv.virEventRemoveTimeout(self._timer)
            self.conn.close()
        except self.lv.libvirtError:
            pass

    def domains(self) -> list[tuple[str, str]]:
        """(live XML, state) of every domain of the connection, for an inventory."""
        out = []
        try:
            for dom in self.conn.listAllDomains(0):
                out.append((dom.XMLDesc(0), _STATES.get(dom.state()[0], "unknown")))
        except self.lv.libvirtError as exc:
            raise KernelError(f"libvirt ({self.uri}): listing domains: {exc.get_error_message()}") from None
        return out
