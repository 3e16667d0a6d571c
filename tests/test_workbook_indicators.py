"""The workbooks' figures are the dashboard's: « Résultats » and « Synthèse par département »,
recalculated by LibreOffice, equal what tracking/indicators.py computes from the database.

The workbook's results are Excel formulas over its « Historique » rows (so that rows added by
hand count); the dashboard and the API read tracking.indicators (SQL). Both must say the same
for the same period: every figure the sheets show is checked against the module, month by
month and for the quarter, nationally and for one département, on a set of calls chosen for
the traps (every outcome, calls in progress, split calls, test calls, calls that reached no
département, local dates at the quarter's and the months' edges, overseas timezones).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from directory.reference import official_order
from tests import factories
from tests.helpers import kpi_table, volume_table
from tracking import indicators, solicitations
from tracking.columns import TO_QUALIFY
from tracking.exports import export_workbook, quarter_bounds
from tracking.models import Channel, Outcome
from tracking.taxonomy import taxonomy
from tracking.indicators import CALL_KPIS
from tracking.workbook import RESULTS_SHEET, SYNTHESIS_SHEET

QUARTER = "2026-Q4"
START, END = quarter_bounds(QUARTER)


def _at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _arrange(db) -> None:
    """A quarter of calls and solicitations in 93, 75, 971 and 2A, with the edge cases."""
    call = factories.call
    # 93, Paris time: every outcome, waits and talks (some missing), over the three months.
    for started, outcome, wait, talk, them in (
            (_at(2026, 10, 5, 8, 0), Outcome.answered, 20, 100, "usage"),
            (_at(2026, 10, 6, 8, 0), Outcome.answered, 35, None, None),
            (_at(2026, 11, 9, 9, 0), Outcome.answered, 50, 300, "habilitations"),
            (_at(2026, 11, 7, 9, 0), Outcome.out_of_hours, None, None, None),  # a Saturday
            (_at(2026, 12, 25, 9, 0), Outcome.out_of_hours, None, None, "usage"),  # Christmas
            (_at(2026, 12, 1, 9, 0), Outcome.no_phone_assistance, None, None, None),
            (_at(2026, 12, 2, 9, 0), Outcome.abandoned, None, None, None),
            (_at(2026, 12, 3, 9, 0), Outcome.voicemail, 30, None, "annuaire"),
            (_at(2026, 12, 4, 9, 0), Outcome.no_answer, 40, None, None),
            (_at(2026, 12, 7, 9, 0), Outcome.hung_up_ringing, 10, None, None),
            (_at(2026, 12, 8, 9, 0), Outcome.error, None, None, None),
            # 1 October 00:30 in Paris (30 September in UTC): October's.
            (_at(2026, 9, 30, 22, 30), Outcome.answered, 5, 60, None),
            # 1 November 00:30 in Paris (31 October in UTC, after the clocks went back): November's.
            (_at(2026, 10, 31, 23, 30), Outcome.no_answer, 45, None, None),
            # 1 January 00:30 in Paris (31 December in UTC): not in the quarter.
            (_at(2026, 12, 31, 23, 30), Outcome.answered, 15, 90, None)):
        call(db, departement="93", started_at=started, outcome=outcome, wait_seconds=wait,
             talk_seconds=talk, thematique=them)
    # Still in progress when the workbook is written: received, outcome unknown.
    call(db, departement="93", started_at=_at(2026, 12, 21, 9, 0), outcome=None,
         status="in-progress", wait_seconds=None)
    # Answered, qualified with two motifs: two rows, one call.
    split = call(db, departement="93", started_at=_at(2026, 12, 14, 9, 0),
                 outcome=Outcome.answered, wait_seconds=25, talk_seconds=240)
    first = solicitations.rows_of_call(db, solicitations.sync_call(db, split))[0]
    solicitations.qualify_motifs(db, first, [("usage", "doublons", None),
                                             ("habilitations", "creation", None)],
                                 actor=factories.ACTOR)
    # Qualified with one motif and a sous-motif.
    one = call(db, departement="93", started_at=_at(2026, 11, 16, 9, 0),
               outcome=Outcome.answered, wait_seconds=12, talk_seconds=30)
    solicitations.qualify(db, solicitations.sync_call(db, one), thematique="assistance_technique",
                          motif="incident", sous_motif="lenteur", actor=factories.ACTOR)
    db.commit()
    # Never counted: a simulator test call, calls that reached no département.
    call(db, departement="93", started_at=_at(2026, 12, 15, 9, 0), outcome=Outcome.answered,
         wait_seconds=999, talk_seconds=999, test=True, solicitation=False)
    call(db, departement=None, started_at=_at(2026, 12, 15, 9, 0), outcome=Outcome.abandoned)
    call(db, departement=None, started_at=_at(2026, 12, 15, 9, 5), outcome=Outcome.invalid_departement)
    # Solicitations that did not go through the SVI: counted in the volumes, not as calls.
    factories.solicitation_row(db, departement="93", occurred_at=_at(2026, 12, 10, 14, 0),
                               channel=Channel.email, thematique="annuaire", motif="coordonnees")
    factories.solicitation_row(db, departement="93", occurred_at=_at(2026, 10, 12, 9, 0),
                               channel=Channel.phone_direct)
    factories.solicitation_row(db, departement="75", occurred_at=_at(2026, 11, 3, 9, 0),
                               channel=Channel.form, thematique="reglementaire")
    # 75, Paris time.
    for day, outcome, wait, talk in ((5, Outcome.answered, 60, 120), (6, Outcome.answered, 15, 45),
                                     (7, Outcome.no_answer, 30, None),
                                     (8, Outcome.out_of_hours, None, None)):
        call(db, departement="75", started_at=_at(2026, 10, day, 8, 0), outcome=outcome,
             wait_seconds=wait, talk_seconds=talk, thematique="annuaire")
    # 971, Guadeloupe time (UTC−4): 31 December 22:00 is in the quarter, 30 September 22:00 not.
    call(db, departement="971", started_at=_at(2027, 1, 1, 2, 0), outcome=Outcome.out_of_hours)
    call(db, departement="971", started_at=_at(2026, 10, 1, 2, 0), outcome=Outcome.answered,
         wait_seconds=5, talk_seconds=5)
    call(db, departement="971", started_at=_at(2026, 11, 2, 14, 0), outcome=Outcome.answered,
         wait_seconds=70, talk_seconds=600)
    # 2A: one call without phone assistance, one abandoned (the rate is undefined then zero).
    call(db, departement="2A", started_at=_at(2026, 11, 4, 9, 0),
         outcome=Outcome.no_phone_assistance)
    call(db, departement="2A", started_at=_at(2026, 12, 4, 9, 0), outcome=Outcome.abandoned)


def _approx(value):
    return None if value is None else pytest.approx(value, abs=1e-9)


def _kpis(figures: indicators.Figures) -> dict[str, object]:
    """What the « Appels reçus par le SVI » table shows, computed by the indicators module."""
    expected = {"Appels reçus": figures.received}
    expected.update({label: figures.count(o) for o, label in CALL_KPIS.items()})
    expected["Taux de décroché"] = _approx(figures.answer_rate)
    expected["Attente moyenne (s)"] = _approx(figures.average_wait)
    expected["Conversation moyenne (s)"] = _approx(figures.average_talk)
    return expected


def _check_results(db, sheet, codes) -> indicators.Figures:
    """« Résultats » of a scope (codes None: national) against the module, month by month and
    for the quarter; returns the quarter's figures."""
    spans = [(first, last) for _, first, last in indicators.months(START, END)] + [(START, END)]
    trend = indicators.trend(db, start=START, end=END, codes=codes)
    quarter = indicators.summary(db, start=START, end=END, codes=codes)
    per_column = [m.figures for m in trend] + [quarter]
    assert len(per_column) == len(spans) == 4

    shown = kpi_table(sheet)
    for label in shown:  # every row the sheet shows has its figure in the module
        assert label in _kpis(quarter), f"« {label} » has no counterpart in tracking.indicators"
    for column, figures in enumerate(per_column):
        for label, value in _kpis(figures).items():
            assert shown[label][column] == value, (label, column)

    volumes = volume_table(sheet)
    for column, (first, last) in enumerate(spans):
        by_them = {r.label: r.count for r in indicators.top_thematiques(
            db, start=first, end=last, codes=codes, limit=1000)}
        by_motif = {(r.thematique, r.label): r.count for r in indicators.top_motifs(
            db, start=first, end=last, codes=codes, limit=1000)}
        for (them, motif), counts in volumes.items():
            if them == "Total des sollicitations":
                assert counts[column] == sum(by_them.values()), column
            elif motif is None:
                assert counts[column] == by_them.get(them, 0), (them, column)
            elif motif != TO_QUALIFY:
                assert counts[column] == by_motif.get((them, motif), 0), (them, motif, column)
        listed = {them for them, motif in volumes if motif is None}
        assert set(by_them) <= listed and {t for t, _ in by_motif} <= listed
    return quarter


def _synthesis(sheet) -> tuple[dict[str, dict], dict]:
    """« Synthèse par département »: code -> {header: value}, and the Total row."""
    rows = list(sheet.iter_rows(min_row=4, values_only=True))
    headers = rows[0]
    table = {r[0]: {h: (None if v == "" else v) for h, v in zip(headers, r)} for r in rows[1:]}
    return table, table.pop("Total")


def test_workbook_figures_equal_the_indicators_module(app, db, tmp_path, recalc):
    _arrange(db)
    national_path, dept_path = tmp_path / "national.xlsx", tmp_path / "departement-93.xlsx"
    export_workbook(db, departement=None, start=START, end=END, path=national_path)
    export_workbook(db, departement="93", start=START, end=END, path=dept_path)
    national, dept = recalc(national_path), recalc(dept_path)

    # One département's workbook.
    quarter_93 = _check_results(db, dept[RESULTS_SHEET], ["93"])
    # 16 calls of 93 in the quarter: not the test call, not the one of 1 January.
    assert (quarter_93.received, quarter_93.answered, quarter_93.unknown) == (16, 6, 1)
    assert SYNTHESIS_SHEET not in dept.sheetnames

    # The national workbook: « Résultats », then each département's line of the synthesis.
    quarter = _check_results(db, national[RESULTS_SHEET], None)
    assert (quarter.received, quarter.answered) == (16 + 4 + 2 + 2, 6 + 2 + 1)
    table, total = _synthesis(national[SYNTHESIS_SHEET])
    by_code = indicators.by_departement(db, start=START, end=END)
    thematiques = (*taxonomy(db).thematiques, TO_QUALIFY)
    codes = list(official_order(list(table)))
    assert list(table) == codes and len(codes) == 101
    for code in codes:
        figures = by_code.get(code, indicators.Figures())
        line = table[code]
        assert (line["Appels reçus"], line[CALL_KPIS[Outcome.out_of_hours]],
                line[CALL_KPIS[Outcome.no_phone_assistance]],
                line[CALL_KPIS[Outcome.answered]]) == (
            figures.received, figures.out_of_hours, figures.no_phone_assistance,
            figures.answered), code
        assert line["Taux de décroché"] == _approx(figures.answer_rate), code
        by_them = {r.label: r.count for r in indicators.top_thematiques(
            db, start=START, end=END, codes=[code], limit=1000)}
        assert {t: line[t] for t in thematiques} == {t: by_them.get(t, 0) for t in thematiques}, code
        assert line["Total"] == sum(by_them.values()), code
    assert (total["Appels reçus"], total[CALL_KPIS[Outcome.answered]]) == (
        quarter.received, quarter.answered)
    assert total["Taux de décroché"] == _approx(quarter.answer_rate)
    assert table["2A"]["Taux de décroché"] == 0  # 1 abandoned / (2 − 1 without assistance)
