"""A port's receive-window clamp: `ports.window_clamp`, the opt-in switch of `port set --window-clamp`.

- `ports.window_clamp`: true when the port's plan lowers the TCP window in the ACKs the port
  forwards (shape mode only). Opt-in, since it rewrites the tenant's TCP headers: the rows a
  database already holds get false (a server default), the behaviour they had.
It imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015_port_window_clamp'
down_revision = '0014_uplink_api'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Adds the column where it lacks: `ports` is a first-wave table, and a database that create_all
    made from today's models before revisions existed is stamped at 0001 or 0002 with it already there
    (as v0005 does for its columns)."""
    if 'window_clamp' in {column['name'] for column in sa.inspect(op.get_bind()).get_columns('ports')}:
        return
    op.add_column('ports', sa.Column('window_clamp', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('ports') as batch:
        batch.drop_column('window_clamp')
