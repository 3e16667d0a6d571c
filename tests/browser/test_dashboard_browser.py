"""The national team's dashboard in a real browser: figures equal the database's, every part
passes axe-core, and a département's row opens its own dashboard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from core import db as core_db
from tests import factories
from tests.browser.conftest import assert_accessible, login
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
