"""Admins' overrides of the prompts: a text or a recording, nationally or for one département."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class PromptOverride(Base):
    """What replaces a prompt of `prompts/fr.yaml` at one level: nationally, or for a département
    (which wins over the national level). A row holds a text, a recording, or both (the recording
    is played then); a row with neither is deleted."""

    __tablename__ = "prompt_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The prompt's name, a key of prompts/fr.yaml.
    name: Mapped[str] = mapped_column(String(60))
    #: The département it applies to; NULL: every département (the national override).
    departement_code: Mapped[str | None] = mapped_column(
        ForeignKey("departements.code", ondelete="CASCADE"))
    #: Replacement text, with exactly the default text's placeholders; NULL: not replaced here.
    text: Mapped[str | None] = mapped_column(Text)
    #: Recording under instance/prompts/, a random name of ours ("<32 hex>.mp3" or ".wav").
    audio: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("name", "departement_code"),
        # NULLs are distinct in a unique constraint: one national row per prompt needs its own.
        Index("uq_prompt_overrides_national", "name", unique=True,
              sqlite_where=sql("departement_code IS NULL"),
              postgresql_where=sql("departement_code IS NULL")),
    )
