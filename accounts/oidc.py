"""Single sign-on by OpenID Connect (ProConnect, the State agents' SSO, or any provider), beside
local accounts.

The protocol is Authlib's: discovery, state, nonce, PKCE when the provider advertises it, the
code exchange, and the id_token's checks (signature against the provider's keys, issuer,
audience, expiry, nonce). This module adds what ProConnect needs beyond that — states and nonces
of 32 characters at least, a userinfo answer that may be a signed JWT, client authentication in
the body when offered — and decides which account an identity opens (`resolve`):

1. the account already tied to this issuer and subject;
2. else the account with the same email, tied to the identity from then on (audited), unless
   the provider says the email is not verified (`email_verified: false`) or the account is
   already tied to another subject of the same provider (an admin dissociates it first).
   ProConnect sends no `email_verified`: its emails are the agents' professional addresses,
   vouched for by their administration's identity provider, and ProConnect itself recommends the
   email to reconcile accounts (its `sub` changes with the identity provider the agent uses);
3. else a new account without any role: it reaches only the page saying that an admin must
   grant one (accounts.permissions.is_active is false until then).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, request
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts import operations
from accounts.models import User
from audit.operations import Actor, record
from core import text as text_policy
from core.db import utcnow

log = logging.getLogger(__name__)

#: Key of the extension (Authlib's client of the provider) in app.extensions.
EXTENSION = "svi.oidc"
#: ProConnect refuses a state or nonce shorter than 32 characters: 43 here.
TOKEN_BYTES = 32
#: Signature algorithms accepted for a userinfo JWT: asymmetric only (keys from the JWKS).
ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}


class SsoError(Exception):
    """A single sign-on that cannot go on. `message` is French, for the page shown to the person;
    `reason` is a short English word for the logs and the tests."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class Identity:
    """What the provider vouched for about the person who just logged in."""

    issuer: str
    subject: str
    email: str | None
    given_name: str = ""
    usual_name: str = ""
    email_verified: bool | None = None  # None: the provider does not say (ProConnect)

    @property
    def name(self) -> str:
        """Given name and usual name, one line, as shown in the interface."""
        name = " ".join(f"{self.given_name} {self.usual_name}".split())
        return text_policy.clean(name)[:120]


# --- configuration -------------------------------------------------------------------------

def enabled(app: Flask) -> bool:
    """Single sign-on is on when an issuer is configured."""
    return bool(app.config.get("OIDC_ISSUER"))


def provider_name(app: Flask) -> str:
    """The provider as people know it (« ProConnect »)."""
    return app.config.get("OIDC_PROVIDER_NAME") or "ProConnect"


def discovery_url(issuer: str) -> str:
    """Where the provider's metadata is read (OpenID Connect Discovery)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def origin(url: str) -> str:
    """scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def init_app(app: Flask) -> None:
    """Register the provider's client when OIDC_ISSUER is set, and the login button's data."""
    if enabled(app):
        oauth = OAuth(app)
        app.extensions[EXTENSION] = oauth.register(
            "oidc",
            client_id=app.config["OIDC_CLIENT_ID"],
            client_secret=app.config["OIDC_CLIENT_SECRET"],
            server_metadata_url=discovery_url(app.config["OIDC_ISSUER"]),
            # ProConnect's access tokens live 60 s: with Authlib's default leeway (60 s) the
            # token would count as expired before userinfo is even asked.
            client_kwargs={"scope": app.config["OIDC_SCOPES"], "leeway": 5,
                           "default_timeout": app.config["OIDC_TIMEOUT"]})

    @app.context_processor
    def _sso_button():
        if not enabled(current_app):
            return {"sso": None}
        name = provider_name(current_app)
        return {"sso": {"name": name, "proconnect": name.replace(" ", "").lower() == "proconnect"}}


def _client(app: Flask):
    client = app.extensions.get(EXTENSION)
    if client is None:
        raise SsoError("disabled", "La connexion par fournisseur d'identité n'est pas activée.")
    return client


def _unreachable(app: Flask) -> SsoError:
    return SsoError("unreachable",
                    f"{provider_name(app)} ne répond pas pour le moment. Réessayez dans quelques "
                    "minutes, ou connectez-vous avec votre adresse et votre mot de passe si vous "
                    "en avez un.")


def _metadata(app: Flask) -> dict:
    """The provider's discovery document (read once per process, again after a failure), with
    the choices it implies made on the client: PKCE, client authentication."""
    client = _client(app)
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("fournisseur d'identité injoignable (découverte) : %s", exc)
        raise _unreachable(app) from None
    kwargs = client.client_kwargs
    if "S256" in (metadata.get("code_challenge_methods_supported") or []):
        kwargs.setdefault("code_challenge_method", "S256")
    if "client_secret_post" in (metadata.get("token_endpoint_auth_methods_supported") or []):
        kwargs.setdefault("token_endpoint_auth_method", "client_secret_post")  # ProConnect's
    return metadata


# --- the protocol --------------------------------------------------------------------------

def authorize_redirect(app: Flask, redirect_uri: str):
    """The redirect to the provider's authorization endpoint; state, nonce and PKCE verifier are
    kept in the (signed) session until the person comes back."""
    _metadata(app)
    return _client(app).authorize_redirect(
        redirect_uri, state=secrets.token_urlsafe(TOKEN_BYTES),
        nonce=secrets.token_urlsafe(TOKEN_BYTES))


def finish(app: Flask) -> tuple[Identity, str]:
    """On the return from the provider: check the answer, exchange the code, verify the tokens,
    read userinfo. Returns the identity and the raw id_token (kept for the logout); SsoError
    with a French message for anything refused or failed."""
    name = provider_name(app)
    error = request.args.get("error")
    if error:
        if error in ("access_denied", "login_required", "consent_required"):
            raise SsoError(error, f"La connexion avec {name} a été annulée ou refusée. Vous "
                                  "pouvez recommencer, ou vous connecter avec votre mot de passe.")
        raise SsoError(error, f"{name} n'a pas pu vous identifier (erreur « {error[:60]} »).")
    client = _client(app)
    metadata = _metadata(app)
    try:
        token = client.authorize_access_token()
        claims = token.get("userinfo")
        if not token.get("id_token") or claims is None:
            raise SsoError("no-id-token", f"La réponse de {name} ne contient pas d'identité.")
        userinfo = _userinfo(client, metadata, token)
    except MismatchingStateError:
        raise SsoError("state", "Cette demande de connexion n'est plus valable (déjà utilisée, "
                                "expirée, ou ouverte dans un autre navigateur). "
                                "Recommencez.") from None
    except requests.RequestException as exc:
        log.warning("fournisseur d'identité injoignable : %s", exc)
        raise _unreachable(app) from None
    except (AuthlibBaseError, JoseError, ValueError, KeyError, TypeError) as exc:
        log.warning("réponse du fournisseur d'identité refusée : %r", exc)
        raise SsoError("invalid", f"La réponse de {name} n'a pas pu être vérifiée : la connexion "
                                  "est refusée. Recommencez ; si cela se reproduit, prévenez "
                                  "l'administrateur du service.") from None
    if userinfo.get("sub", claims["sub"]) != claims["sub"]:  # OpenID Connect Core 5.3.4
        log.warning("userinfo d'un autre sujet que l'id_token : refusé")
        raise SsoError("invalid", f"La réponse de {name} n'a pas pu être vérifiée : la connexion "
                                  "est refusée.")
    merged = {**dict(claims), **userinfo}
    verified = merged.get("email_verified")
    identity = Identity(
        issuer=str(claims["iss"]), subject=str(claims["sub"]),
        email=merged.get("email") if isinstance(merged.get("email"), str) else None,
        given_name=str(merged.get("given_name") or ""),
        usual_name=str(merged.get("usual_name") or merged.get("family_name") or ""),
        email_verified=verified if isinstance(verified, bool) else None)
    return identity, token["id_token"]


def _userinfo(client, metadata: dict, token: dict) -> dict:
    """The userinfo endpoint's claims: JSON, or a JWT signed by the provider (ProConnect)."""
    endpoint = metadata.get("userinfo_endpoint")
    if not endpoint:
        return {}
    response = client.get(endpoint, token=token)
    response.raise_for_status()
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind != "application/jwt":
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError("userinfo n'est pas un objet JSON")
        return data
    algorithms = [a for a in (metadata.get("userinfo_signing_alg_values_supported")
                              or metadata.get("id_token_signing_alg_values_supported")
                              or ["RS256"]) if a in ASYMMETRIC]
    try:
        decoded = jwt.decode(response.text, KeySet.import_key_set(client.fetch_jwk_set()),
                             algorithms=algorithms)
    except InvalidKeyIdError:  # keys rotated since they were read
        decoded = jwt.decode(response.text,
                             KeySet.import_key_set(client.fetch_jwk_set(force=True)),
                             algorithms=algorithms)
    data = dict(decoded.claims)
    if "iss" in data and data["iss"] != metadata.get("issuer"):
        raise ValueError("userinfo d'un autre émetteur")
    audience = data.get("aud")
    if audience is not None and client.client_id not in (
            audience if isinstance(audience, list) else [audience]):
        raise ValueError("userinfo destiné à un autre client")
    return data


def end_session_url(app: Flask, id_token: str,
                    post_logout_redirect_uri: str) -> tuple[str, str] | None:
    """(URL, state) of the provider's end_session endpoint for RP-initiated logout, or None when
    it has none or cannot be reached (the local logout is done either way)."""
    try:
        endpoint = _metadata(app).get("end_session_endpoint")
    except SsoError:
        return None
    if not endpoint:
        return None
    state = secrets.token_urlsafe(TOKEN_BYTES)
    query = urlencode({"id_token_hint": id_token, "state": state,
                       "post_logout_redirect_uri": post_logout_redirect_uri})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", state


def provider_origins(app: Flask) -> list[str]:
    """Origins the browser is sent to by the login and logout forms (for the CSP's
    form-action): the issuer's, and those of its endpoints once the discovery is read."""
    if not enabled(app):
        return []
    origins = [origin(app.config["OIDC_ISSUER"])]
    client = app.extensions.get(EXTENSION)
    metadata = client.server_metadata if client is not None else {}
    for key in ("authorization_endpoint", "end_session_endpoint"):
        if isinstance(metadata.get(key), str) and origin(metadata[key]) not in origins:
            origins.append(origin(metadata[key]))
    return origins


# --- accounts ------------------------------------------------------------------------------

def find_by_identity(db: Session, issuer: str, subject: str) -> User | None:
    """The account tied to this identity at the provider, or None."""
    return db.scalar(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))


def resolve(db: Session, identity: Identity, provider: str = "ProConnect") -> tuple[User, str]:
    """The account `identity` opens, and how: "known", "linked" (an existing account found by
    its email, tied from now on) or "created" (new, without a role). Flush-only; SsoError when
    refused. Records the login time; ties and creations are in the audit log."""
    user = find_by_identity(db, identity.issuer, identity.subject)
    outcome = "known"
    if user is None:
        try:
            email = operations.normalize_email(identity.email or "")
        except operations.AccountError:
            raise SsoError("no-email", f"{provider} n'a pas transmis d'adresse électronique "
                                       "valable : le compte ne peut pas être ouvert.") from None
        user = operations.find(db, email)
        if user is not None:
            if not user.active:
                raise SsoError("disabled", "Ce compte est désactivé. Adressez-vous à un "
                                           "administrateur du service.")
            if identity.email_verified is False:
                raise SsoError("unverified", f"{provider} indique que votre adresse « {email} » "
                                             "n'est pas vérifiée : elle ne peut pas ouvrir le "
                                             "compte qui porte cette adresse.")
            if user.oidc_subject is not None and user.oidc_issuer == identity.issuer:
                raise SsoError("other-identity", f"Le compte « {email} » est déjà associé à une "
                                                 f"autre identité {provider}. Un administrateur "
                                                 "peut l'en dissocier ; vous pourrez alors vous "
                                                 "connecter.")
            link(db, user, identity, provider)
            outcome = "linked"
        else:
            user = _create(db, email, identity, provider)
            outcome = "created"
    if not user.active:
        raise SsoError("disabled", "Ce compte est désactivé. Adressez-vous à un administrateur "
                                   "du service.")
    user.last_login_at = utcnow()
    db.flush()
    return user, outcome


def link(db: Session, user: User, identity: Identity, provider: str) -> None:
    """Tie an existing account to a provider's identity (audited)."""
    before = user.oidc_issuer
    user.oidc_issuer, user.oidc_subject = identity.issuer, identity.subject
    db.flush()
    record(db, Actor(f"sso:{user.email}", user.id), entity="compte",
           summary=f"compte associé à {provider} : {user.email}",
           changes={"fournisseur d'identité": [before, identity.issuer]})


def unlink(db: Session, actor: Actor, user: User, provider: str = "ProConnect") -> None:
    """Untie an account from its provider identity (an admin's action): its next single sign-on
    ties it again by email. Flush-only, audited."""
    if user.oidc_subject is None:
        return
    before = user.oidc_issuer
    user.oidc_issuer = user.oidc_subject = None
    db.flush()
    record(db, actor, entity="compte", summary=f"compte dissocié de {provider} : {user.email}",
           changes={"fournisseur d'identité": [before, None]})


def _create(db: Session, email: str, identity: Identity, provider: str) -> User:
    user = User(email=email, name=identity.name, role=None, active=True,
                oidc_issuer=identity.issuer, oidc_subject=identity.subject)
    db.add(user)
    db.flush()
    record(db, Actor(f"sso:{email}", user.id), entity="compte",
           summary=f"compte créé par {provider} (sans rôle) : {email}",
           changes={"courriel": [None, email], "nom": [None, user.name or None],
                    "fournisseur d'identité": [None, identity.issuer]})
    return user
