"""The long poll's lean way (services.server_poll): the same request on the wire, the same answers and errors.

A scripted HTTP/1.1 server (the standard library's, in a thread) records every request it gets and
answers from a script; the client is the real ServerClient over a real keystoneauth Session whose
token plugin counts the tokens it issues. The first poll goes the whole way (keystoneauth, requests)
and teaches the lean way its request; the next ones go the lean way (checked: requests'
`Session.request` is not called). Compared with the whole way: the request's path and headers byte
for byte, a 401 (one new token, one retry, as keystoneauth does), a redirect, an error answer's
message, a timeout's and a refused connection's message, TLS with a CA file. ~3 s.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from keystoneauth1 import plugin
from keystoneauth1 import session as ks_session

from vmqos.services import server_client
from vmqos.services.fleet_wire import RevisionGone
from vmqos.services.server_client import ServerClient, ServerError, ServerUnauthorized, ServerUnreachable
from vmqos.services.server_poll import url_of

from .conftest import Pki

pytestmark = pytest.mark.server

ROW = {"device": "tap1", "port_id": "p1", "source": "neutron", "revision": 7, "policy_name": "neutron:q",
       "policy": {"egress": {"rate": "10mbit"}}, "addresses": []}
PATH = "/v1/hosts/h1/desired/changes"
Script = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]


def _changes(revision: int = 7) -> tuple[int, dict[str, str], bytes]:
    body = {"host": "h1", "revision": revision, "changes": [ROW | {"revision": revision}]}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


class _Tokens(plugin.BaseAuthPlugin):
    """Tokens t1, t2, ...: a new one after each invalidate()."""

    def __init__(self) -> None:
        super().__init__()
        self.issued, self.token = 0, None

    def get_token(self, session: Any, **kwargs: Any) -> str:
        if self.token is None:
            self.issued += 1
            self.token = f"t{self.issued}"
        return self.token

    def invalidate(self) -> bool:
        self.token = None
        return True


class _Recorder:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[tuple[str, str, list[tuple[str, str]]]] = []  # (method, path, headers in order)


@contextmanager
def _scripted(script: Script, tls: Pki | None = None) -> Iterator[tuple[str, _Recorder]]:
    recorder = _Recorder(script)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            recorder.seen.append(("GET", self.path, list(self.headers.items())))
            status, headers, body = recorder.script(self.path, dict(self.headers.items()))
            if status == 0:  # closed with the request unanswered, as a server's keep-alive timeout does
                self.close_connection = True
                return
            self.send_response(status)
            for k, v in (headers | {"Content-Length": str(len(body))}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that gave up (the timeout test) breaks the pipe of an answer: expected

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.cert), str(tls.key))
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}", recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _client(url: str, **session: Any) -> tuple[ServerClient, _Tokens, list[str]]:
    """A client, its token plugin, and the URLs requests' Session.request was called with (the whole way)."""
    tokens = _Tokens()
    ks = ks_session.Session(auth=tokens, timeout=5, **session)
    whole: list[str] = []
    plain = ks.session.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        whole.append(url)
        return plain(method, url, *args, **kwargs)

    ks.session.request = counted  # type: ignore[method-assign]
    return ServerClient(url, ks, host="h1"), tokens, whole


def _tokens(recorder: _Recorder) -> list[str | None]:
    return [dict(h).get("X-Auth-Token") for _, _, h in recorder.seen]


def test_the_lean_poll_sends_what_the_whole_way_sent_and_reads_the_same_answer():
    with _scripted(lambda path, headers: _changes()) as (url, recorder):
        client, _, whole = _client(url)
        hooked: list[int] = []
        client.session.session.hooks["response"].append(lambda r, *a, **k: hooked.append(r.status_code))
        first = client.changes(6, wait=0.5)
        second = client.changes(6, wait=0.5)
        assert len(whole) == 1 and client._poll.template is not None  # the second went the lean way
        assert first == second and [r.revision for r in second.changes] == [7]
        (m1, p1, h1), (m2, p2, h2) = recorder.seen
        assert (m1, p1, h1) == (m2, p2, h2) and p1 == f"{PATH}?since=6&wait=0.5"
        assert "keystoneauth1/" in dict(h1)["User-Agent"] and dict(h1)["X-Auth-Token"] == "t1"
        assert hooked == [200, 200]  # the session's response hooks still see every answer
        client.changes(8, wait=2.0)
        assert recorder.seen[-1][1] == f"{PATH}?since=8&wait=2.0" and len(whole) == 1


def test_a_401_on_the_lean_way_gets_one_new_token_and_one_retry_as_keystoneauth_does():
    refused = {"t1"}

    def script(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if headers.get("X-Auth-Token") in refused and len(recorder.seen) > 1:
            return 401, {"Content-Type": "application/json"}, b'{"error": {"message": "The token expired"}}'
        return _changes()

    with _scripted(script) as (url, recorder):
        client, tokens, whole = _client(url)
        client.changes(6)
        assert client.changes(6).revision == 7
        assert _tokens(recorder) == ["t1", "t1", "t2"] and tokens.issued == 2 and len(whole) == 2
        assert client.changes(6).revision == 7 and _tokens(recorder)[-1] == "t2" and len(whole) == 2  # lean again

        refused.update({"t2", "t3", "t4"})  # the credentials no longer hold: one re-auth, then the 401 is said
        with pytest.raises(ServerUnauthorized) as lean:
            client.changes(6)
        assert _tokens(recorder)[-2:] == ["t2", "t3"] and tokens.issued == 3
    with _scripted(lambda path, headers: (401, {}, b'{"error": {"message": "The token expired"}}')) \
            as (url, recorder):
        fresh, _, _ = _client(url)
        with pytest.raises(ServerUnauthorized) as whole_way:
            fresh.changes(6)
        assert _tokens(recorder) == ["t1", "t2"]  # the whole way's one re-auth: the same count
    assert str(lean.value) == str(whole_way.value) == f"GET {PATH}: 401: The token expired"


def test_error_answers_say_the_same_on_the_lean_way():
    answers = {"410": (410, {"Content-Type": "application/json"},
                       b'{"error": {"message": "revision 6 is gone: read /v1/hosts/h1/desired again"}}'),
               "500": (500, {"Content-Type": "text/plain"}, b"Internal Server Error\nmore"),
               "bad": (200, {"Content-Type": "application/json"}, b'{"host": "h1"}')}
    for name, answer in answers.items():
        said = []
        for lean in (False, True):
            calls = iter([_changes(), answer] if lean else [answer])
            with _scripted(lambda path, headers: next(calls)) as (url, _):
                client, _, whole = _client(url)
                if lean:
                    client.changes(6)
                with pytest.raises((RevisionGone, ServerError)) as caught:
                    client.changes(6)
                assert len(whole) == 1
            said.append((type(caught.value), str(caught.value).replace(url, "URL")))
        assert said[0] == said[1], name
        assert "\n" not in said[1][1]


def test_a_redirect_on_the_lean_way_is_followed_the_whole_way():
    def script(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path.startswith(PATH) and len(recorder.seen) >= 2:
            return 307, {"Location": f"{url}/moved{path}"}, b""
        return _changes()

    with _scripted(script) as (url, recorder):
        client, _, whole = _client(url)
        client.changes(6)
        assert client.changes(6).revision == 7
        assert [p for _, p, _ in recorder.seen] == [f"{PATH}?since=6&wait=0.0", f"{PATH}?since=6&wait=0.0",
                                                   f"{PATH}?since=6&wait=0.0", f"/moved{PATH}?since=6&wait=0.0"]
        assert len(whole) == 3  # the lean way's 307, then keystoneauth: the request again, and its redirect


def test_a_timeout_and_a_refused_connection_say_the_same_on_the_lean_way(monkeypatch):
    monkeypatch.setattr(server_client, "TIMEOUT_S", 0.3)
    said = []
    for lean in (False, True):
        slow = iter([False, True] if lean else [True])

        def script(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            if next(slow):
                time.sleep(1.0)
            return _changes()

        with _scripted(script) as (url, _):
            client, _, whole = _client(url)
            if lean:
                client.changes(6)
            with pytest.raises(ServerUnreachable) as caught:
                client.changes(6)
            assert len(whole) == 1
            said.append(str(caught.value).replace(url, "URL"))
    assert said[0] == said[1] == f"URL is unreachable: Request to URL{PATH} timed out"

    with _scripted(lambda path, headers: _changes()) as (url, _):
        client, _, _ = _client(url)
        client.changes(6)
    client.session.session.close()  # its kept-alive connection too (the pool opens a new one)
    assert client._poll.ready()
    with pytest.raises(ServerUnreachable) as caught:  # the server is gone: the lean way's connection is refused
        client.changes(6)
    assert str(caught.value).startswith(f"{url} is unreachable: Unable to establish connection to {url}{PATH}: ")


def test_a_poll_on_a_kept_alive_connection_the_server_closed_is_sent_again_at_once():
    """An agent busy longer than the server's keep-alive finds its connection closed as its next poll goes
    out (2026-12-07's fleet runs: RemoteDisconnected, then the agent's retry half a second later): the lean
    way sends it once more on a new connection; closed twice, the failure is said as before."""
    dropped = iter([False, True, False, True, True])

    def script(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (0, {}, b"") if next(dropped) else _changes()

    with _scripted(script) as (url, recorder):
        client, _, whole = _client(url)
        client.changes(6)
        assert client.changes(6).revision == 7 and len(recorder.seen) == 3 and len(whole) == 1
        with pytest.raises(ServerUnreachable) as caught:
            client.changes(6)
        assert len(recorder.seen) == 5 and len(whole) == 1
    assert str(caught.value).startswith(f"{url} is unreachable: Unable to establish connection to {url}{PATH}: ")
    assert "Connection aborted" in str(caught.value)


def test_the_lean_way_keeps_the_sessions_ca_file_over_https(pki: Pki):
    with _scripted(lambda path, headers: _changes(), tls=pki) as (url, recorder):
        client, _, whole = _client(url, verify=str(pki.ca))
        client.changes(6)
        assert client.changes(6).revision == 7 and len(whole) == 1 and len(recorder.seen) == 2
        assert client._poll.settings["verify"] == str(pki.ca)
        refused, _, _ = _client(url)  # the system's CAs: refused, as the whole way refuses it
        with pytest.raises(ServerUnreachable, match="SSL exception connecting to"):
            refused.changes(6)


@pytest.mark.parametrize("host", ["h1", "tap-x.y_z~", "a b", "ä/ö?&=#%"])
@pytest.mark.parametrize("params", [{"since": 0, "wait": 0.0}, {"since": 123456789, "wait": 30.0},
                                    {"after": 5, "wait": 2.5, "limit": 100}])
def test_the_lean_url_is_requests_own(host, params):
    from urllib.parse import quote
    where = f"http://127.0.0.1:9696/v1/hosts/{quote(host, safe='')}/desired/changes"
    assert url_of(where, params) == requests.Request("GET", where, params=params).prepare().url
