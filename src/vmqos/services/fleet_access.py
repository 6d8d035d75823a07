"""Who may do what with the fleet's /v1 API.

- An admin: everything.
- A caller with the `service` role is bound to one host (`Caller.host`): it registers that host,
  reads its desired state, its ports, events and quarantines, and reports for it; any other host,
  and every other write, is 403. A service account bound to no host reads no host's state.
- A project's member (or reader) reads the fleet's views of its own project's Neutron ports (ports,
  events, quarantines); a device that is not one of them is not found, as Neutron hides another
  project's port; the hosts themselves and every write are 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmqos.services.identity import Caller, Forbidden


@dataclass(frozen=True)
class Scope:
    """What a read may show: one host's devices, one project's ports, or everything (both None)."""

    host: str | None = None
    project_id: str | None = None


def _who(caller: Caller) -> str:
    return f"user {caller.user.name}"


def check_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"{action} (admin only; {_who(caller)} is not an admin)")


def check_host(caller: Caller, host: str, action: str) -> None:
    """An admin, or the service user of `host`."""
    if caller.is_admin or (caller.is_service and caller.host is not None and caller.host == host):
        return
    if caller.is_service:
        bound = f"bound to host {caller.host}" if caller.host else "bound to no host"
        raise Forbidden(f"{action} for host {host} ({_who(caller)} is {bound})")
    raise Forbidden(f"{action} for host {host} (an admin's or that host's agent's)")


def read_scope(caller: Caller, host: str | None, action: str) -> Scope:
    """The devices a read of `host`'s (None: every host's) may show this caller."""
    if caller.is_admin:
        return Scope(host=host)
    if caller.is_service:
        if caller.host is None or (host is not None and host != caller.host):
            check_host(caller, host or "(every host)", action)
        return Scope(host=caller.host)
    if caller.project is None:
        raise Forbidden(f"{action} ({_who(caller)}'s token is scoped to no project)")
    return Scope(host=host, project_id=caller.project.id)
