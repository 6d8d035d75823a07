"""Who calls: the one dependency every route uses to turn X-Auth-Token into a Caller.

The application holds one Authenticator (services.authn): this server's own tokens, or an
external Keystone's. Routes that serve any caller depend on `caller`; the project APIs (Neutron,
Nova, Cinder) on `project_member`, which refuses a service caller; Keystone's own token and
management routes depend on `local`, which answers 501 when an external Keystone owns identity.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from vmqos.core.errors import VmqosError

from vmqos.services.authn import Authenticator, LocalAuthenticator, NotHere
from vmqos.services.identity import Caller


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def caller(request: Request) -> Caller:
    """The caller behind X-Auth-Token (keystonemiddleware's 401 otherwise); a service caller too."""
    return authenticator(request).validate(request.headers.get("X-Auth-Token"))


def project_member(request: Request, api: str, refusal: Callable[[str], VmqosError]) -> Caller:
    """The caller, if it may use a project's API (Neutron, Nova, Cinder): a service caller (an agent,
    bound to a host) is no project's member, so those resources are not its to read or change,
    whatever project its token is scoped to: 403, in the API's own error shape (`refusal`)."""
    who = caller(request)
    if who.is_service:
        raise refusal(f"user {who.user.name} has the service role: it is no project's member and may not use the "
                      f"{api} API (an agent reads its host's state from vmqos's own API)")
    return who


def local(request: Request) -> LocalAuthenticator:
    """This server's own identity service, or Keystone's 501 naming the Keystone that owns identity."""
    auth = authenticator(request)
    if not isinstance(auth, LocalAuthenticator):
        url = auth.auth_url("")
        raise NotHere(f"This server validates tokens with the Keystone at {url}: get tokens and manage users, "
                      f"projects and roles there (OS_AUTH_URL={url}).")
    return auth
