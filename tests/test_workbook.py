"""The indicator workbook: layout, lists, inert text, formulas recalculated by LibreOffice."""

from __future__ import annotations

import random
import re
from datetime import date, datetime, time, timedelta
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils import get_column_letter

from directory.reference import territories
from tracking import indicators, workbook
from tracking.columns import (CHANNELS, HEADERS, HISTORIQUE, INDEX, MANDATORY, NO, OPTIONAL,
                              OUTCOMES, SYSTEM, TO_QUALIFY, YES, Taxonomy)
from tracking.models import Channel, Outcome
from tracking.workbook import write_workbook
from tests.helpers import kpi_table, volume_table

# Labels with wildcard and formula characters: criteria must match them exactly, cells keep them.
TAXONOMY = Taxonomy(
    thematiques=("Assistance technique", "Usage du SI", "Autre"),
    motifs={"Assistance technique": ("Incident ou anomalie", "Certificats et sécurité"),
            "Usage du SI": ("Doublons ?", "Doublons !", "Radiation*"),
            "Autre": ("+ Autre",)},
    sous_motifs={("Assistance technique", "Incident ou anomalie"): ("Lenteurs",
                                                                "Message d'erreur")},
)
DEPARTEMENTS = ("01", "2A", "75")
START, END = date(2026, 1, 15), date(2026, 3, 31)  # starts mid-month: January is clipped
MONTHS = [(date(2026, 1, 15), date(2026, 2, 1)), (date(2026, 2, 1), date(2026, 3, 1)),
          (date(2026, 3, 1), date(2026, 4, 1))]
SVI, ANSWERED = Channel.phone_svi.value, Outcome.answered.value
INJECTED = '=HYPERLINK("http://x")'
COMMENTS = ("", "rappel demandé", INJECTED, "+33 6 12 34 56 78", "-", "@référent")
COL = INDEX


def make_rows(n: int, seed: int = 7, departements=DEPARTEMENTS) -> list[tuple]:
    """n rows in HISTORIQUE order over the period: SVI calls (some split into motifs) and others."""
    rng = random.Random(seed)
    span = ((END - START).days + 1) * 24 * 60
    rows, call = [], 0
    while len(rows) < n:
        at = datetime.combine(START, time(0)) + timedelta(minutes=rng.randrange(span))
        channel = rng.choice((SVI, SVI, *CHANNELS))
        dept = rng.choice(departements)
        if channel == SVI:
            call += 1
            outcome = rng.choice((ANSWERED, ANSWERED, *OUTCOMES))
            wait = rng.choice((None, rng.randrange(1, 90)))
            talk = rng.randrange(20, 900) if outcome == ANSWERED else None
            parts, number = rng.choice((1, 1, 2)), call
        else:
            outcome = wait = talk = number = None
            parts = 1
        for part in range(parts):
            thematique = rng.choice((*TAXONOMY.thematiques, TO_QUALIFY))
            motif = rng.choice((*TAXONOMY.motifs.get(thematique, ()), TO_QUALIFY))
            sous = rng.choice((None, *TAXONOMY.sous_motifs.get((thematique, motif), ())))
            rows.append((f"S-{len(rows):06d}", at, dept, channel, thematique, motif, sous, outcome,
                         wait, talk, rng.choice((YES, NO, None)), rng.choice((YES, NO, None)),
                         rng.choice(COMMENTS), number, YES if part == 0 else NO))
    return rows[:n]


def write(path: Path, rows, *, national=False, departements=DEPARTEMENTS, **options) -> Path:
    write_workbook(path, iter(rows), title="Suivi des sollicitations — test",
                   departements=departements if national else departements[:1],
                   national=national, start=START, end=END, taxonomy=TAXONOMY, **options)
    return path


# --- what the Résultats sheet should say, computed in Python -------------------------------

def in_range(row, first: date, after: date) -> bool:
    return first <= row[COL["Date et heure"]].date() < after


def periods():
    return [*MONTHS, (START, END + timedelta(days=1))]


def expected_volumes(rows) -> dict[tuple[str, str | None], list[int]]:
    """(thématique, motif) → count per month then over the period; motif None for subtotals."""
    def count(match):
        return [sum(1 for r in rows if in_range(r, *p) and match(r)) for p in periods()]
    them, motif = COL["Thématique"], COL["Motif"]
    expected = {}
    for t in TAXONOMY.thematiques:
        expected[(t, None)] = count(lambda r: r[them] == t)
        for m in (*TAXONOMY.motifs[t], TO_QUALIFY):
            expected[(t, m)] = count(lambda r: r[them] == t and r[motif] == m)
    expected[(TO_QUALIFY, None)] = count(lambda r: r[them] == TO_QUALIFY)
    expected[("Total des sollicitations", None)] = count(lambda r: True)
    return expected


def calls(rows, first: date, after: date, dept: str | None = None):
    return [r for r in rows if in_range(r, first, after) and r[COL["Canal"]] == SVI
            and r[COL["Appel principal"]] == YES and dept in (None, r[COL["Département"]])]


def rate(received):
    by = [r[COL["Issue de l'appel"]] for r in received]
    offered = len(by) - by.count(Outcome.out_of_hours.value) - by.count(
        Outcome.no_phone_assistance.value)
    return by.count(ANSWERED) / offered if offered else None


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def expected_kpis(rows) -> dict[str, list]:
    """KPI label → value per month then over the period (None where Excel shows nothing)."""
    result = {label: [] for label in ("Appels reçus", *indicators.CALL_KPIS.values(),
                                      "Taux de décroché", "Attente moyenne (s)",
                                      "Conversation moyenne (s)")}
    for p in periods():
        received = calls(rows, *p)
        result["Appels reçus"].append(len(received))
        for outcome, label in indicators.CALL_KPIS.items():
            result[label].append(sum(1 for r in received
                                     if r[COL["Issue de l'appel"]] == outcome.value))
        result["Taux de décroché"].append(rate(received))
        result["Attente moyenne (s)"].append(mean(r[COL["Attente (s)"]] for r in received))
        result["Conversation moyenne (s)"].append(mean(
            r[COL["Conversation (s)"]] for r in received if r[COL["Issue de l'appel"]] == ANSWERED))
    return result


def expected_synthesis(rows, departements) -> dict[str, list]:
    """Code → counts by thématique, total, then the call columns and the answer rate."""
    period = (START, END + timedelta(days=1))
    result = {}
    for code in departements:
        mine = [r for r in rows if in_range(r, *period) and r[COL["Département"]] == code]
        received = calls(rows, *period, dept=code)
        outcomes = [r[COL["Issue de l'appel"]] for r in received]
        result[code] = ([sum(1 for r in mine if r[COL["Thématique"]] == t)
                         for t in (*TAXONOMY.thematiques, TO_QUALIFY)]
                        + [len(mine), len(received), outcomes.count(Outcome.out_of_hours.value),
                           outcomes.count(Outcome.no_phone_assistance.value),
                           outcomes.count(ANSWERED), rate(received)])
    return result


# --- reading the Résultats sheet -----------------------------------------------------------

def synthesis_table(ws) -> dict[str, list]:
    rows = list(ws.iter_rows(min_row=5, values_only=True))
    return {r[0]: [None if v == "" else v for v in r[2:]] for r in rows if r[0] != "Total"}


def approx(values):
    return [v if v is None else pytest.approx(v, abs=1e-9) for v in values]


# --- layout ---------------------------------------------------------------------------------

def test_departement_workbook_layout(tmp_path):
    rows = make_rows(40)
    progress = []
    path = tmp_path / "dept.xlsx"
    count = write_workbook(path, iter(rows), title="Suivi 01", departements=("01",),
                           national=False, start=START, end=END, taxonomy=TAXONOMY,
                           progress=progress.append)
    assert count == 40 and progress[-1] == 40

    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Historique des sollicitations", "Résultats", "Listes"]
    assert wb["Listes"].sheet_state == "hidden"
    assert wb["Historique des sollicitations"].sheet_state == "visible"
    ws = wb["Historique des sollicitations"]
    assert tuple(c.value for c in ws[1]) == HEADERS
    fills = {c.kind: set() for c in HISTORIQUE}
    for cell, column in zip(ws[1], HISTORIQUE):
        assert cell.font.bold
        fills[column.kind].add(cell.fill.fgColor.rgb)
        assert cell.comment.text.startswith(workbook.KIND_LEGEND[column.kind][0])
    # One colour per kind, three different colours.
    assert all(len(colours) == 1 for colours in fills.values())
    assert len({colours.pop() for colours in fills.values()}) == 3
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:O41"
    for i, column in enumerate(HISTORIQUE, start=1):
        assert ws.column_dimensions[get_column_letter(i)].width == column.width
    assert [[c.value for c in r] for r in ws.iter_rows(min_row=2, max_col=12)] == [
        [v if v != "" else None for v in row[:12]] for row in rows]
    date_cell = ws.cell(2, COL["Date et heure"] + 1)
    assert date_cell.value == rows[0][1] and isinstance(date_cell.value, datetime)
    assert date_cell.number_format == "dd/mm/yyyy hh:mm"

    # The legend is on the Résultats sheet, with the same colours as the headers.
    results = wb["Résultats"]
    legend = {c.value: c.fill.fgColor.rgb for c in results["A"] if c.value in
              {label for label, _ in workbook.KIND_LEGEND.values()}}
    assert legend == {workbook.KIND_LEGEND[kind][0]: ws.cell(1, i + 1).fill.fgColor.rgb
                      for kind, i in ((MANDATORY, 1), (OPTIONAL, 6), (SYSTEM, 0))}
    assert HISTORIQUE[1].kind == MANDATORY and HISTORIQUE[6].kind == OPTIONAL
    assert HISTORIQUE[0].kind == SYSTEM
    assert results["A1"].value == "Suivi 01"
    assert results["A2"].value == "Période du 15/01/2026 au 31/03/2026"


def test_drop_down_lists_point_at_the_hidden_lists_sheet(tmp_path):
    wb = openpyxl.load_workbook(write(tmp_path / "dept.xlsx", make_rows(10)))
    ws, lists = wb["Historique des sollicitations"], TAXONOMY.lists(("01",))
    validations = {str(dv.sqref): dv for dv in ws.data_validations.dataValidation}
    validated = {c.header for c in HISTORIQUE if c.values}
    assert validated == {"Département", "Canal", "Thématique", "Motif", "Sous-motif",
                         "Issue de l'appel", "Résolu au niveau 1", "Escaladé", "Appel principal"}
    assert len(validations) == len(validated)
    for i, column in enumerate(HISTORIQUE, start=1):
        letter = get_column_letter(i)
        if not column.values:
            assert all(letter not in ref.split(":")[0] for ref in validations)
            continue
        dv = validations[f"{letter}2:{letter}1048576"]
        assert dv.type == "list" and dv.showErrorMessage and dv.allowBlank
        sheet, first_col, first_row, last_col, last_row = re.fullmatch(
            r"'(.+)'!\$([A-Z]+)\$(\d+):\$([A-Z]+)\$(\d+)", dv.formula1).groups()
        assert sheet == "Listes" and first_col == last_col and first_row == "2"
        listed = [c.value for c in wb["Listes"][first_col][1:int(last_row)]]
        assert tuple(listed) == lists[column.values]
        assert wb["Listes"][f"{first_col}{int(last_row) + 1}"].value is None
    # The list of motifs holds every taxonomy motif, the one looking like a formula as text.
    listes = wb["Listes"]
    plus = next(c for c in listes["D"] if c.value == "+ Autre")
    assert plus.data_type == "s" and plus.quotePrefix


def test_text_that_looks_like_a_formula_is_stored_as_text(tmp_path):
    rows = make_rows(6)
    comment = COL["Commentaire"]
    texts = (INJECTED, "+33 6", "-", "@SOMME(A1)", "=1+1", "plain")
    rows = [row[:comment] + (text,) + row[comment + 1:] for row, text in zip(rows, texts)]
    rows[0] = ("=cmd|' /C calc'!A0",) + rows[0][1:]
    wb = openpyxl.load_workbook(write(tmp_path / "dept.xlsx", rows))
    ws = wb["Historique des sollicitations"]
    cells = [ws.cell(r, comment + 1) for r in range(2, 8)]
    assert [c.value for c in cells] == list(texts)
    assert all(c.data_type == "s" for c in cells)
    assert [c.quotePrefix for c in cells] == [True] * 5 + [False]
    assert ws["A2"].value == "=cmd|' /C calc'!A0" and ws["A2"].data_type == "s"
    assert ws["A2"].quotePrefix


def test_control_characters_in_comments_are_dropped(tmp_path):
    rows = make_rows(1)
    comment = COL["Commentaire"]
    rows = [rows[0][:comment] + ("copié\x0bcollé\x01",) + rows[0][comment + 1:]]
    wb = openpyxl.load_workbook(write(tmp_path / "dept.xlsx", rows))
    assert wb["Historique des sollicitations"].cell(2, comment + 1).value == "copiécollé"


def test_results_are_formulas_with_two_charts(tmp_path):
    wb = openpyxl.load_workbook(write(tmp_path / "dept.xlsx", make_rows(20)))
    ws = wb["Résultats"]
    formulas = [c.value for row in ws.iter_rows() for c in row
                if isinstance(c.value, str) and c.value.startswith("=")]
    volume_rows = sum(len(m) + 2 for m in TAXONOMY.motifs.values()) + 2  # + subtotals, À qualifier
    kpi_rows = 1 + len(indicators.CALL_KPIS) + 3  # reçus, outcomes, rate, two averages
    chart_rows = len(TAXONOMY.thematiques) + 1
    assert len(formulas) == (volume_rows + kpi_rows) * (len(MONTHS) + 1) + chart_rows
    volumes = next(f for f in formulas if '"=Doublons ~?"' in f)
    assert volumes.startswith("=COUNTIFS('Historique des sollicitations'!$E:$E,\"=Usage du SI\"")
    assert '">="&DATE(2026,1,15)' in volumes and '"<"&DATE(2026,2,1)' in volumes
    assert any(f.startswith("=IFERROR(") and "SUMIFS(" in f for f in formulas)
    # Months of the period, clipped at both ends, then the period total.
    header = next(r for r in ws.iter_rows(values_only=True) if r[:2] == ("Thématique", "Motif"))
    assert header[2:] == ("janvier 2026", "février 2026", "mars 2026", "Total période")
    charts = ws._charts
    assert len(charts) == 2
    refs = [chart.series[0].val.numRef.f for chart in charts]
    assert refs[0].startswith("'Résultats'!$B$") and re.fullmatch(
        r"'Résultats'!\$C\$\d+:\$E\$\d+", refs[1])


def test_national_workbook_has_one_row_per_departement(tmp_path):
    codes = tuple(territories())
    wb = openpyxl.load_workbook(write(tmp_path / "national.xlsx", make_rows(30),
                                      national=True, departements=codes))
    assert wb.sheetnames == ["Historique des sollicitations", "Résultats",
                             "Synthèse par département", "Listes"]
    ws = wb["Synthèse par département"]
    header = [c.value for c in ws[4]]
    assert header == ["Code", "Département", *TAXONOMY.thematiques, TO_QUALIFY, "Total",
                      "Appels reçus", "Appels hors horaires", "Pas d'assistance téléphonique",
                      "Appels décrochés", "Taux de décroché"]
    body = list(ws.iter_rows(min_row=5, values_only=True))
    assert [r[0] for r in body] == [*codes, "Total"]
    assert body[0][1] == "Ain" and body[len(codes) - 1][1] == territories()[codes[-1]].name
    assert all(isinstance(v, str) and v.startswith("=") for r in body for v in r[2:])
    assert '"=2A"' in ws.cell(5 + codes.index("2A"), 3).value
    validations = {str(dv.sqref): dv.formula1 for dv in
                   wb["Historique des sollicitations"].data_validations.dataValidation}
    assert validations["C2:C1048576"] == f"'Listes'!$A$2:$A${len(codes) + 1}"


def test_rows_continue_on_further_sheets(tmp_path):
    rows = make_rows(12)
    wb = openpyxl.load_workbook(write(tmp_path / "dept.xlsx", rows, max_rows_per_sheet=5))
    titles = ["Historique des sollicitations", "Historique (2)", "Historique (3)"]
    assert wb.sheetnames == [*titles, "Résultats", "Listes"]
    assert all(len(t) <= 31 for t in titles)
    references = []
    for title, expected in zip(titles, (rows[:5], rows[5:10], rows[10:])):
        ws = wb[title]
        assert tuple(c.value for c in ws[1]) == HEADERS
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:O{len(expected) + 1}"
        assert len(ws.data_validations.dataValidation) == 9
        references += [c.value for c in ws["A"][1:]]
    assert references == [r[0] for r in rows]
    total = next(r for r in wb["Résultats"].iter_rows(values_only=True)
                 if r[0] == "Total des sollicitations")[-1]
    assert all(f"'{t}'!$B:$B" in total for t in titles) and total.count("COUNTIFS(") == 3


def test_exact_multiple_makes_no_empty_sheet_and_no_rows_makes_one(tmp_path):
    wb = openpyxl.load_workbook(write(tmp_path / "ten.xlsx", make_rows(10), max_rows_per_sheet=5))
    assert wb.sheetnames == ["Historique des sollicitations", "Historique (2)", "Résultats",
                             "Listes"]
    empty = tmp_path / "empty.xlsx"
    assert write_workbook(empty, iter(()), title="Vide", departements=("01",), national=False,
                          start=START, end=END, taxonomy=TAXONOMY) == 0
    ws = openpyxl.load_workbook(empty)["Historique des sollicitations"]
    assert ws.max_row == 1 and ws.auto_filter.ref == "A1:O1"


def test_progress_is_reported_while_streaming(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "PROGRESS_EVERY", 4)
    seen = []

    def rows():
        for row in make_rows(10):
            seen.append("row")
            yield row

    def progress(n):
        seen.append(n)
    write_workbook(tmp_path / "p.xlsx", rows(), title="P", departements=("01",), national=False,
                   start=START, end=END, taxonomy=TAXONOMY, progress=progress,
                   max_rows_per_sheet=6)
    # Called as rows stream (not after reading them all), across the sheet change, and at the end.
    assert [s for s in seen if s != "row"] == [4, 8, 10]
    assert seen.index(4) == 4 and seen.index(8) == 9


def test_rejects_a_period_that_ends_before_it_starts(tmp_path):
    with pytest.raises(ValueError):
        write_workbook(tmp_path / "x.xlsx", iter(()), title="X", departements=("01",),
                       national=False, start=END, end=START, taxonomy=TAXONOMY)


# --- formulas recalculated by LibreOffice ---------------------------------------------------

def test_libreoffice_results_match_python(tmp_path, recalc):
    rows = make_rows(300)
    wb = recalc(write(tmp_path / "dept.xlsx", rows))
    ws = wb["Résultats"]
    assert volume_table(ws) == expected_volumes(rows)
    assert expected_volumes(rows)[("Usage du SI", "Doublons ?")][-1] > 0
    kpis = kpi_table(ws)
    expected = expected_kpis(rows)
    assert kpis.keys() == expected.keys()
    for label, values in expected.items():
        assert kpis[label] == approx(values), label
    assert expected["Appels décrochés"][-1] > 0 and expected["Attente moyenne (s)"][-1]
    by_them = {r[0]: r[1] for r in ws.iter_rows(values_only=True)
               if r[0] in (*TAXONOMY.thematiques, TO_QUALIFY) and r[1] != "Total de la thématique"
               and r[1] != "Thématique à qualifier"}
    assert by_them == {t: expected_volumes(rows)[(t, None)][-1]
                       for t in (*TAXONOMY.thematiques, TO_QUALIFY)}


def test_rows_added_by_hand_update_the_results(tmp_path, recalc):
    rows = make_rows(120)
    path = write(tmp_path / "dept.xlsx", rows)
    added = [
        ("", datetime(2026, 2, 10, 9, 30), "01", SVI, "Usage du SI", "Doublons ?", None, ANSWERED,
         15, 200, YES, NO, "saisi à la main", None, YES),
        ("", datetime(2026, 3, 31, 23, 59), "01", SVI, "Autre", TO_QUALIFY, None,
         Outcome.out_of_hours.value, None, None, None, None, "", None, YES),
        ("", datetime(2026, 1, 20, 14, 0), "01", Channel.email.value, TO_QUALIFY, TO_QUALIFY,
         None, None, None, None, None, None, "", None, None),
        # Outside the period: counted nowhere.
        ("", datetime(2026, 4, 1, 0, 0), "01", SVI, "Autre", TO_QUALIFY, None, ANSWERED, 5, 5,
         None, None, "", None, YES),
    ]
    wb = openpyxl.load_workbook(path)
    ws = wb["Historique des sollicitations"]
    for row in added:
        ws.append([v if v != "" else None for v in row])
    wb.save(path)
    before = expected_volumes(rows)
    after = expected_volumes(rows + added)
    assert after != before
    results = recalc(path)["Résultats"]
    assert volume_table(results) == after
    kpis, expected = kpi_table(results), expected_kpis(rows + added)
    assert expected != expected_kpis(rows)
    for label, values in expected.items():
        assert kpis[label] == approx(values), label


def test_libreoffice_national_workbook_over_several_sheets(tmp_path, recalc):
    rows = make_rows(200, seed=11)
    path = write(tmp_path / "national.xlsx", rows, national=True, max_rows_per_sheet=70)
    wb = openpyxl.load_workbook(path)
    assert [t for t in wb.sheetnames if t.startswith("Historique")] == [
        "Historique des sollicitations", "Historique (2)", "Historique (3)"]
    # A row added by hand on the last sheet counts too.
    extra = ("", datetime(2026, 3, 2, 10, 0), "2A", SVI, "Assistance technique",
             "Incident ou anomalie", "Lenteurs", ANSWERED, 30, 120, YES, NO, "", None, YES)
    wb["Historique (3)"].append(extra)
    wb.save(path)
    rows = rows + [extra]
    recalculated = recalc(path)
    results = recalculated["Résultats"]
    assert volume_table(results) == expected_volumes(rows)
    kpis = kpi_table(results)
    for label, values in expected_kpis(rows).items():
        assert kpis[label] == approx(values), label
    synthesis = synthesis_table(recalculated["Synthèse par département"])
    expected = expected_synthesis(rows, DEPARTEMENTS)
    assert synthesis.keys() == expected.keys()
    for code, values in expected.items():
        assert synthesis[code] == approx(values), code
    total = next(r for r in recalculated["Synthèse par département"].iter_rows(values_only=True)
                 if r[0] == "Total")
    assert total[2 + len(TAXONOMY.thematiques) + 1] == len(rows)
