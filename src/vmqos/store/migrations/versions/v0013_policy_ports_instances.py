"""Typed policies attached to native ports, and instances' flavors known to the server (issue 14).

`fleet_desired.policy_id` names the vmqos policy (/v1/policies) a native row was set from (its content
stays resolved in `policy`); its index finds the rows a change of the policy re-derives and the ports
that keep it from being deleted. `fleet_instances` holds an instance's flavor and devices on a host,
recorded with PUT /v1/hosts/{host}/instances/{id}. It imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_policy_ports_instances'
down_revision = '0012_native_policies'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fleet_instances',
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('instance_id', sa.String(), nullable=False),
    sa.Column('flavor', sa.String(), nullable=False),
    sa.Column('devices', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('host', 'instance_id')
    )
    with op.batch_alter_table('fleet_desired', schema=None) as batch_op:
        batch_op.add_column(sa.Column('policy_id', sa.String(), nullable=True))
        batch_op.create_index(batch_op.f('ix_fleet_desired_policy_id'), ['policy_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fleet_desired', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fleet_desired_policy_id'))
        batch_op.drop_column('policy_id')

    op.drop_table('fleet_instances')
