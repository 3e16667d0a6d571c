"""Spreadsheet safety: cells user text cannot turn into formulas, uploads read defensively."""

from __future__ import annotations

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


def open_untrusted_workbook(path: Path, *, max_unzipped_bytes: int):
    """Open an uploaded .xlsx read-only, values only, refusing zip bombs and broken files.

    openpyxl parses with defusedxml when it is installed (requirements.txt pins it), so entity
    expansion and external entities are refused too.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise UnreadableFile(NOT_WORKBOOK) from None
    if unzipped > max_unzipped_bytes:
        raise UnreadableFile("classeur trop volumineux une fois décompressé")
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many unrelated types on broken or hostile files
        raise UnreadableFile(NOT_WORKBOOK) from exc


def sheet_rows(ws, *, max_col: int, max_row: int):
    """(row number, values) of a read-only sheet, `max_col` cells wide, refusing past `max_row`.

    A tiny file can declare a cell at XFD1048576: unbounded, reading it would take minutes.
    Empty rows count too, since read-only mode yields the gaps as empty rows.
    """
    for number, values in enumerate(ws.iter_rows(max_col=max_col, values_only=True), start=1):
        if number > max_row:
            raise UnreadableFile(f"trop de lignes ({max_row} au maximum, lignes vides comprises)")
        yield number, values


#: C0 control characters other than tab, line feed and carriage return: never typed by a
#: person, and invalid in XML (TwiML, XLSX).
CONTROL_CHARACTERS = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}


def has_control_character(text: str) -> bool:
    """True when `text` holds a control character that has no place in a cell."""
    return not CONTROL_CHARACTERS.isdisjoint(text)
