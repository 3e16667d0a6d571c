"""`flask --app app users …`: create, list, disable, set-password, grant; and the first admin."""

from __future__ import annotations

import secrets

import click
from flask import Flask
from sqlalchemy import select

from accounts import operations, tokens
from accounts.models import ApiToken, Role, User
from audit.operations import Actor
from core import db

_ROLES = {"admin": Role.admin, "national": Role.national, "referent": Role.referent}


def _codes(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _user(session, email: str) -> User:
    user = operations.find(session, email)
    if user is None:
        raise click.ClickException(f"aucun compte pour « {email} »")
    return user


def _password(value: str | None) -> str:
    return value if value is not None else click.prompt(
        "Mot de passe", hide_input=True, confirmation_prompt="Confirmez le mot de passe")


def ensure_first_admin(session, config) -> tuple[str, str | None] | None:
    """On a database without any account, create the first admin.

    Credentials come from ADMIN_EMAIL / ADMIN_PASSWORD; without a password one is generated and
    returned so that it can be shown once. Returns (email, generated password) or None.
    """
    if operations.count(session) > 0:
        return None
    email = config["ADMIN_EMAIL"]
    password = config["ADMIN_PASSWORD"] or None
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(12)
    operations.create(session, Actor.system("installation"), email=email, role=Role.admin,
                      name="Administrateur", password=password)
    return email, generated


def init_app(app: Flask) -> None:
    """Register the `users` command group."""

    @app.cli.group("users")
    def users_group():
        """Comptes de l'interface web : création, droits, mot de passe."""

    @users_group.command("create")
    @click.argument("email")
    @click.option("--role", type=click.Choice(list(_ROLES)), required=True,
                  help="admin, national (équipe nationale) ou referent.")
    @click.option("--departements", default=None, help="Codes séparés par des virgules (référents).")
    @click.option("--name", default="", help="Nom affiché.")
    @click.option("--password", default=None, help="Sinon demandé (ou --no-password).")
    @click.option("--no-password", is_flag=True,
                  help="Sans mot de passe : la personne le choisit par « mot de passe oublié ».")
    def create(email, role, departements, name, password, no_password):
        """Crée un compte."""
        with db.transaction() as session:
            try:
                user = operations.create(
                    session, Actor.cli(), email=email, role=_ROLES[role], name=name,
                    departements=_codes(departements),
                    password=None if no_password else _password(password))
            except operations.AccountError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"compte créé : {user.email} ({user.role_label})")

    @users_group.command("list")
    def list_():
        """Liste les comptes."""
        session = db.session()
        for user in session.scalars(select(User).order_by(User.email)):
            depts = ",".join(sorted(user.departement_codes))
            state = "actif" if user.active else "désactivé"
            click.echo(f"{user.email}\t{user.role_label}\t{depts or '-'}\t{state}")

    @users_group.command("disable")
    @click.argument("email")
    @click.option("--enable", is_flag=True, help="Réactive le compte.")
    def disable(email, enable):
        """Désactive (ou réactive) un compte ; ses sessions ouvertes prennent fin."""
        with db.transaction() as session:
            user = _user(session, email)
            operations.set_active(session, Actor.cli(), user, enable)
            click.echo(f"{user.email} : {'réactivé' if enable else 'désactivé'}")

    @users_group.command("set-password")
    @click.argument("email")
    @click.option("--password", default=None, help="Sinon demandé.")
    def set_password(email, password):
        """Change le mot de passe d'un compte."""
        with db.transaction() as session:
            user = _user(session, email)
            try:
                operations.set_password(session, Actor.cli(), user, _password(password))
            except operations.AccountError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"mot de passe changé : {user.email}")

    @users_group.command("grant")
    @click.argument("email")
    @click.option("--role", type=click.Choice(list(_ROLES)), required=True)
    @click.option("--departements", default=None, help="Codes séparés par des virgules (référents).")
    def grant(email, role, departements):
        """Change le rôle d'un compte et ses départements."""
        with db.transaction() as session:
            user = _user(session, email)
            try:
                operations.grant(session, Actor.cli(), user, _ROLES[role], _codes(departements))
            except operations.AccountError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"{user.email} : {user.role_label} "
                       f"{','.join(sorted(user.departement_codes))}".rstrip())

    @app.cli.group("tokens")
    def tokens_group():
        """Jetons d'API personnels : création (affiché une seule fois), liste, révocation."""

    @tokens_group.command("create")
    @click.argument("email")
    @click.option("--name", required=True, help="À quoi sert le jeton.")
    @click.option("--days", type=int, default=None, help="Durée de validité ; sinon sans fin.")
    def token_create(email, name, days):
        """Crée un jeton pour un compte et l'affiche (une seule fois)."""
        with db.transaction() as session:
            user = _user(session, email)
            try:
                token, secret = tokens.create(session, Actor.cli(), user, name, days)
            except tokens.TokenError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"jeton n° {token.id} créé pour {user.email} ; copiez-le, il ne sera "
                       "plus affiché :", err=True)
            click.echo(secret)

    @tokens_group.command("list")
    @click.argument("email", required=False)
    def token_list(email):
        """Liste les jetons (d'un compte, ou de tous), sans leur secret."""
        session = db.session()
        stmt = select(ApiToken).order_by(ApiToken.id)
        if email:
            stmt = stmt.where(ApiToken.user_id == _user(session, email).id)
        for token in session.scalars(stmt):
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "jamais"
            click.echo(f"{token.id}\t{token.user.email}\t{token.name}\t{token.prefix}…\t"
                       f"{tokens.state(token)}\tdernier usage : {used}")

    @tokens_group.command("revoke")
    @click.argument("token_id", type=int)
    def token_revoke(token_id):
        """Révoque un jeton (par son numéro, donné par `tokens list`)."""
        with db.transaction() as session:
            token = tokens.find(session, token_id)
            if token is None:
                raise click.ClickException(f"aucun jeton n° {token_id}")
            tokens.revoke(session, Actor.cli(), token)
            click.echo(f"jeton n° {token.id} révoqué ({token.user.email}, {token.name})")
