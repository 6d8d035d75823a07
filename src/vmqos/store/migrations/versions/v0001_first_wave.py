"""The first wave"s schema (commit 0ea2556): a host"s desired state, what was applied, its history,
volumes, and the monitor"s events, quarantines and usage.

Written out here, not derived from today"s models, so that it stays what the first wave"s
create_all made: a database it left is stamped at this revision (`migrations.upgrade`) and
brought forward by the revisions after it. Datetimes are `DateTime(timezone=True)`, the column
type of the models" UtcDateTime; revision and event ids never reuse a deleted id on SQLite
(AUTOINCREMENT) and come from a sequence on PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_first_wave"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("policies", "flavors", "networks", "instances", "ports", "applied", "revisions", "volume_types",
          "volumes", "events", "quarantines", "usage", "usage_cursors")


def upgrade() -> None:
    op.create_table("applied",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "device")
    )
    op.create_table("events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("port", sa.String(), nullable=False),
        sa.Column("instance", sa.String(), nullable=True),
        sa.Column("direction", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("detector", sa.String(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True
    )
    op.create_index("ix_events_scope", "events", ["scope", "id"], unique=False)
    op.create_table("flavors",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name")
    )
    op.create_table("policies",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("qos", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name")
    )
    op.create_table("quarantines",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("qos", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "device")
    )
    op.create_table("revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True
    )
    op.create_index("ix_revisions_scope", "revisions", ["scope", "id"], unique=False)
    op.create_table("usage",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("local_ip", sa.String(), nullable=False),
        sa.Column("remote_ip", sa.String(), nullable=False),
        sa.Column("granularity", sa.String(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("packets", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "device", "direction", "local_ip", "remote_ip", "granularity", "period_start")
    )
    op.create_index("ix_usage_period", "usage", ["scope", "granularity", "period_start"], unique=False)
    op.create_table("usage_cursors",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("local_ip", sa.String(), nullable=False),
        sa.Column("remote_ip", sa.String(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("packets", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "direction", "device", "local_ip", "remote_ip")
    )
    op.create_table("volume_types",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("consumer", sa.String(), nullable=False),
        sa.Column("specs", sa.Text(), nullable=False),
        sa.Column("qos_name", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("scope", "name")
    )
    op.create_table("instances",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("flavor", sa.String(), nullable=True),
        sa.Column("cpu", sa.Text(), nullable=True),
        sa.Column("disks", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["scope", "flavor"], ["flavors.scope", "flavors.name"], ),
        sa.PrimaryKeyConstraint("scope", "name")
    )
    op.create_table("networks",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["scope", "policy"], ["policies.scope", "policies.name"], ),
        sa.PrimaryKeyConstraint("scope", "name")
    )
    op.create_table("volumes",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=True),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("instance", sa.String(), nullable=True),
        sa.Column("device", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["scope", "type"], ["volume_types.scope", "volume_types.name"], ),
        sa.PrimaryKeyConstraint("scope", "name")
    )
    op.create_table("ports",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("network", sa.String(), nullable=True),
        sa.Column("policy", sa.String(), nullable=True),
        sa.Column("limits", sa.Text(), nullable=True),
        sa.Column("egress_mode", sa.String(), nullable=False),
        sa.Column("mtu", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["scope", "instance"], ["instances.scope", "instances.name"], ),
        sa.ForeignKeyConstraint(["scope", "network"], ["networks.scope", "networks.name"], ),
        sa.ForeignKeyConstraint(["scope", "policy"], ["policies.scope", "policies.name"], ),
        sa.PrimaryKeyConstraint("scope", "device")
    )
    op.create_index("ix_ports_instance", "ports", ["scope", "instance", "position"], unique=False)

def downgrade() -> None:
    for table in ("ports", "instances", "networks", "volumes", "volume_types", "flavors", "policies", "applied",
                  "revisions", "events", "quarantines", "usage", "usage_cursors"):
        op.drop_table(table)
