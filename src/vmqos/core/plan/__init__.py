"""From effective QoS to kernel objects (planner), and from observed objects to operations (diff)."""
