"""Guaranteed minimums on the uplink (issue 16): the scope's uplink and each port's instance addresses.

`uplinks` holds a scope's shared link (device, capacity in bit/s); `port_addresses` the JSON list
of the instance's IPs on a port, how the uplink's plan classifies the traffic towards it (a table of
its own: the first wave's `ports` keeps its shape).
It imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_uplinks'
down_revision = '0010_verify_runs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('uplinks',
    sa.Column('scope', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('capacity_bps', sa.BigInteger(), nullable=False),
    sa.Column('oversubscribe', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('port_addresses',
    sa.Column('scope', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('addresses', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['scope', 'device'], ['ports.scope', 'ports.device'], ),
    sa.PrimaryKeyConstraint('scope', 'device')
    )


def downgrade() -> None:
    op.drop_table('port_addresses')
    op.drop_table('uplinks')
