"""Every table the models declare: what a migrated database is compared with, and revisions drafted from.

Tables register on one metadata when their module is imported, and a program imports only the
modules it uses (the CLI never imports the API's identity tables): importing every module of
`vmqos.store` is the only way to see them all, including those of store modules added later.
"""

from __future__ import annotations

import importlib
import pkgutil

from sqlalchemy import MetaData

import vmqos.store


def full_metadata() -> MetaData:
    for module in pkgutil.walk_packages(vmqos.store.__path__, "vmqos.store."):
        if not module.name.startswith("vmqos.store.migrations"):
            importlib.import_module(module.name)
    from vmqos.store.schema import metadata

    return metadata
