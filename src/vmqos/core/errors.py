"""One exception hierarchy for everything vmqos refuses or fails to do.

Every message names the field, the value and what the operator should change, so that the
CLI can print it as one line without a traceback.

Each class carries the CLI's `exit_code` and the `http_status` an API answers with: 4xx when the
request can be changed to succeed, 5xx when the host failed; the same split Neutron makes.
"""

from __future__ import annotations

# The longest value a message shows whole; a longer one is cut, with its length said.
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """`repr(value)` for a message, never more than about SHOWN_CHARS characters.

    An input may hold a 5,000-digit number or a megabyte string: echoing it whole buries the
    message, and `repr()` of an int of more than 4,300 digits raises ValueError itself.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        digits = int(value.bit_length() * 0.30103) + 1  # log10(2): the digit count, to within one
        return f"<an integer of about {digits} digits>"
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS - 20]}...{text[-10:]} ({len(text)} characters)"


class VmqosError(Exception):
    """Root of all vmqos errors; the CLI prints its message and exits non-zero."""

    exit_code = 2
    http_status = 500  # an error no subclass classifies is the server's


class InvalidValue(VmqosError):
    """A value is malformed or out of range (a negative rate, DSCP 42, `10,abc`)."""

    http_status = 400

    def __init__(self, field: str, value: object, fix: str) -> None:
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(f"{field}: {shown(value)} is not valid: {fix}")


class UnitError(InvalidValue):
    """A quantity could not be parsed with iproute2's unit rules."""


class MissingValue(VmqosError):
    """A value the command cannot guess was not given (the namespace of a verification's endpoint)."""

    http_status = 400


class ConflictError(VmqosError):
    """Values that are valid alone but not together (two rules of one type, total with read)."""

    http_status = 409


class FormatError(VmqosError):
    """An input document cannot be read: bad XML, JSON or YAML, or not of the named format."""

    http_status = 400

    def __init__(self, fmt: str, message: str, line: int | None = None) -> None:
        self.fmt = fmt
        self.line = line
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"{fmt}{where}: {message}")


class UnsupportedError(VmqosError):
    """The target format or mechanism cannot express what was asked.

    400, not 501: every such refusal names what the request can say instead (one interface at a
    time, a VM for QEMU-only keys), and Neutron answers a rule its back end cannot apply with a
    4xx too (QosRuleNotSupported is a Conflict); 501 would tell a client never to retry."""

    http_status = 400


class KernelLimitError(InvalidValue):
    """A value that would overflow or underflow a field of the kernel's tc/nft structures."""


class KernelError(VmqosError):
    """The kernel or a tool refused an operation; `errno` is set when the kernel gave one.

    500, as Neutron answers a back-end (agent, driver) failure: the host failed, not the request."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


class PrivilegeError(KernelError):
    """vmqos lacks a privilege the operation needs: root's CAP_NET_ADMIN for tc and nftables,
    CAP_SYS_ADMIN to enter another network namespace, write access to the cgroup files.

    Exit 77 (sysexits' EX_NOPERM): neither the request nor the host is wrong, the caller is."""

    exit_code = 77


class ToolTimeout(KernelError):
    """A tool did not finish in time: the kernel is slow, no single request is to blame."""

    http_status = 504


class NotFound(VmqosError):
    """A device, namespace, port or policy that the operator named does not exist."""

    exit_code = 1
    http_status = 404


class RevisionGone(VmqosError):
    """The server no longer keeps the changes after the revision asked for (410 Gone: its tombstones were
    compacted); the agent reads the whole desired state again (`GET /v1/hosts/{host}/desired`)."""

    exit_code = 1
    http_status = 410


class PreconditionFailed(ConflictError):
    """A conditional write (If-Match: the revision the writer read) found another revision: someone else
    wrote in between (412). The writer reads again and applies its change to what it reads."""

    http_status = 412
