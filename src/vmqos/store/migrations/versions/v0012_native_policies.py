"""vmqos's own policies on /v1 (issue 14): what Neutron's rules cannot say (peak, traffic classes).

`native_policies` holds one policy per row in the host file's form (JSON), owned by a project, with
a revision that a conditional write compares (If-Match). It imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_native_policies'
down_revision = '0011_uplinks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('native_policies',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('project_id', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('description', sa.String(), nullable=False),
    sa.Column('qos', sa.Text(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'name', name='uq_native_policies_project_name')
    )


def downgrade() -> None:
    op.drop_table('native_policies')
