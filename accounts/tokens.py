"""Personal API tokens: created for a user (shown once), stored hashed, revoked, and turned back
into their owner on each API request. Used by the web page « Mes jetons d'API », the CLI and
the API's authentication."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from accounts.models import ApiToken, User
from audit.operations import Actor, record
from core import text as text_policy
from core.db import utcnow

#: Every token starts with this, so that a leaked one is recognised by secret scanners.
SCHEME = "svi_"
#: Tokens an account may hold at once (revoked ones aside).
MAX_ACTIVE = 20
#: Longest lifetime one may ask for.
MAX_DAYS = 730
#: last_used_at is written at most this often (an API client must not write on every call).
USE_RESOLUTION = timedelta(minutes=5)


class TokenError(ValueError):
    """A token that cannot be created or revoked; the message is French, for people."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def active(db: Session, user: User) -> list[ApiToken]:
    """The account's tokens that still work, newest first."""
    now = utcnow()
    return [t for t in listed(db, user) if t.revoked_at is None
            and (t.expires_at is None or t.expires_at > now)]


def listed(db: Session, user: User) -> list[ApiToken]:
    """Every token of the account, revoked and expired ones included, newest first."""
    return list(db.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                           .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def create(db: Session, actor: Actor, user: User, name: str, days: int | None = None
           ) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it and its secret, which is never shown again."""
    try:
        name = " ".join(text_policy.check(name or "", "nom du jeton").split())
    except text_policy.TextRefused as exc:
        raise TokenError(str(exc)) from None
    if not name:
        raise TokenError("donnez un nom au jeton (à quoi il sert)")
    if len(name) > 80:
        raise TokenError("le nom du jeton dépasse 80 caractères")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise TokenError(f"la durée de validité va de 1 à {MAX_DAYS} jours")
    if not user.active:
        raise TokenError("ce compte est désactivé")
    # Take the account's row lock (a no-op update: the write lock on SQLite) before reading its
    # tokens, so that two forms sent at once cannot both pass the name check below.
    db.execute(update(User).where(User.id == user.id).values(session_epoch=User.session_epoch))
    working = active(db, user)
    if any(t.name.casefold() == name.casefold() for t in working):
        # Names tell tokens apart; and a form sent twice (a reload) creates no second token.
        raise TokenError(f"un jeton actif s'appelle déjà « {name} » : choisissez un autre nom")
    if len(working) >= MAX_ACTIVE:
        raise TokenError(f"ce compte a déjà {MAX_ACTIVE} jetons actifs : révoquez-en un")
    secret = SCHEME + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, prefix=secret[:12], token_hash=_hash(secret),
                     created_at=utcnow(),
                     expires_at=utcnow() + timedelta(days=days) if days else None)
    db.add(token)
    db.flush()
    record(db, actor, entity="jeton d'API",
           summary=f"jeton d'API créé pour {user.email} : {name} ({token.prefix}…)")
    return token, secret


def revoke(db: Session, actor: Actor, token: ApiToken) -> None:
    """Stop a token from working, at once; revoking twice changes nothing."""
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    db.flush()
    record(db, actor, entity="jeton d'API",
           summary=f"jeton d'API révoqué pour {token.user.email} : {token.name} ({token.prefix}…)")


def owner(db: Session, secret: str | None) -> tuple[User, ApiToken] | None:
    """The active user a presented secret belongs to, and the token; None when unknown,
    revoked or expired. Reads only: `touch` records the use."""
    if not secret or not secret.startswith(SCHEME) or len(secret) > 100:
        return None
    token = db.scalars(select(ApiToken).where(ApiToken.token_hash == _hash(secret))).first()
    now = utcnow()
    if (token is None or token.revoked_at is not None
            or (token.expires_at is not None and token.expires_at <= now)
            or not token.user.active):
        return None
    return token.user, token


def touch(make_session, token: ApiToken) -> None:
    """Record that the token was used, at most every USE_RESOLUTION, in a short transaction of
    its own: committed whatever the request's outcome (a refused request is a use too), and
    never holding a lock while the request runs."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at <= USE_RESOLUTION:
        return
    with make_session() as session, session.begin():
        session.execute(update(ApiToken).where(
            ApiToken.id == token.id,
            (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - USE_RESOLUTION))
            .values(last_used_at=now))


def find(db: Session, token_id: int) -> ApiToken | None:
    """A token by its id."""
    return db.get(ApiToken, token_id)


def state(token: ApiToken, now: datetime | None = None) -> str:
    """« actif », « révoqué » or « expiré », as shown to people."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return "révoqué"
    if token.expires_at is not None and token.expires_at <= now:
        return "expiré"
    return "actif"
