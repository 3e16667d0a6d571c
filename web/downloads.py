"""Indicator workbooks to download: the national one and each département's, for any quarter.

Served from the quarterly job's storage when it wrote them (the links of its email point here),
else generated on demand. A referent gets only their départements' workbooks.
"""

from __future__ import annotations

import re
import tempfile
from datetime import date
from pathlib import Path

from flask import (Blueprint, abort, after_this_request, current_app, flash, render_template,
                   request, send_file)
from flask_login import current_user

from accounts import permissions
from core import db
from directory.reference import official_order, territories
from scheduler.jobs import WORKBOOKS_URL_PATH, workbook_dir
from tracking.exports import PeriodError, export_workbook, quarter_bounds, quarter_of
from web import policy

bp = Blueprint("downloads", __name__, url_prefix=WORKBOOKS_URL_PATH)

_NAME = re.compile(r"national\.xlsx|departement-([0-9]{2}|2[AB]|97[1-6])\.xlsx")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Quarters offered on the page, the current one included.
QUARTERS_SHOWN = 8


def workbook_scope(name: str) -> str | None:
    """The département a workbook file name covers ("" for the national one), None if it is
    not a workbook's name."""
    match = _NAME.fullmatch(name or "")
    if match is None or (match.group(1) and match.group(1) not in territories()):
        return None
    return match.group(1) or ""


def reads_workbook(user, args) -> bool:
    """The national workbook for admins and the national team; a département's for whoever
    may read that département."""
    scope = workbook_scope(str(args.get("name", "")))
    if scope is None:
        return permissions.is_active(user)  # the view answers 404 to people who may download
    if scope == "":
        return permissions.sees_every_departement(user)
    return permissions.may_read_departement(user, scope)


def _quarter(text: str) -> str:
    try:
        start, _ = quarter_bounds(text)
    except PeriodError:
        abort(404)
    return quarter_of(start)


@bp.get("/")
@policy.allow(policy.logged_in)
def index():
    """The workbooks this user may download, quarter by quarter."""
    today = current_app.config["CLOCK"]().date()
    quarters, day = [], today
    for _ in range(QUARTERS_SHOWN):
        quarters.append(quarter_of(day))
        start, _ = quarter_bounds(quarters[-1])
        day = date.fromordinal(start.toordinal() - 1)
    chosen = request.args.get("trimestre") or quarters[0]
    try:
        quarter = quarter_of(quarter_bounds(chosen)[0])
    except PeriodError as exc:
        flash(f"{exc} : trimestre en cours affiché.", "error")
        quarter = quarters[0]
    codes = permissions.visible_codes(current_user, official_order(list(territories())))
    stored = workbook_dir(current_app) / quarter
    return render_template("downloads/index.html", title="Classeurs d'indicateurs",
                           quarters=quarters, quarter=quarter, codes=codes,
                           names={c: territories()[c].name for c in codes},
                           national=permissions.sees_every_departement(current_user),
                           stored=stored.is_dir(), bounds=quarter_bounds(quarter))


@bp.get("/<quarter>/<name>")
@policy.allow(reads_workbook)
def workbook(quarter: str, name: str):
    """One workbook: as the quarterly job stored it, or generated now."""
    return send_workbook(quarter, name)


def send_workbook(quarter: str, name: str):
    """The response carrying one workbook (404 for an unknown name or quarter); shared by this
    page and the API."""
    scope = workbook_scope(name)
    if scope is None:
        abort(404)
    quarter = _quarter(quarter)
    stored = workbook_dir(current_app) / quarter / name
    download = f"{quarter}-{name}"
    if stored.is_file():
        return send_file(stored, mimetype=XLSX, as_attachment=True, download_name=download)
    start, end = quarter_bounds(quarter)
    folder = tempfile.TemporaryDirectory(prefix="svi-classeur-")
    path = Path(folder.name) / name
    export_workbook(db.session(), departement=scope or None, start=start, end=end, path=path)

    @after_this_request
    def _cleanup(response):
        response.call_on_close(folder.cleanup)
        return response

    return send_file(path, mimetype=XLSX, as_attachment=True, download_name=download)
