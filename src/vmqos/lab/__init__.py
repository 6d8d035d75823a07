"""`vmqos lab`: a hypervisor made of network namespaces, to try vmqos on without VMs.

`topology` computes a lab's names, addresses and MACs (pure); `netns_lab` builds, reads back,
enters and removes it.
"""

from vmqos.lab.netns_lab import lab_down, lab_exec, lab_spawn, lab_status, lab_up
from vmqos.lab.topology import (
    BRIDGE,
    DEFAULT_INSTANCES,
    DEFAULT_NAME,
    GATEWAY,
    LAB_NETWORK,
    MAX_INSTANCES,
    UPLINK,
    Lab,
    LabInstance,
    LabStatus,
)

__all__ = [
    "BRIDGE",
    "DEFAULT_INSTANCES",
    "DEFAULT_NAME",
    "GATEWAY",
    "LAB_NETWORK",
    "MAX_INSTANCES",
    "UPLINK",
    "Lab",
    "LabInstance",
    "LabStatus",
    "lab_down",
    "lab_exec",
    "lab_spawn",
    "lab_status",
    "lab_up",
]
