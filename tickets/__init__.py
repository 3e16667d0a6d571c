"""Tickets: voicemails, callback requests, referents' decisions and technical incidents followed
up to their closure, with a working-hour deadline, an append-only history and emails."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Tie the app's sessions to the tickets' email delivery and register the `tickets` commands."""
    from tickets import cli, emails
    emails.init_app(app)
    cli.init_app(app)
