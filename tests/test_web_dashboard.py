"""The dashboard: its figures equal the indicators module's and a hand-written SQL count; the
heat map counts calls arriving while closed; a referent sees only their own département."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime

from sqlalchemy import text

from accounts.models import Role
from tests import factories
from tests.webclient import login, make_user
from tracking import indicators
from tracking.models import Outcome

Q4 = (date(2026, 10, 1), date(2026, 12, 31))


def _at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _kpi(page: str, key: str) -> str:
    match = re.search(rf'id="kpi-{key}"[^>]*>([^<]*)<', page)
    assert match, f"no KPI {key} on the page"
    return html.unescape(match.group(1)).replace("\u202f", "").replace("\u00a0", " ").strip()


def _arrange(db) -> None:
    """Calls of 2026-Q4 with every outcome that matters, plus the traps at the edges."""
    monday = _at(2026, 12, 21, 9, 0)  # 10:00 in Paris: open
    for outcome in (Outcome.answered, Outcome.answered, Outcome.answered,
                    Outcome.out_of_hours, Outcome.out_of_hours, Outcome.no_phone_assistance,
                    Outcome.no_answer, Outcome.abandoned):
        factories.call(db, departement="93", started_at=monday, outcome=outcome, wait_seconds=20,
                       talk_seconds=100 if outcome is Outcome.answered else None)
    factories.call(db, departement="75", started_at=monday, outcome=Outcome.answered, wait_seconds=50)
    factories.call(db, departement="75", started_at=monday, outcome=Outcome.voicemail)
    # A test call of the simulator: never counted.
    factories.call(db, departement="93", started_at=monday, outcome=Outcome.answered, test=True,
                   solicitation=False)
    # 1 October 00:30 in Paris (30 September in UTC): in Q4.
    factories.call(db, departement="75", started_at=_at(2026, 9, 30, 22, 30), outcome=Outcome.answered)
    # 1 January 00:30 in Paris (31 December in UTC): not in Q4.
    factories.call(db, departement="75", started_at=_at(2026, 12, 31, 23, 30), outcome=Outcome.answered)
    # 31 December 22:00 in Guadeloupe (1 January in UTC): in Q4.
    factories.call(db, departement="971", started_at=_at(2027, 1, 1, 2, 0), outcome=Outcome.out_of_hours)
    # A call that never reached a département: apart.
    factories.call(db, departement=None, started_at=monday, outcome=Outcome.abandoned)


def _hand_sql(db) -> dict[str, int]:
    """The Q4 counts written out by hand: local dates, Guadeloupe at UTC−4, Paris at UTC+1/+2."""
    sqlite = db.get_bind().dialect.name == "sqlite"

    def at(*args):
        value = _at(*args)
        return value.replace(tzinfo=None) if sqlite else value

    row = db.execute(text(
        "SELECT count(*),"
        " sum(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN outcome = 'out_of_hours' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN outcome = 'no_phone_assistance' THEN 1 ELSE 0 END)"
        " FROM calls WHERE NOT test AND departement_code IS NOT NULL AND ("
        "  (departement_code IN ('971', '972') AND started_at >= :a1 AND started_at < :a2)"
        "  OR (departement_code = '973' AND started_at >= :g1 AND started_at < :g2)"
        "  OR (departement_code = '974' AND started_at >= :r1 AND started_at < :r2)"
        "  OR (departement_code = '976' AND started_at >= :m1 AND started_at < :m2)"
        "  OR (departement_code NOT IN ('971', '972', '973', '974', '976')"
        "      AND started_at >= :p1 AND started_at < :p2))"),
        {"a1": at(2026, 10, 1, 4), "a2": at(2027, 1, 1, 4),
         "g1": at(2026, 10, 1, 3), "g2": at(2027, 1, 1, 3),
         "r1": at(2026, 9, 30, 20), "r2": at(2026, 12, 31, 20),
         "m1": at(2026, 9, 30, 21), "m2": at(2026, 12, 31, 21),
         "p1": at(2026, 9, 30, 22), "p2": at(2026, 12, 31, 23)}).one()
    received, answered, out_of_hours, no_assistance = (int(v or 0) for v in row)
    return {"received": received, "answered": answered, "out_of_hours": out_of_hours,
            "no_assistance": no_assistance}


def test_national_figures_equal_the_module_and_a_hand_written_count(app, db, admin):
    _arrange(db)
    hand = _hand_sql(db)
    assert hand == {"received": 12, "answered": 5, "out_of_hours": 3, "no_assistance": 1}
    module = indicators.summary(db, start=Q4[0], end=Q4[1])
    assert (module.received, module.answered, module.out_of_hours, module.no_phone_assistance) \
        == (hand["received"], hand["answered"], hand["out_of_hours"], hand["no_assistance"])
    rate = hand["answered"] / (hand["received"] - hand["out_of_hours"] - hand["no_assistance"])
    assert module.answer_rate == rate == 5 / 8

    page = admin.get("/tableau-de-bord/?trimestre=2026-Q4").get_data(as_text=True)
    assert _kpi(page, "recus") == str(hand["received"])
    assert _kpi(page, "decroches") == str(hand["answered"])
    assert _kpi(page, "hors-horaires") == str(hand["out_of_hours"])
    assert _kpi(page, "sans-assistance") == str(hand["no_assistance"])
    assert _kpi(page, "taux") == "62,5 %"
    assert _kpi(page, "sans-departement") == "1"
    # The wait before answer averages answered calls only: (20 × 3 + 50) / 4.
    assert module.average_wait_answered == 27.5 and _kpi(page, "attente") == "28 s"
    # Months are local: the 30 September (UTC) call is October's, the 971 one December's.
    trend = indicators.trend(db, start=Q4[0], end=Q4[1])
    assert [m.figures.received for m in trend] == [1, 0, 11]
    assert sum(m.figures.received for m in trend) == hand["received"]


def test_answer_rate_excludes_out_of_hours_and_no_phone_assistance(app, db, admin):
    _arrange(db)
    page = admin.get("/tableau-de-bord/93?trimestre=2026-Q4").get_data(as_text=True)
    # 93: 8 received, 3 answered, 2 out of hours, 1 without phone assistance: 3 / 5.
    assert _kpi(page, "recus") == "8" and _kpi(page, "decroches") == "3"
    assert _kpi(page, "taux") == "60,0 %"
    figures = indicators.summary(db, start=Q4[0], end=Q4[1], codes=["93"])
    assert figures.answer_rate == 0.6 and figures.count(Outcome.abandoned) == 1


def test_comparison_is_sorted_server_side_and_links_to_each_dashboard(app, db, admin):
    _arrange(db)
    page = admin.get("/tableau-de-bord/?trimestre=2026-Q4&tri=recus&ordre=desc").get_data(as_text=True)
    table = page[page.index('id="comparaison-table"'):]
    assert table.index("/tableau-de-bord/93?trimestre=2026-Q4") \
        < table.index("/tableau-de-bord/75?trimestre=2026-Q4") \
        < table.index("/tableau-de-bord/01?trimestre=2026-Q4")
    assert 'aria-sort="descending"' in table
    by_code = admin.get("/tableau-de-bord/?trimestre=2026-Q4").get_data(as_text=True)
    table = by_code[by_code.index('id="comparaison-table"'):]
    assert table.index("/tableau-de-bord/01?") < table.index("/tableau-de-bord/75?") \
        < table.index("/tableau-de-bord/93?")


def test_a_referent_sees_their_own_dashboard_only(app, db):
    _arrange(db)
    make_user(db, "ref93@example.gouv.fr", Role.referent, departements=["93"])
    client = app.test_client()
    login(client, "ref93@example.gouv.fr")
    assert client.get("/tableau-de-bord/75").status_code == 403
    assert client.get("/tableau-de-bord/").status_code == 403
    page = client.get("/tableau-de-bord/93?trimestre=2026-Q4")
    assert page.status_code == 200
    assert _kpi(page.get_data(as_text=True), "recus") == "8"


def test_heat_map_counts_calls_arriving_while_closed(app, db, admin):
    # Mondays at 08:00 in Paris, in summer (UTC+2) and winter (UTC+1): closed, same cell.
    factories.call(db, departement="93", started_at=_at(2026, 7, 6, 6, 0), outcome=Outcome.out_of_hours)
    factories.call(db, departement="93", started_at=_at(2026, 12, 21, 7, 0), outcome=Outcome.out_of_hours)
    # Monday 10:00 in Paris: open.
    factories.call(db, departement="93", started_at=_at(2026, 12, 21, 9, 0), outcome=Outcome.answered)
    # Saturday 13:00 in Paris: closed.
    factories.call(db, departement="93", started_at=_at(2026, 12, 26, 12, 0), outcome=Outcome.out_of_hours)
    page = admin.get("/tableau-de-bord/93?du=2026-07-01&au=2026-12-31").get_data(as_text=True)
    assert "3 appels arrivés alors que le département était fermé" in page
    hm = indicators.heat_map(db, start=date(2026, 7, 1), end=date(2026, 12, 31), codes=["93"],
                             views=[_view(db, "93")])
    assert (hm.total, hm.closed_calls, hm.outside_slots) == (4, 3, 3)
    monday_8, monday_10 = hm.cells[0][8], hm.cells[0][10]
    assert (monday_8.calls, monday_8.closed_calls, monday_8.opening) == (2, 2, "closed")
    assert (monday_10.calls, monday_10.opening) == (1, "open")
    assert hm.cells[0][9].opening == "partial"  # 09:30–11:30
    assert hm.cells[5][13].calls == 1
    table = page[page.index('id="heat-map"'):]
    monday = table[table.index("<th scope=\"row\">Lundi</th>"):table.index("Mardi")]
    cells = re.findall(r'<td class="([^"]*)">(\d*)', monday)
    assert "svi-heat--closed" in cells[8][0] and cells[8][1] == "2"
    assert "svi-heat--closed" not in cells[10][0] and cells[10][1] == "1"


def _view(db, code):
    from directory import operations
    return operations.snapshot(db, code)


def test_an_invalid_period_falls_back_to_the_quarter_with_a_message(app, db, admin, clock):
    page = admin.get("/tableau-de-bord/?du=2026-12-31&au=2026-01-01")
    assert page.status_code == 200
    assert "la date de fin précède la date de début" in page.get_data(as_text=True)
    assert admin.get("/tableau-de-bord/?du=n'importe&au=quoi").status_code == 200
    assert admin.get("/tableau-de-bord/?trimestre=2026-Q9").status_code == 200
    assert admin.get("/tableau-de-bord/999").status_code == 404


def _menu(page: str) -> dict[str, str]:
    """The main menu's links: label -> href."""
    nav = page[page.index('id="navigation"'):]
    nav = nav[:nav.index("</nav>")]
    return {html.unescape(label): href for href, label in
            re.findall(r'<a class="fr-nav__link" href="([^"]+)"[^>]*>([^<]+)</a>', nav)}


def test_the_menu_leads_a_referent_to_their_departements_dashboard(app, db):
    _arrange(db)
    make_user(db, "ref93@example.gouv.fr", Role.referent, departements=["93"])
    make_user(db, "ref-idf@example.gouv.fr", Role.referent, departements=["93", "75"])
    # Accounts require a département for a referent; one whose département was taken away
    # (straight in the database) is still shown something sensible.
    make_user(db, "ref-none@example.gouv.fr", Role.referent, departements=["01"]).departements = []
    db.commit()
    make_user(db, "national@example.gouv.fr", Role.national)
    clients = {}
    for email in ("ref93", "ref-idf", "ref-none", "national"):
        clients[email] = app.test_client()
        assert login(clients[email], f"{email}@example.gouv.fr").status_code == 302

    # One département: the menu's entry opens its dashboard (the period asked for goes along).
    menu = _menu(clients["ref93"].get("/appels/").get_data(as_text=True))
    assert menu["Tableau de bord"] == "/tableau-de-bord/mes-departements"
    to = clients["ref93"].get("/tableau-de-bord/mes-departements")
    assert to.status_code == 302 and to.headers["Location"] == "/tableau-de-bord/93"
    to = clients["ref93"].get("/tableau-de-bord/mes-departements?trimestre=2026-Q4")
    assert to.headers["Location"] == "/tableau-de-bord/93?trimestre=2026-Q4"
    page = clients["ref93"].get(to.headers["Location"]).get_data(as_text=True)
    assert _kpi(page, "recus") == "8"

    # Several: a page listing their dashboards, in official order, with the quarter's figures.
    ref_idf = clients["ref-idf"]
    assert _menu(ref_idf.get("/appels/").get_data(as_text=True))["Tableau de bord"] \
        == "/tableau-de-bord/mes-departements"
    response = ref_idf.get("/tableau-de-bord/mes-departements?trimestre=2026-Q4")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'aria-current="page">Tableau de bord</a>' in page
    table = page[page.index('id="mes-departements"'):page.index("</table>")]
    links = re.findall(r'href="(/tableau-de-bord/[^"]+)"', table)
    assert [html.unescape(link) for link in links] == [
        "/tableau-de-bord/75?trimestre=2026-Q4", "/tableau-de-bord/93?trimestre=2026-Q4"]
    cells = [[html.unescape(c).replace("\u202f", "").replace("\u00a0", " ") for c in
              re.findall(r"<td>([^<]*)</td>", row)] for row in table.split("<tr>")[2:]]
    figures = {code: indicators.summary(db, start=Q4[0], end=Q4[1], codes=[code])
               for code in ("75", "93")}
    assert cells == [
        ["75", str(figures["75"].received), str(figures["75"].answered), "66,7 %", "0,0 %"],
        ["93", str(figures["93"].received), str(figures["93"].answered), "60,0 %", "25,0 %"]]
    assert "Seine-Saint-Denis" in table and "Paris" in table and "Hauts-de-Seine" not in table
    # Each of their dashboards leads back to that list; 92's is still refused.
    dashboard = ref_idf.get(links[1]).get_data(as_text=True)
    assert 'href="/tableau-de-bord/mes-departements?trimestre=2026-Q4">Tableau de bord</a>' \
        in dashboard
    assert ref_idf.get("/tableau-de-bord/92").status_code == 403

    # Without a département: no entry, and the page says why.
    assert "Tableau de bord" not in _menu(clients["ref-none"].get("/appels/").get_data(as_text=True))
    page = clients["ref-none"].get("/tableau-de-bord/mes-departements").get_data(as_text=True)
    assert "Aucun département ne vous est attribué" in page

    # The national team keeps the national dashboard.
    national = clients["national"]
    assert _menu(national.get("/appels/").get_data(as_text=True))["Tableau de bord"] \
        == "/tableau-de-bord/"
    assert national.get("/tableau-de-bord/mes-departements").headers["Location"] \
        == "/tableau-de-bord/"


def test_the_dashboard_counts_late_tickets(app, db, clock):
    from datetime import UTC, datetime, timedelta
    from tickets import operations as ticket_operations
    from tests import factories
    from tests.webclient import login, make_user
    from accounts.models import Role
    clock.set(datetime(2026, 12, 21, 9, 0, tzinfo=UTC))  # Monday 10:00 in Paris
    call = factories.call(db, departement="93", started_at=datetime(2026, 12, 21, 9, 0, tzinfo=UTC),
                          recording_url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
                          recording_seconds=20)
    ticket = ticket_operations.from_voicemail(db, call)
    db.commit()
    assert ticket is not None
    make_user(db, "nat.late@example.gouv.fr", Role.national)
    client = app.test_client()
    login(client, "nat.late@example.gouv.fr")
    page = client.get("/tableau-de-bord/93").get_data(as_text=True)
    assert "<strong>0</strong>" in page.split('id="tickets-en-retard"')[1][:400]
    clock.set(datetime(2026, 12, 21, 9, 0, tzinfo=UTC) + timedelta(hours=3))
    page = client.get("/tableau-de-bord/93").get_data(as_text=True)
    part = page.split('id="tickets-en-retard"')[1][:600]
    assert "<strong>1</strong>" in part and "en_retard=y" in part
