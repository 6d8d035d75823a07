"""The containers a CNI plugin attached: one row per attachment (network, container id, interface).

The container itself is an instance of its scope's desired state (`cni-` and its id's first 12
characters), its host-side veth that instance's port, as any lab instance's; this table keeps what
the desired state has no words for: which runtime attachment made the port, in which container
network namespace, on which host, and whether the ADD finished. The row is written BEFORE the kernel
is touched (`adding`), so that a plugin killed in the middle of an ADD leaves a row that the runtime's
DEL (or the next ADD) finds, never an IFB or a chain that belongs to nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

WRITER = "cni"  # the writer lock of this table's rows
ADDING, ADDED = "adding", "added"


class CniAttachmentRow(Base):
    __tablename__ = "cni_attachments"

    network: Mapped[str] = mapped_column(String, primary_key=True)  # the configuration's `name`
    container_id: Mapped[str] = mapped_column(String, primary_key=True)
    ifname: Mapped[str] = mapped_column(String, primary_key=True)  # inside the container
    scope: Mapped[str] = mapped_column(String)  # the namespace the plugin ran in ("" the host's own)
    device: Mapped[str | None] = mapped_column(String)  # the host-side veth: the port (None: not found yet)
    instance: Mapped[str] = mapped_column(String)
    netns: Mapped[str] = mapped_column(String)  # the container's namespace, as CNI_NETNS named it
    host: Mapped[str] = mapped_column(String)
    state: Mapped[str] = mapped_column(String)  # adding | added
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


cni_attachments = table_of(CniAttachmentRow)


@dataclass(frozen=True)
class Attachment:
    network: str
    container_id: str
    ifname: str
    scope: str
    device: str | None
    instance: str
    netns: str
    host: str
    state: str = ADDING


_COLUMNS = tuple(Attachment.__dataclass_fields__)


def record(store: Store, attachment: Attachment) -> None:
    """Write (or replace) the attachment's row, in one transaction."""
    c = cni_attachments.c
    with store._tx(f"recording container {attachment.container_id[:12]}'s attachment", write=WRITER) as conn:
        conn.execute(delete(cni_attachments).where(c.network == attachment.network,
                                                   c.container_id == attachment.container_id,
                                                   c.ifname == attachment.ifname))
        conn.execute(insert(cni_attachments).values(**{k: getattr(attachment, k) for k in _COLUMNS},
                                                    updated_at=datetime.now(UTC)))


def find(store: Store, network: str, container_id: str, ifname: str) -> Attachment | None:
    c = cni_attachments.c
    with store._tx(f"reading container {container_id[:12]}'s attachment") as conn:
        row = conn.execute(select(*(c[k] for k in _COLUMNS)).where(
            c.network == network, c.container_id == container_id, c.ifname == ifname)).first()
    return Attachment(**dict(zip(_COLUMNS, row))) if row else None


def listed(store: Store, scope: str | None = None) -> list[Attachment]:
    """Every attachment (of `scope`), oldest first."""
    c = cni_attachments.c
    query = select(*(c[k] for k in _COLUMNS)).order_by(c.updated_at)
    if scope is not None:
        query = query.where(c.scope == scope)
    with store._tx("reading the containers' attachments") as conn:
        return [Attachment(**dict(zip(_COLUMNS, row))) for row in conn.execute(query)]


def forget(store: Store, network: str, container_id: str, ifname: str) -> None:
    c = cni_attachments.c
    with store._tx(f"forgetting container {container_id[:12]}'s attachment", write=WRITER) as conn:
        conn.execute(delete(cni_attachments).where(c.network == network, c.container_id == container_id,
                                                   c.ifname == ifname))
