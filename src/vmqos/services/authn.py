"""How the API server learns who calls: from its own tokens, or from an external Keystone's.

`vmqos server` chooses with `--auth local|keystone` (services.auth_config). Locally the server
issues, validates and revokes tokens itself (services.identity) with the token lifetime and lockout
it was given. With `--auth keystone` it issues none: it validates each incoming token against that
Keystone (services.keystone_remote) and its `/v3/auth/tokens` and management calls answer 501,
naming the Keystone to ask instead. Either way the routes get the same `Caller`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from vmqos.services import identity
from vmqos.services.auth_config import IdentityUnavailable, KeystoneSettings, NotHere, ServerAuth, utcnow
from vmqos.services.identity import DEFAULT_SETTINGS, AuthSettings, Caller, Issued
from vmqos.store import Store

__all__ = ["Authenticator", "IdentityUnavailable", "KeystoneSettings", "LocalAuthenticator", "NotHere",
           "ServerAuth", "build"]


class Authenticator(Protocol):
    kind: str

    def validate(self, token: str | None) -> Caller: ...

    def auth_url(self, own_v3_url: str) -> str:
        """Where a client gets a token: this server's /v3, or the external Keystone."""
        ...


@dataclass
class LocalAuthenticator:
    """This server's own tokens, on its database; `clock` is injected by tests (token expiry, lockout)."""

    store: Store
    settings: AuthSettings = DEFAULT_SETTINGS
    clock: Callable[[], datetime] = utcnow
    kind: str = "local"

    def issue(self, user_ref: dict[str, Any], password: str, project_ref: dict[str, Any] | None) -> Issued:
        return identity.authenticate(self.store, user_ref, password, project_ref, now=self.clock(),
                                     settings=self.settings)

    def validate(self, token: str | None) -> Caller:
        return identity.validate(self.store, token, now=self.clock())

    def revoke(self, token: str) -> None:
        identity.revoke(self.store, token)

    def auth_url(self, own_v3_url: str) -> str:
        return own_v3_url


def build(store: Store, settings: ServerAuth, *, clock: Callable[[], datetime] = utcnow) -> Authenticator:
    if settings.mode == "keystone" and settings.keystone is not None:
        from vmqos.services.keystone_remote import KeystoneAuthenticator  # keystoneauth1: only when asked for

        return KeystoneAuthenticator(settings.keystone, clock=clock)
    return LocalAuthenticator(store, settings.local, clock)
