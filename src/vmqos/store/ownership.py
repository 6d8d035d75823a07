"""What a project owns, across every table: the rows whose `project_id` names it.

Read from the database's own catalogue, not from the tables this process happens to have
imported, so that a table another room adds (ports, volumes, RBAC entries) is counted too. The
identity tables themselves (assignments, tokens) are not ownership: deleting a project removes them.
"""

from __future__ import annotations

from sqlalchemy import column, func, inspect, select, table

from vmqos.store.store import Store


def project_references(store: Store, project_id: str) -> dict[str, int]:
    """Rows of other tables than identity's that a project owns, counted by table name."""
    found: dict[str, int] = {}
    with store._tx("counting what a project owns") as conn:
        inspector = inspect(conn)
        for name in sorted(inspector.get_table_names()):
            if name.startswith("identity_") or "project_id" not in {c["name"] for c in inspector.get_columns(name)}:
                continue
            owned = table(name, column("project_id"))
            count = conn.execute(select(func.count()).select_from(owned)
                                 .where(owned.c.project_id == project_id)).scalar_one()
            if count:
                found[name] = int(count)
    return found
