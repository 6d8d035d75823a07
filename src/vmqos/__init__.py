"""vmqos: per-instance network, CPU and disk QoS on Linux hosts, enforced and proven."""

__version__ = "0.1.0"
