"""The revisions, oldest first by their `down_revision`; Alembic reads each file, this one it skips."""
