"""Every error's CLI exit code and API status, listed once: a new class or a changed number shows here."""

from __future__ import annotations

import vmqos.core.errors as errors
from vmqos.core.errors import VmqosError

EXPECTED = {  # class: (exit_code, http_status)
    "VmqosError": (2, 500),
    "InvalidValue": (2, 400),
    "UnitError": (2, 400),
    "KernelLimitError": (2, 400),
    "MissingValue": (2, 400),
    "FormatError": (2, 400),
    "ConflictError": (2, 409),
    "PreconditionFailed": (2, 412),  # a conditional write (If-Match) found another revision
    "UnsupportedError": (2, 400),
    "NotFound": (1, 404),
    "RevisionGone": (1, 410),  # the agent reads the whole desired state again
    "KernelError": (1, 500),
    "ToolTimeout": (1, 504),
    "PrivilegeError": (77, 500),  # sysexits' EX_NOPERM: run as root
}


def test_every_error_class_has_its_exit_code_and_http_status():
    found = {name: (cls.exit_code, cls.http_status) for name, cls in vars(errors).items()
             if isinstance(cls, type) and issubclass(cls, VmqosError)}
    assert found == EXPECTED


def test_client_errors_are_4xx_and_host_failures_5xx():
    assert errors.InvalidValue("rate", -1, "give a positive rate").http_status == 400
    assert errors.ToolTimeout("nft took 30 s").http_status == 504
    assert errors.FormatError("json", "bad", 3).http_status == 400
