"""Workbooks end to end: calls → export → edited by hand → import → export, recalculated by LibreOffice."""

from datetime import datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import select

from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, kpi_table, volume_table
from tracking import solicitations
from tracking.columns import HEADERS, INDEX
from tracking.models import Channel, Outcome, Solicitation

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def quarter_of_calls(twilio, db, clock):
    """A quarter of activity in 93: calls with every kind of outcome, qualified, split, an email."""
    plan = [("2026-10-05T10:00", ["93", "1", "2"], [Referent("accept", talk_seconds=120)], 0),
            ("2026-10-06T10:00", ["93", "1", "1"], [Referent("no-answer"), Referent("no-answer")], 20),
            ("2026-11-07T10:00", ["93"], [], 15),                       # Saturday: out of hours
            ("2026-11-09T10:00", ["93", "1", "3"], [Referent("accept", talk_seconds=300)], 0),
            ("2026-12-01T10:00", ["93", "1", "9"], [Referent("caller-hangup")], 0)]
    sids = []
    for when, keys, referents, voicemail in plan:
        clock.set(when)
        sids.append(twilio.call(caller="+33612345678", keys=keys, referents=referents,
                                voicemail_seconds=voicemail).call_sid)
    clock.set("2026-12-02T10:00")
    t = twilio.call(caller="+33611111111", keys=["93"], hang_up_after=2)  # abandoned in the menu
    sids.append(t.call_sid)
    first = db.scalars(select(Solicitation).where(
        Solicitation.call_id == call_record(db, sids[0]).id)).one()
    solicitations.split(db, first, [("usage", "saisie", None), ("habilitations", "droits", None)],
                        actor=factories.ACTOR)
    solicitations.add(db, actor=factories.ACTOR, departement="93", occurred_at=datetime(2026, 12, 3, 15, tzinfo=PARIS),
                      channel=Channel.email, thematique="annuaire", motif="coordonnees")
    db.commit()
    return sids


def _historique(path):
    ws = openpyxl.load_workbook(path)["Historique des sollicitations"]
    return [r for r in ws.iter_rows(min_row=2, values_only=True) if any(v is not None for v in r)]


def test_export_edit_import_export(app, db, tmp_path, quarter_of_calls):
    runner = app.test_cli_runner()
    first = tmp_path / "93-v1.xlsx"
    result = runner.invoke(args=["export", "--departement", "93", "--quarter", "2026-Q4", "-o", str(first)])
    assert result.exit_code == 0, result.output
    assert "8 sollicitation(s) du 01/10/2026 au 31/12/2026" in result.output
    rows = _historique(first)
    db_refs = set(db.scalars(select(Solicitation.reference)))
    assert {r[INDEX["Référence"]] for r in rows} == db_refs and len(rows) == 8
    assert rows[0][INDEX["Date et heure"]] == datetime(2026, 10, 5, 10, 0)
    assert [r[INDEX["Appel principal"]] for r in rows[:2]] == ["oui", "non"]  # the split call

    # A referent edits the file: qualifies a row, adds an email received outside the service.
    wb = openpyxl.load_workbook(first)
    ws = wb["Historique des sollicitations"]
    target = next(r for r in range(2, ws.max_row + 1)
                  if ws.cell(r, INDEX["Motif"] + 1).value == "À qualifier")
    reference = ws.cell(target, 1).value
    ws.cell(target, INDEX["Thématique"] + 1).value = "Assistance technique"
    ws.cell(target, INDEX["Motif"] + 1).value = "Incident ou anomalie"
    ws.cell(target, INDEX["Sous-motif"] + 1).value = "Lenteurs"
    ws.cell(target, INDEX["Escaladé"] + 1).value = "oui"
    new = [None] * len(HEADERS)
    new[INDEX["Date et heure"]] = datetime(2026, 12, 10, 9, 30)
    new[INDEX["Département"]] = "93"
    new[INDEX["Canal"]] = "Courriel"
    new[INDEX["Thématique"]] = "Usage du SI"
    new[INDEX["Motif"]] = "Paramétrage des guichets"
    ws.append(new)
    typed = ws.cell(ws.max_row, INDEX["Commentaire"] + 1, "=HYPERLINK(\"http://evil\")")
    typed.data_type = "s"  # typed as text ('=…), as a user would
    edited = tmp_path / "93-edited.xlsx"
    wb.save(edited)

    result = runner.invoke(args=["import-workbook", str(edited)])
    assert result.exit_code == 0, result.output
    assert "1 ligne(s) ajoutée(s), 1 mise(s) à jour, 7 inchangée(s)" in result.output
    again = runner.invoke(args=["import-workbook", str(edited)])
    assert "0 ligne(s) ajoutée(s), 0 mise(s) à jour, 9 inchangée(s)" in again.output

    second = tmp_path / "93-v2.xlsx"
    runner.invoke(args=["export", "--departement", "93", "--quarter", "2026-Q4", "-o", str(second)])
    rows2 = _historique(second)
    assert len(rows2) == 9
    qualified = next(r for r in rows2 if r[0] == reference)
    assert qualified[INDEX["Sous-motif"]] == "Lenteurs" and qualified[INDEX["Escaladé"]] == "oui"
    added = next(r for r in rows2 if r[INDEX["Canal"]] == "Courriel"
                 and r[INDEX["Motif"]] == "Paramétrage des guichets")
    assert added[0].startswith("S-") and added[INDEX["Date et heure"]] == datetime(2026, 12, 10, 9, 30)
    cell = openpyxl.load_workbook(second)["Historique des sollicitations"].cell(
        rows2.index(added) + 2, INDEX["Commentaire"] + 1)
    assert cell.data_type == "s" and cell.value == "=HYPERLINK(\"http://evil\")"  # inert text
    # Re-importing the fresh export changes nothing.
    assert "0 ligne(s) ajoutée(s), 0 mise(s) à jour, 9 inchangée(s)" in runner.invoke(
        args=["import-workbook", str(second)]).output


def test_libreoffice_results_equal_the_database(app, db, tmp_path, quarter_of_calls, recalc):
    runner = app.test_cli_runner()
    path = tmp_path / "national.xlsx"
    result = runner.invoke(args=["export", "--national", "--quarter", "2026-Q4", "-o", str(path)])
    assert result.exit_code == 0, result.output
    results = recalc(path)["Résultats"]
    kpis = kpi_table(results)

    db.expire_all()
    calls = [call_record(db, sid) for sid in quarter_of_calls]
    counted = [c for c in calls if c.departement_code]  # calls that reached a département
    by = lambda outcome: sum(1 for c in counted if c.outcome is outcome)
    assert kpis["Appels reçus"][-1] == len(counted) == 6
    assert kpis["Appels décrochés"][-1] == by(Outcome.answered) == 2
    assert kpis["Appels hors horaires"][-1] == by(Outcome.out_of_hours) == 1
    assert kpis["Messages vocaux laissés"][-1] == by(Outcome.voicemail) == 1
    assert kpis["Abandons dans le menu"][-1] == by(Outcome.abandoned) == 1
    assert kpis["Appels reçus"][:3] == [2, 2, 2]  # October, November, December
    answered_rate = by(Outcome.answered) / (len(counted) - by(Outcome.out_of_hours)
                                            - by(Outcome.no_phone_assistance))
    assert kpis["Taux de décroché"][-1] == pytest.approx(answered_rate)
    talks = [c.talk_seconds for c in counted if c.outcome is Outcome.answered]
    assert kpis["Conversation moyenne (s)"][-1] == pytest.approx(sum(talks) / len(talks))

    volumes = volume_table(results)
    assert volumes[("Total des sollicitations", None)][-1] == 8
    assert volumes[("Usage du SI", "Saisie et consultation des demandes")][-1] == 1
    assert volumes[("Habilitations et comptes", "Modification des droits")][-1] == 1


def test_export_command_periods_and_refusals(app, db, tmp_path, quarter_of_calls):
    runner = app.test_cli_runner()
    path = tmp_path / "nov.xlsx"
    result = runner.invoke(args=["export", "--departement", "93", "--from", "2026-11-01",
                                 "--to", "2026-11-30", "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 sollicitation(s) du 01/11/2026 au 30/11/2026" in result.output
    assert {r[INDEX["Date et heure"]].month for r in _historique(path)} == {11}
    for args, message in (
            (["--departement", "93", "--national"], "choisissez --departement CODE ou --national"),
            (["--national", "--quarter", "2026-Q7"], "trimestre invalide"),
            (["--national", "--from", "2026-11-01"], "--from et --to vont ensemble"),
            (["--national", "--from", "2026-12-01", "--to", "2026-11-01"], "--to précède --from"),
            (["--departement", "99"], "département inconnu : 99")):
        result = runner.invoke(args=["export", *args, "-o", str(tmp_path / "x.xlsx")])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
