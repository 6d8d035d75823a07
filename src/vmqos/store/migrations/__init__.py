"""The store's schema revisions (Alembic), shipped in the package and run by `Store` when it opens a database.

`upgrade` runs them; `versions/` holds one file per revision, oldest first: the first wave's
schema, then each change since. A table or column added to a model needs a revision here too:
tests/core/test_migrations.py compares a migrated database with the models and names what is
missing, and `python -m vmqos.store.migrations "what changed"` writes a draft of the revision.
"""
