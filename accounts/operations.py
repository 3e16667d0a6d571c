"""Account operations, shared by the web pages and `flask users …`. They only flush."""

from __future__ import annotations

import re

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts import passwords
from accounts.models import Role, User
from audit.operations import Actor, record
from core import text as text_policy
from core.db import utcnow
from directory.models import Departement

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: A password-reset link is valid this long, and only until the password changes.
RESET_MAX_AGE = 3600


class AccountError(ValueError):
    """An account change was refused; the message is French and names what is wrong."""


def normalize_email(email: str) -> str:
    """The login form of an email address (trimmed, lower case), or AccountError."""
    given = (email or "").strip()
    email = given.lower()
    # ASCII only: lower-casing « \u212Aamille@… » (the Kelvin sign) gives « kamille@… », another
    # person's address; international domains are written in their « xn-- » form.
    if not given.isascii() or not _EMAIL.fullmatch(email) or len(email) > 254 \
            or text_policy.forbidden(email):
        raise AccountError(f"adresse de courriel invalide : « {email} »")
    return email


def find(db: Session, email: str) -> User | None:
    """The account with this email, or None."""
    try:
        email = normalize_email(email)
    except AccountError:
        return None
    return db.scalar(select(User).where(User.email == email))


def count(db: Session) -> int:
    """How many accounts exist."""
    return db.scalar(select(func.count()).select_from(User))


def _departements(db: Session, codes) -> list[Departement]:
    found = []
    for code in codes:
        dept = db.get(Departement, (code or "").strip().upper())
        if dept is None:
            raise AccountError(f"département inconnu : « {code} »")
        found.append(dept)
    return found


def _snapshot(user: User) -> dict:
    return {"courriel": user.email, "nom": user.name,
            "rôle": user.role.value if user.role is not None else None,
            "départements": ", ".join(sorted(user.departement_codes)) or None,
            "actif": user.active}


def create(db: Session, actor: Actor, *, email: str, role: Role, name: str = "",
           departements=(), password: str | None = None) -> User:
    """Create an account; a referent needs at least one département."""
    email = normalize_email(email)
    if find(db, email) is not None:
        raise AccountError(f"un compte existe déjà pour « {email} »")
    name = text_policy.check((name or "").strip(), "nom")[:120]
    depts = _departements(db, departements)
    if role is Role.referent and not depts:
        raise AccountError("un référent doit être rattaché à au moins un département")
    user = User(email=email, name=name, role=role, active=True,
                departements=depts if role is Role.referent else [])
    if password is not None:
        _set_hash(user, password)
    db.add(user)
    db.flush()
    record(db, actor, entity="compte", summary=f"compte créé : {email}",
           changes={k: [None, v] for k, v in _snapshot(user).items()})
    return user


def _set_hash(user: User, password: str) -> None:
    why = passwords.problem(password)
    if why:
        raise AccountError(why)
    user.password_hash = passwords.hash_password(password)


def set_password(db: Session, actor: Actor, user: User, password: str) -> None:
    """Give the account a new password; its open sessions and reset links stop working."""
    _set_hash(user, password)
    db.flush()
    record(db, actor, entity="compte", summary=f"mot de passe changé : {user.email}")


def set_active(db: Session, actor: Actor, user: User, active: bool) -> None:
    """Enable or disable an account; a disabled one is logged out at its next request."""
    if user.active == active:
        return
    user.active = active
    db.flush()
    record(db, actor, entity="compte",
           summary=f"compte {'réactivé' if active else 'désactivé'} : {user.email}",
           changes={"actif": [not active, active]})


def grant(db: Session, actor: Actor, user: User, role: Role, departements=()) -> None:
    """Change an account's role and, for a referent, its départements."""
    before = _snapshot(user)
    depts = _departements(db, departements)
    if role is Role.referent and not depts:
        raise AccountError("un référent doit être rattaché à au moins un département")
    user.role = role
    user.departements = depts if role is Role.referent else []
    db.flush()
    changes = {k: v for k, v in ((k, [before[k], after]) for k, after in _snapshot(user).items())
               if v[0] != v[1]}
    if changes:
        record(db, actor, entity="compte", summary=f"droits modifiés : {user.email}",
               changes=changes)


def end_sessions(db: Session, user: User) -> None:
    """End every open session of the account (a logout: a copied cookie is worth nothing)."""
    user.session_epoch = (user.session_epoch or 0) + 1
    db.flush()


def authenticate(db: Session, email: str, password: str) -> User | None:
    """The active account matching these credentials, or None (same time either way)."""
    user = find(db, email)
    ok = passwords.verify(user.password_hash if user else None, password)
    if not (ok and user is not None and user.active):
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = utcnow()
    db.flush()
    return user


def from_session_id(db: Session, value: str) -> User | None:
    """The active user a session id names, if its password has not changed since."""
    user_id, _, mark = (value or "").partition(":")
    if not user_id.isdecimal():
        return None
    user = db.get(User, int(user_id))
    if user is None or not user.active or mark != user.fingerprint():
        return None
    return user


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="svi-password-reset")


def reset_token(secret: str, user: User) -> str:
    """A link token to choose a new password: time-limited, and single-use (it names the
    current password, which the reset changes)."""
    return _serializer(secret).dumps({"u": user.id, "f": user.fingerprint()})


def user_for_reset(db: Session, secret: str, token: str) -> User | None:
    """The account a reset token is valid for, or None (expired, used, forged, disabled)."""
    try:
        data = _serializer(secret).loads(token, max_age=RESET_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int):
        return None
    user = db.get(User, data["u"])
    if user is None or not user.active or data.get("f") != user.fingerprint():
        return None
    return user
