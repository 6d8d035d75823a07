"""vmqos's own file format (version 1): a whole host's desired QoS state, in YAML or JSON.

    version: 1
    policies:                    # named network QoS policies
      bw-limiter:                # Neutron style: the rules exactly as the Neutron API has them
        neutron:
          rules: [{type: bandwidth_limit, direction: egress, max_kbps: 3000, max_burst_kbps: 300}]
      gold:                      # vmqos style, with tc units
        ingress: {rate: 100mbit, peak: 200mbit, burst: 1mb, pps: 20000, pps_burst: 2000, min: 10mbit}
        egress: {rate: 50mbit, dscp: 26, classes: [{name: web, share: 60, match: {protocol: tcp, ports: [443]}},
                                                   {name: rest, share: 40}]}
    flavors:
      m1.small: {extra_specs: {"quota:cpu_shares": "512"}}   # or canonical: {cpu: ..., disk: ..., network: ...}
    networks:
      private: {policy: gold}
    instances:
      vm1:
        flavor: m1.small
        cpu: {shares: 512, period_us: 100000, quota_us: 20000}   # overrides the flavor's
        disks: {vda: {read_bytes_sec: 10mb, read_iops_sec: 500}}
        ports:
          - {device: tap-vm1, network: private, policy: bw-limiter, egress_mode: shape, mtu: 1500,
             limits: {egress: {rate: 100mbit}}}
          - {device: tap-vm1b, window_clamp: true}   # opt-in: rewrites the window of the TCP ACKs it forwards

Rates are tc rates (`100mbit`, `12500kbps` = 100 Mbit/s) or integers in bit/s; sizes are tc
sizes (`64kb` = 65536 bytes) or integers in bytes; `period_us`/`quota_us` accept tc times. A
port's own policy wins over its network's, as in Neutron. JSON is read by the same parser (JSON
The package is split by concern: `places` (paths and lines), `loader` (line-tracking YAML),
`wire` (the pydantic shape and JSON Schema), `messages` (shape errors), `build` (the model from
checked data), `reader`, `dump` (model to data), `writer` (YAML), and `codec` (the store's
one-object-at-a-time `to_data`/`from_data`).
"""

from __future__ import annotations

from vmqos.core.formats.hostfile.codec import from_data, policy_from_data, policy_to_data, to_data
from vmqos.core.formats.hostfile.places import where
from vmqos.core.formats.hostfile.reader import read, read_host, read_host_with_notes
from vmqos.core.formats.hostfile.wire import schema
from vmqos.core.formats.hostfile.writer import write, write_host

__all__ = ["from_data", "policy_from_data", "policy_to_data", "read", "read_host", "read_host_with_notes", "schema",
           "to_data", "where", "write", "write_host"]
