"""One row per change to the directory, the prompts or the accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class AuditEntry(Base):
    """A change, field by field: `changes` maps a French field label to [before, after]."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who: "utilisateur:<email>", "cli:<system user>", "import:<file> (<email>)", "système:<job>".
    actor: Mapped[str] = mapped_column(String(300))
    #: The account behind the change, when a person made it through the web interface.
    actor_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    #: The département concerned, if any (kept as text: the log outlives what it describes).
    departement_code: Mapped[str | None] = mapped_column(String(3))
    #: What kind of thing changed: "département", "compte", "message"…
    entity: Mapped[str] = mapped_column(String(40))
    #: A one-line French summary ("lignes modifiées", "compte créé"…).
    summary: Mapped[str] = mapped_column(String(300))
    changes: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Bumped per row written by one operation, so rows of one change keep their order.
    seq: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # The audit page: newest first, optionally for one département.
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_departement_at", "departement_code", "at"),
    )
