"""The indicator workbook: « Historique des sollicitations » and « Résultats » computed by formulas.

Written in openpyxl's write-only mode: rows stream to a temporary file, so memory stays flat
whatever the row count. Every result is an Excel formula over the Historique sheet(s), so rows
a référent adds by hand are counted as soon as the file is opened in Excel or LibreOffice. The
call indicators are the dashboard's, defined once in tracking/indicators.py (outcomes, labels,
the answer rate's base) and translated here into COUNTIFS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from itertools import chain, islice
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import BarChart, Reference, Series
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from core import text as text_policy
from core.spreadsheets import FORMULA_PREFIXES, keep_as_text
from directory.reference import territories
from tracking.columns import (HISTORIQUE, INDEX, MANDATORY, OPTIONAL, SYSTEM, TO_QUALIFY, YES,
                              Taxonomy)
from tracking.indicators import (CALL_KPIS, RATE_DEFINITION, RATE_EXCLUDED, RATE_LABEL,
                                 RECEIVED_LABEL)
from tracking.models import Channel, Outcome

HISTORIQUE_SHEET = "Historique des sollicitations"
RESULTS_SHEET = "Résultats"
SYNTHESIS_SHEET = "Synthèse par département"
LISTS_SHEET = "Listes"
#: Excel's last row: drop-down lists reach it, so rows added by hand get them too.
LAST_ROW = 1_048_576
#: Data rows per Historique sheet: Excel's row limit minus the header.
MAX_ROWS_PER_SHEET = LAST_ROW - 1
PROGRESS_EVERY = 5000
PARIS = ZoneInfo("Europe/Paris")

KIND_FILLS = {kind: PatternFill("solid", fgColor=colour) for kind, colour in
              ((MANDATORY, "F8CBAD"), (OPTIONAL, "DDEBF7"), (SYSTEM, "D9D9D9"))}
KIND_LEGEND = {
    MANDATORY: ("Colonne obligatoire", "à renseigner : sert au calcul des volumes et des "
                                       "indicateurs"),
    OPTIONAL: ("Colonne facultative", "pour votre usage propre"),
    SYSTEM: ("Colonne du service", "remplie par le SVI (référence, n° d'appel, appel "
                                   "principal) : à laisser vide sur une ligne ajoutée à la main"),
}
LIST_TITLES = {"departements": "Départements", "canaux": "Canaux", "thematiques": "Thématiques",
               "motifs": "Motifs", "sous_motifs": "Sous-motifs", "issues": "Issues de l'appel",
               "oui_non": "Oui / non"}
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
          "octobre", "novembre", "décembre")

DATE_FORMAT = HISTORIQUE[INDEX["Date et heure"]].number_format
#: Positions of the text columns of a row: checked for formula-looking text.
TEXT_COLUMNS = tuple(i for i, c in enumerate(HISTORIQUE) if c.number_format is None)
DATE = INDEX["Date et heure"]
COMMENT = INDEX["Commentaire"]
#: Columns holding labels of the motif taxonomy (typed by admins).
LABEL_COLUMNS = frozenset(INDEX[h] for h in ("Thématique", "Motif", "Sous-motif"))

BOLD = Font(bold=True)
TITLE_FONT = Font(bold=True, size=14)
SECTION_FONT = Font(bold=True, size=12)
NOTE_FONT = Font(italic=True, color="595959")
HEADER_FILL = PatternFill("solid", fgColor="D9D9D9")
SUBTOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")
WRAP = Alignment(wrap_text=True, vertical="center")
PERCENT, SECONDS = "0.0%", "0"


def write_workbook(path: str | Path, rows: Iterable[tuple], *, title: str,
                   departements: tuple[str, ...], national: bool, start: date, end: date,
                   taxonomy: Taxonomy, progress: Callable[[int], None] | None = None,
                   max_rows_per_sheet: int = MAX_ROWS_PER_SHEET,
                   generated_at: datetime | None = None) -> int:
    """Stream rows (in `HISTORIQUE` order) into an indicator workbook; return the rows written."""
    if end < start:
        raise ValueError("la période se termine avant de commencer")
    if not 0 < max_rows_per_sheet <= MAX_ROWS_PER_SHEET:
        raise ValueError(f"max_rows_per_sheet must be between 1 and {MAX_ROWS_PER_SHEET}")
    lists = taxonomy.lists(departements)
    wb = Workbook(write_only=True)
    count, sheets = _write_history(wb, rows, _list_ranges(lists), max_rows_per_sheet, progress)
    formulas = _Formulas(sheets)
    generated_at = generated_at or datetime.now(PARIS)
    _write_results(wb.create_sheet(RESULTS_SHEET), formulas, title=title, start=start, end=end,
                   taxonomy=taxonomy, generated_at=generated_at)
    if national:
        _write_synthesis(wb.create_sheet(SYNTHESIS_SHEET), formulas, departements=departements,
                         start=start, end=end, taxonomy=taxonomy)
    _write_lists(wb.create_sheet(LISTS_SHEET), lists)
    wb.save(path)
    if progress:
        progress(count)
    return count


# --- Historique --------------------------------------------------------------------------

def history_sheet_title(number: int) -> str:
    """Title of the n-th Historique sheet (1-based): rows continue past Excel's row limit."""
    return HISTORIQUE_SHEET if number == 1 else f"Historique ({number})"


def _write_history(wb: Workbook, rows: Iterable[tuple], list_ranges: dict[str, str],
                   max_rows: int, progress) -> tuple[int, list[str]]:
    """Stream every row, starting a new sheet every `max_rows`; the count and the sheet titles."""
    rows = iter(rows)
    count, sheets = 0, []
    first = next(rows, None)
    while True:
        ws = _history_sheet(wb, history_sheet_title(len(sheets) + 1), list_ranges)
        sheets.append(ws.title)
        written = 0
        if first is not None:
            written = _append_rows(ws, chain((first,), islice(rows, max_rows - 1)), count,
                                   progress)
        ws.auto_filter.ref = f"A1:{get_column_letter(len(HISTORIQUE))}{written + 1}"
        count += written
        first = next(rows, None)
        if first is None:
            return count, sheets


def _history_sheet(wb: Workbook, title: str, list_ranges: dict[str, str]):
    """A new Historique sheet with its widths, coloured header, frozen pane and drop-down lists."""
    ws = wb.create_sheet(title)
    for i, column in enumerate(HISTORIQUE, start=1):
        dimension = ws.column_dimensions[get_column_letter(i)]
        dimension.width = column.width
        if column.number_format:
            # Cells typed by hand in this column take this format.
            dimension.number_format = column.number_format
        if column.header == "Département":
            dimension.number_format = "@"  # keep "01" as text when typed by hand
    ws.freeze_panes = "A2"
    ws.row_dimensions[1].height = 32
    header = []
    for column in HISTORIQUE:
        cell = WriteOnlyCell(ws, column.header)
        cell.font, cell.fill, cell.alignment = BOLD, KIND_FILLS[column.kind], WRAP
        label, meaning = KIND_LEGEND[column.kind]
        cell.comment = Comment(f"{label} : {meaning}.", "SVI", width=220, height=70)
        header.append(cell)
    ws.append(header)
    for i, column in enumerate(HISTORIQUE, start=1):
        if column.values in list_ranges:
            letter = get_column_letter(i)
            validation = DataValidation(
                type="list", formula1=list_ranges[column.values], allow_blank=True,
                showErrorMessage=True, errorTitle="Valeur non autorisée",
                error="Choisissez une valeur de la liste déroulante.")
            validation.add(f"{letter}2:{letter}{LAST_ROW}")
            ws.data_validations.append(validation)
    return ws


def _append_rows(ws, rows: Iterable[tuple], before: int, progress) -> int:
    """Append rows to one sheet; the number appended. The hot loop of a million-row export."""
    # One styled date cell, reused: openpyxl writes each row out before the next is built.
    date_cell = WriteOnlyCell(ws)
    date_cell.number_format = DATE_FORMAT
    append, count = ws.append, before
    forbidden, clean = text_policy.forbidden, text_policy.clean
    # Text stored before the policy (or by hand) is cleaned: one bad character breaks the file.
    # Labels repeat on every row: cleaned once each. Other text columns are the service's own.
    labels: dict[str, str] = {}
    for row in rows:
        values = list(row)
        if values[DATE] is not None:
            date_cell.value = values[DATE]
            values[DATE] = date_cell
        for i in TEXT_COLUMNS:
            text = values[i]
            if not text:
                values[i] = None  # no empty text cell: Excel would not see it as blank
                continue
            if i in LABEL_COLUMNS:
                cleaned = labels.get(text)
                if cleaned is None:
                    if len(labels) > 10_000:  # bounded whatever the taxonomy holds
                        labels.clear()
                    cleaned = labels[text] = clean(text)
                text = values[i] = cleaned
            elif i == COMMENT and forbidden(text):
                text = values[i] = clean(text)
            if text and text[0] in FORMULA_PREFIXES:
                values[i] = _inert(ws, text)
            elif not text:
                values[i] = None
        append(values)
        count += 1
        if progress and count % PROGRESS_EVERY == 0:
            progress(count)
    return count - before


def _inert(ws, text: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, text)
    keep_as_text(cell)
    return cell


# --- Listes ------------------------------------------------------------------------------

def _list_ranges(lists: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Where each non-empty list lies on the « Listes » sheet, as a data-validation formula."""
    sheet = quote_sheetname(LISTS_SHEET)
    ranges = {}
    for i, (name, values) in enumerate(lists.items(), start=1):
        if values:
            letter = get_column_letter(i)
            ranges[name] = f"{sheet}!${letter}$2:${letter}${len(values) + 1}"
    return ranges


def _write_lists(ws, lists: dict[str, tuple[str, ...]]) -> None:
    """One column per list of allowed values, under a title; the sheet is hidden."""
    ws.sheet_state = "hidden"
    for i, name in enumerate(lists, start=1):
        ws.column_dimensions[get_column_letter(i)].width = 36
    ws.append([_text(ws, LIST_TITLES.get(name, name), font=BOLD) for name in lists])
    for values in _transpose(list(lists.values())):
        ws.append([None if v is None else _text(ws, v) for v in values])


def _transpose(columns: list[tuple[str, ...]]):
    for i in range(max(map(len, columns), default=0)):
        yield [c[i] if i < len(c) else None for c in columns]


# --- formulas ----------------------------------------------------------------------------

def _equals(text: str) -> str:
    """A COUNTIFS criterion matching exactly `text`: no operator, no wildcard, as a literal."""
    escaped = text_policy.clean(text).replace("~", "~~").replace("*", "~*").replace("?", "~?")
    return '"=' + escaped.replace('"', '""') + '"'


def _date(day: date) -> str:
    return f"DATE({day.year},{day.month},{day.day})"


def _period(first: date, after: date) -> list[tuple[str, str]]:
    """Criteria for rows dated from `first` (included) to `after` (excluded)."""
    return [("Date et heure", f'">="&{_date(first)}'), ("Date et heure", f'"<"&{_date(after)}')]


#: Calls received by the SVI: each call counts once, on its primary row.
CALLS = [("Canal", _equals(Channel.phone_svi.value)), ("Appel principal", _equals(YES))]


class _Formulas:
    """COUNTIFS and SUMIFS over every Historique sheet, added up."""

    def __init__(self, sheets: list[str]):
        self.sheets = [quote_sheetname(s) for s in sheets]

    def _over_sheets(self, function: str, criteria, summed: str | None = None) -> str:
        parts = []
        for sheet in self.sheets:
            args = [f"{sheet}!{_column(summed)}"] if summed else []
            args += [f"{sheet}!{_column(header)},{criterion}" for header, criterion in criteria]
            parts.append(f"{function}({','.join(args)})")
        return "+".join(parts)

    def count(self, criteria) -> str:
        """Rows matching every (header, criterion)."""
        return "=" + self._over_sheets("COUNTIFS", criteria)

    def average(self, header: str, criteria) -> str:
        """Mean of a column over the matching rows where it is filled in; empty when none."""
        criteria = [*criteria, (header, '"<>"')]
        total = self._over_sheets("SUMIFS", criteria, summed=header)
        return f'=IFERROR(({total})/({self._over_sheets("COUNTIFS", criteria)}),"")'


def _column(header: str) -> str:
    letter = get_column_letter(INDEX[header] + 1)
    return f"${letter}:${letter}"


def _months(start: date, end: date) -> list[tuple[str, date, date]]:
    """(label, first day, day after the last) of each month of the period, clipped to it."""
    months, first, stop = [], start, end + timedelta(days=1)
    while first < stop:
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        months.append((f"{MONTHS[first.month - 1]} {first.year}", first, min(following, stop)))
        first = following
    return months


# --- Résultats ---------------------------------------------------------------------------

def _write_results(ws, f: _Formulas, *, title: str, start: date, end: date, taxonomy: Taxonomy,
                   generated_at: datetime) -> None:
    """Title, legend, volumes by thématique and motif per month, call KPIs, two charts."""
    months = _months(start, end)
    periods = [(first, after) for _, first, after in months] + [(start, end + timedelta(days=1))]
    headers = [label for label, _, _ in months] + ["Total période"]
    last_col = 2 + len(periods)
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["B"].width = 40
    for c in range(3, last_col + 1):
        ws.column_dimensions[get_column_letter(c)].width = 15
    row = _Rows(ws)
    row.add(_text(ws, title, font=TITLE_FONT))
    row.add(_text(ws, f"Période du {start:%d/%m/%Y} au {end:%d/%m/%Y}"))
    row.add(_text(ws, f"Généré le {generated_at:%d/%m/%Y à %H:%M}", font=NOTE_FONT))
    row.add()
    row.add(_text(ws, f"Légende des couleurs de l'onglet « {HISTORIQUE_SHEET} »", font=BOLD))
    for kind, (label, meaning) in KIND_LEGEND.items():
        row.add(_text(ws, label, font=BOLD, fill=KIND_FILLS[kind]), _text(ws, meaning))
    row.add(_text(ws, "Les listes déroulantes proposent les valeurs autorisées. Tous les "
                      "résultats ci-dessous sont des formules : les lignes ajoutées à la main "
                      "dans l'historique sont comptées à l'ouverture du fichier.", font=NOTE_FONT))
    row.add()
    header_row, subtotals, total_row = _volumes(row, f, taxonomy, headers, periods)
    row.add()
    _call_kpis(row, f, headers, periods)
    row.add()

    # Period totals by thématique: the data of the first chart.
    row.add(_text(ws, "Sollicitations par thématique sur la période", font=SECTION_FONT))
    row.add(*_header(ws, ["Thématique", "Total période"]))
    first_them = row.next
    for thematique, r in subtotals:
        row.add(_text(ws, thematique), _formula(ws, f"={get_column_letter(last_col)}{r}"))
    anchor = get_column_letter(last_col + 2)
    by_them = _bar_chart("Sollicitations par thématique", "Sollicitations")
    by_them.add_data(Reference(ws, min_col=2, min_row=first_them, max_row=row.next - 1))
    by_them.set_categories(Reference(ws, min_col=1, min_row=first_them, max_row=row.next - 1))
    ws.add_chart(by_them, f"{anchor}{header_row}")
    by_month = _bar_chart("Sollicitations par mois", "Sollicitations")
    by_month.series.append(Series(Reference(ws, min_col=3, max_col=last_col - 1,
                                            min_row=total_row), title="Sollicitations"))
    by_month.set_categories(Reference(ws, min_col=3, max_col=last_col - 1, min_row=header_row))
    ws.add_chart(by_month, f"{anchor}{header_row + 18}")


def _counts(row: _Rows, f: _Formulas, criteria, periods, **style) -> list[WriteOnlyCell]:
    """One COUNTIFS cell per period."""
    return [_formula(row.ws, f.count([*criteria, *_period(*p)]), **style) for p in periods]


def _volumes(row: _Rows, f: _Formulas, taxonomy: Taxonomy, headers: list[str], periods):
    """The volumes table; its header row, the subtotal rows by thématique, the total row."""
    ws = row.ws
    row.add(_text(ws, "Volumes par thématique et motif", font=SECTION_FONT))
    header_row = row.add(*_header(ws, ["Thématique", "Motif", *headers]))
    subtotal = dict(font=BOLD, fill=SUBTOTAL_FILL)
    subtotals = []
    for thematique in taxonomy.thematiques:
        by_them = [("Thématique", _equals(thematique))]
        subtotals.append((thematique, row.add(
            _text(ws, thematique, **subtotal), _text(ws, "Total de la thématique", **subtotal),
            *_counts(row, f, by_them, periods, **subtotal))))
        for motif in (*taxonomy.motifs.get(thematique, ()), TO_QUALIFY):
            row.add(None, _text(ws, motif),
                    *_counts(row, f, [*by_them, ("Motif", _equals(motif))], periods))
    subtotals.append((TO_QUALIFY, row.add(
        _text(ws, TO_QUALIFY, **subtotal), _text(ws, "Thématique à qualifier", **subtotal),
        *_counts(row, f, [("Thématique", _equals(TO_QUALIFY))], periods, **subtotal))))
    total_row = row.add(_text(ws, "Total des sollicitations", font=BOLD), None,
                        *_counts(row, f, [], periods, font=BOLD))
    return header_row, subtotals, total_row


def _call_kpis(row: _Rows, f: _Formulas, headers: list[str], periods) -> None:
    """Calls received by the SVI, by outcome, answer rate and mean times, per period."""
    ws = row.ws
    row.add(_text(ws, "Appels reçus par le SVI", font=SECTION_FONT))
    row.add(*_header(ws, ["Indicateur", "", *headers]))
    rows = {"received": row.add(_text(ws, RECEIVED_LABEL, font=BOLD), None,
                                *_counts(row, f, CALLS, periods, font=BOLD))}
    for outcome, label in CALL_KPIS.items():
        rows[outcome] = row.add(_text(ws, label), None, *_counts(
            row, f, [*CALLS, ("Issue de l'appel", _equals(outcome.value))], periods))
    rates = []
    for c in range(3, 3 + len(periods)):
        cell = {k: f"{get_column_letter(c)}{r}" for k, r in rows.items()}
        rates.append(_formula(ws, _rate_formula(cell), font=BOLD, number_format=PERCENT))
    row.add(_text(ws, RATE_LABEL, font=BOLD), None, *rates)
    answered = [*CALLS, ("Issue de l'appel", _equals(Outcome.answered.value))]
    for label, header, criteria in (("Attente moyenne (s)", "Attente (s)", CALLS),
                                    ("Conversation moyenne (s)", "Conversation (s)", answered)):
        row.add(_text(ws, label), None,
                *[_formula(ws, f.average(header, [*criteria, *_period(*p)]),
                           number_format=SECONDS) for p in periods])
    row.add(_text(ws, f"{RATE_DEFINITION}. Un appel compte une fois, sur sa ligne "
                      "« Appel principal » = oui.", font=NOTE_FONT))


def _rate_formula(cell: dict) -> str:
    """The answer rate of tracking/indicators.py over cells holding its counts: `cell` maps
    "received" and each outcome to a cell reference."""
    base = "-".join([cell["received"], *(cell[outcome] for outcome in RATE_EXCLUDED)])
    return f'=IFERROR({cell[Outcome.answered]}/({base}),"")'


def _bar_chart(title: str, axis: str) -> BarChart:
    chart = BarChart()
    chart.type, chart.title, chart.legend = "col", title, None
    chart.y_axis.title = axis
    chart.x_axis.delete = chart.y_axis.delete = False  # openpyxl 3.1 hides axes by default
    chart.width, chart.height = 18, 8
    return chart


# --- Synthèse par département ------------------------------------------------------------

def _write_synthesis(ws, f: _Formulas, *, departements: tuple[str, ...], start: date, end: date,
                     taxonomy: Taxonomy) -> None:
    """One row per département: volumes by thématique, total, calls and answer rate."""
    period = _period(start, end + timedelta(days=1))
    thematiques = (*taxonomy.thematiques, TO_QUALIFY)
    kpis = {"received": RECEIVED_LABEL,  # what the answer rate needs, in its own columns
            **{o: CALL_KPIS[o] for o in (*RATE_EXCLUDED, Outcome.answered)}}
    headers = ["Code", "Département", *thematiques, "Total", *kpis.values(), RATE_LABEL]
    ws.column_dimensions["A"].width = 8
    ws.column_dimensions["B"].width = 26
    for c in range(3, len(headers) + 1):
        ws.column_dimensions[get_column_letter(c)].width = 16
    ws.freeze_panes = "C5"
    ws.append([_text(ws, SYNTHESIS_SHEET, font=TITLE_FONT)])
    ws.append([_text(ws, f"Période du {start:%d/%m/%Y} au {end:%d/%m/%Y}")])
    ws.append([])
    ws.row_dimensions[4].height = 45
    ws.append(_header(ws, headers))
    first = 5
    total_col = 3 + len(thematiques)
    letters = {h: get_column_letter(i) for i, h in enumerate(headers, start=1)}
    names = territories()
    for r, code in enumerate(departements, start=first):
        in_dept = [("Département", _equals(code)), *period]
        cells = [_text(ws, code), _text(ws, names[code].name if code in names else "")]
        cells += [_formula(ws, f.count([*in_dept, ("Thématique", _equals(t))]))
                  for t in thematiques]
        cells.append(_formula(ws, f.count(in_dept), font=BOLD))
        cells.append(_formula(ws, f.count([*in_dept, *CALLS])))
        cells += [_formula(ws, f.count([*in_dept, *CALLS, ("Issue de l'appel", _equals(o.value))]))
                  for o in list(kpis)[1:]]
        cells.append(_formula(ws, _rate(letters, kpis, r), number_format=PERCENT))
        ws.append(cells)
    last = first + len(departements) - 1
    r = last + 1
    totals = [_formula(ws, f"=SUM({get_column_letter(c)}{first}:{get_column_letter(c)}{last})",
                       font=BOLD) for c in range(3, total_col + 1 + len(kpis))]
    ws.append([_text(ws, "Total", font=BOLD), None, *totals,
               _formula(ws, _rate(letters, kpis, r), font=BOLD, number_format=PERCENT)])


def _rate(letters: dict[str, str], kpis: dict, r: int) -> str:
    return _rate_formula({key: f"{letters[label]}{r}" for key, label in kpis.items()})


# --- cells -------------------------------------------------------------------------------

class _Rows:
    """Appends rows to a write-only sheet and remembers the number of the next one."""

    def __init__(self, ws):
        self.ws, self.next = ws, 1

    def add(self, *cells) -> int:
        """Append one row; its number."""
        self.ws.append(list(cells))
        self.next += 1
        return self.next - 1


def _styled(cell: WriteOnlyCell, font=None, fill=None, number_format=None,
            alignment=None) -> WriteOnlyCell:
    if alignment is not None:
        cell.alignment = alignment
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    if number_format is not None:
        cell.number_format = number_format
    return cell


def _text(ws, value: str, **style) -> WriteOnlyCell:
    """A text cell, inert even when it looks like a formula (labels are typed by admins)."""
    cell = WriteOnlyCell(ws, text_policy.clean(value))
    if value.startswith(FORMULA_PREFIXES):
        keep_as_text(cell)
    return _styled(cell, **style)


def _formula(ws, formula: str, **style) -> WriteOnlyCell:
    return _styled(WriteOnlyCell(ws, formula), **style)


def _header(ws, labels: list[str]) -> list[WriteOnlyCell]:
    return [_text(ws, label, font=BOLD, fill=HEADER_FILL, alignment=WRAP) for label in labels]
