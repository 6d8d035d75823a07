"""Who long-polls: the caller of `GET /v1/hosts/{host}/desired/changes`, trusted for a while once validated.

A change wakes every agent at once, and each polls again at once: with a validation per poll
(the token, its user, its project and its roles: four reads of the identity tables, in the thread
pool), a change shared by 1,000 hosts cost 4,000 reads and 1,000 thread hops for the polls again
alone, more than the long poll's own answer. An agent polls with the same token for its whole
life, so the long poll trusts a validation for TRUST_S, as keystonemiddleware trusts Keystone's
(its token cache) and as this server does in `--auth keystone` mode (`--keystone-cache-seconds`,
60 s by default): never past the token's expiry, only for a token that validated (a refusal is not
kept: a bad token costs its reads every time, as before), and only on this route. Every other
route still validates on every call, so a revoked token or a role removed stops every write and
every other read at once; the long poll of such a token keeps reading its host's desired rows for
at most TRUST_S. The cache keeps SHA-256 digests of tokens, never tokens.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from vmqos.api import auth
from vmqos.services.identity import Caller

TRUST_S = 60.0
LIMIT = 20_000  # digests kept: a fleet's agents and more; when full, the ended ones go, then the older half


class TrustedCallers:
    """Validated callers of the long poll by token digest, until a monotonic deadline."""

    def __init__(self, trust_s: float = TRUST_S) -> None:
        self.trust_s = trust_s
        self._kept: dict[str, tuple[float, Caller]] = {}
        self.validations = 0  # how many polls validated their token (the rest were trusted): tests read it

    async def caller(self, request: Request) -> Caller:
        """The caller behind X-Auth-Token: from a validation of the last TRUST_S, else validated now."""
        token = request.headers.get("X-Auth-Token")
        key = hashlib.sha256(token.encode()).hexdigest() if token else None
        now = time.monotonic()
        kept = self._kept.get(key) if key else None
        if kept is not None and kept[0] > now and kept[1].expires_at > datetime.now(UTC):
            return kept[1]
        self.validations += 1
        who: Caller = await run_in_threadpool(auth.caller, request)  # NotAuthenticated (401) for a bad token
        if key is not None:
            if len(self._kept) >= LIMIT:
                self._evict(now)
            self._kept[key] = (now + self.trust_s, who)
        return who

    def _evict(self, now: float) -> None:
        for key in [k for k, (until, _) in self._kept.items() if until <= now]:
            del self._kept[key]
        if len(self._kept) >= LIMIT:
            for key in list(self._kept)[:LIMIT // 2]:
                del self._kept[key]


async def poller(request: Request) -> Caller:
    """The dependency of the long poll: the application's TrustedCallers (one per Watch)."""
    trusted: TrustedCallers = request.app.state.fleet_watch.callers
    return await trusted.caller(request)
