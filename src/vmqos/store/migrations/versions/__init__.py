"""The revisions, oldest first by their `down_revision`; Alembic reads each file, this one it skips.

HEAD names the newest: opening a database at HEAD compares one row with it and loads no Alembic
(tests/core/test_migrations.py checks that it is Alembic's head; a new revision moves it).
"""

HEAD = "0015_port_window_clamp"
