"""Nova's validators of the extra specs outside `quota:` that matter to a QoS host, as Nova runs them.

From microversion 2.86 Nova checks every extra spec it knows (nova/api/validation/extra_specs:
validators.py's lookup, base.py's checks and messages): a known key's value by its type (an integer
with bounds, a boolean oslo.strutils reads strictly, a string of an enum or a pattern matched whole),
and a key in a namespace Nova validates but does not know is refused. Here the namespaces are `hw`,
`hw_rng`, `hw_video` and `os` — CPU pinning, NUMA, huge pages and the RNG rate are what share a host
with QoS — with all of Nova's keys in each (a namespace listed in part would refuse keys Nova takes).
Keys of Nova's other namespaces (vmware, pci_passthrough, accel, resources, trait, capabilities,
aggregate_instance_extra_specs) and keys with no namespace (of which Nova checks two,
hide_hypervisor_id and group_policy) are stored unchecked, as before 2.86.
The `quota:` keys are nova_input's, checked at every microversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmqos.services.openstack_input import Fault, bad_request, query_boolean

VALIDATED_FROM = (2, 86)  # flavors_extraspecs.py: validation_supported
NAMESPACES = ("hw", "hw_rng", "hw_video", "os")
_CPU_MAP = r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"  # hw.py's pattern of a CPU map


@dataclass(frozen=True)
class Rule:
    """One of Nova's validators: the key (a regex when it has a parameter) and its value's kind."""

    kind: str  # "int", "bool", "enum" or "pattern"
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()
    pattern: str = ""


def _int(minimum: int | None = None, maximum: int | None = None) -> Rule:
    return Rule("int", minimum, maximum)


def _enum(*values: str) -> Rule:
    return Rule("enum", values=values)


_BOOL = Rule("bool")

# nova/api/validation/extra_specs/hw.py, hw_rng.py, hw_video.py, os.py (and objects/fields.py's enums)
RULES: dict[str, Rule] = {
    "hw:cpu_realtime": _BOOL, "hw:cpu_realtime_mask": Rule("pattern", pattern=r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    "hw:hide_hypervisor_id": _BOOL, "hw:cpu_policy": _enum("dedicated", "shared", "mixed"),
    "hw:cpu_thread_policy": _enum("prefer", "isolate", "require"),
    "hw:emulator_threads_policy": _enum("isolate", "share"),
    "hw:cpu_dedicated_mask": Rule("pattern", pattern=_CPU_MAP),
    "hw:mem_page_size": Rule("pattern", pattern=r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)"),
    "hw:locked_memory": _BOOL, "hw:numa_nodes": _int(1),
    r"hw:numa_cpus\.(?P<num>\d+)": Rule("pattern", pattern=_CPU_MAP), r"hw:numa_mem\.(?P<num>\d+)": _int(1),
    "hw:pci_numa_affinity_policy": _enum("required", "preferred", "legacy", "socket"),
    "hw:cpu_sockets": _int(1), "hw:cpu_cores": _int(1), "hw:cpu_threads": _int(1),
    "hw:cpu_max_sockets": _int(1), "hw:cpu_max_cores": _int(1), "hw:cpu_max_threads": _int(1),
    "hw:boot_menu": _BOOL, "hw:vif_multiqueue_enabled": _BOOL, "hw:mem_encryption": _BOOL,
    "hw:mem_encryption_model": _enum("amd-sev", "amd-sev-es", "amd-sev-snp"),
    "hw:pmem": Rule("pattern", pattern=r"([a-zA-Z0-9_]+(,)?)+"), "hw:pmu": _BOOL, "hw:serial_port_count": _int(0),
    "hw:tpm_model": _enum("tpm-tis", "tpm-crb"), "hw:tpm_version": _enum("1.2", "2.0"),
    "hw:tpm_secret_security": _enum("user", "host", "deployment"),
    "hw:watchdog_action": _enum("none", "pause", "poweroff", "reset", "disabled"),
    "hw:viommu_model": _enum("intel", "smmuv3", "virtio", "auto"), "hw:virtio_packed_ring": _BOOL,
    "hw:sound_model": _enum("sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio"),
    "hw:usb_model": _enum("none", "nec-xhci", "qemu-xhci"), "hw:redirected_usb_ports": _int(0, 15),
    "hw:ephemeral_encryption": _BOOL, "hw:ephemeral_encryption_format": _enum("plain", "luks", "luksv2"),
    "hw_rng:allowed": _BOOL, "hw_rng:rate_bytes": _int(0), "hw_rng:rate_period": _int(0),
    "hw_video:ram_max_mb": _int(0),
    "os:secure_boot": _enum("disabled", "required"),
}


def _failed(message: str) -> Fault:
    return bad_request(f"Validation failed; {message}")


def _rule_of(name: str) -> Rule | None:
    """validators.validate's lookup: the key itself, then the keys with a parameter, matched whole."""
    if name in RULES:
        return RULES[name]
    for pattern, rule in RULES.items():
        if re.fullmatch(pattern, name):
            return rule
    return None


def check_extra_spec(name: str, value: str) -> None:
    """Nova's check of one extra spec outside `quota:` (from 2.86): 400 with Nova's message, or None."""
    rule = _rule_of(name)
    if rule is None:
        if ":" in name and name.split(":", 1)[0] in NAMESPACES:
            raise _failed(f"extra spec '{name}' does not appear to be a valid extra spec.")
        return
    if rule.kind == "bool":
        if query_boolean(value) is None:
            raise _failed(f"'{value}' is not a valid boolean-like value.")
    elif rule.kind == "enum":
        if value not in rule.values:
            raise _failed(f"'{value}' is not one of: {', '.join(rule.values)}.")
    elif rule.kind == "pattern":
        if not re.fullmatch(rule.pattern, value):
            raise _failed(f"'{value}' is not of the format '{rule.pattern}'.")
    else:
        _check_int(rule, value)


def _check_int(rule: Rule, value: str) -> None:
    try:
        number = int(value)
    except ValueError:
        raise _failed(f"'{value}' is not a valid integer value.") from None
    if rule.maximum is not None and number > rule.maximum:
        raise _failed(f"'{number}' is greater than the max value of '{rule.maximum}'.")
    if rule.minimum is not None and number < rule.minimum:
        raise _failed(f"'{number}' is less than the min value of '{rule.minimum}'.")
