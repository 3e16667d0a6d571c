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
                          comment="Courriel du guichet de Bobigny")
        core_db.commit()


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


def main(argv: list[str]) -> int:
    """Start the app and a browser, log in as an admin, and write every screenshot."""
    outdir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTDIR
    outdir.mkdir(parents=True, exist_ok=True)
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
            dashboards(shooter, server)
            browser.close()
    finally:
        server.stop()
    print(f"{len(shooter.written)} screenshots in {outdir}"
          + (f"; skipped: {', '.join(shooter.skipped)}" if shooter.skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
