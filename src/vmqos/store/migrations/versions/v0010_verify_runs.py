"""A port's verify runs (issue 18): `vmqos verify --server` uploads each finished direction with its plot.

`verify_runs` holds the run's summary (JSON) and its PNG; the server keeps the newest 20 per
(host, device) (store.verify_runs.KEEP). It imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_verify_runs'
down_revision = '0009_fleet_port_usage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('verify_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('device', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('plot', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_verify_runs_host_device', 'verify_runs', ['host', 'device', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_verify_runs_host_device', table_name='verify_runs')
    op.drop_table('verify_runs')
