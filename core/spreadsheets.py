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
