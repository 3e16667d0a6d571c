"""Tracking commands: workbooks (export, import), solicitations, motif taxonomy, retention."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import func, select

from audit.operations import Actor
from core import db
from core.cli import instant_option
from tracking import exports, operations, solicitations, taxonomy
from tracking.models import Solicitation


def _period(quarter: str | None, start: str | None, end: str | None) -> tuple[date, date]:
    try:
        if start or end:
            if not (start and end):
                raise exports.PeriodError("--from et --to vont ensemble")
            first, last = date.fromisoformat(start), date.fromisoformat(end)
            if last < first:
                raise exports.PeriodError("--to précède --from")
            return first, last
        today = current_app.config["CLOCK"]().date()
        return exports.quarter_bounds(quarter or exports.quarter_of(today))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _yes_no_option(name: str, help_text: str):
    return click.option(f"--{name}/--non-{name}", default=None, help=help_text)


def _motif_spec(text: str) -> tuple[str, str, str | None]:
    parts = [p.strip() for p in text.split("/")]
    if len(parts) not in (2, 3) or not all(parts):
        raise click.BadParameter(f"« {text} » : attendu thématique/motif[/sous-motif]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def init_app(app: Flask) -> None:
    """Register the tracking commands."""

    @app.cli.command("export")
    @click.option("--departement", default=None, help="Code du département (ex. 93, 2A, 974).")
    @click.option("--national", is_flag=True, help="Classeur national (tous les départements).")
    @click.option("--quarter", default=None, help="Trimestre, ex. 2026-Q4 (par défaut : le trimestre en cours).")
    @click.option("--from", "start", default=None, help="Début, AAAA-MM-JJ (avec --to).")
    @click.option("--to", "end", default=None, help="Fin incluse, AAAA-MM-JJ.")
    @click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Fichier .xlsx")
    def export_command(departement, national, quarter, start, end, output):
        """Écrit le classeur d'indicateurs d'un département ou national."""
        if bool(departement) == national:
            raise click.BadParameter("choisissez --departement CODE ou --national")
        first, last = _period(quarter, start, end)
        session = db.session()
        code = departement.upper() if departement else None
        total = session.scalar(select(func.count()).select_from(Solicitation).where(
            *( [Solicitation.departement_code == code] if code else [])))
        with click.progressbar(length=total or 1, label="Export", file=sys.stderr) as bar:
            done = [0]

            def progress(n):
                bar.update(n - done[0])
                done[0] = n
            try:
                count = exports.export_workbook(session, departement=code, start=first, end=last,
                                                path=output, progress=progress)
            except exports.PeriodError as exc:
                raise click.BadParameter(str(exc)) from None
        click.echo(f"{count} sollicitation(s) du {first:%d/%m/%Y} au {last:%d/%m/%Y} écrites dans {output}")

    @app.cli.command("import-workbook")
    @click.argument("file", type=click.Path(dir_okay=False))
    def import_command(file):
        """Importe un classeur complété à la main : tout ou rien."""
        from tracking import workbook_import
        try:
            with db.transaction() as session:  # committed by batches: calls go on meanwhile
                summary = workbook_import.import_file(
                    session, file, actor=Actor.file_import(Path(file).name, Actor.cli()),
                    commit=db.commit)
        except workbook_import.ImportRefused as exc:
            for line in exc.lines():
                click.echo(line, err=True)
            raise click.exceptions.Exit(1)
        click.echo(summary)

    @app.cli.group("solicitations")
    def group():
        """Historique des sollicitations."""

    @group.command("list")
    @click.option("--departement", default=None)
    @click.option("--days", default=7, show_default=True, help="Jours écoulés à afficher.")
    def list_command(departement, days):
        """Affiche les sollicitations récentes (référence, date, canal, thématique, motif)."""
        today = current_app.config["CLOCK"]().date()
        rows = exports.iter_rows(db.session(), departement=departement and departement.upper(),
                                 start=today - timedelta(days=days), end=today)
        for row in rows:
            click.echo(f"{row[0]}  {row[1]:%d/%m/%Y %H:%M}  {row[2]:>3}  {row[3]}  {row[4]} / {row[5]}")

    @group.command("qualify")
    @click.argument("reference")
    @click.option("--thematique", required=True)
    @click.option("--motif", required=True)
    @click.option("--sous-motif", default=None)
    @click.option("--comment", default=None)
    @_yes_no_option("resolu", "Résolu au niveau 1.")
    @_yes_no_option("escalade", "Escaladé à l'assistance nationale.")
    def qualify_command(reference, thematique, motif, sous_motif, comment, resolu, escalade):
        """Qualifie une sollicitation (thématique, motif, sous-motif, suites)."""
        try:
            with db.transaction() as session:
                row = solicitations.qualify(session, solicitations.by_reference(session, reference),
                                            thematique=thematique, motif=motif, sous_motif=sous_motif,
                                            comment=comment, resolved=resolu, escalated=escalade,
                                            actor=Actor.cli())
                label = f"{row.thematique.label} / {row.motif.label}"
        except solicitations.SolicitationError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{reference} qualifiée : {label}")

    @group.command("split")
    @click.argument("reference")
    @click.argument("motifs", nargs=-1, required=True)
    def split_command(reference, motifs):
        """Répartit un appel en plusieurs motifs : « thématique/motif[/sous-motif] » chacun."""
        specs = [_motif_spec(m) for m in motifs]
        try:
            with db.transaction() as session:
                rows = solicitations.split(session, solicitations.by_reference(session, reference), specs,
                                           actor=Actor.cli())
                refs = [r.reference for r in rows]
        except solicitations.SolicitationError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{len(refs)} ligne(s) : " + ", ".join(refs))

    @group.command("add")
    @click.option("--departement", required=True)
    @click.option("--channel", required=True, help="Courriel, Téléphone (hors SVI), Formulaire, Autre.")
    @click.option("--at", "at", required=True, callback=instant_option,
                  help="Date et heure, ex. 2026-11-20T10:15 (heure de Paris).")
    @click.option("--thematique", default=None)
    @click.option("--motif", default=None)
    @click.option("--sous-motif", default=None)
    @click.option("--comment", default="")
    @_yes_no_option("resolu", "Résolu au niveau 1.")
    @_yes_no_option("escalade", "Escaladé à l'assistance nationale.")
    def add_command(departement, channel, at, thematique, motif, sous_motif, comment, resolu, escalade):
        """Ajoute une sollicitation hors SVI (appel direct, courriel, formulaire)."""
        try:
            with db.transaction() as session:
                row = solicitations.add(session, departement=departement.upper(), occurred_at=at,
                                        channel=solicitations.channel_from(channel), thematique=thematique,
                                        motif=motif, sous_motif=sous_motif, comment=comment,
                                        resolved=resolu, escalated=escalade, actor=Actor.cli())
                reference = row.reference
        except (solicitations.SolicitationError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"sollicitation ajoutée : {reference}")

    @app.cli.group("motifs")
    def motifs_group():
        """Taxonomie des motifs (thématique → motif → sous-motif)."""

    @motifs_group.command("load")
    @click.argument("file", required=False, type=click.Path(dir_okay=False))
    def load_command(file):
        """Charge la taxonomie d'un fichier YAML (par défaut tracking/motifs.yaml)."""
        try:
            with db.transaction() as session:
                counts = taxonomy.load_file(session, file)
        except taxonomy.TaxonomyError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{counts['thematiques']} thématiques, {counts['motifs']} motifs, "
                   f"{counts['sous_motifs']} sous-motifs actifs")

    @app.cli.group("tracking")
    def tracking_group():
        """Suivi des appels."""

    @tracking_group.command("purge-callers")
    @click.option("--days", type=int, default=None,
                  help="Durée de conservation (par défaut : SVI_CALLER_RETENTION_DAYS).")
    def purge_callers(days):
        """Efface l'empreinte et le numéro masqué des appelants au-delà de la durée de conservation."""
        days = days if days is not None else current_app.config["SVI_CALLER_RETENTION_DAYS"]
        before = current_app.config["CLOCK"]() - timedelta(days=days)
        count = 0
        while True:  # one short transaction per batch: calls keep being recorded meanwhile
            with db.transaction() as session:
                batch = operations.purge_callers(session, before=before)
            if not batch:
                break
            count += batch
        click.echo(f"{count} appel(s) anonymisé(s) (antérieurs au {before:%d/%m/%Y})")

    @tracking_group.command("replay-journal")
    def replay_journal():
        """Rejoue les appels journalisés par des processus arrêtés quand la base ne répondait pas."""
        from tracking.journal import replay_orphans
        app = current_app._get_current_object()
        count = replay_orphans(app.config["JOURNAL_DIR"], app.extensions["svi.sessionmaker"])
        click.echo(f"{count} enregistrement(s) rejoué(s)")
