"""The server's first slice (issue 14): Keystone's projects, users, roles, assignments and tokens, and
Neutron's QoS policies with their rules.

Before migrations existed, main made these tables with create_all, and only in a program that
had imported their modules (`vmqos server`, not `vmqos apply`): a database without
`alembic_version` may hold all of them (it is stamped at this revision), none, or some. It is
stamped at the first wave's revision unless it holds all of them, and this upgrade makes the
tables it lacks and leaves those it has, with their rows.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0002_server_first_slice"
down_revision = "0001_first_wave"
branch_labels = None
depends_on = None


def _identity() -> dict[str, Callable[[], None]]:
    def projects() -> None:
        op.create_table("identity_projects",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("name", sa.String(), nullable=False),
            sa.Column("domain_id", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ux_identity_projects_name", "identity_projects", ["domain_id", "name"], unique=True)

    def users() -> None:
        op.create_table("identity_users",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("name", sa.String(), nullable=False),
            sa.Column("domain_id", sa.String(), nullable=False),
            sa.Column("password_hash", sa.String(), nullable=False),
            sa.Column("enabled", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ux_identity_users_name", "identity_users", ["domain_id", "name"], unique=True)

    def roles() -> None:
        op.create_table("identity_roles",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("name", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )

    def assignments() -> None:
        op.create_table("identity_assignments",
            sa.Column("user_id", sa.String(), nullable=False),
            sa.Column("project_id", sa.String(), nullable=False),
            sa.Column("role_id", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("user_id", "project_id", "role_id"),
        )

    def tokens() -> None:
        op.create_table("identity_tokens",
            sa.Column("digest", sa.String(), nullable=False),
            sa.Column("user_id", sa.String(), nullable=False),
            sa.Column("project_id", sa.String(), nullable=True),
            sa.Column("audit_id", sa.String(), nullable=False),
            sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("digest"),
        )

    return {"identity_projects": projects, "identity_users": users, "identity_roles": roles,
            "identity_assignments": assignments, "identity_tokens": tokens}


def _qos() -> dict[str, Callable[[], None]]:
    def policies() -> None:
        op.create_table("qos_policies",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("project_id", sa.String(), nullable=False),
            sa.Column("name", sa.String(), nullable=False),
            sa.Column("description", sa.String(), nullable=False),
            sa.Column("shared", sa.Boolean(), nullable=False),
            sa.Column("is_default", sa.Boolean(), nullable=False),
            sa.Column("revision_number", sa.Integer(), nullable=False),
            sa.Column("tags", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_qos_policies_project_id", "qos_policies", ["project_id"], unique=False)

    def rules() -> None:
        op.create_table("qos_rules",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("policy_id", sa.String(), nullable=False),
            sa.Column("type", sa.String(), nullable=False),
            sa.Column("values", sa.Text(), nullable=False),
            sa.ForeignKeyConstraint(["policy_id"], ["qos_policies.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_qos_rules_policy_id", "qos_rules", ["policy_id"], unique=False)

    return {"qos_policies": policies, "qos_rules": rules}


def creators() -> dict[str, Callable[[], None]]:
    """Each table of this revision and how to make it, parents first."""
    return _identity() | _qos()


TABLES = tuple(creators())


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for table, create in creators().items():
        if table not in present:
            create()


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
