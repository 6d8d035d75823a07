"""The agent's cache (issue 15): the desired rows the server sent for the agent's host, and the revision.

- `agent_desired`: one live row per (host, device): its port id, source, revision and policy (the
  host file's JSON); a tombstone deletes the row;
- `agent_watch`: per host, the server's revision the rows are at (where the watch resumes).

Drafted by `python -m vmqos.store.migrations`; it imports no vmqos. (Made as 0006 beside the server's 0006_fleet, renumbered
0007 when both landed.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_agent'
down_revision = '0006_fleet'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_desired',
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('port_id', sa.String(), nullable=True),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('policy', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('host', 'device')
    )
    op.create_table('agent_watch',
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )


def downgrade() -> None:
    op.drop_table('agent_watch')
    op.drop_table('agent_desired')
