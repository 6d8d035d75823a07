"""Where a host's desired QoS state lives between runs: a SQL database shared by the CLI and the daemon."""

from vmqos.store.store import Revision, Store, default_url

__all__ = ["Revision", "Store", "default_url"]
