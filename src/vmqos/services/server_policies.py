"""A Neutron QoS policy by name from a vmqos server: what `vmqos-cni` applies when its configuration has
`policy` and `vmqosServer`.

The credentials are the openstack CLI's OS_* values, read from a file (a JSON object; a key may be
given as `OS_USERNAME` or as clouds.yaml's `username`), never from the network configuration nor
from the plugin's environment: a runtime passes its own environment on, and its OS_* are not the
plugin's. The client is services.server_client's (keystoneauth1), with a short timeout: a runtime
waits for ADD, and a server that does not answer must fail ADD quickly rather than start the
container without its limits.

The name must be one policy among those the credentials see (the project's own and those shared
with it): two are ambiguous and refused, as `openstack network qos policy show NAME` refuses them.
The rules are read as `vmqos convert` reads a Neutron policy (core.formats.neutron.qos_from_rules).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from vmqos.core.errors import ConflictError, InvalidValue, MissingValue, VmqosError
from vmqos.core.formats.neutron import qos_from_rules
from vmqos.core.model.host import Policy
from vmqos.services.server_client import ServerClient

log = logging.getLogger("vmqos.cni")

# clouds.yaml's `auth` names -> the openstack CLI's variables, which ServerClient.from_env reads
CREDENTIAL_KEYS = {"auth_url": "OS_AUTH_URL", "username": "OS_USERNAME", "password": "OS_PASSWORD",
                   "project_name": "OS_PROJECT_NAME", "user_domain_name": "OS_USER_DOMAIN_NAME",
                   "project_domain_name": "OS_PROJECT_DOMAIN_NAME"}
REQUIRED = ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME")


class CredentialsError(VmqosError):
    """The credentials file cannot be read or lacks a value (its message never holds a value of it)."""


@dataclass(frozen=True)
class ServerPolicy:
    """The policy as the model's Policy, with where it came from (for messages and the store's summary)."""

    policy: Policy
    policy_id: str
    server: str


def read_credentials(path: str) -> dict[str, str]:
    """The file's values as OS_* variables. Its values are never echoed: one of them is a password."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise CredentialsError(f"vmqosServer.credentialsFile {path}: cannot be read ({exc.strerror}); create it "
                               "(mode 0600) with username, password, project_name") from None
    except ValueError:
        raise CredentialsError(f"vmqosServer.credentialsFile {path}: is not JSON; write a JSON object with "
                               "username, password, project_name") from None
    if isinstance(raw, Mapping) and isinstance(raw.get("auth"), Mapping):
        raw = raw["auth"]  # a clouds.yaml cloud's shape: {"auth": {...}}
    if not isinstance(raw, Mapping):
        raise CredentialsError(f"vmqosServer.credentialsFile {path}: is not a JSON object")
    env: dict[str, str] = {}
    for key, value in raw.items():
        name = CREDENTIAL_KEYS.get(key, key if key in CREDENTIAL_KEYS.values() else None)
        if name is None:
            raise CredentialsError(f"vmqosServer.credentialsFile {path}: {key!r} is not a key of it; its keys are "
                                   f"{', '.join(CREDENTIAL_KEYS)} (or their OS_* names)")
        if not isinstance(value, str) or not value:
            raise CredentialsError(f"vmqosServer.credentialsFile {path}: {key} is not a non-empty string")
        env[name] = value
    missing = [k for k in REQUIRED if k not in env]
    if missing:
        raise CredentialsError(f"vmqosServer.credentialsFile {path}: {', '.join(missing)} missing "
                               "(username, password and project_name are needed; the domains default to Default, "
                               "auth_url to the server's /v3)")
    return env


def client_for(url: str, credentials_file: str, ca_cert: str | None, timeout_s: float) -> ServerClient:
    try:
        return ServerClient.from_env(url, environ=read_credentials(credentials_file), timeout_s=timeout_s,
                                     verify=ca_cert or True)
    except MissingValue as exc:  # not reached with read_credentials' checks; kept one-line
        raise CredentialsError(str(exc)) from None


def policy_by_name(client: ServerClient, name: str) -> ServerPolicy:
    """The one policy named `name` the client's credentials see, read as the model's Policy."""
    found = [p for p in client.qos_policies(name) if p.name == name]  # an older server may ignore ?name=
    if len(found) > 1:
        ids = ", ".join(sorted(p.id for p in found))  # one order, whatever the server lists
        raise ConflictError(f"policy: {len(found)} Neutron QoS policies named {name!r} are visible on {client.url} "
                            f"({ids}); rename one (`openstack network qos policy set --name`), or name the "
                            "credentials of a project that sees one")
    if not found:
        raise InvalidValue("policy", name, f"no Neutron QoS policy of that name is visible on {client.url} to the "
                                           "credentials of vmqosServer.credentialsFile; create it (`openstack network "
                                           "qos policy create`) or share it with their project")
    qos, notes = qos_from_rules(found[0].rules, where=f"policy {name!r} of {client.url}: rules")
    for note in notes:
        log.warning("%s", note)
    return ServerPolicy(Policy(name=name, qos=qos, origin="neutron"), found[0].id, client.url)
