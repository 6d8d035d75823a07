"""The long poll's lean way through keystoneauth and requests: the same request, sent for less CPU.

Why. An agent's long poll (`GET /v1/hosts/{host}/desired/changes?since=R&wait=S`) is the one call it
makes over and over, and through keystoneauth's `Session.request` each one cost ~1 ms of CPU
before a byte was sent (docs/benchmarks.md §7, 2026-12-07 17:18): keystoneauth rebuilds its headers
and user agent, and requests' `Session.request` re-prepares the URL, merges cookies, headers and hooks,
and reads the proxies from the environment (two walks over `os.environ`, a quarter of the agent's CPU
per answer). At 1,000 agents on one machine (the fleet bench) that was more than the server's CPU.

What. The first poll of a client goes the whole way; the request requests actually sent
(`response.request`) becomes a template, kept only if its URL is the one `url_of` builds for the same
path and query (so the lean URL is requests' own). From then on a poll copies the template, puts
in its URL and the token keystoneauth holds now (`Session.get_auth_headers`: it fetches a new one
when the old one nears its expiry), and hands it to requests' `Session.send` with the proxies, CA
and client certificate requests' `merge_environment_settings` gave once for this server: the same
bytes on the wire, the same hooks, the same connection pool, timeout and TLS options.

What stays with keystoneauth: a 401 invalidates the token and the poll is sent again the whole way
(a new token, once, as keystoneauth does); a redirect is sent again the whole way (keystoneauth
follows it); a session with connection retries, timing collection or keystoneauth's debug log on
always goes the whole way. A request that fails is raised as keystoneauth raises it (the same
exception and message), so `ServerClient`'s errors are unchanged; one that went out on a kept-alive
connection the server had just closed (its idle timeout, while the agent was busy) is sent once more
at once: the poll is a read, and the agent's retry after a failure waits half a second. A session that is not keystoneauth's
(the tests' fakes) or a cookie in its jar: the whole way.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session

_KS_LOG = logging.getLogger("keystoneauth.session")  # keystoneauth's request/response log (debug)
_LOG = logging.getLogger(__name__)
REDIRECTS = ks_session.Session._REDIRECT_STATUSES


def closed_while_idle(error: requests.exceptions.ConnectionError) -> bool:
    """Whether a request failed because the connection it went out on, taken from the pool, was closed
    by the server (no answer, or a reset: urllib3's "Connection aborted."), not because none could be
    opened (refused, unreachable, no name: urllib3's MaxRetryError)."""
    return bool(error.args) and isinstance(error.args[0], urllib3.exceptions.ProtocolError)


def url_of(where: str, params: dict[str, Any]) -> str:
    """`where` with `params` as requests writes them (`PreparedRequest.prepare_url`): in order, urlencoded."""
    return f"{where}?{urlencode(params)}" if params else where


class LeanGet:
    """The lean way for one client's repeated GETs (its long poll); see the module's docstring."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.usable = isinstance(session, ks_session.Session)
        self.template: requests.PreparedRequest | None = None
        self.settings: dict[str, Any] = {}

    def ready(self) -> bool:
        """Whether this GET may take the lean way now."""
        ks = self.session
        return (self.template is not None and not ks.session.cookies and not ks._connect_retries
                and not ks._collect_timing and not _KS_LOG.isEnabledFor(logging.DEBUG))

    def learn(self, response: Any, where: str, params: dict[str, Any]) -> None:
        """Keep the request a whole-way GET sent as the template, if it was sent as is (no redirect, no re-auth
        to another URL) and its URL is the one `url_of` gives."""
        if not self.usable or self.template is not None or response.status_code >= 300:
            return
        sent = getattr(response, "request", None)
        if response.history or not isinstance(sent, requests.PreparedRequest) or sent.body is not None \
                or sent.url != url_of(where, params):
            return
        ks = self.session
        verify, cert = ks.verify, ks.cert
        try:
            extra = ks.get_auth_connection_params() or {}
        except ks_exc.MissingAuthPlugin:
            extra = {}
        verify, cert = extra.get("verify", verify), extra.get("cert", cert)
        # the settings first: a thread that sees the template (`ready`) sees them
        self.settings = ks.session.merge_environment_settings(where, {}, False, verify, cert)
        self.template = sent

    def get(self, where: str, params: dict[str, Any], timeout: float) -> tuple[requests.Response | None, bool]:
        """(the answer, _) or (None, allow_reauth): send it the whole way, after a redirect (keystoneauth follows
        it) with keystoneauth's own re-auth, after a 401 whose token was invalidated without (the whole way
        fetches a new token and sends once more, as keystoneauth's one re-auth does)."""
        ks, template = self.session, self.template
        assert template is not None
        prepared = template.copy()
        prepared.url = url_of(where, params)
        headers = ks.get_auth_headers()
        if headers is None:
            raise ks_exc.AuthorizationFailure("No valid authentication is available")
        prepared.headers.update(headers)
        try:
            try:
                response: requests.Response = ks.session.send(prepared, allow_redirects=False, timeout=timeout,
                                                              **self.settings)
            except requests.exceptions.ConnectionError as e:
                if not closed_while_idle(e):
                    raise
                # a kept-alive connection the server closed as the poll went out: once more, on a new one
                _LOG.debug("long poll to %s: the kept-alive connection was closed (%s); sent again", where, e)
                response = ks.session.send(prepared, allow_redirects=False, timeout=timeout, **self.settings)
        # as keystoneauth's Session._send_request words them (`where`: the URL without its query, as there)
        except requests.exceptions.SSLError as e:
            raise ks_exc.SSLError(f"SSL exception connecting to {where}: {e}") from None
        except requests.exceptions.Timeout:
            raise ks_exc.ConnectTimeout(f"Request to {where} timed out") from None
        except requests.exceptions.ConnectionError as e:
            raise ks_exc.ConnectFailure(f"Unable to establish connection to {where}: {e}") from None
        except requests.exceptions.RequestException as e:
            raise ks_exc.UnknownConnectionError(f"Unexpected exception for {where}: {e}", e) from None
        if response.status_code in REDIRECTS:
            return None, True
        if response.status_code == 401 and ks.invalidate():
            return None, False
        return response, True
