"""`GET /v1/instances`'s answer, as the server writes it and a remote `vmqos` reads it.

Apart from services.fleet_instances (which reads the store) so that a client (services.server_client)
imports the shapes only: a remote command has no business loading the server's store, SQLAlchemy and
the identity service (~0.3 s of CPU each call; the import-linter contract "A remote client ..." keeps it so).
"""

from __future__ import annotations

from vmqos.services.fleet_wire import Wire


class InstancePort(Wire):
    port_id: str
    device: str  # on its host: what `vmqos port show DEV --host HOST` takes
    host: str | None  # binding:host_id; null while unbound
    qos_policy_id: str | None


class Instance(Wire):
    id: str  # the ports' device_id: Nova's server id
    project_id: str
    hosts: list[str]  # where its bound ports are (one, unless a migration is half done)
    ports: list[InstancePort]


class InstanceList(Wire):
    instances: list[Instance]
