"""${message}

Written by `python -m vmqos.store.migrations`; read it, name what it adds and why, and keep it to
alembic and sqlalchemy (a revision never imports vmqos: the models move on, a revision must not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
