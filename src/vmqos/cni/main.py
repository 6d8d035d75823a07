"""The `vmqos-cni` executable: the CNI protocol in, `services.containers` out, one JSON answer on stdout.

A runtime (podman's CNI back end, containerd, CRI-O, kubelet) execs it with CNI_* variables and the
network configuration on stdin. ADD prints `prevResult` unchanged; DEL and CHECK print nothing on
success; VERSION prints the versions it speaks. Every failure is the specification's error object
(`cniVersion`, `code`, `msg`, `details`) on stdout and exit status 1, never a traceback: the runtime
shows `msg` to its user. Logs, if any, go to stderr.

With `vmqosServer`, ADD looks `policy` up on that vmqos server's Neutron API before it takes the
store's writer (no lock held across the network); a server that does not answer fails ADD with
code 11 (try again later) rather than start the container without its limits. CHECK and DEL never
ask the server: CHECK compares the kernel with the store, DEL removes what the store says.

The store is the CLI's (`--db`'s default, $VMQOS_DB), or `vmqosDatabase` of the configuration, so
that `vmqos port show DEV` finds the container's port where the plugin put it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from vmqos.core.errors import InvalidValue, NotFound, PrivilegeError, VmqosError
from vmqos.core.formats.cni import (
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    IO_FAILURE,
    SPEC_VERSION,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniConfig,
    CniError,
    CniRequest,
    host_candidates,
    read_config,
    read_request,
    result_of,
    version_answer,
)
if TYPE_CHECKING:
    from vmqos.core.model.host import Policy
    from vmqos.services import containers
    from vmqos.store import Store

log = logging.getLogger("vmqos.cni")


def _database(config: CniConfig) -> str | None:
    """vmqosDatabase: a URL, or a path to a SQLite file (as `--db` takes it)."""
    db = config.database
    if db and db.startswith("/"):
        return "sqlite:///" + db
    return db


def _want(request: CniRequest, config: CniConfig, server_policy: Policy | None = None) -> containers.ContainerWant:
    from vmqos.services import containers

    return containers.ContainerWant(config.network, request.container_id, request.ifname, request.netns, config.qos,
                                    config.egress_mode, config.policy, server_policy)


def server_policy(config: CniConfig) -> Policy | None:
    """`policy` from `vmqosServer` (None without either); every failure is a CniError naming both."""
    if config.server is None or config.policy is None:
        return None
    from vmqos.services import server_client as sc
    from vmqos.services import server_policies

    server, name = config.server, config.policy
    where = f"policy {name!r} from the vmqos server {server.url}"
    try:
        client = server_policies.client_for(server.url, server.credentials_file, server.ca_cert, server.timeout_s)
        found = server_policies.policy_by_name(client, name)
    except server_policies.CredentialsError as exc:
        raise CniError(INVALID_CONFIG, f"{where}: {exc}") from None
    except sc.ServerUnreachable as exc:
        raise CniError(TRY_AGAIN_LATER, f"{where}: the server did not answer within {server.timeout_s:g} s",
                       f"{exc}; the container is not started without its limits") from None
    except (sc.ServerUnauthorized, sc.ServerForbidden) as exc:
        raise CniError(INVALID_CONFIG, f"{where}: {exc}",
                       f"check the credentials in {server.credentials_file}") from None
    except sc.ServerError as exc:
        raise CniError(IO_FAILURE, f"{where}: {exc}") from None
    except VmqosError as exc:  # none, two of that name, rules vmqos cannot read
        raise CniError(INVALID_CONFIG, f"{where}: {exc}") from None
    log.info("policy %r is %s on %s", name, found.policy_id, found.server)
    return found.policy


def _add(store: Store, request: CniRequest, config: CniConfig, from_server: Policy | None) -> dict[str, Any]:
    from vmqos.services import containers

    done = containers.attach(store, _want(request, config, from_server), host_candidates(config))
    if not done.report.ok:
        errors = "; ".join(r.error for r in done.report.results if r.error)
        raise CniError(IO_FAILURE, f"the limits of port {done.device} could not be applied (rolled back)", errors)
    for note in config.notes:
        log.warning("%s", note)
    return result_of(config)


def _check(store: Store, request: CniRequest, config: CniConfig) -> None:
    if config.cni_version in ("0.3.0", "0.3.1"):
        raise CniError(INCOMPATIBLE_VERSION,
                       f"CHECK needs cniVersion 0.4.0 or later, the configuration says {config.cni_version}")
    if config.raw_prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult: vmqos-cni must be called as a chained plugin")
    from vmqos.services import containers

    containers.check(store, config.network, request.container_id, request.ifname, request.netns,
                     host_candidates(config))


def _del(store: Store, request: CniRequest, config: CniConfig) -> None:
    from vmqos.services import containers

    containers.detach(store, config.network, request.container_id, request.ifname)


def handle(env: Mapping[str, str], stdin: bytes) -> dict[str, Any] | None:
    """One invocation: the answer to print, None for nothing; a CniError for the error object."""
    request = read_request(env)
    if request.command == "VERSION":
        return version_answer()
    config = read_config(stdin)
    # lazy: the store and the reconciler cost ~0.6 s of imports, which VERSION and a bad configuration
    # need not pay (a runtime may ask VERSION of every plugin of a list before each ADD)
    from vmqos.services.ports import open_store

    from_server = None
    if request.command == "ADD":
        if config.raw_prev_result is None:
            raise CniError(INVALID_CONFIG,
                           "vmqos-cni must be called as a chained plugin: the configuration has no prevResult",
                           "put it after the plugin that makes the interface (bridge, ptp) in a configuration list")
        from_server = server_policy(config)  # before the store: no writer held while the server is asked
    try:
        with open_store(_database(config)) as store:
            if request.command == "ADD":
                return _add(store, request, config, from_server)
            if request.command == "CHECK":
                _check(store, request, config)
            else:
                _del(store, request, config)
            return None
    except CniError:
        raise
    except InvalidValue as exc:  # a value of the configuration that the store cannot honour (a policy's name)
        raise CniError(INVALID_CONFIG, str(exc)) from None
    except NotFound as exc:
        raise CniError(UNKNOWN_CONTAINER if request.command != "DEL" else IO_FAILURE, str(exc)) from None
    except PrivilegeError as exc:
        raise CniError(IO_FAILURE, str(exc), "vmqos-cni runs as root, as the runtime that calls it") from None
    except VmqosError as exc:
        busy = "database is locked" in str(exc)
        raise CniError(TRY_AGAIN_LATER if busy else IO_FAILURE, str(exc)) from None


def run(env: Mapping[str, str], stdin: bytes, out: IO[str]) -> int:
    try:
        answer = handle(env, stdin)
    except CniError as exc:
        version = SPEC_VERSION
        try:
            version = json.loads(stdin).get("cniVersion") or SPEC_VERSION
        except Exception:
            pass
        out.write(json.dumps(exc.as_json(version if isinstance(version, str) else SPEC_VERSION)) + "\n")
        return 1
    except Exception as exc:  # a bug must still answer as the protocol wants, not with a traceback
        log.debug("vmqos-cni failed", exc_info=True)
        out.write(json.dumps(CniError(IO_FAILURE, f"vmqos-cni failed: {type(exc).__name__}: {exc}").as_json()) + "\n")
        return 1
    if answer is not None:
        out.write(json.dumps(answer) + "\n")
    return 0


def main() -> None:
    logging.basicConfig(level=os.environ.get("VMQOS_LOG_LEVEL", "WARNING").upper(), stream=sys.stderr,
                        format="vmqos-cni: %(message)s")
    stdin = b"" if os.environ.get("CNI_COMMAND") == "VERSION" else sys.stdin.buffer.read()
    sys.exit(run(os.environ, stdin, sys.stdout))


if __name__ == "__main__":
    main()
