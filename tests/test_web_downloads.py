"""Workbook downloads: the quarterly email's links work, after login, for authorized users only;
workbooks not stored are generated on demand."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import openpyxl
from sqlalchemy import select

from accounts.models import Role
from scheduler.jobs import quarterly_workbooks
from tests import factories
from tests.webclient import PASSWORD, csrf_token, login, make_user
from tracking.models import Solicitation


def test_a_link_of_the_quarterly_email_opens_the_file_after_login(app, db, clock, tmp_path):
    app.config.update(WORKBOOK_STORAGE_DIR=str(tmp_path / "workbooks"), SMTP_HOST="",
                      MAIL_OUTBOX_DIR=str(tmp_path / "outbox"),
                      NATIONAL_TEAM_EMAILS="national@example.gouv.fr")
    factories.call(db, departement="93", started_at=datetime(2026, 11, 3, 9, tzinfo=UTC))
    clock.set("2027-01-05T10:00")
    assert quarterly_workbooks(app).status == "done"
    mail = next((tmp_path / "outbox").glob("*.eml")).read_text()
    link = re.search(r"https://svi\.example\.gouv\.fr(/classeurs/2026-Q4/national\.xlsx)", mail).group(1)
    make_user(db, "national@example.gouv.fr", Role.national)
    client = app.test_client()
    first = client.get(link)
    assert first.status_code == 302 and first.headers["Location"] == f"/connexion?next={link}"
    login_page = first.headers["Location"]  # the form posts back to its own address
    after = client.post(login_page, data={"email": "national@example.gouv.fr", "password": PASSWORD,
                                          "csrf_token": csrf_token(client, login_page)})
    assert after.headers["Location"] == link
    book = client.get(link)
    assert book.status_code == 200 and book.headers["Cache-Control"] == "no-store"
    wb = openpyxl.load_workbook(io.BytesIO(book.data))
    assert "Historique des sollicitations" in wb.sheetnames
    rows = list(wb["Historique des sollicitations"].iter_rows(values_only=True))
    assert any("93" in [str(v) for v in row] for row in rows)


def test_a_referent_downloads_only_their_departements(app, db, clock):
    for code in ("93", "75"):
        factories.call(db, departement=code, started_at=datetime(2026, 11, 3, 9, tzinfo=UTC))
    make_user(db, "ref93@example.gouv.fr", Role.referent, departements=["93"])
    client = app.test_client()
    login(client, "ref93@example.gouv.fr")
    page = client.get("/classeurs/?trimestre=2026-Q4").get_data(as_text=True)
    assert "departement-93.xlsx" in page and "departement-75.xlsx" not in page
    assert "national.xlsx" not in page
    own = client.get("/classeurs/2026-Q4/departement-93.xlsx")  # not stored: generated now
    assert own.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(own.data))
    history = list(wb["Historique des sollicitations"].iter_rows(values_only=True))
    references = {r.reference for r in db.scalars(select(Solicitation).where(
        Solicitation.departement_code == "93"))}
    assert references and all(any(ref in row for row in history) for ref in references)
    for path in ("/classeurs/2026-Q4/departement-75.xlsx", "/classeurs/2026-Q4/national.xlsx"):
        assert client.get(path).status_code == 403
    for path in ("/classeurs/2026-Q9/departement-93.xlsx", "/classeurs/2026-Q4/../../x.xlsx",
                 "/classeurs/2026-Q4/departement-93.csv"):
        assert client.get(path).status_code == 404
