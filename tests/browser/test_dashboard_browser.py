"""The national team in a real browser: the dashboard's figures equal the database's, every part
passes axe-core, and a département's row opens its own dashboard; the national workbook
downloaded from « Classeurs », or through a link of the quarterly email after login, reloads
with openpyxl."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import openpyxl
import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from core import db as core_db
from devtools.liveserver import PASSWORD
from scheduler.jobs import quarterly_workbooks
from tests import factories
from tests.browser.conftest import assert_accessible, login
from tracking.columns import INDEX
from tracking.models import Call, Outcome

pytestmark = pytest.mark.browser

NATIONAL = "national@example.gouv.fr"


def _seed(live_server) -> dict[str, int]:
    """A few calls of this quarter (the server's clock says 21/12/2026); the database's counts."""
    with live_server.app.app_context():
        session = core_db.session()
        for day, code, outcome in ((1, "93", Outcome.answered), (2, "93", Outcome.out_of_hours),
                                   (3, "75", Outcome.answered), (7, "75", Outcome.no_answer),
                                   (8, "57", Outcome.abandoned), (9, "93", Outcome.answered)):
            factories.call(session, departement=code, outcome=outcome, wait_seconds=15,
                           started_at=datetime(2026, 12, day, 9, 0, tzinfo=UTC))
        factories.call(session, departement="93", outcome=Outcome.answered, test=True,
                       solicitation=False, started_at=datetime(2026, 12, 4, 9, tzinfo=UTC))
        counted = select(func.count(Call.id)).where(Call.test.is_(False))
        figures = {"recus": session.scalar(counted),
                   "decroches": session.scalar(counted.where(Call.outcome == Outcome.answered))}
        core_db.rollback()
    return figures


def test_national_team_opens_the_dashboard(page, live_server):
    expected = _seed(live_server)
    live_server.user(NATIONAL, "national")
    login(page, NATIONAL)
    page.get_by_role("link", name="Tableau de bord").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tableau de bord national")
    expect(page.locator("#kpi-recus")).to_have_text(str(expected["recus"]))
    expect(page.locator("#kpi-decroches")).to_have_text(str(expected["decroches"]))
    expect(page.locator("#kpi-taux")).to_contain_text("60,0")  # 3 / (6 − 1 hors horaires)
    expect(page.locator("#heat-map caption")).to_contain_text("1 appel arrivé alors que")
    assert_accessible(page)
    # Sort the comparison by calls received, then open 93 from its row.
    page.get_by_role("link", name="Reçus (trier)").click()
    first_row = page.locator("#comparaison-table tbody tr").first
    expect(first_row).to_contain_text("Seine-Saint-Denis")
    first_row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("93 Seine-Saint-Denis")
    expect(page.locator("#kpi-recus")).to_have_text("3")
    assert_accessible(page)


def _known_call(live_server) -> int:
    """A call of 75 answered this quarter: the row to find in the national workbook."""
    with live_server.app.app_context():
        call = factories.call(core_db.session(), departement="75", outcome=Outcome.answered,
                              started_at=datetime(2026, 12, 14, 9, 0, tzinfo=UTC),
                              wait_seconds=21, talk_seconds=240)
        return call.id


def _check_national_workbook(path, call_id: int) -> None:
    """The workbook reloads with openpyxl and holds the known call's row (test calls excluded)."""
    wb = openpyxl.load_workbook(path)
    assert {"Historique des sollicitations", "Résultats", "Synthèse par département"} <= set(
        wb.sheetnames)
    rows = [r for r in wb["Historique des sollicitations"].iter_rows(min_row=2, values_only=True)]
    known = [r for r in rows if r[INDEX["N° d'appel"]] == call_id]
    assert len(known) == 1
    row = known[0]
    assert (row[INDEX["Département"]], row[INDEX["Canal"]], row[INDEX["Issue de l'appel"]],
            row[INDEX["Attente (s)"]], row[INDEX["Conversation (s)"]]) == (
        "75", "Téléphone (SVI)", "décroché", 21, 240)
    assert row[INDEX["Date et heure"]] == datetime(2026, 12, 14, 10, 0)  # Paris time
    synthesis = {r[0]: r for r in wb["Synthèse par département"].iter_rows(values_only=True)}
    assert {"75", "93", "971"} <= set(synthesis)


def test_national_team_downloads_the_national_workbook(page, live_server, tmp_path):
    expected = _seed(live_server)
    call_id = _known_call(live_server)
    live_server.user(NATIONAL, "national")
    login(page, NATIONAL)
    page.get_by_role("link", name="Classeurs").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Classeurs d'indicateurs")
    assert_accessible(page)
    with page.expect_download() as info:
        page.get_by_role("link", name="Classeur national (2026-Q4)").click()
    assert info.value.suggested_filename == "2026-Q4-national.xlsx"
    path = tmp_path / "national.xlsx"
    info.value.save_as(path)
    _check_national_workbook(path, call_id)
    rows = list(openpyxl.load_workbook(path)["Historique des sollicitations"].iter_rows(
        min_row=2, values_only=True))
    assert len(rows) == expected["recus"] + 1  # one row per call, the test call left out


def test_a_link_of_the_quarterly_email_opens_the_file_after_login(page, live_server, tmp_path):
    live_server.app.config.update(NATIONAL_TEAM_EMAILS=NATIONAL, SMTP_HOST="")
    _seed(live_server)
    call_id = _known_call(live_server)
    live_server.user(NATIONAL, "national")
    live_server.clock.set("2027-01-05T06:00")  # the job runs early in the next quarter
    assert quarterly_workbooks(live_server.app).status == "done"
    mails = list((live_server.workdir / "outbox").glob("*.eml"))
    assert len(mails) == 1
    mail = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
    assert mail["To"] == NATIONAL
    body = mail.get_body(("plain",)).get_content()
    link = re.search(rf"{re.escape(live_server.url)}/classeurs/2026-Q4/national\.xlsx", body).group(0)

    # Followed from the mail client, logged out: the login page, then the file.
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
    assert page.url == f"{live_server.url}/connexion?next=/classeurs/2026-Q4/national.xlsx"
    assert_accessible(page)
    page.get_by_label("Adresse électronique").fill(NATIONAL)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    with page.expect_download() as info:
        page.get_by_role("button", name="Se connecter").click()
    path = tmp_path / "from-the-mail.xlsx"
    info.value.save_as(path)
    # The very file the job stored, not one generated again.
    assert path.read_bytes() == (live_server.workdir / "workbooks" / "2026-Q4"
                                 / "national.xlsx").read_bytes()
    _check_national_workbook(path, call_id)


def test_a_referent_finds_their_departements_dashboards_in_the_menu(page, live_server):
    _seed(live_server)
    live_server.user("referent-idf@example.gouv.fr", "referent", departements=["93", "75"])
    login(page, "referent-idf@example.gouv.fr")
    page.get_by_role("link", name="Tableau de bord").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tableau de bord de mes départements")
    rows = page.locator("#mes-departements tbody tr")
    expect(rows).to_have_count(2)
    # 75: 1 answered of 2; 93: 2 answered of 3, one out of hours.
    expect(rows.nth(0)).to_contain_text("Paris")
    expect(rows.nth(0).locator("td")).to_have_text(["75", "2", "1", "50,0\u00a0%", "0,0\u00a0%"])
    expect(rows.nth(1).locator("td")).to_have_text(["93", "3", "2", "100,0\u00a0%", "33,3\u00a0%"])
    assert_accessible(page)
    rows.nth(1).get_by_role("link", name="Seine-Saint-Denis").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("93 Seine-Saint-Denis")
    expect(page.locator("#kpi-recus")).to_have_text("3")
    assert_accessible(page)
    page.locator(".fr-breadcrumb").get_by_role("link", name="Tableau de bord").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tableau de bord de mes départements")
