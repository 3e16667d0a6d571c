"""The tickets' notification emails: templates, the admins' versions, and their delivery.

Templates are shipped in `tickets/emails.yaml` (subject, body, placeholders written {name},
French descriptions); an admin may replace a subject and a body (table email_templates),
validated like prompt overrides: exactly the template's placeholders, else a French error.

Delivery: an operation `queue`s a message while it works (flush-only); the message leaves once
the transaction that created it is committed, never before and never after a rollback. On the
voice path (a Twilio webhook waits for its answer) it leaves from a background thread; elsewhere
(web, CLI, jobs, the journal's replay) right after the commit. A failed send never loses the
ticket: it is logged (without the body) and written to the ticket's history as an "email" event,
like a successful one. Without SMTP_HOST the messages are `.eml` files in the outbox folder.
"""

from __future__ import annotations

import atexit
import logging
import weakref
import queue as queue_module
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from flask import Flask, current_app, has_app_context
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from accounts.models import Role, User, user_departements
from audit.operations import Actor, record
from core import mail
from core import text as text_policy
from core.db import utcnow
from tickets.models import EmailTemplate, Ticket, TicketEvent

log = logging.getLogger(__name__)

TEMPLATES_FILE = Path(__file__).parent / "emails.yaml"
#: Longest subject and body an admin may write.
MAX_SUBJECT = 200
MAX_BODY = 10000
#: Who writes the "email" events of a ticket's history.
MAIL_ACTOR = Actor.system("courriel")
#: Session.info keys: the app a session belongs to, and the messages waiting for its commit.
APP_KEY = "svi.app"
_PENDING = "tickets.pending_emails"
_BACKGROUND = "tickets.background_emails"


class EmailTemplateError(ValueError):
    """A refused template; the message is French and says what to fix."""


@dataclass(frozen=True)
class Template:
    """One notification email as shipped."""

    name: str
    #: Short French name, in the ticket's history (« Courriel « nouveau message vocal » envoyé »).
    label: str
    description: str
    placeholders: dict[str, str]
    subject: str
    body: str


@dataclass(frozen=True)
class TemplateInfo:
    """A template as the admin pages list it: the default and the admins' version, if any."""

    template: Template
    subject: str
    body: str
    overridden: bool
    updated_at: datetime | None = None


@lru_cache(maxsize=1)
def catalogue() -> dict[str, Template]:
    """Every template of tickets/emails.yaml, by name (checked: each uses its placeholders)."""
    with TEMPLATES_FILE.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    templates = {}
    for name, entry in data.items():
        template = Template(name=str(name), label=str(entry["label"]),
                            description=str(entry["description"]).strip(),
                            placeholders={str(k): str(v) for k, v in entry["placeholders"].items()},
                            subject=" ".join(str(entry["subject"]).split()),
                            body=str(entry["body"]).rstrip() + "\n")
        used = _used(template.subject) | _used(template.body)
        if used != set(template.placeholders):
            raise EmailTemplateError(f"tickets/emails.yaml, « {name} » : valeurs utilisées "
                                     f"{sorted(used)} ≠ déclarées {sorted(template.placeholders)}")
        templates[template.name] = template
    return templates


def template(name: str) -> Template:
    """The shipped template `name`, or EmailTemplateError."""
    try:
        return catalogue()[name]
    except KeyError:
        raise EmailTemplateError(f"modèle de courriel inconnu : « {name} »") from None


def _used(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def _braces(names) -> str:
    return ", ".join("{" + n + "}" for n in names)


def _check_part(name: str, what: str, text: str, limit: int) -> tuple[str, set[str]]:
    try:
        value = text_policy.check(text or "", f"Courriel « {name} », {what}")
    except text_policy.TextRefused as exc:
        raise EmailTemplateError(str(exc)) from None
    value = " ".join(value.split()) if what == "objet" else value.strip() + "\n"
    if not value.strip():
        raise EmailTemplateError(f"Courriel « {name} » : {what} vide.")
    if len(value) > limit:
        raise EmailTemplateError(f"Courriel « {name} » : {what} trop long "
                                 f"({len(value)} caractères, {limit} au plus).")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError:
        raise EmailTemplateError(f"Courriel « {name} », {what} : accolades mal formées ; chaque "
                                 "valeur s'écrit entre « { » et « } », par exemple {numero}.") from None
    used = set()
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if not field_name.isidentifier() or spec or conversion:
            raise EmailTemplateError(f"Courriel « {name} », {what} : « {{{field_name}"
                                     f"{'!' + conversion if conversion else ''}"
                                     f"{':' + spec if spec else ''}}} » n'est pas une valeur ; "
                                     "une valeur s'écrit comme {numero}.")
        used.add(field_name)
    return value, used


def check_template(name: str, subject: str, body: str) -> tuple[str, str]:
    """The subject and body as stored if they may replace template `name`, else
    EmailTemplateError: forbidden characters, empty, too long, malformed braces, or placeholders
    that are not exactly the template's (each missing or unknown one is named)."""
    shipped = template(name)
    subject, in_subject = _check_part(name, "objet", subject, MAX_SUBJECT)
    body, in_body = _check_part(name, "texte", body, MAX_BODY)
    used = in_subject | in_body
    expected = list(shipped.placeholders)
    missing = [p for p in expected if p not in used]
    unknown = sorted(used - set(expected))
    problems = []
    if missing:
        problems.append(f"{'Valeurs manquantes' if len(missing) > 1 else 'Valeur manquante'} : "
                        f"{_braces(missing)} (dans l'objet ou le texte).")
    if unknown:
        problems.append(f"{'Valeurs inconnues' if len(unknown) > 1 else 'Valeur inconnue'} : "
                        f"{_braces(unknown)} (valeurs possibles : {_braces(expected)}).")
    if problems:
        raise EmailTemplateError(f"Courriel « {name} » : " + " ".join(problems))
    return subject, body


def _override(db: Session, name: str) -> EmailTemplate | None:
    return db.scalars(select(EmailTemplate).where(EmailTemplate.name == name)).one_or_none()


def current(db: Session, name: str) -> tuple[str, str]:
    """The subject and body in force: the admins' version, else the shipped one."""
    shipped = template(name)
    row = _override(db, name)
    return (row.subject, row.body) if row is not None else (shipped.subject, shipped.body)


class _Values(dict):
    def __missing__(self, key):
        return ""


def render(db: Session, name: str, values: dict[str, object]) -> tuple[str, str]:
    """The subject and body of template `name` with `values` (missing ones are empty)."""
    subject, body = current(db, name)
    filled = _Values({k: text_policy.clean("" if v is None else str(v)) for k, v in values.items()})
    formatter = string.Formatter()
    return (" ".join(formatter.vformat(subject, (), filled).split()),
            formatter.vformat(body, (), filled))


def overview(db: Session) -> list[TemplateInfo]:
    """Every template, shipped order, with the version in force."""
    rows = {row.name: row for row in db.scalars(select(EmailTemplate))}
    infos = []
    for name, shipped in catalogue().items():
        row = rows.get(name)
        infos.append(TemplateInfo(shipped, row.subject if row else shipped.subject,
                                  row.body if row else shipped.body, row is not None,
                                  row.updated_at if row else None))
    return infos


def set_template(db: Session, actor: Actor, name: str, subject: str, body: str) -> bool:
    """Replace template `name`'s subject and body (checked); True if it changed. The shipped text
    itself removes the admins' version."""
    subject, body = check_template(name, subject, body)
    shipped = template(name)
    row = _override(db, name)
    before = (row.subject, row.body) if row else (shipped.subject, shipped.body)
    if (subject, body) == before:
        return False
    if (subject, body) == (shipped.subject, shipped.body):
        db.delete(row)
    elif row is None:
        db.add(EmailTemplate(name=name, subject=subject, body=body))
    else:
        row.subject, row.body = subject, body
    db.flush()
    record(db, actor, entity="courriel", summary=f"Courriel « {name} » modifié",
           changes={"objet": [before[0], subject], "texte": [before[1], body]})
    return True


def restore_template(db: Session, actor: Actor, name: str) -> bool:
    """Go back to the shipped text; True if there was an admins' version."""
    shipped = template(name)
    row = _override(db, name)
    if row is None:
        return False
    record(db, actor, entity="courriel", summary=f"Courriel « {name} » : texte d'origine rétabli",
           changes={"objet": [row.subject, shipped.subject], "texte": [row.body, shipped.body]})
    db.delete(row)
    db.flush()
    return True


# --- recipients and values ---------------------------------------------------------------------

def referents(db: Session, departement_code: str | None) -> list[str]:
    """Emails of the active referents of a département, sorted."""
    if not departement_code:
        return []
    return sorted(db.scalars(
        select(User.email).join(user_departements, user_departements.c.user_id == User.id)
        .where(user_departements.c.departement_code == departement_code,
               User.role == Role.referent, User.active.is_(True))))


def national_team(config) -> list[str]:
    """NATIONAL_TEAM_EMAILS as a list."""
    return [a.strip() for a in str(config.get("NATIONAL_TEAM_EMAILS") or "").split(",")
            if a.strip()]


def app_of(db: Session) -> Flask | None:
    """The app a session belongs to (set by `init_app`), else the current one, if any."""
    app = db.info.get(APP_KEY)
    if app is None and has_app_context():
        app = current_app._get_current_object()
    return app


def ticket_url(config, number: str) -> str:
    """The ticket's page, as linked from emails."""
    return f"{config.get('PUBLIC_BASE_URL') or ''}/tickets/{number}"


def local_time(at: datetime | None, timezone: str = "Europe/Paris") -> str:
    """"23/12/2033 à 16:20", in the département's time; "—" when unknown."""
    if at is None:
        return "—"
    return at.astimezone(ZoneInfo(timezone)).strftime("%d/%m/%Y à %H:%M")


# --- delivery ----------------------------------------------------------------------------------

@dataclass
class Outgoing:
    """A message waiting for its transaction's commit."""

    ticket_id: int
    ticket_number: str
    template: str
    to: list[str]
    subject: str
    body: str
    created: datetime = field(default_factory=utcnow)


def _event(ticket: Ticket, text: str, data: dict, app: Flask | None) -> TicketEvent:
    clock = app.config.get("CLOCK") if app is not None else None
    return TicketEvent(ticket=ticket, at=clock() if clock else utcnow(), actor=MAIL_ACTOR.label,
                       kind="email", text=text, data=data)


def queue(db: Session, ticket: Ticket, name: str, values: dict[str, object], *,
          to: list[str] | None = None, national: bool = False) -> Outgoing | None:
    """Render template `name` for `ticket` and send it once the transaction is committed.

    Recipients: `to`, or the national team (NATIONAL_TEAM_EMAILS) when `national`. `lien` is
    filled with the ticket's address. Without any recipient nothing is sent and the ticket's
    history says so. Returns the message, or None."""
    app = app_of(db)
    config = app.config if app is not None else {}
    recipients = sorted({a.strip().lower() for a in (to or []) if a and a.strip()})
    if national:
        recipients = sorted(set(recipients) | set(national_team(config)))
    label = template(name).label
    if not recipients:
        why = ("NATIONAL_TEAM_EMAILS est vide" if national
               else "aucun référent actif pour ce département" if to is not None and not to
               else "aucun destinataire")
        db.add(_event(ticket, f"Courriel « {label} » non envoyé : {why}.",
                      {"template": name, "sent": False, "error": why}, app))
        log.warning("ticket %s : courriel %s non envoyé (%s)", ticket.number, name, why)
        return None
    subject, body = render(db, name, {"lien": ticket_url(config, ticket.number), **values})
    if ticket.id is None:
        db.flush()
    outgoing = Outgoing(ticket.id, ticket.number, name, recipients, subject, body)
    db.info.setdefault(_PENDING, []).append(outgoing)
    return outgoing


def pending(db: Session) -> list[Outgoing]:
    """Messages waiting for the session's commit (tests)."""
    return list(db.info.get(_PENDING, []))


def _record_outcome(app: Flask, outgoing: Outgoing, error: str | None,
                    refused: list[str] = ()) -> None:
    """Write the send's outcome in the ticket's history, in a transaction of its own."""
    label = template(outgoing.template).label
    count = len(outgoing.to) - len(refused)
    text = (f"Courriel « {label} » envoyé à {count} destinataire{'s' if count > 1 else ''}."
            if error is None else f"Échec de l'envoi du courriel « {label} » : {error}")
    if refused and error is None:
        text += f" Refusé par le serveur de messagerie pour : {', '.join(refused)}."
    try:
        with app.extensions["svi.sessionmaker"]() as db:
            ticket = db.get(Ticket, outgoing.ticket_id)
            if ticket is None or ticket.number != outgoing.ticket_number:
                return  # gone meanwhile (a test's database reset, say)
            db.add(_event(ticket, text, {"template": outgoing.template, "to": outgoing.to,
                                         "sent": error is None,
                                         **({"refused": list(refused)} if refused else {}),
                                         **({"error": error} if error else {})}, app))
            db.commit()
    except Exception:
        log.exception("ticket %s : résultat de l'envoi du courriel %s non enregistré",
                      outgoing.ticket_number, outgoing.template)


def deliver(app: Flask, outgoing: Outgoing) -> bool:
    """Send one message now and record the outcome; True when sent to every recipient.
    Never raises."""
    refused: list[str] = []
    try:
        refused = mail.send(app, to=outgoing.to, subject=outgoing.subject, body=outgoing.body)
        error = None
        if refused:
            log.warning("ticket %s : courriel %s refusé pour %d destinataire(s)",
                        outgoing.ticket_number, outgoing.template, len(refused))
    except Exception as exc:  # MailError, or anything else: the ticket stays, the failure shows
        error = str(exc) if isinstance(exc, mail.MailError) else f"{type(exc).__name__}: {exc}"
        log.warning("ticket %s : courriel %s non envoyé : %s", outgoing.ticket_number,
                    outgoing.template, error)
    _record_outcome(app, outgoing, error, refused)
    return error is None and not refused


class Mailer:
    """Sends the voice path's messages from a thread of its own (started when needed)."""

    def __init__(self, app: Flask):
        self.app = app
        self._queue: queue_module.Queue[Outgoing] = queue_module.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = 0

    def submit(self, outgoing: Outgoing) -> None:
        with self._lock:
            self._busy += 1
            self._queue.put(outgoing)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="svi-ticket-mail",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                outgoing = self._queue.get(timeout=1)
            except queue_module.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                deliver(self.app, outgoing)
            finally:
                with self._lock:
                    self._busy -= 1

    def drain(self, timeout: float = 30) -> bool:
        """Wait until every submitted message is sent (or failed); True if none is left."""
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._busy


#: Every app's mailer: what is still being sent is given a few seconds at exit.
_MAILERS: weakref.WeakSet[Mailer] = weakref.WeakSet()


@atexit.register
def _drain_all() -> None:
    for found in list(_MAILERS):
        found.drain(10)


def mailer(app: Flask) -> Mailer:
    """The app's background mailer."""
    return app.extensions["tickets.mailer"]


def drain(app: Flask, timeout: float = 30) -> bool:
    """Wait for the messages sent in the background (tests, end of a command)."""
    found = app.extensions.get("tickets.mailer")
    return True if found is None else found.drain(timeout)


def _remember(found: Mailer) -> Mailer:
    _MAILERS.add(found)
    return found


def _committed(session: Session) -> None:
    messages = session.info.pop(_PENDING, None)
    if not messages:
        return
    app = session.info.get(APP_KEY)
    if app is None:
        log.error("%d courriel(s) de ticket sans application : non envoyés", len(messages))
        return
    if session.info.get(_BACKGROUND):
        for outgoing in messages:
            mailer(app).submit(outgoing)
    else:
        for outgoing in messages:
            deliver(app, outgoing)


def _ended(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: commit or rollback, all done
        session.info.pop(_PENDING, None)


def init_app(app: Flask) -> None:
    """Tie the app's sessions to it, so that their messages leave after their commit."""
    app.extensions["tickets.mailer"] = _remember(Mailer(app))
    for key, background in (("svi.sessionmaker", False), ("svi.voice_sessionmaker", True)):
        maker = app.extensions[key]
        info = dict(maker.kw.get("info") or {})
        info.update({APP_KEY: app, _BACKGROUND: background})
        maker.configure(info=info)
        event.listen(maker, "after_commit", _committed)
        event.listen(maker, "after_transaction_end", _ended)
