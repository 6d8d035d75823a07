"""A client of a `vmqos server`'s native API (/v1): what `vmqos fleet`, `vmqos port show --server` and
the agent use.

Authentication is keystoneauth1's (already a dependency, for `--auth keystone`): a Password plugin
in a Session, which gets a token from OS_AUTH_URL, keeps it, and gets a new one when it expires
or the server answers 401. The credentials are the openstack CLI's OS_* variables; OS_AUTH_URL
defaults to the server's own /v3 (a vmqos server is its own Keystone).

Answers are parsed into services.fleet_wire's models, the same the server answers with. Every
failure is one VmqosError with a one-line message: ServerUnreachable (no answer), ServerUnauthorized
(401: the credentials), ServerForbidden (403), ServerNotFound (404: an agent registers again when a
report answers it), RevisionGone (410: read /desired again), ServerError (anything else).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from pydantic import BaseModel, ConfigDict, ValidationError

from vmqos.core.errors import MissingValue, NotFound, VmqosError
from vmqos.services.instance_wire import Instance, InstanceList
from vmqos.services.server_poll import LeanGet
from vmqos.services.fleet_wire import (
    Changes,
    EventList,
    Host,
    HostAnswer,
    HostList,
    HostUplink,
    HostUplinkAnswer,
    NativePort,
    Port,
    PortAnswer,
    PortList,
    QuarantineList,
    Registration,
    Report,
    ReportAnswer,
    RevisionGone,
    Snapshot,
    Uplink,
    UsageAnswer,
)
from vmqos.services.verify_wire import VerifyRun, VerifyRunAnswer, VerifyRunList, VerifyRunUpload
from vmqos.services.wire_skew import parse_from_peer

URL_ENV = "VMQOS_URL"
TIMEOUT_S = 30.0  # a request's; the long poll waits `wait` seconds more
M = TypeVar("M", bound=BaseModel)

__all__ = ["RevisionGone", "ServerClient", "ServerError", "ServerForbidden", "ServerNotFound",
           "ServerPreconditionFailed", "ServerUnauthorized", "ServerUnreachable"]


class NeutronPolicy(BaseModel):
    """A QoS policy as the server's Neutron API shows it (/v2.0/qos/policies), rules inline with their type."""

    model_config = ConfigDict(extra="ignore")
    id: str
    name: str | None = None
    project_id: str | None = None
    rules: list[dict[str, Any]] = []


class NeutronPolicyList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    policies: list[NeutronPolicy]


class ServerUnreachable(VmqosError):
    """The server did not answer (refused, timed out, no route)."""


class ServerError(VmqosError):
    """The server answered with an error."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


class ServerUnauthorized(ServerError):
    """401: the credentials were refused, or the token."""


class ServerForbidden(ServerError):
    """403: the caller may not do this (a service user reads only its own host's state)."""


class ServerNotFound(ServerError, NotFound):
    """404: the host, the device or the route does not exist there."""


class ServerPreconditionFailed(ServerError):
    """412: a conditional write found the object changed since it was read (If-Match)."""


def _message(response: Any) -> str:
    """The server's own words: Neutron's NeutronError.message, Keystone's error.message."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip().splitlines()[0][:200] if response.text else response.reason or ""
    if isinstance(body, dict):
        for key in ("NeutronError", "error"):
            if isinstance(body.get(key), dict) and body[key].get("message"):
                return str(body[key]["message"])
    return str(body)[:200]


class ServerClient:
    """The native API of the server at `url`, for the host `host` (the agent's own) unless a method is
    given another one."""

    def __init__(self, url: str, session: ks_session.Session, *, host: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.host = host
        self._poll = LeanGet(session)  # the long poll's lean way (services.server_poll)

    @classmethod
    def from_env(cls, url: str | None = None, *, host: str | None = None,
                 environ: Mapping[str, str] | None = None, timeout_s: float = TIMEOUT_S,
                 verify: bool | str = True) -> ServerClient:
        """A client with the openstack CLI's credentials: OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (and
        OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME, Default unless set); OS_AUTH_URL, else the server's
        /v3. The server is `url`, else $VMQOS_URL; `verify`: a CA file for https (True: the system's)."""
        env = os.environ if environ is None else environ
        url = url or env.get(URL_ENV)
        if not url:
            raise MissingValue(f"which server: give --server URL (or set {URL_ENV}), e.g. http://127.0.0.1:9696")
        missing = [name for name in ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME") if not env.get(name)]
        if missing:
            raise MissingValue(f"credentials for {url}: set {', '.join(missing)} (the openstack CLI's variables; "
                               "OS_AUTH_URL defaults to the server's /v3)")
        auth = v3.Password(auth_url=env.get("OS_AUTH_URL") or f"{url.rstrip('/')}/v3",
                           username=env["OS_USERNAME"], password=env["OS_PASSWORD"],
                           project_name=env["OS_PROJECT_NAME"],
                           user_domain_name=env.get("OS_USER_DOMAIN_NAME") or "Default",
                           project_domain_name=env.get("OS_PROJECT_DOMAIN_NAME") or "Default")
        return cls(url, ks_session.Session(auth=auth, timeout=timeout_s, verify=verify), host=host)

    # ------------------------------------------------------------------ the calls

    def _host(self, host: str | None) -> str:
        name = host or self.host
        if not name:
            raise MissingValue("which host: give the client a host (the agent's --host), or --host HOST")
        return quote(name, safe="")

    def _call(self, method: str, path: str, answer: type[M] | None, *, body: BaseModel | None = None,
              params: dict[str, Any] | None = None, timeout: float | None = None,
              headers: dict[str, str] | None = None, lean: LeanGet | None = None) -> M | None:
        where = f"{self.url}{path}"
        kwargs: dict[str, Any] = {"raise_exc": False, "params": {k: v for k, v in (params or {}).items()
                                                                  if v is not None}}
        response = None
        if headers:
            kwargs["headers"] = headers
        if body is not None:
            kwargs["json"] = body.model_dump(mode="json", exclude_none=False)
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            if lean is not None and lean.ready():
                response, kwargs["allow_reauth"] = lean.get(where, kwargs["params"], kwargs["timeout"])
            if response is None:
                response = self.session.request(where, method, **kwargs)
                if lean is not None:
                    lean.learn(response, where, kwargs["params"])
        except ks_exc.Unauthorized as exc:  # the token request itself was refused
            raise ServerUnauthorized(f"{self.url} refused the credentials (401): {exc}; check OS_USERNAME, "
                                     "OS_PASSWORD and OS_PROJECT_NAME", 401) from None
        except ks_exc.ClientException as exc:
            if isinstance(exc, ks_exc.HttpError):
                raise ServerError(f"{self.url}: the token request failed: {exc}", exc.http_status or 0) from None
            raise ServerUnreachable(f"{self.url} is unreachable: {exc}") from None
        status = response.status_code
        if status >= 400:
            message = f"{method} {path}: {status}: {_message(response)}"
            error = {401: ServerUnauthorized, 403: ServerForbidden, 404: ServerNotFound,
                     412: ServerPreconditionFailed}.get(status, ServerError)
            if status == 410:
                raise RevisionGone(message)
            raise error(message, status)
        if answer is None or status == 204:
            return None
        try:
            # lenient on what a server of another version adds (services.wire_skew), strict on the rest
            return parse_from_peer(answer, response.json(), f"a server's {answer.__name__} answer")
        except (ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise ServerError(f"{method} {path}: the answer is not a {answer.__name__} ({first}); is {self.url} a "
                              "vmqos server of this version?", status) from None

    def register(self, registration: Registration, host: str | None = None) -> Host:
        found = self._call("PUT", f"/v1/hosts/{self._host(host)}", HostAnswer, body=registration)
        assert found is not None
        return found.host

    def desired(self, host: str | None = None) -> Snapshot:
        found = self._call("GET", f"/v1/hosts/{self._host(host)}/desired", Snapshot)
        assert found is not None
        return found

    def changes(self, since: int, wait: float = 0.0, host: str | None = None) -> Changes:
        """The host's rows above `since`, waiting up to `wait` seconds for one (RevisionGone: read desired())."""
        found = self._call("GET", f"/v1/hosts/{self._host(host)}/desired/changes", Changes,
                           params={"since": since, "wait": wait}, timeout=TIMEOUT_S + wait, lean=self._poll)
        assert found is not None
        return found

    def report(self, report: Report, host: str | None = None) -> ReportAnswer:
        """The answer says which quarantines to lift (an older server answers 204: nothing to lift)."""
        found = self._call("POST", f"/v1/hosts/{self._host(host)}/reports", ReportAnswer, body=report)
        return found or ReportAnswer()

    def hosts(self) -> list[Host]:
        found = self._call("GET", "/v1/hosts", HostList)
        assert found is not None
        return found.hosts

    def host_info(self, host: str | None = None) -> Host:
        found = self._call("GET", f"/v1/hosts/{self._host(host)}", HostAnswer)
        assert found is not None
        return found.host

    def ports(self, host: str | None = None) -> list[Port]:
        """The devices the caller may see (of `host` only, if given)."""
        found = self._call("GET", "/v1/ports", PortList, params={"host": host})
        assert found is not None
        return found.ports

    def instances(self, host: str | None = None) -> list[Instance]:
        """The instances the caller may see (on `host` only, if given): Neutron ports' device_id, with their hosts."""
        found = self._call("GET", "/v1/instances", InstanceList, params={"host": host})
        assert found is not None
        return found.instances

    def port(self, device: str, host: str | None = None) -> Port:
        found = self._call("GET", f"/v1/hosts/{self._host(host)}/ports/{quote(device, safe='')}", PortAnswer)
        assert found is not None
        return found.port

    def set_port(self, device: str, body: NativePort, host: str | None = None, *, if_match: int | None = None,
                 if_absent: bool = False) -> Port:
        """Give a device its limits with the native API (admin; 409 when a Neutron port names the device).
        Conditional with `if_match` (the desired_revision read: If-Match) or `if_absent` (If-None-Match: *):
        ServerPreconditionFailed (412) when someone wrote in between."""
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else \
            {"If-None-Match": "*"} if if_absent else None
        found = self._call("PUT", f"/v1/hosts/{self._host(host)}/ports/{quote(device, safe='')}", PortAnswer,
                           body=body, headers=headers)
        assert found is not None
        return found.port

    def clear_port(self, device: str, host: str | None = None) -> None:
        """Release a device's native limits (admin)."""
        self._call("DELETE", f"/v1/hosts/{self._host(host)}/ports/{quote(device, safe='')}", None)

    def uplink(self, host: str | None = None) -> HostUplink:
        """The host's uplink and its agent's last word on it (admin; ServerNotFound when it has none)."""
        found = self._call("GET", f"/v1/hosts/{self._host(host)}/uplink", HostUplinkAnswer)
        assert found is not None
        return found.uplink

    def set_uplink(self, body: Uplink, host: str | None = None) -> HostUplink:
        """Set the host's uplink (admin); its agent plans it and reports whether it holds."""
        found = self._call("PUT", f"/v1/hosts/{self._host(host)}/uplink", HostUplinkAnswer, body=body)
        assert found is not None
        return found.uplink

    def clear_uplink(self, host: str | None = None) -> None:
        """Remove the host's uplink (admin; ServerNotFound when it has none): its agent releases the tree."""
        self._call("DELETE", f"/v1/hosts/{self._host(host)}/uplink", None)

    def usage(self, device: str, host: str | None = None) -> UsageAnswer:
        """A device's per-IP usage of the current hour and day, as its agent last reported it."""
        found = self._call("GET", f"/v1/hosts/{self._host(host)}/ports/{quote(device, safe='')}/usage", UsageAnswer)
        assert found is not None
        return found

    def upload_verify_run(self, device: str, run: VerifyRunUpload, host: str | None = None) -> VerifyRun:
        """Keep a finished `vmqos verify` run of the device on the server (the port's page shows it)."""
        found = self._call("POST", f"/v1/hosts/{self._host(host)}/ports/{quote(device, safe='')}/verify-runs",
                           VerifyRunAnswer, body=run)
        assert found is not None
        return found.run

    def verify_runs(self, device: str, host: str | None = None) -> list[VerifyRun]:
        """The device's verify runs on the server, newest first (without their plots)."""
        found = self._call("GET", f"/v1/hosts/{self._host(host)}/ports/{quote(device, safe='')}/verify-runs",
                           VerifyRunList)
        assert found is not None
        return found.runs

    def events(self, host: str | None = None, device: str | None = None, limit: int = 100) -> EventList:
        found = self._call("GET", "/v1/events", EventList, params={"host": host, "device": device, "limit": limit})
        assert found is not None
        return found

    def event_changes(self, after: int, wait: float = 0.0, host: str | None = None, device: str | None = None,
                      limit: int = 100) -> EventList:
        """The events above id `after`, oldest first, waiting up to `wait` seconds for one (a follower's poll)."""
        found = self._call("GET", "/v1/events/changes", EventList, timeout=TIMEOUT_S + wait,
                           params={"after": after, "wait": wait, "host": host, "device": device, "limit": limit})
        assert found is not None
        return found

    def quarantines(self, host: str | None = None) -> QuarantineList:
        found = self._call("GET", "/v1/quarantines", QuarantineList, params={"host": host})
        assert found is not None
        return found

    def qos_policies(self, name: str | None = None) -> list[NeutronPolicy]:
        """The Neutron QoS policies the caller sees (named `name` only, if given): its project's and those
        shared with it, as Neutron lists them."""
        found = self._call("GET", "/v2.0/qos/policies", NeutronPolicyList, params={"name": name})
        assert found is not None
        return found.policies
