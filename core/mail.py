"""Outgoing email: plain-text UTF-8 messages over SMTP, or `.eml` files when no SMTP is set."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from core.db import utcnow
from core.text import clean

log = logging.getLogger(__name__)


class MailError(RuntimeError):
    """A message could not be sent (French message, no body content)."""


def outbox_dir(config: Mapping, instance_path: str = "instance") -> Path:
    """Folder of the `.eml` files written when SMTP_HOST is empty (default: instance/outbox)."""
    return Path(config["MAIL_OUTBOX_DIR"] or Path(instance_path) / "outbox")


def build_message(config: Mapping, *, to: list[str], subject: str, body: str) -> EmailMessage:
    """The message as it will be sent: From, To, Subject, Date, Message-ID, UTF-8 text body."""
    sender = config["MAIL_FROM"]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = " ".join(clean(subject).split())  # a line break would end the header
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(clean(body), charset="utf-8")
    return msg


def send(app_or_config, *, to: list[str], subject: str, body: str) -> list[str]:
    """Send a plain-text message to `to`; written to the outbox folder when SMTP_HOST is empty.

    Returns the addresses the SMTP server refused while accepting the others (sorted; empty when
    every recipient was accepted). When it refuses them all, MailError is raised."""
    config = getattr(app_or_config, "config", app_or_config)
    instance_path = getattr(app_or_config, "instance_path", "instance")
    recipients = [address.strip() for address in to if address and address.strip()]
    if not recipients:
        raise MailError(f"courriel « {subject} » : aucun destinataire")
    msg = build_message(config, to=recipients, subject=subject, body=body)
    if not config["SMTP_HOST"]:
        path = _write_outbox(outbox_dir(config, instance_path), msg)
        log.info("courriel « %s » déposé dans %s (SMTP_HOST vide), %d destinataire(s)",
                 subject, path, len(recipients))
        return []
    host, port = config["SMTP_HOST"], int(config["SMTP_PORT"])
    try:
        with smtplib.SMTP(host, port, timeout=config["SMTP_TIMEOUT"]) as smtp:
            if config["SMTP_STARTTLS"]:
                smtp.starttls(context=ssl.create_default_context())
            if config["SMTP_USERNAME"]:
                smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
            # The envelope is the checked list, never re-read from the To header.
            refused = smtp.send_message(msg, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        # The exception names the server and the SMTP reply only: never the body.
        raise MailError(f"envoi du courriel « {subject} » impossible via {host}:{port} : "
                        f"{type(exc).__name__}: {exc}") from exc
    if refused:
        log.warning("courriel « %s » : %d destinataire(s) refusé(s) : %s",
                    subject, len(refused), ", ".join(sorted(refused)))
    log.info("courriel « %s » envoyé via %s:%d à %d destinataire(s)",
             subject, host, port, len(recipients) - len(refused))
    return sorted(refused)


def _write_outbox(folder: Path, msg: EmailMessage) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
        partial = path.with_suffix(".part")  # a reader never sees half a message
        partial.write_bytes(bytes(msg))
        os.replace(partial, path)
    except OSError as exc:
        raise MailError(f"dépôt du courriel dans {folder} impossible : {exc}") from exc
    return path
