"""Spreadsheet safety: cells user text cannot turn into formulas, uploads read defensively."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import openpyxl

#: A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@")


def keep_as_text(cell) -> None:
    """Store an openpyxl cell's text as inert text, even when the user later edits the cell."""
    # openpyxl turns "=…" into a formula: force a string, and have Excel keep it as text.
    cell.data_type = "s"
    cell.quotePrefix = True


NOT_WORKBOOK = "ce fichier n'est pas un classeur Excel (.xlsx) lisible"


class UnreadableFile(ValueError):
    """An uploaded file is refused before reading it; the message is French."""


def check_size(path: Path, max_bytes: int) -> None:
    """Refuse a missing, empty or oversized file."""
    try:
        size = path.stat().st_size
    except OSError:
        raise UnreadableFile(f"fichier introuvable : {path}") from None
    if size > max_bytes:
        raise UnreadableFile(f"fichier trop volumineux ({max_bytes // 2 ** 20} Mo au maximum)")
    if size == 0:
        raise UnreadableFile("le fichier est vide")


#: No markup token of a genuine workbook (a cell holds at most 32,767 characters) comes near
#: this; a huge one is what a hostile file uses to make the XML parser work for minutes.
MAX_TOKEN_BYTES = 1024 * 1024
_LONG_TOKEN = re.compile(rb"[^<>]{%d}" % MAX_TOKEN_BYTES)
#: Shared strings a workbook may hold: openpyxl loads them all into memory before the first row
#: (28 million tiny ones, 1 MB zipped, cost 2.7 GB). A genuine one needs about one per row.
MAX_STRINGS = 1_000_000
#: Cells a workbook may hold, all sheets together (about 20 per row of the largest import).
MAX_CELLS = 5_000_000
#: Opening tags of a shared string and of a cell, with or without a namespace prefix.
_STRING = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?si[\s/>]")
_CELL = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?c[\s/>]")
#: Reading an upload never takes longer than this, whatever the file holds.
READ_SECONDS = 120


def _scan_members(archive: zipfile.ZipFile, *, max_strings: int, max_cells: int) -> None:
    """Stream every part once, whatever its name, refusing a markup token longer than
    MAX_TOKEN_BYTES and more shared strings or cells than allowed.

    Checked at C speed before any parsing: expat takes minutes over a single 95 MB token that
    compresses to 100 KB, openpyxl loads every shared string before the first row, and nothing
    of openpyxl's can be interrupted meanwhile. A part's name proves nothing: the workbook's
    relationships may point to "sheet1.bin".
    """
    chunk_size = 4 * MAX_TOKEN_BYTES
    strings = cells = 0
    for info in archive.infolist():
        with archive.open(info) as part:
            tail = b""
            while True:
                chunk = part.read(chunk_size)
                if not chunk:
                    break
                data = tail + chunk
                if _LONG_TOKEN.search(data):
                    raise UnreadableFile("classeur refusé : contenu anormal (une valeur de plus "
                                         f"de {MAX_TOKEN_BYTES // 1024} Ko)")
                strings += len(_STRING.findall(data))
                cells += len(_CELL.findall(data))
                if strings > max_strings:
                    raise UnreadableFile("classeur refusé : trop de textes différents "
                                         f"({max_strings} au maximum)")
                if cells > max_cells:
                    raise UnreadableFile(f"classeur refusé : trop de cellules ({max_cells} au "
                                         "maximum, toutes feuilles comprises)")
                # Keep what may be the start of a token that continues in the next chunk.
                cut = max(data.rfind(b"<"), data.rfind(b">"))
                tail = data[cut + 1:] if cut >= 0 else data


def open_untrusted_workbook(path: Path, *, max_unzipped_bytes: int,
                            max_strings: int = MAX_STRINGS, max_cells: int = MAX_CELLS):
    """Open an uploaded .xlsx read-only, values only, refusing zip bombs and broken files.

    openpyxl parses with defusedxml when it is installed (requirements.txt pins it), so entity
    expansion and external entities are refused too. Every part is first streamed through
    `_scan_members`, so that no single token can hold the parser for minutes, nor a flood of
    tiny strings or cells fill the memory.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
            if unzipped > max_unzipped_bytes:
                raise UnreadableFile("classeur trop volumineux une fois décompressé "
                                     f"({max_unzipped_bytes // 2 ** 20} Mo au maximum)")
            _scan_members(archive, max_strings=max_strings, max_cells=max_cells)
    except UnreadableFile:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError,
            RuntimeError, ValueError):  # what zipfile raises on broken or unsupported archives
        raise UnreadableFile(NOT_WORKBOOK) from None
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many unrelated types on broken or hostile files
        raise UnreadableFile(NOT_WORKBOOK) from exc


class ReadBudget:
    """Rows and time one upload may cost, shared by all its sheets."""

    def __init__(self, max_rows: int, seconds: float = READ_SECONDS):
        self.max_rows, self.rows = max_rows, 0
        self.deadline = time.monotonic() + seconds

    def take_row(self) -> None:
        """Count one more row read (blank ones too); UnreadableFile past the budget."""
        self.rows += 1
        if self.rows > self.max_rows:
            raise UnreadableFile(f"trop de lignes ({self.max_rows} au maximum, toutes feuilles "
                                 "et lignes vides comprises)")
        if self.rows % 1024 == 0 and time.monotonic() > self.deadline:
            raise UnreadableFile("classeur trop long à lire : réduisez-le ou scindez-le")


def sheet_rows(ws, *, max_col: int, budget: ReadBudget):
    """(row number, values) of a read-only sheet, `max_col` cells wide, within `budget`.

    A tiny file can declare a cell at XFD1048576: unbounded, reading it would take minutes.
    Empty rows count too, since read-only mode yields the gaps as empty rows.
    """
    for number, values in enumerate(ws.iter_rows(max_col=max_col, values_only=True), start=1):
        budget.take_row()
        yield number, values


#: Dates people type in files: anything outside is a typo (01/01/0001, 9999) and is refused,
#: not stored (some would not even convert between timezones).
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099


def is_plausible_year(year: int) -> bool:
    """True for a year a date typed in a file may have."""
    return EARLIEST_YEAR <= year <= LATEST_YEAR
