"""TLS files of `vmqos server`: its certificate and key, and a CA file it trusts, checked before it listens.

uvicorn loads the certificate and key itself (ssl_certfile, ssl_keyfile), but only once it starts:
a file it cannot load is then a traceback after its startup lines. So the command line loads them
first, with the same OpenSSL calls (Python's ssl module), and each problem is one line that names
the option, the file and what to do. The server's own user does the loading, so "cannot read" here
is what the server would meet.

A key encrypted with a passphrase is refused: the server has no one to ask for it (OpenSSL would
prompt on the terminal, and a service has none); keep the key unencrypted and readable only by the
server's user, as Keystone's and Neutron's own TLS set-ups do.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from vmqos.core.errors import MissingValue, VmqosError

_KEY_FIX = ("give the server's private key in PEM (-----BEGIN PRIVATE KEY-----, or an RSA/EC PRIVATE KEY "
            "block), the one its certificate was made for")


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate (PEM, the server's first, then any intermediate CAs) and its key."""

    certfile: str
    keyfile: str


class TlsFileError(VmqosError):
    """A file the server cannot use for TLS: the option, the whole path (a path cut short, as a long value
    is in other messages, helps no one find the file) and what to do."""

    http_status = 400

    def __init__(self, option: str, path: str, fix: str) -> None:
        self.option, self.path = option, path
        super().__init__(f"{option} {path}: {fix}")


class _Encrypted(Exception):
    """Raised by the passphrase callback: OpenSSL asked for a passphrase (the key is encrypted)."""


def _no_passphrase() -> str:
    raise _Encrypted


def _readable(option: str, path: str) -> None:
    """The file opens and reads, for this process's user; else one line with the OS's reason."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        raise TlsFileError(option, path, "it is a directory: give the PEM file itself") from None
    except FileNotFoundError:
        raise TlsFileError(option, path, "there is no such file") from None
    except PermissionError:
        raise TlsFileError(option, path, "the server's user cannot read it: make it readable by that user "
                                         "(for a key: owned by it, mode 0600), or run the server as the "
                                         "file's owner") from None
    except OSError as exc:
        raise TlsFileError(option, path, f"it cannot be read ({exc.strerror or exc})") from None


def ca_file(option: str, path: str) -> str:
    """A CA file (PEM certificates) this process will trust, checked now; its path."""
    _readable(option, path)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        raise TlsFileError(option, path, "it holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the "
                                         "CA certificate that signed the server's certificate") from None
    return path


def server_tls(cert: str | None, key: str | None) -> TlsFiles | None:
    """The server's TLS files, both checked and matched (None: plain HTTP, when neither is given)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing, given = ("--tls-cert", "--tls-key") if cert is None else ("--tls-key", "--tls-cert")
        raise MissingValue(f"{missing} is missing: {given} was given without it; give both --tls-cert FILE "
                           "and --tls-key FILE to serve HTTPS, or neither to serve plain HTTP")
    _readable("--tls-cert", cert)
    _readable("--tls-key", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=cert)  # the certificate file alone: does it hold a certificate?
    except ssl.SSLError:
        raise TlsFileError("--tls-cert", cert, "it holds no PEM certificate (-----BEGIN CERTIFICATE-----): give "
                                               "the server's certificate, then its intermediate CAs") from None
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise TlsFileError("--tls-key", key, "it is encrypted with a passphrase, which the server cannot ask for: "
                                             "decrypt it (openssl pkey -in KEY -out PLAIN) and keep PLAIN readable "
                                             "only by the server's user (mode 0600)") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError("--tls-key", key, f"it is not the key of the certificate in {cert}: give the private "
                                                 "key the certificate was made for") from None
        raise TlsFileError("--tls-key", key, _KEY_FIX) from None
    return TlsFiles(cert, key)
