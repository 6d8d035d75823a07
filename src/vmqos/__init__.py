"""vmqos: per-instance network, CPU and disk QoS on Linux hosts, enforced and proven."""

import logging

__version__ = "0.1.0"

# A library's records go nowhere until a front end configures them (cli/logs.py): without this,
# Python's last-resort handler would print vmqos's warnings on stderr of any program that imports it.
logging.getLogger("vmqos").addHandler(logging.NullHandler())
