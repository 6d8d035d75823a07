"""Alembic's environment: what `command.upgrade`, `stamp` and `revision` run, on the caller's connection.

`upgrade.config(conn)` passes the connection in `config.attributes`, inside a transaction the
caller began: Alembic joins it and commits nothing itself, so a migration and its stamp are one
transaction with the caller's checks. Writing a revision (`python -m vmqos.store.migrations`)
passes the full metadata to compare with. SQLite's ALTER TABLE cannot change a column or a
constraint: autogenerate writes batch operations there (a table copied and renamed), which the
opener runs with SQLite's foreign keys off and checks before it commits (`engine._migrate`).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy.types import TypeDecorator

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("vmqos's migrations run from vmqos.store.migrations.upgrade, which passes the connection")


def _render(kind: str, obj: Any, autogen: Any) -> str | Literal[False]:
    """A model's own column type (UtcDateTime) is drafted as the type it stores: a revision imports no vmqos."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


context.configure(connection=connection, target_metadata=config.attributes.get("metadata"),
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True, render_item=_render)
with context.begin_transaction():
    context.run_migrations()
