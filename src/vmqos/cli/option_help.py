"""Help texts of options many commands share, in a module of their own: a command that shows one
imports this, not the module of the `port` commands (the store, the host file's models, ~0.4 s)."""

NETNS_HELP = "network namespace that owns the ports (default: this one; a lab's is LAB-host)"
DB_HELP = "desired-state database URL (default: $VMQOS_DB or sqlite:////var/lib/vmqos/vmqos.db)"
