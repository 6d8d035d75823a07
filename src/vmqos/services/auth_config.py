"""The settings `vmqos server` gives its process for authentication, and the errors of the external mode.

`--auth local` (this server's own tokens: their lifetime, the lockout) or `--auth keystone` (an
external Keystone and this server's account there). The command line and the API are rooms side
by side (a contract): the command line hands the settings to the server process in environment
variables (`ServerAuth.to_env`), which the application factory reads back (`ServerAuth.from_env`);
secrets never appear on a command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.services.identity import DEFAULT_SETTINGS, AuthSettings

MODES = ("local", "keystone")


class NotHere(VmqosError):
    """This server does not issue tokens or manage identity: an external Keystone does (Keystone's 501)."""

    http_status = 501


class IdentityUnavailable(VmqosError):
    """The external Keystone did not answer, or refused this server's own credentials (503, as
    keystonemiddleware answers: the caller's request may succeed later, it is not to blame)."""

    http_status = 503


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KeystoneSettings:
    """The external Keystone and this server's own account there (a service user, as Neutron's)."""

    url: str
    username: str
    password: str = field(repr=False)
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    cache_seconds: int = 60  # how long a validation (or a refusal) is trusted: a revoked token works that long
    cafile: str | None = None  # the CA that signed an https Keystone's certificate (else the system's CAs)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise InvalidValue("--keystone-url", self.url, "give Keystone's v3 URL, e.g. https://keystone:5000/v3")
        for name, value in (("--keystone-user", self.username), ("--keystone-password", self.password),
                            ("--keystone-project", self.project_name)):
            if not value:
                raise InvalidValue(name, value, "give this server's own Keystone account (or OS_USERNAME, "
                                                "OS_PASSWORD, OS_PROJECT_NAME)")
        if not 0 <= self.cache_seconds <= 3600:
            raise InvalidValue("--keystone-cache-seconds", self.cache_seconds, "give 0 (no cache) to 3600")


@dataclass(frozen=True)
class ServerAuth:
    mode: str = "local"
    local: AuthSettings = DEFAULT_SETTINGS
    keystone: KeystoneSettings | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidValue("--auth", self.mode, "give local or keystone")
        if self.mode == "keystone" and self.keystone is None:
            raise InvalidValue("--keystone-url", None, "--auth keystone needs the Keystone's URL and an account")

    def to_env(self) -> dict[str, str]:
        env = {"VMQOS_AUTH": self.mode, "VMQOS_TOKEN_TTL": str(int(self.local.token_ttl.total_seconds())),
               "VMQOS_LOCKOUT_ATTEMPTS": str(self.local.lockout_attempts),
               "VMQOS_LOCKOUT_SECONDS": str(int(self.local.lockout_window.total_seconds()))}
        if self.keystone is not None:
            k = self.keystone
            env |= {"VMQOS_KEYSTONE_URL": k.url, "VMQOS_KEYSTONE_USER": k.username,
                    "VMQOS_KEYSTONE_PASSWORD": k.password, "VMQOS_KEYSTONE_PROJECT": k.project_name,
                    "VMQOS_KEYSTONE_USER_DOMAIN": k.user_domain_name,
                    "VMQOS_KEYSTONE_PROJECT_DOMAIN": k.project_domain_name,
                    "VMQOS_KEYSTONE_CACHE_SECONDS": str(k.cache_seconds)}
            if k.cafile:
                env["VMQOS_KEYSTONE_CACERT"] = k.cafile
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerAuth:
        env = os.environ if env is None else env

        def number(name: str, default: int) -> int:
            text = env.get(name, "")
            if not text:
                return default
            if not text.isascii() or not text.isdigit():
                raise InvalidValue(f"${name}", text, "give a whole number")
            return int(text)

        local = AuthSettings(timedelta(seconds=number("VMQOS_TOKEN_TTL", 3600)),
                             number("VMQOS_LOCKOUT_ATTEMPTS", DEFAULT_SETTINGS.lockout_attempts),
                             timedelta(seconds=number("VMQOS_LOCKOUT_SECONDS", 60)))
        mode = env.get("VMQOS_AUTH") or "local"
        keystone = None
        if mode == "keystone":
            keystone = KeystoneSettings(env.get("VMQOS_KEYSTONE_URL", ""), env.get("VMQOS_KEYSTONE_USER", ""),
                                        env.get("VMQOS_KEYSTONE_PASSWORD", ""),
                                        env.get("VMQOS_KEYSTONE_PROJECT", ""),
                                        env.get("VMQOS_KEYSTONE_USER_DOMAIN") or "Default",
                                        env.get("VMQOS_KEYSTONE_PROJECT_DOMAIN") or "Default",
                                        number("VMQOS_KEYSTONE_CACHE_SECONDS", 60),
                                        env.get("VMQOS_KEYSTONE_CACERT") or None)
        return cls(mode, local, keystone)
