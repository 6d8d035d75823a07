"""Identity management (issue 14): what Keystone keeps of projects and users, the service user's host,
and the failed-login count of the lockout.

- `identity_projects`: `description`, `enabled`, `extra` (JSON: tags and any other attribute sent);
- `identity_users`: `default_project_id`, `host` (the one host a service user acts for), `extra`
  (JSON: description, email, options, any other attribute), `failed_auth_count` and
  `failed_auth_at` (Keystone's `local_user` columns of the same names: the lockout);
- `identity_tokens`: an index on `user_id` (a new password, a disabled or deleted user revokes its
  tokens).

The rows a database already holds get what a new row would: an enabled project with no
description, a user with no failed login and nothing extra (server defaults, for the upgrade).
Drafted by `python -m vmqos.store.migrations`, the defaults and the checks for what exists added by
hand; it imports no vmqos.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_identity_management'
down_revision = '0004_neutron_network_port_tags'
branch_labels = None
depends_on = None


def _project_columns() -> list[sa.Column]:
    return [sa.Column('description', sa.String(), nullable=False, server_default=''),
            sa.Column('enabled', sa.Boolean(), nullable=False, server_default=sa.true()),
            sa.Column('extra', sa.Text(), nullable=False, server_default='{}')]


def _user_columns() -> list[sa.Column]:
    return [sa.Column('default_project_id', sa.String(), nullable=True),
            sa.Column('host', sa.String(), nullable=True),
            sa.Column('extra', sa.Text(), nullable=False, server_default='{}'),
            sa.Column('failed_auth_count', sa.Integer(), nullable=False, server_default='0'),
            sa.Column('failed_auth_at', sa.DateTime(timezone=True), nullable=True)]


def upgrade() -> None:
    """Adds what each table lacks: a database that this slice's code made with create_all, before the
    revision existed, is stamped at 0002 like any other and already has these columns."""
    inspector = sa.inspect(op.get_bind())
    for table, columns in (('identity_projects', _project_columns()), ('identity_users', _user_columns())):
        have = {column['name'] for column in inspector.get_columns(table)}
        missing = [column for column in columns if column.name not in have]
        if missing:
            with op.batch_alter_table(table, schema=None) as batch_op:
                for column in missing:
                    batch_op.add_column(column)
    if 'ix_identity_tokens_user_id' not in {index['name'] for index in inspector.get_indexes('identity_tokens')}:
        with op.batch_alter_table('identity_tokens', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_identity_tokens_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('identity_users', schema=None) as batch_op:
        batch_op.drop_column('failed_auth_at')
        batch_op.drop_column('failed_auth_count')
        batch_op.drop_column('extra')
        batch_op.drop_column('host')
        batch_op.drop_column('default_project_id')

    with op.batch_alter_table('identity_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identity_tokens_user_id'))

    with op.batch_alter_table('identity_projects', schema=None) as batch_op:
        batch_op.drop_column('extra')
        batch_op.drop_column('enabled')
        batch_op.drop_column('description')
