"""`flask --app app tickets list|show|close|comment`: the tickets from the server's shell."""

from __future__ import annotations

import click
from flask import Flask, current_app
from sqlalchemy import select

from audit.operations import Actor
from core import db
from tickets import emails, operations
from tickets.models import ClosureStatus, Ticket, TicketKind, TicketStatus

#: Closure statuses a person may choose, by the word typed on the command line.
CLOSURES = {"referent": ClosureStatus.by_referent, "national": ClosureStatus.by_national,
            "confirme": ClosureStatus.confirmed}


def _local(at) -> str:
    return emails.local_time(at)


def _line(ticket: Ticket, now) -> str:
    late = " EN RETARD" if ticket.is_late(now) else ""
    who = ticket.assigned_to.email if ticket.assigned_to is not None else "—"
    return (f"{ticket.number}  {ticket.departement_code or 'nat.':4} {ticket.status.value:10} "
            f"{ticket.kind.value:32} échéance {_local(ticket.due_at)}{late}  {who}  "
            f"{ticket.title}")


def init_app(app: Flask) -> None:
    """Register the `tickets` command group."""

    @app.cli.group("tickets")
    def tickets_group():
        """Tickets : liste, détail, commentaire, clôture."""

    @tickets_group.command("list")
    @click.option("--departement", default=None, help="Code du département (ex. 93, 2A, 974).")
    @click.option("--statut", "status", default=None,
                  type=click.Choice([s.name for s in TicketStatus]),
                  help="Statut (par défaut : les tickets ouverts).")
    @click.option("--type", "kind", default=None, type=click.Choice([k.name for k in TicketKind]))
    @click.option("--national", is_flag=True, help="Seulement les tickets de l'équipe nationale.")
    @click.option("--en-retard", "late", is_flag=True, help="Seulement les tickets en retard.")
    @click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
    def list_command(departement, status, kind, national, late, limit):
        """Liste les tickets, les plus récents d'abord."""
        session = db.session()
        now = current_app.config["CLOCK"]()
        query = select(Ticket).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
        if departement:
            query = query.where(Ticket.departement_code == departement.strip().upper())
        if status:
            query = query.where(Ticket.status == TicketStatus[status])
        elif not late:
            query = query.where(Ticket.status.in_(operations.OPEN_STATUSES))
        if kind:
            query = query.where(Ticket.kind == TicketKind[kind])
        if national:
            query = query.where(Ticket.national.is_(True))
        if late:
            query = query.where(operations.late_condition(now))
        found = session.scalars(query).all()
        for ticket in found:
            click.echo(_line(ticket, now))
        click.echo(f"{len(found)} ticket(s)", err=True)

    @tickets_group.command("show")
    @click.argument("number")
    def show_command(number):
        """Affiche un ticket et son historique."""
        session = db.session()
        try:
            ticket = operations.by_number(session, number)
        except operations.TicketError as exc:
            raise click.ClickException(str(exc)) from None
        now = current_app.config["CLOCK"]()
        click.echo(f"{ticket.number} – {ticket.title}")
        click.echo(f"type : {ticket.kind.value} ; statut : {ticket.status.value}"
                   + (f" ({ticket.closure_status.value})" if ticket.closure_status else ""))
        click.echo(f"département : {operations.departement_label(session, ticket.departement_code)}"
                   + (" ; suivi par l'équipe nationale" if ticket.national else ""))
        click.echo(f"créé le {_local(ticket.created_at)} ; échéance {_local(ticket.due_at)}"
                   + (" (EN RETARD)" if ticket.is_late(now) else "")
                   + (f" ; pris en compte le {_local(ticket.taken_at)}" if ticket.taken_at else ""))
        if ticket.assigned_to is not None:
            click.echo(f"attribué à : {ticket.assigned_to.label}")
        if ticket.caller_masked:
            click.echo(f"appelant : {ticket.caller_masked}")
        if ticket.callback_number:
            click.echo(f"à rappeler au : {ticket.callback_number}")
        if ticket.requester_email:
            click.echo(f"demandeur : {ticket.requester_email}")
        click.echo("")
        click.echo(ticket.description)
        click.echo("")
        for entry in ticket.events:
            click.echo(f"{_local(entry.at)}  {entry.actor}  [{entry.kind}]  {entry.text}")

    @tickets_group.command("comment")
    @click.argument("number")
    @click.argument("text")
    def comment_command(number, text):
        """Ajoute un commentaire à un ticket."""
        try:
            with db.transaction() as session:
                ticket = operations.by_number(session, number)
                operations.comment(session, Actor.cli(), ticket, text)
        except operations.TicketError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{ticket.number} : commentaire ajouté")

    @tickets_group.command("close")
    @click.argument("number")
    @click.option("--statut", "closure", required=True, type=click.Choice(sorted(CLOSURES)),
                  help="referent : clos par le référent ; national : par l'équipe nationale ; "
                       "confirme : confirmé par le demandeur.")
    @click.option("--commentaire", default=None, help="Ajouté à l'historique avec la clôture.")
    def close_command(number, closure, commentaire):
        """Clôt un ticket (le demandeur en est informé par courriel si son adresse est connue)."""
        app = current_app._get_current_object()
        try:
            with db.transaction() as session:
                ticket = operations.by_number(session, number)
                operations.close(session, Actor.cli(), ticket, CLOSURES[closure],
                                 text=commentaire)
        except operations.TicketError as exc:
            raise click.ClickException(str(exc)) from None
        emails.drain(app)
        click.echo(f"{ticket.number} : {ticket.closure_status.value}")
