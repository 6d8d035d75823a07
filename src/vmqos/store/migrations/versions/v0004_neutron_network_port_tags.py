"""Tags on Neutron networks and ports (standard-attr-tag), as QoS policies have them.

- `neutron_networks.tags`, `neutron_ports.tags`: a JSON list of strings, like `qos_policies.tags`.
  The rows already there get `[]` (no tags), through a server default that is dropped again, so
  that the schema is the models' (which give every row its tags).

Drafted by `python -m vmqos.store.migrations`, then the default for existing rows added by hand; it
imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_neutron_network_port_tags'
down_revision = '0003_neutron_networks_ports_rbac'
branch_labels = None
depends_on = None

TABLES = ('neutron_networks', 'neutron_ports')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('tags', sa.Text(), nullable=False, server_default='[]'))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('tags', existing_type=sa.Text(), existing_nullable=False, server_default=None)


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('tags')
