"""Guaranteed minimums on the uplink (issue 16): the scope's uplink and each port's instance addresses.

`uplinks` holds a scope's shared link (device, capacity in bit/s); `ports.addresses` the JSON list
of the instance's IPs on the port, how the uplink's plan classifies the traffic towards it.
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
    with op.batch_alter_table('ports') as batch:
        batch.add_column(sa.Column('addresses', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ports') as batch:
        batch.drop_column('addresses')
    op.drop_table('uplinks')
