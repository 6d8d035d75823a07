"""The CNI plugin's attachments (issue 19): one row per (network, container id, interface).

`vmqos-cni` records an attachment before it touches the kernel (state `adding`) and marks it `added`
when the port holds its limits; DEL removes it. The container is an instance of the scope's desired
state; this table keeps what that state has no words for (its container id, netns, host).

Drafted by `python -m vmqos.store.migrations`; it imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_cni_attachments'
down_revision = '0007_agent'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cni_attachments',
    sa.Column('network', sa.String(), nullable=False),
    sa.Column('container_id', sa.String(), nullable=False),
    sa.Column('ifname', sa.String(), nullable=False),
    sa.Column('scope', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=True),
    sa.Column('instance', sa.String(), nullable=False),
    sa.Column('netns', sa.String(), nullable=False),
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('network', 'container_id', 'ifname')
    )


def downgrade() -> None:
    op.drop_table('cni_attachments')
