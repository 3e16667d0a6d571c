"""Spreadsheet cells that user text cannot turn into formulas."""

from __future__ import annotations

#: A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@")


def keep_as_text(cell) -> None:
    """Store an openpyxl cell's text as inert text, even when the user later edits the cell."""
    # openpyxl turns "=…" into a formula: force a string, and have Excel keep it as text.
    cell.data_type = "s"
    cell.quotePrefix = True
