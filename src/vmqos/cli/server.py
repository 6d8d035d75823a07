"""`vmqos server`: the API server the real `openstack` CLI drives, and its users (`init`, `user`).

The server is started by uvicorn from the import string "vmqos.api.app:create_app": the command
line and the API are rooms side by side and neither imports the other (a contract). The database
is handed over in $VMQOS_DB, the authentication settings in $VMQOS_AUTH and its companions
(services.auth_config.ServerAuth). Listening on loopback is the default; the server needs no root.
"""

from __future__ import annotations

import os
import signal
import socket
from datetime import timedelta
from typing import Any

import click

from vmqos.cli.logs import daemon_logs
from vmqos.cli.option_help import DB_HELP
from vmqos.core.errors import InvalidValue
from vmqos.services import identity, tls
from vmqos.services.auth_config import KeystoneSettings, ServerAuth
from vmqos.services.identity import AuthSettings

DEFAULT_LISTEN = "127.0.0.1:9696"  # Neutron's port
# How long a stop (SIGTERM, `systemctl stop`) waits for open connections before it cuts them. Over TLS an
# idle keep-alive connection of a client that keeps its pool (requests, keystoneauth) never answers the
# server's close_notify, and asyncio waits 30 s for it: without this bound the server took 31 s to stop.
SHUTDOWN_GRACE_S = 5
# uvicorn's HTTP/1.1 implementation, named rather than left to what happens to be installed ("auto" takes
# httptools when it imports, else h11): httptools is C (llhttp) and a pinned dependency; h11, pure Python,
# was the largest cost left per long-poll answer at 1,000 agents (docs/benchmarks.md §7).
HTTP_IMPL = "httptools"


def parse_listen(listen: str) -> tuple[str, int]:
    """ADDR:PORT (an IPv6 address in brackets) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValue("--listen", listen, "give ADDR:PORT, e.g. 127.0.0.1:9696 or [::1]:9696")
    return host, int(port)


@click.group(invoke_without_command=True)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="ADDR:PORT",
              help="where to listen (0.0.0.0:9696 for every address)")
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option("--all-in-one", "all_in_one", is_flag=True,
              help="also enforce, on this host's kernel, what its agent would: the QoS policies of the ports "
                   "bound to it (Neutron's and the native API's) and its uplink (needs root for that part: tc and nftables; the API itself needs none)")
@click.option("--host", "host_name", metavar="NAME",
              help="with --all-in-one: the host whose desired state this host enforces (binding:host_id, /v1/hosts/NAME) "
                   "(default: this machine's hostname)")
@click.option("--netns", metavar="NS",
              help="with --all-in-one: the network namespace that holds the ports' devices "
                   "(default: this one; a lab's host namespace is LAB-host)")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="server processes on one listening socket (PostgreSQL only: the long poll of each wakes on the "
                   "database's revision, whichever process wrote it); e.g. --workers 2 on a 2-core host")
@click.option("--log-every-poll", is_flag=True,
              help="an access line for every answered long poll of the agents (default: one summary line a minute "
                   "for those, e.g. 'long poll: 30,512 answers (200) to 1,000 hosts in the last 60 s'; their errors "
                   "are always logged line by line)")
@click.option("--tls-cert", metavar="FILE",
              help="serve HTTPS with this certificate (PEM: the server's, then its intermediate CAs); with --tls-key")
@click.option("--tls-key", metavar="FILE",
              help="the certificate's private key (PEM, unencrypted, readable only by the server's user)")
@click.option("--auth", "mode", type=click.Choice(["local", "keystone"]), default="local", show_default=True,
              help="local: this server issues tokens (/v3); keystone: it validates tokens at --keystone-url")
@click.option("--token-ttl", type=int, default=3600, show_default=True, metavar="SECONDS",
              help="how long a token issued here lives (60 to 604800)")
@click.option("--lockout-attempts", type=int, default=5, show_default=True, metavar="N",
              help="failed logins that lock a user out (0: never)")
@click.option("--lockout-seconds", type=int, default=60, show_default=True, metavar="SECONDS",
              help="how long a lockout lasts after the last failure; failures further apart are forgotten")
@click.option("--keystone-url", envvar="OS_AUTH_URL", metavar="URL",
              help="the external Keystone's v3 URL (--auth keystone; or $OS_AUTH_URL)")
@click.option("--keystone-user", envvar="OS_USERNAME", metavar="NAME",
              help="this server's own account at that Keystone (or $OS_USERNAME)")
@click.option("--keystone-password", envvar="OS_PASSWORD", metavar="PW",
              help="its password (or $OS_PASSWORD, which `ps` does not show)")
@click.option("--keystone-project", envvar="OS_PROJECT_NAME", metavar="NAME",
              help="the project it scopes its token to, e.g. service (or $OS_PROJECT_NAME)")
@click.option("--keystone-user-domain", envvar="OS_USER_DOMAIN_NAME", default="Default", show_default=True,
              metavar="NAME")
@click.option("--keystone-project-domain", envvar="OS_PROJECT_DOMAIN_NAME", default="Default", show_default=True,
              metavar="NAME")
@click.option("--keystone-cache-seconds", type=int, default=60, show_default=True, metavar="SECONDS",
              help="how long a validation is trusted: a token revoked at Keystone works here that long")
@click.option("--keystone-cacert", envvar="OS_CACERT", metavar="FILE",
              help="the CA that signed an https Keystone's certificate (or $OS_CACERT; default: the system's CAs)")
@click.pass_context
def server(ctx: click.Context, listen: str, db: str | None, all_in_one: bool, host_name: str | None,
           netns: str | None, workers: int, log_every_poll: bool, tls_cert: str | None, tls_key: str | None, mode: str,
           token_ttl: int,
           lockout_attempts: int, lockout_seconds: int, keystone_url: str | None, keystone_user: str | None,
           keystone_password: str | None, keystone_project: str | None, keystone_user_domain: str,
           keystone_project_domain: str, keystone_cache_seconds: int, keystone_cacert: str | None) -> None:
    """Serve Keystone v3 tokens and Neutron QoS policies, networks and ports (/v3, /v2.0) for the openstack CLI.

    Run `vmqos server init --admin-password PW` once first; then
    OS_AUTH_URL=http://ADDR:PORT/v3 OS_USERNAME=admin OS_PROJECT_NAME=admin ... openstack network qos policy list

    A browser at http://ADDR:PORT/ gets the web dashboard (log in with the same users): the fleet, each
    host's ports live, charts of a port, its policies, events and quarantines.

    With --all-in-one it also limits, on this host, what an agent of host --host would: every port
    whose binding:host_id is --host (its device, Nova's tap + the first 11 characters of the port id
    or binding:profile device=NAME, gets its QoS policy, or its network's), every native port of
    /v1/hosts/HOST/ports (inline limits or a vmqos policy's id) and the host's uplink, within about a
    second of a change. Root is needed for that part only. Stopping the server leaves the limits in
    place; unsetting the policy, deleting or unbinding the port, or deleting the native port or the
    uplink removes them.

    \b
    Example: vmqos server --all-in-one --netns lab-host --host compute1

    With --tls-cert and --tls-key it serves HTTPS only (clients: OS_AUTH_URL=https://..., and
    OS_CACERT=FILE when a private CA signed the certificate); the files are checked before it listens.

    With a cloud's own Keystone it issues no tokens and manages no users; it validates tokens there:
    \b
      OS_PASSWORD=... vmqos server --auth keystone --keystone-url https://keystone:5000/v3 \\
          --keystone-user vmqos --keystone-project service
    """
    if ctx.invoked_subcommand is not None:
        return
    host, port = parse_listen(listen)
    if not all_in_one and (host_name is not None or netns is not None):
        raise InvalidValue("--host/--netns", host_name or netns, "they say where --all-in-one enforces: add "
                                                                 "--all-in-one, or leave them out")
    served_tls = tls.server_tls(tls_cert, tls_key)  # one line for a bad file, before anything listens
    keystone = None
    if mode == "keystone":
        keystone = KeystoneSettings(keystone_url or "", keystone_user or "", keystone_password or "",
                                    keystone_project or "", keystone_user_domain, keystone_project_domain,
                                    keystone_cache_seconds,
                                    tls.ca_file("--keystone-cacert", keystone_cacert) if keystone_cacert else None)
    settings = ServerAuth(mode, AuthSettings(timedelta(seconds=token_ttl), lockout_attempts,
                                             timedelta(seconds=lockout_seconds)), keystone)
    url = db or os.environ.get("VMQOS_DB") or None
    opened = identity.open_store(url)  # a database that cannot be opened is one line here, not a traceback
    opened.close()
    check_workers(workers, opened.url, all_in_one)
    if url:
        os.environ["VMQOS_DB"] = url
    os.environ.update(settings.to_env())
    os.environ["VMQOS_LOG_EVERY_POLL"] = "1" if log_every_poll else "0"  # read by the application (api.poll_log)
    import uvicorn  # lazy: ~100 ms that every other `vmqos` command would pay

    options: dict[str, Any] = {"factory": True, "host": host, "port": port, "log_level": "info",
                               "timeout_graceful_shutdown": SHUTDOWN_GRACE_S, "http": HTTP_IMPL}
    if workers > 1:
        options["workers"] = workers
    if served_tls is not None:
        options |= {"ssl_certfile": served_tls.certfile, "ssl_keyfile": served_tls.keyfile}
    if not all_in_one:
        uvicorn.run("vmqos.api.app:create_app", **options)
        return
    all_in_one_server(uvicorn.Config("vmqos.api.app:create_app", **options), url,
                      host_name or socket.gethostname(), netns)


def check_workers(workers: int, url: str, all_in_one: bool) -> None:
    """More than one process only where they share what they serve: SQLite is one writer's file (the long
    poll of another process would not wake in time) and --all-in-one enforces from one process.

    Each process runs its own long-poll ticker on the shared revision counter and its own refresh at start
    (the second finds nothing to write); the dashboard's live charts show what reached the process that
    serves the browser (services.dashboard_live keeps them in memory)."""
    if workers == 1:
        return
    if url.startswith("sqlite"):
        raise InvalidValue("--workers", workers, "SQLite serves from one process: give --workers 1, or a PostgreSQL "
                                                 "--db (postgresql://HOST/DB) for more")
    if all_in_one:
        raise InvalidValue("--workers", workers, "--all-in-one enforces from one process: give --workers 1")


@server.command()
@click.option("--admin-password", required=True, envvar="VMQOS_ADMIN_PASSWORD", metavar="PW",
              help="the admin user's password (or $VMQOS_ADMIN_PASSWORD, which `ps` does not show)")
@click.option("--db", metavar="URL", help=DB_HELP)
def init(admin_password: str, db: str | None) -> None:
    """Create user admin with role admin on project admin (domain Default); idempotent."""
    with identity.open_store(db) as store:
        user = identity.bootstrap(store, admin_password)
    click.echo(f"user {user.name} ({user.id}) has role admin on project admin")


@server.command()
@click.argument("name")
@click.option("--password", required=True, envvar="VMQOS_USER_PASSWORD", metavar="PW",
              help="the user's password (or $VMQOS_USER_PASSWORD)")
@click.option("--project", required=True, help="the project (made if missing)")
@click.option("--role", type=click.Choice(identity.PROJECT_ROLES), default="member", show_default=True)
@click.option("--db", metavar="URL", help=DB_HELP)
def user(name: str, password: str, project: str, role: str, db: str | None) -> None:
    """Create a user (or set its password) with ROLE on PROJECT; idempotent (see also `vmqos identity`)."""
    with identity.open_store(db) as store:
        found = identity.add_user(store, name, password, project, role)
    click.echo(f"user {found.name} ({found.id}) has role {role} on project {project}")


def all_in_one_server(config: Any, url: str | None, host_name: str, netns: str | None) -> None:
    """uvicorn in this (the main) thread, the enforcer in another; Ctrl-C or SIGTERM stops both.

    uvicorn handles the signals while it serves and raises them again once it has shut down: the
    handlers set here then only ask the enforcer to stop, so both end cleanly and the exit status
    is 0 (1 when the enforcer stopped on an error, which stops the server too)."""
    import uvicorn

    from vmqos.services.neutron_enforcer import EnforcerThread  # lazy: the reconciler, only for --all-in-one

    daemon_logs("vmqos.services.neutron_enforcer", "vmqos.services.enforcer", "vmqos.services.enforcer_uplink",
                "vmqos.services.fleet_desired")  # why a port holds no row (its device name, ...)
    served = uvicorn.Server(config)

    def stop_serving() -> None:
        served.should_exit = True

    enforcer = EnforcerThread(url, host_name, netns, on_failure=stop_serving)
    enforcer.start()  # no privileges, no namespace: one line here, before anything listens

    def on_signal(signum: int, frame: Any) -> None:
        stop_serving()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        served.run()
    finally:
        enforcer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if enforcer.error is not None:
        raise enforcer.error
