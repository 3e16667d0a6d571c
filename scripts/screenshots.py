"""Full-page screenshots of the main web pages: `python -m scripts.screenshots [OUTDIR]`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from core import db as core_db
from devtools import liveserver
from directory import io as directory_io

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTDIR = ROOT / "docs" / "screenshots"
ADMIN = "admin@example.gouv.fr"

#: (file name, path) of the pages shown to a logged-in admin, in menu order.
PAGES = [
    ("overview.png", "/annuaire/"),
    ("departement.png", "/annuaire/93"),
    ("edit.png", "/annuaire/93/modifier"),
    ("year.png", "/annuaire/57/annee"),
    ("import.png", "/admin/annuaire/import"),
    ("preview.png", "/apercu?departement=57&day=2026-12-26&at=10:00&caller=nouveau&thematique="
                    "&referent=accept&voicemail=20"),
    ("calls.png", "/appels/"),
    ("call-new.png", "/appels/nouvelle"),
    ("calls-import.png", "/appels/import"),
    ("downloads.png", "/classeurs/"),
    ("prompts.png", "/admin/messages"),
    ("prompt.png", "/admin/messages/closed_hours?departement=57"),
    ("audit.png", "/admin/journal"),
    ("api.png", "/api/"),
]
#: (file name, path) of the dashboards, shot last, once demo calls are seeded (the other pages
#: are shot without them).
DASHBOARD_PAGES = [
    ("dashboard.png", "/tableau-de-bord/?trimestre=2026-Q4&tri=recus&ordre=desc"),
    ("dashboard-93.png", "/tableau-de-bord/93?trimestre=2026-Q4"),
]
#: Two cells the import must refuse: (département code, column, wrong value).
BAD_CELLS = [("93", "Lignes", "+33199009301 ; 01 23"), ("57", "Durée de sonnerie (s)", "999")]


def broken_directory_file(server: liveserver.LiveServer, folder: Path) -> Path:
    """The directory exported as CSV with the BAD_CELLS written in."""
    with server.app.app_context():
        rows = directory_io.export_rows(core_db.session())
        core_db.rollback()
    for code, column, value in BAD_CELLS:
        next(row for row in rows if row["Code"] == code)[column] = value
    path = folder / "annuaire.csv"
    directory_io.write_file(path, rows)
    return path


class Shooter:
    """Opens pages and writes their screenshots; pages answering an error are skipped."""

    def __init__(self, page, outdir: Path):
        self.page, self.outdir = page, outdir
        self.written: list[str] = []
        self.skipped: list[str] = []

    def goto(self, name: str, path: str) -> bool:
        """Open `path`; False (and a note) when it answers an error status."""
        self.page.console_errors.clear()
        response = self.page.goto(path)
        return self.check(name, path, response)

    def check(self, name: str, path: str, response) -> bool:
        """False (and a note) when `response` is an error status."""
        if response is None or response.status >= 400:
            status = response.status if response is not None else "no response"
            print(f"skipped {name}: {path} answered {status}")
            self.skipped.append(name)
            return False
        return True

    def shoot(self, name: str) -> None:
        """Write the full page to `name`, and print the browser console's errors."""
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=self.outdir / name, full_page=True)
        self.written.append(name)
        print(f"wrote {self.outdir / name}")
        for error in self.page.console_errors:
            print(f"    console error on {name}: {error}")


def import_preview(shooter: Shooter, server: liveserver.LiveServer, folder: Path) -> None:
    """Upload a directory file with two wrong cells and shoot the preview listing them."""
    name, path = "import-preview.png", "/admin/annuaire/import"
    if not shooter.goto(name, path):
        return
    page = shooter.page
    page.locator("input[type=file]").set_input_files(broken_directory_file(server, folder))
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Voir l'aperçu").click()
    if shooter.check(name, f"{path} (upload)", navigation.value):
        shooter.shoot(name)


def seed_calls(server: liveserver.LiveServer) -> None:
    """A few calls and an email for « Mes appels » (the demo database has none)."""
    from datetime import UTC, datetime, timedelta

    from audit.operations import Actor
    from tracking import solicitations
    from tracking.models import Call, CallEvent, CallLeg, Channel, Outcome
    start = datetime(2026, 12, 21, 8, 0, tzinfo=UTC)
    with server.app.app_context():
        session = core_db.session()
        for i, (code, outcome, them) in enumerate([("93", Outcome.answered, "usage"),
                                                   ("57", Outcome.out_of_hours, None),
                                                   ("93", Outcome.no_answer, "habilitations")]):
            at = start + timedelta(minutes=37 * i)
            call = Call(call_sid=f"CAscreenshot{i:020d}", caller_hash=f"h{i}",
                        caller_masked="+336••••••78", called_number="+33806000156",
                        status="completed", started_at=at, ended_at=at + timedelta(minutes=3),
                        duration_seconds=180, departement_code=code, thematique=them,
                        outcome=outcome, step="dial" if code == "93" else "closed",
                        wait_seconds=14 if code == "93" else None,
                        talk_seconds=95 if outcome is Outcome.answered else None)
            session.add(call)
            session.flush()
            for j, step in enumerate(["welcome", "departement", "confirm", "motif"]):
                session.add(CallEvent(call_id=call.id, kind="step", step=step,
                                      at=at + timedelta(seconds=5 * j),
                                      data={"Digits": code} if step == "departement" else {}))
            if code == "93":
                session.add(CallLeg(call_id=call.id, leg_sid=f"CAleg{i:023d}", number="+33199009301",
                                    status="completed", started_at=at + timedelta(seconds=25),
                                    accepted_at=(at + timedelta(seconds=39)
                                                 if outcome is Outcome.answered else None),
                                    duration_seconds=110))
            solicitations.sync_call(session, call)
        solicitations.add(session, departement="93", occurred_at=start - timedelta(hours=2),
                          channel=Channel.email, thematique="usage", motif="doublons",
                          comment="Courriel du guichet de Bobigny", actor=Actor.cli())
        core_db.commit()


def seed_tickets(server: liveserver.LiveServer) -> list[tuple[str, str]]:
    """A voicemail taken and commented, a callback request left late, an escalated ticket and an
    incident with its phone message, the clock moved to 11:20; returns the clock's time before
    and the (file name, path) of the ticket pages to shoot."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from accounts.models import User
    from audit.operations import Actor
    from tickets import incidents, operations
    from tracking.models import Call, Solicitation
    started = server.clock()
    with server.app.app_context():
        session = core_db.session()
        server.app.config["NATIONAL_TEAM_EMAILS"] = "equipe.nationale@example.gouv.fr"
        admin = session.scalars(select(User).where(User.email == ADMIN)).one()
        actor = Actor.user(admin)
        calls = list(session.scalars(select(Call).where(Call.call_sid.like("CAscreenshot%"))
                                     .order_by(Call.id)))
        voicemail_call = calls[-1]  # 93, nobody answered
        voicemail_call.recording_url = ("https://api.twilio.com/2010-04-01/Accounts/AC" + "0" * 32
                                        + "/Recordings/RE" + "0" * 32)
        voicemail_call.recording_seconds = 48
        server.clock.set("2026-12-21T10:20")
        voicemail = operations.from_voicemail(session, voicemail_call,
                                              at=voicemail_call.started_at)
        callback = operations.from_callback(session, calls[1], "+33612345678",
                                            at=calls[1].started_at)
        server.clock.set("2026-12-21T10:40")  # taken in time; the callback is left late
        operations.take(session, actor, voicemail, admin)
        operations.comment(session, actor, voicemail,
                           "Rappelé à 10 h 35 : répondeur. Nouvel essai cet après-midi.")
        server.clock.set("2026-12-21T11:20")
        row = session.scalars(select(Solicitation).where(Solicitation.call_id.is_(None))).first()
        referred = operations.from_solicitation(
            session, actor, row, "Le guichet de Bobigny signale des doublons à fusionner.",
            requester_email="guichet.bobigny@example.fr")
        operations.escalate(session, actor, admin, referred,
                            "Doublons créés par l'import du 18/12 : correction à faire côté "
                            "national.")
        incident = incidents.create(session, actor, "Codes de connexion non reçus",
                                    "Les SMS de connexion n'arrivent plus depuis 9 h.",
                                    departement_code="93")
        incidents.set_message(session, actor, incident,
                              "Les codes de connexion n'arrivent plus ; nous y travaillons.",
                              datetime(2026, 12, 21, 17, 0, tzinfo=UTC))
        incidents.link(session, actor, referred, incident)
        numbers = voicemail.number, callback.number, row.reference, incident.id
        core_db.commit()
    return started, [("tickets.png", "/tickets/"), ("ticket.png", f"/tickets/{numbers[0]}"),
            ("ticket-callback.png", f"/tickets/{numbers[1]}"),
            ("ticket-new.png", f"/tickets/depuis/{numbers[2]}"),
            ("incidents.png", "/tickets/incidents/"),
            ("incident.png", f"/tickets/incidents/{numbers[3]}"),
            ("emails.png", "/admin/courriels"), ("email.png", "/admin/courriels/new_voicemail")]


def call_detail(shooter: Shooter) -> None:
    """Open the first call of « Mes appels » and shoot its detail page."""
    name = "call.png"
    if not shooter.goto(name, "/appels/"):
        return
    shooter.page.locator("tbody tr a").first.click()
    shooter.shoot(name)


def simulator(shooter: Shooter) -> None:
    """Place a test call on the simulator page, typed on its keypad, and shoot it at the end."""
    name, path = "simulator.png", "/simulateur"
    if not shooter.goto(name, path):
        return
    page = shooter.page
    page.get_by_label("Date et heure simulées (heure de Paris)").fill("2026-12-21T10:00")
    page.get_by_role("button", name="Appeler").click()
    for key in ("Touche 9", "Touche 3"):
        page.get_by_role("button", name=key, exact=True).click()
    page.get_by_role("button", name="Envoyer").click()
    page.get_by_label("Touches tapées").fill("1")
    page.get_by_role("button", name="Envoyer").click()
    page.get_by_label("Touches tapées").fill("2")
    page.get_by_role("button", name="Envoyer").click()
    shooter.shoot(name)


def api_token(shooter: Shooter) -> None:
    """« Mes jetons d'API », just after a token was created (its secret shown once)."""
    if not shooter.goto("tokens.png", "/mon-compte/jetons/"):
        return
    page = shooter.page
    page.get_by_label("Nom du jeton").fill("Outil de pilotage régional")
    page.get_by_label("Durée de validité (jours)").fill("365")
    page.get_by_role("button", name="Créer le jeton").click()
    shooter.shoot("tokens.png")


def dashboards(shooter: Shooter, server: liveserver.LiveServer) -> None:
    """Seed a quarter of fictitious calls, then shoot the DASHBOARD_PAGES."""
    from datetime import date

    from devtools.demo_calls import seed_calls as seed_demo_calls
    with server.app.app_context():
        seed_demo_calls(core_db.session(), start=date(2026, 10, 1), end=date(2026, 12, 18))
        core_db.commit()
    for name, path in DASHBOARD_PAGES:
        if shooter.goto(name, path):
            shooter.shoot(name)


def single_sign_on(browser, outdir: Path) -> Shooter:
    """The login page with the ProConnect button, the page of an agent's new account waiting for
    a role, the admin's accounts page listing it and its page (a role being granted): a server of
    their own, whose single sign-on goes to the stand-in provider (devtools/oidc_standin.py)."""
    from devtools.oidc_standin import OidcStandIn
    provider = OidcStandIn().start()
    provider.add_user("agent-1", "camille.martin@interieur.gouv.fr", "Camille", "Martin")
    provider.auto_user = "agent-1"
    server = liveserver.LiveServer(config=provider.settings())
    try:
        page = liveserver.new_page(browser, server.url)
        shooter = Shooter(page, outdir)
        if shooter.goto("login-proconnect.png", "/connexion"):
            shooter.shoot("login-proconnect.png")
            page.get_by_role("button", name="S’identifier avec ProConnect").click()
            page.wait_for_load_state()
            if page.url.endswith("/connexion/en-attente"):
                shooter.shoot("sso-waiting.png")
            else:
                print(f"skipped sso-waiting.png: landed on {page.url}")
        page.context.close()
        server.user(ADMIN, "admin", name="Camille Admin")
        server.user("dominique.petit@interieur.gouv.fr", "referent", departements=["93", "2A"],
                    name="Dominique Petit")
        page = liveserver.new_page(browser, server.url)
        shooter.page = page
        liveserver.login(page, ADMIN)
        if shooter.goto("accounts.png", "/admin/comptes/"):
            shooter.shoot("accounts.png")
            page.get_by_role("link", name="camille.martin@interieur.gouv.fr").click()
            page.get_by_label("Rôle").select_option("referent")
            page.get_by_label("Départements (référents)").fill("93")
            shooter.shoot("account.png")
        page.context.close()
        return shooter
    finally:
        server.stop()
        provider.stop()


def main(argv: list[str]) -> int:
    """Start the app and a browser, log in as an admin, and write every screenshot
    (`--sso-only`: only those of single sign-on)."""
    sso_only = "--sso-only" in argv
    argv = [a for a in argv if a != "--sso-only"]
    outdir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTDIR
    outdir.mkdir(parents=True, exist_ok=True)
    if sso_only:
        with sync_playwright() as playwright:
            browser = liveserver.launch_browser(playwright)
            shooter = single_sign_on(browser, outdir)
            browser.close()
        print(f"{len(shooter.written)} screenshots in {outdir}")
        return 0
    server = liveserver.LiveServer()
    try:
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as folder:
            browser = liveserver.launch_browser(playwright)
            page = liveserver.new_page(browser, server.url)
            shooter = Shooter(page, outdir)
            if shooter.goto("login.png", "/connexion"):
                shooter.shoot("login.png")
            server.user(ADMIN, "admin", name="Camille Admin")
            seed_calls(server)
            liveserver.login(page, ADMIN)
            if "/connexion" in page.url:
                print("login failed: the pages behind it cannot be shot", file=sys.stderr)
                return 1
            for name, path in PAGES:
                if shooter.goto(name, path):
                    shooter.shoot(name)
                if name == "import.png":
                    import_preview(shooter, server, Path(folder))
                if name == "preview.png":
                    simulator(shooter)
                if name == "calls.png":
                    call_detail(shooter)
            started, ticket_pages = seed_tickets(server)
            for name, path in ticket_pages:
                if shooter.goto(name, path):
                    shooter.shoot(name)
            server.clock.set(started)  # the other pages at the usual time
            api_token(shooter)
            dashboards(shooter, server)
            shooter.written += single_sign_on(browser, outdir).written
            browser.close()
    finally:
        server.stop()
    print(f"{len(shooter.written)} screenshots in {outdir}"
          + (f"; skipped: {', '.join(shooter.skipped)}" if shooter.skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
