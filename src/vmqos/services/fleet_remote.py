"""`vmqos port set|clear DEV --server URL --host HOST`: the local command's edit, sent to a server.

The server keeps one policy per device in the host file's form (services.fleet_wire.NativePort), so
a change is read-modify-write: the device's current native policy is read (GET), the change is applied
to it with the very function the local command uses (core.desired.ports.changed_limits: domiftune
semantics, same parser, same messages, so a bad value is refused before any request), and the result is
sent whole (PUT) on the condition that nobody wrote in between: If-Match with the revision read (or
If-None-Match: * when the device had no limits). When someone did (412), the device is read again and
the change applied to what it holds now, once; a second conflict is reported (ConflictError), never
a lost update. A change that replaces the whole policy (a policy file) is written unconditionally: it
depends on nothing it read.

`--policy ID` (not a file) names one of the server's vmqos policies (GET /v1/policies): the device
then follows that policy, and every change of it; it is written whole, unconditionally, and cannot
be combined with --inbound/--outbound (the limits are the policy's: change the policy instead).

What the server's native form cannot hold is refused here, in one line, rather than dropped: an
egress mode or a window clamp (a desired row has neither).
"""

from __future__ import annotations

from vmqos.core.desired.ports import PortChange, changed_limits
from vmqos.core.errors import ConflictError, InvalidValue
from vmqos.core.formats.hostfile import policy_from_data, policy_to_data
from vmqos.core.model.host import Policy, check_device_name
from vmqos.core.model.network import NetworkQos
from vmqos.services.fleet_wire import NativePort, Port
from vmqos.services.server_client import ServerClient, ServerNotFound, ServerPreconditionFailed


def _current(client: ServerClient, host: str, device: str) -> Port | None:
    try:
        return client.port(device, host)
    except ServerNotFound:
        return None


def native_body(current: Port | None, change: PortChange) -> NativePort:
    """The PUT body that applies `change` to the device's current native policy (pure, given `current`)."""
    if change.egress_mode is not None:
        raise InvalidValue("--egress-mode", change.egress_mode.value, "leave it out with --server: the server's "
                           "desired state has no egress mode per port (the agent's host decides)")
    if change.window_clamp is not None:
        raise InvalidValue("--window-clamp", "on" if change.window_clamp else "off", "leave it out with --server: "
                           "the server's desired state has no window clamp per port (the agent's host decides)")
    if change.policy_name is not None:
        if change.inbound is not None or change.outbound is not None:
            raise InvalidValue("--policy", change.policy_name, "with a policy's id leave --inbound/--outbound out: "
                               "the device takes the policy's limits (change the policy: PUT /v1/policies/ID)")
        return NativePort(policy_id=change.policy_name)
    name: str | None = None
    base = NetworkQos()
    if change.policy is not None:
        name, base = change.policy.name, change.policy.qos
    elif current is not None and current.source == "native" and current.policy is not None:
        name = current.policy_name
        base = policy_from_data(name or "native", current.policy, path=("policy",)).qos
    qos = changed_limits(base, change.inbound, change.outbound)
    # the instance's addresses (the uplink's) are kept as the device has them, or as the change gives them
    addresses = list(change.addresses) if change.addresses is not None else \
        list(current.addresses) if current is not None and current.source == "native" else []
    return NativePort(policy=policy_to_data(Policy(name=name or "native", qos=qos)), policy_name=name,
                      addresses=addresses)


def check_change(device: str, change: PortChange) -> None:
    """Refuse a bad device name or value before any request, with the local command's messages."""
    check_device_name(device)
    native_body(None, change)


ATTEMPTS = 2  # the first write, and one more on what a re-read shows


def _conditional_write(client: ServerClient, host: str, device: str, change: PortChange) -> Port:
    current = _current(client, host, device)
    revision = current.desired_revision if current is not None else None
    return client.set_port(device, native_body(current, change), host, if_match=revision,
                           if_absent=revision is None)


def set_remote(client: ServerClient, host: str, device: str, change: PortChange) -> Port:
    """Apply `change` to `device` of `host` on the server; the device as the server then has it."""
    check_change(device, change)
    if change.policy is not None or change.policy_name is not None:
        return client.set_port(device, native_body(None, change), host)
    for attempt in range(ATTEMPTS):
        try:
            return _conditional_write(client, host, device, change)
        except ServerPreconditionFailed as exc:
            if attempt + 1 == ATTEMPTS:
                raise ConflictError(f"device {device} on host {host} changed again while this change was applied "
                                    f"({exc}); nothing was written by this command: run it again") from None
    raise AssertionError("unreachable")


def clear_remote(client: ServerClient, host: str, device: str) -> None:
    """Release the device's native limits on the server (its agent then removes them from the kernel)."""
    check_device_name(device)
    client.clear_port(device, host)
