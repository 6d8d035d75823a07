"""`python -m vmqos.store.migrations "what changed"`: draft the next revision from the models.

It brings a throw-away SQLite database to the newest revision, compares it with every table the
models declare (`models.full_metadata`), writes `versions/vNNNN_<slug>.py` with the operations
that make up the difference, for a person to read, name and complete (autogenerate sees no
renames and no data changes), and moves `versions.HEAD` to it. Run it from a checkout (the files
are in the source tree).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from vmqos.store.migrations import upgrade
from vmqos.store.migrations.models import full_metadata


def draft(message: str) -> Path:
    number = 1 + max(int(rev.split("_", 1)[0]) for rev in upgrade.known())
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    rev_id = f"{number:04d}_{slug}"[:32].rstrip("_")  # alembic_version holds 32 characters
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/draft.db")
        try:
            with engine.begin() as conn:
                upgrade.upgrade(conn, "the draft database")
                cfg = upgrade.config(conn)
                cfg.set_main_option("file_template", "v%%(rev)s")
                cfg.attributes["metadata"] = full_metadata()
                script = command.revision(cfg, message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)
    heads = upgrade.HERE / "versions" / "__init__.py"
    heads.write_text(re.sub(r'(?m)^HEAD = ".*"$', f"HEAD = {rev_id!r}".replace("'", '"'), heads.read_text()))
    return Path(script.path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit('usage: python -m vmqos.store.migrations "what changed"')
    print(draft(sys.argv[1]))
