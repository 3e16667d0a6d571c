"""Admin pages: the audit log and the directory's bulk import."""

from __future__ import annotations

import io
import re
import secrets
import tempfile
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   send_file, url_for)
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from sqlalchemy import or_, select
from wtforms import HiddenField

from audit.models import AuditEntry
from audit.operations import Actor
from core import db
from core import text as text_policy
from directory import io as directory_io
from directory import settings as directory_settings
from directory.rules import DirectoryError
from web import policy

bp = Blueprint("admin_pages", __name__, url_prefix="/admin")

PARIS = ZoneInfo("Europe/Paris")
PAGE_SIZE = 50


def _date_arg(name: str):
    value = request.args.get(name, "")
    try:
        return datetime.strptime(value, "%Y-%m-%d").date() if value else None
    except ValueError:
        return None


@bp.get("/journal")
@policy.allow(policy.admin)
def audit_log():
    """Every change, newest first; filters by département, actor, text and dates; keyset pages."""
    code = (request.args.get("departement") or "").strip().upper()
    actor = (request.args.get("auteur") or "").strip()
    start, end = _date_arg("du"), _date_arg("au")
    before = request.args.get("avant", "")
    stmt = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if code:
        stmt = stmt.where(AuditEntry.departement_code == code)
    if actor:
        pattern = "%" + actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(AuditEntry.actor.ilike(pattern, escape="\\"),
                              AuditEntry.summary.ilike(pattern, escape="\\")))
    if start:
        stmt = stmt.where(AuditEntry.at >= datetime.combine(start, time(0), PARIS))
    if end:
        stmt = stmt.where(AuditEntry.at < datetime.combine(end + timedelta(days=1), time(0), PARIS))
    cursor = _cursor(before)
    if cursor:
        at, entry_id = cursor
        stmt = stmt.where(or_(AuditEntry.at < at, (AuditEntry.at == at) & (AuditEntry.id < entry_id)))
    entries = list(db.session().scalars(stmt.limit(PAGE_SIZE + 1)))
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    next_cursor = f"{entries[-1].at.isoformat()}|{entries[-1].id}" if more else None
    filters = {k: v for k, v in (("departement", code), ("auteur", actor),
                                 ("du", request.args.get("du", "")), ("au", request.args.get("au", "")))
               if v}
    return render_template("admin/audit.html", title="Journal des modifications", entries=entries,
                           next_cursor=next_cursor, filters=filters, paris=PARIS,
                           first_page=not cursor)


def _cursor(text: str):
    at, _, entry_id = text.partition("|")
    try:
        return datetime.fromisoformat(at), int(entry_id)
    except ValueError:
        return None


# --- directory import and export ----------------------------------------------------------

class UploadForm(FlaskForm):
    file = FileField("Fichier de l'annuaire", validators=[
        FileRequired("Choisissez un fichier."),
        FileAllowed(["csv", "xlsx"], "Fichier .csv ou .xlsx attendu.")])


class ConfirmForm(FlaskForm):
    upload = HiddenField()
    digest = HiddenField()
    filename = HiddenField()


def _uploads() -> Path:
    folder = Path(current_app.instance_path) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _stored(upload_id: str) -> Path | None:
    """The uploaded file an id names (ids are ours: nothing else can be named)."""
    if not re.fullmatch(r"[0-9a-f]{32}\.(csv|xlsx)", upload_id or ""):
        return None
    path = _uploads() / upload_id
    return path if path.is_file() else None


def _display_name(filename: str | None) -> str:
    """A file name as the audit log shows it: no folders, no invisible characters, short."""
    name = text_policy.clean(Path((filename or "").replace("\\", "/")).name)
    return " ".join(name.split())[:100]


def _check(path: Path):
    """Read and validate a directory file: (changes, errors, problem) where problem is a
    whole-file refusal."""
    session = db.session()
    try:
        rows = directory_io.read_file(path)
    except DirectoryError as exc:
        return [], [], str(exc)
    changes, errors = directory_io.validate(session, rows)
    return changes, errors, None


@bp.get("/annuaire/import")
@policy.allow(policy.admin)
def import_directory():
    """Export the directory, or upload a file to import (a preview comes first)."""
    return render_template("admin/import.html", title="Import et export de l'annuaire",
                           form=UploadForm())


@bp.get("/annuaire/export.<fmt>")
@policy.allow(policy.admin)
def export_directory(fmt: str):
    """The whole directory as CSV or XLSX, the import's format."""
    if fmt not in ("csv", "xlsx"):
        abort(404)
    rows = directory_io.export_rows(db.session())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"annuaire.{fmt}"
        directory_io.write_file(path, rows)
        data = path.read_bytes()
    stamp = current_app.config["CLOCK"]().astimezone(PARIS).strftime("%Y-%m-%d")
    mimetype = ("text/csv" if fmt == "csv" else
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    return send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True,
                     download_name=f"annuaire-{stamp}.{fmt}")


@bp.post("/annuaire/import")
@policy.allow(policy.admin)
def upload_directory():
    """Keep the uploaded file aside and show what it would change, or every wrong cell."""
    form = UploadForm()
    if not form.validate_on_submit():
        return render_template("admin/import.html", title="Import et export de l'annuaire",
                               form=form), 400
    upload = form.file.data
    suffix = Path(upload.filename or "").suffix.lower()
    upload_id = f"{secrets.token_hex(16)}{suffix}"
    path = _uploads() / upload_id
    upload.save(path)
    changes, errors, problem = _check(path)
    preview = directory_settings.describe(db.session(), changes)
    if errors or problem or not changes:
        path.unlink(missing_ok=True)
    return render_template(
        "admin/import_preview.html", title="Aperçu de l'import", filename=upload.filename,
        problem=problem, errors=errors, preview=preview,
        confirm=ConfirmForm(upload=upload_id, digest=directory_settings.digest(preview),
                            filename=_display_name(upload.filename)))


@bp.post("/annuaire/import/confirmer")
@policy.allow(policy.admin)
def confirm_import():
    """Apply exactly the previewed file, if the directory has not moved since the preview."""
    form = ConfirmForm()
    path = _stored(form.upload.data) if form.validate_on_submit() else None
    if path is None:
        flash("Cet aperçu n'est plus disponible : importez de nouveau le fichier.", "error")
        return redirect(url_for("admin_pages.import_directory"))
    changes, errors, problem = _check(path)
    if errors or problem or (directory_settings.digest(directory_settings.describe(
            db.session(), changes)) != form.digest.data):
        flash("L'annuaire a changé depuis l'aperçu : rien n'a été importé. "
              "Importez de nouveau le fichier pour voir les changements à jour.", "error")
        path.unlink(missing_ok=True)
        return redirect(url_for("admin_pages.import_directory"))
    actor = Actor.file_import(_display_name(form.filename.data) or form.upload.data,
                              Actor.user(current_user))
    directory_settings.save(db.session(), actor, changes)
    path.unlink(missing_ok=True)
    flash(f"Import terminé : {len(changes)} département(s) modifié(s).", "success")
    return redirect(url_for("admin_pages.audit_log"))
