"""Validating incoming tokens against an external Keystone (`vmqos server --auth keystone`).

What keystonemiddleware's auth_token does for Neutron, in the part vmqos needs: with this server's
own account (a service user, kept logged in by keystoneauth1's Password plugin and Session), ask
`GET /v3/auth/tokens` with the incoming token as `X-Subject-Token`; a 404 means the token is not
valid (unknown, expired or revoked); a 200 body gives the user, the project and the roles, read
with keystoneauth1's own AccessInfo. keystoneauth1 and not keystonemiddleware: the middleware is
WSGI (this server is ASGI) and pulls oslo.config, oslo.cache, pycadf, WebOb and python-keystoneclient
for what is here one request; keystoneauth1 brings requests, stevedore, iso8601, os-service-types.

Validations are cached for `cache_seconds` (never past the token's expiry), and so are refusals, as
keystonemiddleware's token cache does: a token revoked at Keystone keeps working here until its
cached validation ends. The cache holds SHA-256 digests of tokens, never tokens.

A caller with the `service` role is bound to the host in its user's `vmqos_host` attribute, read
with `GET /v3/users/{id}`; this server's account needs a role that may read users (admin) for that,
else such a caller is bound to no host and reads no host's state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from keystoneauth1 import access
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from vmqos.services.auth_config import IdentityUnavailable, KeystoneSettings, utcnow
from vmqos.services.identity import Caller, NotAuthenticated
from vmqos.services.identity_input import HOST_ATTRIBUTE
from vmqos.store.identity import DEFAULT_DOMAIN_ID, Project, Role, User

log = logging.getLogger(__name__)
_CACHE_LIMIT = 10_000
_UNAUTHENTICATED = "The request you have made requires authentication."


@dataclass(frozen=True)
class _Cached:
    caller: Caller | None  # None: Keystone said the token is not valid
    until: datetime


def caller_from_token(body: dict[str, Any], host: str | None = None) -> Caller:
    """The Caller a Keystone v3 token body describes (users and projects of any domain keep their ids)."""
    info = access.create(body=body)
    if not isinstance(info, access.AccessInfoV3) or not info.user_id or info.expires is None:
        raise NotAuthenticated(_UNAUTHENTICATED)
    user = User(info.user_id, info.username or info.user_id, info.user_domain_id or DEFAULT_DOMAIN_ID, "", True,
                host=host)
    project = None
    if info.project_id:
        project = Project(info.project_id, info.project_name or info.project_id,
                          info.project_domain_id or DEFAULT_DOMAIN_ID)
    roles = tuple(Role(rid, name) for rid, name in zip(info.role_ids or [], info.role_names or [], strict=False))
    issued = info.issued or info.expires
    return Caller(user, project, roles, info.audit_id or "", issued.astimezone(UTC), info.expires.astimezone(UTC))


class KeystoneAuthenticator:
    """Validates tokens at an external Keystone; issues none."""

    kind = "keystone"

    def __init__(self, settings: KeystoneSettings, *, clock: Callable[[], datetime] = utcnow,
                 timeout_s: float = 10.0) -> None:
        self.settings = settings
        self._url = settings.url.rstrip("/")
        self._clock = clock
        auth = v3.Password(auth_url=self._url, username=settings.username, password=settings.password,
                           project_name=settings.project_name, user_domain_name=settings.user_domain_name,
                           project_domain_name=settings.project_domain_name)
        # verify: the CA file given for an https Keystone (--keystone-cacert), else the system's CAs
        self._session = ks_session.Session(auth=auth, timeout=timeout_s, verify=settings.cafile or True)
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def auth_url(self, own_v3_url: str) -> str:
        return self._url

    def close(self) -> None:
        """Close the pooled connections to Keystone: an idle one over TLS holds Keystone's own graceful
        stop until it times out (a `vmqos server` playing Keystone waits up to 5 s for it)."""
        self._session.session.close()

    def validate(self, token: str | None) -> Caller:
        if not token:
            raise NotAuthenticated(_UNAUTHENTICATED)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or cached.until <= now:
            cached = self._ask(token, now)
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._evict(now)
                self._cache[key] = cached
        if cached.caller is None or cached.caller.expires_at <= now:
            raise NotAuthenticated(_UNAUTHENTICATED)
        return cached.caller

    def _evict(self, now: datetime) -> None:
        """Drop what has ended; if the cache is still full, its older half (dicts keep insertion order)."""
        for key in [k for k, v in self._cache.items() if v.until <= now]:
            del self._cache[key]
        if len(self._cache) >= _CACHE_LIMIT:
            for key in list(self._cache)[:_CACHE_LIMIT // 2]:
                del self._cache[key]

    def _ask(self, token: str, now: datetime) -> _Cached:
        cache_for = timedelta(seconds=self.settings.cache_seconds)
        try:
            response = self._session.get(f"{self._url}/auth/tokens?nocatalog",
                                         headers={"X-Subject-Token": token})
        except ks_exc.NotFound:
            return _Cached(None, now + cache_for)
        except ks_exc.Unauthorized:
            raise IdentityUnavailable(f"Keystone at {self._url} refused this server's own account "
                                      f"{self.settings.username!r}: check --keystone-user, --keystone-password "
                                      "and --keystone-project") from None
        except ks_exc.ClientException as exc:
            raise IdentityUnavailable(f"Keystone at {self._url} could not validate the token: {exc}") from None
        try:
            body = response.json()
            caller = caller_from_token(body)
        except (ValueError, KeyError, TypeError):
            raise IdentityUnavailable(f"Keystone at {self._url} answered a token validation with a body that is "
                                      "not a v3 token") from None
        if caller.is_service:
            caller = caller_from_token(body, self._host_of(caller.user.id))
        return _Cached(caller, min(now + cache_for, caller.expires_at))

    def _host_of(self, user_id: str) -> str | None:
        try:
            response = self._session.get(f"{self._url}/users/{user_id}", raise_exc=False)
            host = response.json().get("user", {}).get(HOST_ATTRIBUTE) if response.status_code == 200 else None
        except (ks_exc.ClientException, ValueError, AttributeError):
            host = None
        if host is None:
            log.warning("service user %s at %s: no %s could be read; it is bound to no host",
                        user_id, self._url, HOST_ATTRIBUTE)
        return host if isinstance(host, str) else None
