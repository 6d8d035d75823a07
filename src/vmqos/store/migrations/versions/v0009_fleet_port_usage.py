"""Per-IP usage the agents report (issue 18): one row per (host, device), its last report replacing it.

`fleet_port_usage.usage` is the JSON of the port's current hour and day totals per address pair
(the agent's top ones of each window); the dashboard's port page and `GET /v1/hosts/H/ports/D/usage`
read it. Drafted by `python -m vmqos.store.migrations`; it imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_fleet_port_usage'
down_revision = '0008_cni_attachments'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fleet_port_usage',
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('usage', sa.Text(), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('host', 'device')
    )


def downgrade() -> None:
    op.drop_table('fleet_port_usage')
