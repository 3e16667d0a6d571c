"""`flask --app app tracking …`: personal-data retention."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app

from core import db
from tracking import operations


def init_app(app: Flask) -> None:
    """Register the `tracking` command group."""

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
        with db.transaction() as session:
            count = operations.purge_callers(session, before=before)
        click.echo(f"{count} appel(s) anonymisé(s) (antérieurs au {before:%d/%m/%Y})")
