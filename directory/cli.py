"""`flask --app app directory …`: status, seed, import, export, holiday exceptions."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import click
from flask import Flask, current_app

from core import db
from core.cli import instant_option
from audit.operations import Actor
from directory import io as directory_io
from directory import settings as directory_settings
from directory import operations
from directory.rules import DirectoryError
from directory.schedule import State, availability
from prompts import french


def init_app(app: Flask) -> None:
    """Register the `directory` command group."""

    @app.cli.group("directory")
    def directory_group():
        """Annuaire de routage : état, chargement, import et export."""

    @directory_group.command("status")
    @click.argument("code")
    @click.option("--at", "at", default=None, callback=instant_option,
                  help="Instant, ex. 2026-12-26T10:00 (heure de Paris si sans fuseau).")
    def status(code, at):
        """Ce qui se passe pour un appel vers le département CODE à un instant donné."""
        instant = at or current_app.config["CLOCK"]()
        view = operations.snapshot(db.session(), code)
        if view is None:
            raise click.BadParameter(f"département inconnu : {code}", param_hint="CODE")
        result = availability(view, instant)
        local = instant.astimezone(ZoneInfo(view.timezone))
        click.echo(f"{view.code} {view.name} — {local:%Y-%m-%d %H:%M} ({view.timezone})")
        if result.state is State.open:
            click.echo("ouvert : " + (", ".join(l.number for l in view.lines) or "aucune ligne"))
        elif result.state is State.no_phone_assistance:
            click.echo("pas d'assistance téléphonique")
        else:
            detail = result.holiday_name or result.closure_reason or ""
            click.echo(f"fermé : {result.reason.value}" + (f" ({detail})" if detail else ""))
        if result.next_opening:
            click.echo("prochaine ouverture : " + french.instant(result.next_opening, instant, view.timezone))

    @directory_group.command("seed")
    @click.option("--demo", is_flag=True, help="Ajoute aussi les lignes de démonstration (fictives).")
    def seed(demo):
        """Crée les départements manquants avec les horaires par défaut."""
        with db.transaction() as session:
            created = operations.seed_departements(session)
            demo_codes = operations.load_demo(session) if demo else []
        click.echo(f"{created} département(s) créé(s)")
        if demo_codes:
            click.echo("démonstration : " + ", ".join(demo_codes))

    @directory_group.command("worked-holiday")
    @click.argument("name")
    @click.option("--departement", default=None, help="Un seul département (par défaut : tous).")
    @click.option("--remove", is_flag=True,
                  help="Le jour redevient chômé (pour un département : même s'il est travaillé "
                       "ailleurs).")
    @click.option("--reset", is_flag=True,
                  help="Le département suit de nouveau le réglage national.")
    def worked_holiday(name, departement, remove, reset):
        """Déclare travaillé un jour férié (ex. « Lundi de Pentecôte »)."""
        if reset and (remove or not departement):
            _refuse("--reset ne vaut que pour un département (--departement), sans --remove")
        worked = None if reset else not remove
        try:
            with db.transaction() as session:
                name = operations.set_worked_holiday(session, name, departement, worked=worked,
                                                      actor=Actor.cli())
        except DirectoryError as exc:
            _refuse(f"Refusé : {exc}")
        scope = f"département {departement.upper()}" if departement else "tous les départements"
        state = "réglage national" if reset else "chômé" if remove else "travaillé"
        click.echo(f"{name} : {state} ({scope})")

    @directory_group.command("export")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    def export(file):
        """Écrit tout l'annuaire dans FILE (.csv ou .xlsx, selon l'extension)."""
        try:
            rows = directory_io.export_rows(db.session())
            directory_io.write_file(file, rows)
        except DirectoryError as exc:
            _refuse(f"Export impossible : {exc}")
        except OSError:
            _refuse(f"Export impossible : le fichier {file} ne peut pas être écrit")
        click.echo(f"{len(rows)} départements exportés dans {file}")

    @directory_group.command("import")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    def import_(file):
        """Remplace les réglages des départements présents dans FILE : tout ou rien."""
        try:
            rows = directory_io.read_file(file)
        except DirectoryError as exc:
            _refuse(f"Import refusé : {exc}")
        with db.transaction() as session:
            changes, errors = directory_io.validate(session, rows)
            if not errors:
                directory_settings.save(session, Actor.file_import(file.name, Actor.cli()),
                                        changes)
        if errors:
            _refuse(f"Import refusé, rien n'a été modifié : {len(errors)} erreur(s)",
                    *map(str, errors))
        click.echo(f"Import terminé : {len(changes)} département(s) mis à jour, "
                   f"{len(rows) - len(changes)} inchangé(s).")


def _refuse(*lines: str) -> None:
    """Print the reasons on stderr and exit with status 1."""
    for line in lines:
        click.echo(line, err=True)
    raise click.exceptions.Exit(1)
