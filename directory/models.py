"""The routing directory (annuaire): who answers for each département, and when."""

from __future__ import annotations

import enum
from datetime import date, datetime, time

from sqlalchemy import (Boolean, CheckConstraint, Date, Enum, ForeignKey, Integer, String,
                        Time, UniqueConstraint)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow
from directory.limits import RING_TIMEOUT_MAX, RING_TIMEOUT_MIN


class RingStrategy(enum.Enum):
    """How the lines of a département are rung."""

    sequential = "l'une après l'autre"
    simultaneous = "toutes en même temps"


class ExceptionKind(enum.Enum):
    """An exceptional date range: closed although usually open, or the reverse."""

    closure = "fermeture exceptionnelle"
    opening = "ouverture exceptionnelle"


def _enum(cls):
    # Store the member name (stable), show the French value to people.
    return Enum(cls, native_enum=False, length=20, validate_strings=True)


class Departement(Base):
    """One département of the directory and its phone-assistance settings."""

    __tablename__ = "departements"

    #: Official code: "01".."95", "2A", "2B", "971".."976".
    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    #: IANA timezone in which opening hours are evaluated.
    timezone: Mapped[str] = mapped_column(String(40))
    #: phonenumbers region used to parse numbers typed for this département (FR, GP, RE…).
    phone_region: Mapped[str] = mapped_column(String(2))
    #: holidays.France subdivision ("57", "6AE", "971"…); None for the national list.
    holiday_subdiv: Mapped[str | None] = mapped_column(String(5))
    #: False: callers hear where to go instead (form, email) and are not put through.
    phone_assistance: Mapped[bool] = mapped_column(Boolean, default=True)
    ring_strategy: Mapped[RingStrategy] = mapped_column(_enum(RingStrategy),
                                                        default=RingStrategy.simultaneous)
    #: Seconds a line rings before it counts as not answered (limits: directory/limits.py).
    ring_timeout: Mapped[int] = mapped_column(Integer, default=20)
    #: Offer voicemail when closed or when nobody answers.
    voicemail_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Where to go instead of the phone: web form address and email (spoken to the caller).
    form_url: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    #: Moved on by every save of the département's settings: an editor who loaded an older
    #: version is refused (optimistic locking), so a concurrent change is never overwritten.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    lines: Mapped[list[Line]] = relationship(
        back_populates="departement", order_by="Line.position", cascade="all, delete-orphan")
    slots: Mapped[list[OpeningSlot]] = relationship(
        order_by="(OpeningSlot.weekday, OpeningSlot.start)", cascade="all, delete-orphan")
    exceptions: Mapped[list[DateException]] = relationship(
        order_by="DateException.start_date", cascade="all, delete-orphan")

    __table_args__ = (CheckConstraint(f"ring_timeout BETWEEN {RING_TIMEOUT_MIN} AND {RING_TIMEOUT_MAX}",
                                      name="ring_timeout"),)


class Line(Base):
    """A referent's phone line, rung in `position` order."""

    __tablename__ = "lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    departement_code: Mapped[str] = mapped_column(
        ForeignKey("departements.code", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    #: E.164, parsed with the département's region ("+590590123456").
    number: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    departement: Mapped[Departement] = relationship(back_populates="lines")

    __table_args__ = (UniqueConstraint("departement_code", "position"),)


class OpeningSlot(Base):
    """A weekly opening slot in the département's local time (several per day allowed)."""

    __tablename__ = "opening_slots"

    id: Mapped[int] = mapped_column(primary_key=True)
    departement_code: Mapped[str] = mapped_column(
        ForeignKey("departements.code", ondelete="CASCADE"), index=True)
    #: 0 = Monday … 6 = Sunday.
    weekday: Mapped[int] = mapped_column(Integer)
    start: Mapped[time] = mapped_column(Time)
    end: Mapped[time] = mapped_column(Time)

    __table_args__ = (CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
                      CheckConstraint("start < \"end\"", name="slot_order"))


class DateException(Base):
    """Exceptional closure (whole days) or opening (hours on given days) of a département."""

    __tablename__ = "date_exceptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    departement_code: Mapped[str] = mapped_column(
        ForeignKey("departements.code", ondelete="CASCADE"), index=True)
    kind: Mapped[ExceptionKind] = mapped_column(_enum(ExceptionKind))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    #: Opening hours on those days (openings only; closures are whole days).
    start_time: Mapped[time | None] = mapped_column(Time)
    end_time: Mapped[time | None] = mapped_column(Time)
    #: Told to callers: "fermeture exceptionnelle : <reason>".
    reason: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (CheckConstraint("start_date <= end_date", name="date_order"),)


class WorkedHoliday(Base):
    """A public holiday that is worked (e.g. Lundi de Pentecôte, journée de solidarité).

    `departement_code` NULL applies to every département (always `worked`). A département's own
    row wins over it: `worked` false keeps the day off there although it is worked elsewhere.
    """

    __tablename__ = "worked_holidays"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: French name as given by holidays.France(language="fr"), e.g. "Lundi de Pentecôte".
    holiday_name: Mapped[str] = mapped_column(String(80))
    departement_code: Mapped[str | None] = mapped_column(
        ForeignKey("departements.code", ondelete="CASCADE"))
    worked: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())

    __table_args__ = (UniqueConstraint("holiday_name", "departement_code"),)


class DirectoryState(Base):
    """One row: the directory's version, bumped by every edit (see directory/cache.py)."""

    __tablename__ = "directory_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
