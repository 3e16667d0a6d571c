"""Users of the web interface and the départements a referent answers for."""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime

from sqlalchemy import Boolean, Column, Enum, ForeignKey, Index, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow


class Role(enum.Enum):
    """What a user is to the service; the value is the French label shown to people."""

    admin = "administrateur"  #: edits the directory, prompts and accounts
    national = "équipe nationale"  #: reads every département, downloads national figures
    referent = "référent"  #: answers for one or more départements


#: Which départements a referent answers for (admins and the national team see them all).
user_departements = Table(
    "user_departements", Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("departement_code", ForeignKey("departements.code", ondelete="CASCADE"),
           primary_key=True),
)


class User(Base):
    """A person who logs in to the web interface: with a password, by single sign-on (OpenID
    Connect), or both."""

    __tablename__ = "users"
    #: One account per identity at the provider (issuer + subject).
    __table_args__ = (Index("ix_users_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Login, always lower case; unique.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    #: None for an account created by single sign-on until an admin grants it a role: it then
    #: reaches nothing but the page saying so.
    role: Mapped[Role | None] = mapped_column(Enum(Role, native_enum=False, length=20,
                                                   validate_strings=True))
    #: Argon2id hash; None until a password is set (the account cannot log in).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    #: A disabled account cannot log in, and its open sessions end at their next request.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Moved on by a logout: every session opened before it ends (cookies cannot be recalled).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The OpenID Connect identity this account logs in with (accounts/oidc.py), if any.
    oidc_issuer: Mapped[str | None] = mapped_column(String(300))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))

    departements: Mapped[list["Departement"]] = relationship(  # noqa: F821
        secondary=user_departements, order_by="Departement.code")

    @property
    def departement_codes(self) -> frozenset[str]:
        """Codes of the départements this user answers for (referents)."""
        return frozenset(d.code for d in self.departements)

    def fingerprint(self) -> str:
        """Changes whenever the password does, and at each logout: ties sessions and reset
        links to the current password and session epoch."""
        seed = f"{self.password_hash or '-'}:{self.session_epoch or 0}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]

    # What Flask-Login reads off a user: the session holds the id and the password's
    # fingerprint, so a password change or a disabled account ends every open session.
    def get_id(self) -> str:
        """The session's reference to this user."""
        return f"{self.id}:{self.fingerprint()}"

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """Flask-Login's name for `active`."""
        return self.active

    @property
    def role_label(self) -> str:
        """The role as people read it; an account without one is waiting for an admin."""
        return self.role.value if self.role is not None else "sans rôle (en attente)"

    @property
    def label(self) -> str:
        """How the user is named to people: name and email."""
        return f"{self.name} <{self.email}>" if self.name else self.email


class ApiToken(Base):
    """A personal API token: it acts as its owner, with their role and départements.

    Only a SHA-256 of the secret is stored (the secret is 256 random bits, shown once); the
    prefix lets people tell their tokens apart without revealing them.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    #: The token's first characters ("svi_XXXXXXXX"), shown in lists.
    prefix: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
