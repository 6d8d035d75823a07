"""`vmqos server --tls-cert FILE --tls-key FILE`: HTTPS for the real openstack CLI, and nothing else.

A throw-away CA and a server certificate for 127.0.0.1 are made with Debian's `openssl` CLI in a
temp dir (the `pki` fixture, conftest.py), as an operator's own CA would issue them. The server serves them; the unmodified
python-openstackclient gets a token and creates and lists a QoS policy over https with
`--os-cacert` (the catalog it follows must then say https too), and refuses the server without
it. A plain-HTTP request to the same port gets no HTTP answer. Bad files (missing, a directory,
unreadable, not a certificate, not a key, the wrong key, an encrypted key, one of the two) are each
one line on stderr before anything listens. `--auth keystone` validates tokens at the TLS server
(as at an https Keystone) with `--keystone-cacert`, and cannot without it.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from vmqos.core.errors import VmqosError
from vmqos.services import tls
from vmqos.services.authn import IdentityUnavailable, KeystoneSettings
from vmqos.services.keystone_remote import KeystoneAuthenticator

from .conftest import ADMIN_PASSWORD, Pki, Server, free_port, openssl, vmqos
from .serving import call, running_server, token

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vq-tls")
    db = f"sqlite:///{tmp / 'vmqos.db'}"
    for step in (("server", "init", "--admin-password", ADMIN_PASSWORD),
                 ("server", "user", "alice", "--password", "pw", "--project", "demo", "--role", "member"),
                 ("identity", "user", "create", "vmqos-b", "--role", "service", "--password", "pw-b")):
        done = vmqos(*step, "--db", db, cwd=tmp)
        assert done.returncode == 0, done.stderr
    with running_server(tmp, db, "--tls-cert", str(pki.cert), "--tls-key", str(pki.key), cafile=pki.ca) as started:
        yield started


def _context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def test_the_openstack_cli_gets_a_token_and_lists_policies_over_https(tls_server: Server, pki: Pki):
    s = tls_server
    assert s.url.startswith("https://127.0.0.1:")
    issued = s.json("--os-cacert", str(pki.ca), "token", "issue")
    assert issued["id"] and issued["project_id"] and issued["user_id"]
    made = s.json("--os-cacert", str(pki.ca), "network", "qos", "policy", "create", "over-tls")
    listed = s.json("--os-cacert", str(pki.ca), "network", "qos", "policy", "list")
    assert [(p["ID"], p["Name"]) for p in listed] == [(made["id"], "over-tls")]
    # the catalog the client followed to Neutron names this server with the scheme it was reached by
    _, body = token(s.url, "admin", ADMIN_PASSWORD, "admin", context=_context(pki))
    urls = {e["url"] for service in body["catalog"] for e in service["endpoints"]}
    assert urls and all(url.startswith(s.url) for url in urls), urls
    # without the CA, the client does not trust the certificate
    refused = s.openstack("network", "qos", "policy", "list")
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr


def test_plain_http_on_the_tls_port_gets_no_http_answer(tls_server: Server, pki: Pki):
    port = int(tls_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /v2.0/qos/policies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/"), answer[:200]
    with pytest.raises(OSError):  # urllib: the server closed the connection without an answer
        call("GET", tls_server.url.replace("https://", "http://") + "/")
    # and the server is still up for TLS clients
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with _context(pki).wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def _bad_files(pki: Pki) -> dict[str, tuple[tuple[str | None, str | None], str]]:
    d = pki.dir
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key", cwd=d)
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass",
             "pass:secret", "-out", "encrypted.key", cwd=d)
    cert, key = str(pki.cert), str(pki.key)
    return {
        "cert only": ((cert, None), "--tls-key is missing: --tls-cert was given without it; give both"),
        "key only": ((None, key), "--tls-cert is missing: --tls-key was given without it; give both"),
        "missing": ((str(d / "nope.pem"), key), f"--tls-cert {d / 'nope.pem'}: there is no such file"),
        "directory": ((cert, str(d)), f"--tls-key {d}: it is a directory: give the PEM file itself"),
        "a key as cert": ((key, key), f"--tls-cert {key}: it holds no PEM certificate"),
        "a cert as key": ((cert, cert), f"--tls-key {cert}: give the server's private key in PEM"),
        "mismatch": ((cert, str(d / "other.key")),
                     f"--tls-key {d / 'other.key'}: it is not the key of the certificate in {cert}"),
        "encrypted": ((cert, str(d / "encrypted.key")),
                      "it is encrypted with a passphrase, which the server cannot ask for"),
    }


def test_every_bad_tls_file_is_named_with_its_fix(pki: Pki):
    for name, ((cert, key), expected) in _bad_files(pki).items():
        with pytest.raises(VmqosError) as refused:
            tls.server_tls(cert, key)
        assert expected in str(refused.value), (name, str(refused.value))
    assert tls.server_tls(str(pki.cert), str(pki.key)) == tls.TlsFiles(str(pki.cert), str(pki.key))
    assert tls.server_tls(None, None) is None
    assert tls.ca_file("--keystone-cacert", str(pki.ca)) == str(pki.ca)
    with pytest.raises(VmqosError, match="--keystone-cacert .*server.key: it holds no PEM certificate"):
        tls.ca_file("--keystone-cacert", str(pki.key))


def test_the_command_refuses_a_bad_file_in_one_line_before_anything_listens(pki: Pki, tmp_path: Path):
    port = free_port()
    other = pki.dir / "other-cli.key"
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(other), cwd=pki.dir)
    done = vmqos("server", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'never.db'}",
                 "--tls-cert", str(pki.cert), "--tls-key", str(other), cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == (f"vmqos: error: --tls-key {other}: it is not the key of the certificate in {pki.cert}: "
                           "give the private key the certificate was made for\n")
    assert done.stdout == ""  # uvicorn never started: it prints its first line at once
    assert not (tmp_path / "never.db").exists()  # refused before even the database was opened


def test_an_unreadable_key_is_named_for_the_servers_user(pki: Pki, tmp_path: Path):
    """Root reads any file: the server runs here without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (as a
    service user would be without them) on a key of mode 0000."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is not installed: apt-get install util-linux")
    locked = tmp_path / "locked.key"
    shutil.copy(pki.key, locked)
    locked.chmod(0)
    done = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-m",
                           "vmqos.cli.main", "server", "--listen", "127.0.0.1:1", "--tls-cert", str(pki.cert),
                           "--tls-key", str(locked)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"vmqos: error: --tls-key {locked}: the server's user cannot read it: "
                           "make it readable by that user (for a key: owned by it, mode 0600), or run the server "
                           "as the file's owner\n")


def test_keystone_mode_validates_tokens_at_an_https_keystone_with_its_ca(tls_server: Server, pki: Pki,
                                                                         tmp_path: Path):
    """The TLS server plays the https Keystone (as in test_external_keystone); B runs --auth keystone."""
    a = tls_server
    alice, body = token(a.url, "alice", "pw", "demo", context=_context(pki))
    with running_server(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", "--auth", "keystone", "--keystone-url",
                        f"{a.url}/v3", "--keystone-user", "vmqos-b", "--keystone-project", "service",
                        "--keystone-cacert", str(pki.ca), env={"OS_PASSWORD": "pw-b"}, name="server-b") as b:
        status, _, made = call("POST", f"{b.url}/v2.0/qos/policies", {"policy": {"name": "via-https-keystone"}},
                               {"X-Auth-Token": alice})
        assert status == 201, made
        assert made["policy"]["project_id"] == body["project"]["id"]
    # without the CA the validation fails on the certificate: 503, the caller is not to blame
    untrusting = KeystoneAuthenticator(KeystoneSettings(f"{a.url}/v3", "vmqos-b", "pw-b", "service"))
    with pytest.raises(IdentityUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.validate(alice)
    untrusting.close()
    trusting = KeystoneAuthenticator(KeystoneSettings(f"{a.url}/v3", "vmqos-b", "pw-b", "service",
                                                      cafile=str(pki.ca)))
    try:
        assert trusting.validate(alice).user.name == "alice"
    finally:
        trusting.close()
