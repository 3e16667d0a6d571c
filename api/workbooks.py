"""`/api/v1/workbooks/<quarter>/<name>`: the indicator workbooks, as on the downloads page
(the quarterly job's file when it wrote one, else generated on demand)."""

from __future__ import annotations

from flask_smorest import Blueprint

from web import downloads, policy

blp = Blueprint("api_workbooks", __name__, url_prefix="/api/v1/workbooks",
                description="Les classeurs d'indicateurs (xlsx)")


@blp.route("/<quarter>/<name>")
@blp.doc(responses={"200": {"description": "Le classeur (xlsx)", "content": {
    downloads.XLSX: {"schema": {"type": "string", "format": "binary"}}}}})
@policy.allow(downloads.reads_workbook)
def get_workbook(quarter: str, name: str):
    """Un classeur d'un trimestre (ex. 2026-Q4) : `national.xlsx` (administrateurs et équipe
    nationale) ou `departement-93.xlsx` (qui peut lire ce département)."""
    return downloads.send_workbook(quarter, name)
