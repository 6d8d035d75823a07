"""Guaranteed minimums on the uplink from the server (issue 16): the host's uplink and the ports' addresses.

- `fleet_uplinks`: one row per host, its shared link (device, capacity in bit/s, oversubscribe),
  revisioned with the fleet's global counter as the desired rows are; a NULL device is a tombstone
  (the uplink was removed: the agent releases its tree).
- `fleet_desired.addresses`: the JSON list of the instance's addresses a row carries (Neutron's
  fixed_ips, or a native row's `addresses`); NULL: none.
- `neutron_ports.fixed_ips`: the JSON list of a port's IP addresses (Neutron's fixed_ips ip_address).
- `agent_desired.addresses` and `agent_uplinks`: the same in the agent's cache.
It imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014_uplink_api'
down_revision = '0013_policy_ports_instances'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fleet_uplinks',
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=True),
    sa.Column('capacity_bps', sa.BigInteger(), nullable=True),
    sa.Column('oversubscribe', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.BigInteger(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )
    op.create_index(op.f('ix_fleet_uplinks_revision'), 'fleet_uplinks', ['revision'], unique=False)
    op.create_table('agent_uplinks',
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('capacity_bps', sa.BigInteger(), nullable=False),
    sa.Column('oversubscribe', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )
    op.add_column('fleet_desired', sa.Column('addresses', sa.Text(), nullable=True))
    op.add_column('agent_desired', sa.Column('addresses', sa.Text(), nullable=True))
    op.add_column('neutron_ports', sa.Column('fixed_ips', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('neutron_ports') as batch:
        batch.drop_column('fixed_ips')
    with op.batch_alter_table('agent_desired') as batch:
        batch.drop_column('addresses')
    with op.batch_alter_table('fleet_desired') as batch:
        batch.drop_column('addresses')
    op.drop_table('agent_uplinks')
    op.drop_index(op.f('ix_fleet_uplinks_revision'), table_name='fleet_uplinks')
    op.drop_table('fleet_uplinks')
