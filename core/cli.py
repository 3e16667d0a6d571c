"""`flask --app app db …` and `setup`: migrations and first-run data."""

from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from sqlalchemy import func, select

from core import db

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    """Alembic configuration pointed at a database URL."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring a database schema up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def instant_option(ctx, param, value: str | None):
    """Click callback for `--at`: an ISO instant, in Paris time without an offset; None if absent."""
    from ivr.state import parse_instant
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(f"instant invalide : « {value} » (ex. 2026-12-26T10:00)") from None


def init_app(app: Flask) -> None:
    """Register the `db` and `setup` commands."""

    @app.cli.group("db")
    def db_group():
        """Migrations du schéma (Alembic)."""

    @db_group.command("upgrade")
    @click.argument("revision", default="head")
    def db_upgrade(revision):
        """Met le schéma à jour (par défaut jusqu'à la dernière révision)."""
        upgrade(current_app.config["DATABASE_URL"], revision)
        click.echo(f"schéma à jour ({revision})")

    @db_group.command("downgrade")
    @click.argument("revision")
    def db_downgrade(revision):
        """Revient à une révision antérieure du schéma."""
        command.downgrade(alembic_config(current_app.config["DATABASE_URL"]), revision)
        click.echo(f"schéma ramené à {revision}")

    @app.cli.command("setup")
    @click.option("--demo/--no-demo", default=True,
                  help="Lignes de démonstration (fictives) quand l'annuaire est vide.")
    def setup(demo):
        """Migre la base, charge les 101 départements et la démo si l'annuaire est vide."""
        from directory.models import Departement
        from directory.operations import load_demo, seed_departements
        from tracking import taxonomy
        from tracking.models import Thematique
        from accounts.cli import ensure_first_admin
        upgrade(current_app.config["DATABASE_URL"])
        with db.transaction() as session:
            empty = session.scalar(select(func.count()).select_from(Departement)) == 0
            created = seed_departements(session)
            demo_codes = load_demo(session) if empty and demo else []
            if session.scalar(select(func.count()).select_from(Thematique)) == 0:
                counts = taxonomy.load_file(session)
                click.echo(f"motifs : {counts['thematiques']} thématiques, {counts['motifs']} motifs")
            first_admin = ensure_first_admin(session, current_app.config)
        click.echo(f"{created} département(s) créé(s)")
        if first_admin:
            email, generated = first_admin
            click.echo(f"premier compte administrateur : {email}"
                       + (f", mot de passe : {generated} (changez-le après la première connexion : "
                          "« Mot de passe oublié » ou flask --app app users set-password)"
                          if generated else " (mot de passe : ADMIN_PASSWORD)"))
        if demo_codes:
            click.echo("démonstration : lignes fictives pour " + ", ".join(demo_codes))
