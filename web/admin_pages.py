"""Admin pages: the audit log, the directory's bulk import and the prompts (« Messages »)."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import tempfile
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   send_file, url_for)
from flask_login import current_user
from flask_wtf.file import FileAllowed, FileField, FileRequired
from sqlalchemy import or_, select
from wtforms import HiddenField, TextAreaField

from audit.models import AuditEntry
from audit.operations import Actor
from core import db
from core import text as text_policy
from core.spreadsheets import is_plausible_year
from directory import io as directory_io
from directory import operations, rules
from directory import settings as directory_settings
from directory.models import Departement
from directory.reference import official_order, territories
from directory.rules import DirectoryError
from prompts import descriptions as prompt_descriptions
from prompts import operations as prompt_operations
from prompts.operations import OverrideError
from web import policy, scratch
from web.forms import Form

bp = Blueprint("admin_pages", __name__, url_prefix="/admin")

PARIS = ZoneInfo("Europe/Paris")
PAGE_SIZE = 50


def _date_arg(name: str):
    """A date filter, ignored when unreadable or outside the years a record can have."""
    value = request.args.get(name, "")
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date() if value else None
    except ValueError:
        return None
    return day if day is not None and is_plausible_year(day.year) else None


def _text_arg(name: str, length: int) -> str:
    """A text filter: what a person can type (no invisible characters), bounded."""
    return text_policy.clean(request.args.get(name) or "").strip()[:length]


@bp.get("/journal")
@policy.allow(policy.admin)
def audit_log():
    """Every change, newest first; filters by département, actor, text and dates; keyset pages."""
    code = _text_arg("departement", 3).upper()
    actor = _text_arg("auteur", 100)
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
        # `at <= :at` first lets the index on `at` start at the cursor instead of the newest row.
        stmt = stmt.where(AuditEntry.at <= at,
                          or_(AuditEntry.at < at, AuditEntry.id < entry_id))
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
    """The keyset position `<instant>|<id>` of a page, or None when it is not one of ours."""
    at, _, entry_id = text.partition("|")
    try:
        instant, number = datetime.fromisoformat(at), int(entry_id)
    except ValueError:
        return None
    if instant.tzinfo is None or not is_plausible_year(instant.year) or not 0 < number < 2**63:
        return None
    return instant, number


# --- directory import and export ----------------------------------------------------------

class UploadForm(Form):
    file = FileField("Fichier de l'annuaire", validators=[
        FileRequired("Choisissez un fichier."),
        FileAllowed(["csv", "xlsx"], "Fichier .csv ou .xlsx attendu.")])


class ConfirmForm(Form):
    upload = HiddenField()
    digest = HiddenField()


def _uploads() -> Path:
    return scratch.folder("imports")


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
    else:  # who uploaded it and under which name: kept here, not in the page
        _sidecar(path).write_text(json.dumps({"user": current_user.id,
                                              "filename": _display_name(upload.filename)}))
    return render_template(
        "admin/import_preview.html", title="Aperçu de l'import", filename=upload.filename,
        problem=problem, errors=errors, preview=preview,
        confirm=ConfirmForm(upload=upload_id, digest=directory_settings.digest(preview)))


@bp.post("/annuaire/import/confirmer")
@policy.allow(policy.admin)
def confirm_import():
    """Apply exactly the previewed file, if the directory has not moved since the preview."""
    form = ConfirmForm()
    path = _stored(form.upload.data) if form.validate_on_submit() else None
    claimed = _claim(path) if path is not None else None
    if claimed is None:
        flash("Cet aperçu n'est plus disponible : importez de nouveau le fichier.", "error")
        return redirect(url_for("admin_pages.import_directory"))
    file, meta = claimed
    try:
        changes, errors, problem = _check(file)
        if errors or problem or (directory_settings.digest(directory_settings.describe(
                db.session(), changes)) != form.digest.data):
            flash("L'annuaire a changé depuis l'aperçu : rien n'a été importé. "
                  "Importez de nouveau le fichier pour voir les changements à jour.", "error")
            return redirect(url_for("admin_pages.import_directory"))
        actor = Actor.file_import(meta["filename"] or "fichier", Actor.user(current_user))
        directory_settings.save(db.session(), actor, changes)
    finally:
        file.unlink(missing_ok=True)
    flash(f"Import terminé : {len(changes)} département(s) modifié(s).", "success")
    return redirect(url_for("admin_pages.audit_log"))


def _sidecar(path: Path) -> Path:
    return path.with_name(path.stem + ".json")


def _claim(path: Path) -> tuple[Path, dict] | None:
    """Take an uploaded file for this confirmation alone (two confirmations of one preview:
    only one gets it), if the current user uploaded it; (file, what was kept with it)."""
    try:
        meta = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("user") != current_user.id:
        return None
    claimed = path.with_name(f"{path.stem}.claimed{path.suffix}")
    try:
        os.rename(path, claimed)  # atomic: the second confirmation finds nothing
    except FileNotFoundError:
        return None
    _sidecar(path).unlink(missing_ok=True)
    return claimed, meta


# --- prompts (« Messages ») ---------------------------------------------------------------

class PromptTextForm(Form):
    """A prompt's text at one level (`departement` empty: national)."""

    departement = HiddenField()
    texte = TextAreaField("Texte lu aux appelants", render_kw={"rows": 5})


class PromptAudioForm(Form):
    """A prompt's recording at one level (`departement` empty: national)."""

    departement = HiddenField()
    fichier = FileField("Enregistrement à faire entendre à la place du texte")


def _prompt_name(name: str) -> str:
    """The prompt a URL names, or 404."""
    try:
        return prompt_operations.known_name(name)
    except OverrideError:
        abort(404)


def _level_code(value: str | None) -> str | None:
    """The département a form or URL names (None: national), or 404 for an unknown one."""
    code = (value or "").strip().upper()
    if not code:
        return None
    if db.session().get(Departement, code) is None:
        abort(404)
    return code


def _prompt_page(name: str, code: str | None, text_form: PromptTextForm | None = None,
                 audio_form: PromptAudioForm | None = None, status: int = 200):
    session = db.session()
    row = prompt_operations.level(session, name, code)
    inherited = prompt_operations.inherited_text(session, name, code)
    if text_form is None:
        text_form = PromptTextForm(departement=code or "",
                                   texte=row.text if row is not None and row.text else inherited)
    if audio_form is None:
        audio_form = PromptAudioForm(departement=code or "")
    info = next(p for p in prompt_operations.overview(session) if p.name == name)
    departements = official_order(session.execute(select(Departement.code, Departement.name)),
                                  lambda d: d.code)
    dept_name = next((n for c, n in departements if c == code), None)
    placeholders = prompt_descriptions()["placeholders"]
    return render_template(
        "admin/prompt.html", title=f"Message « {name} »", info=info, code=code,
        dept_name=dept_name, row=row, inherited=inherited, text_form=text_form,
        audio_form=audio_form, departements=departements, placeholder_labels=placeholders,
        max_audio_mb=prompt_operations.MAX_AUDIO_BYTES // (1024 * 1024)), status


@bp.get("/messages")
@policy.allow(policy.admin)
def prompt_list():
    """Every sentence callers hear: current text, placeholders, overrides and recordings."""
    return render_template("admin/prompts.html", title="Messages",
                           prompts=prompt_operations.overview(db.session()))


@bp.get("/messages/<name>")
@policy.allow(policy.admin)
def prompt(name: str):
    """Edit one prompt, nationally or (?departement=…) for one département."""
    name = _prompt_name(name)
    return _prompt_page(name, _level_code(request.args.get("departement")))


@bp.post("/messages/<name>")
@policy.allow(policy.admin)
def save_prompt_text(name: str):
    """Save the level's text, or restore the text it inherits (« Rétablir le texte d'origine »)."""
    name = _prompt_name(name)
    form = PromptTextForm()
    code = _level_code(form.departement.data)
    if not form.validate_on_submit():
        return _prompt_page(name, code, text_form=form, status=400)
    actor = Actor.user(current_user)
    try:
        if request.form.get("action") == "retablir":
            changed = prompt_operations.restore_text(db.session(), actor, name, code)
            done = ("Le département suit de nouveau le texte national." if code
                    else "Texte d'origine rétabli.")
        else:
            changed = prompt_operations.set_text(db.session(), actor, name, form.texte.data or "",
                                                 code)
            done = "Texte enregistré : il est lu dès le prochain appel."
    except OverrideError as exc:
        form.texte.errors = [*form.texte.errors, str(exc)]
        return _prompt_page(name, code, text_form=form, status=400)
    flash(done if changed else "Aucune modification.", "success" if changed else "info")
    return redirect(url_for("admin_pages.prompt", name=name, departement=code))


@bp.post("/messages/<name>/enregistrement")
@policy.allow(policy.admin)
def save_prompt_audio(name: str):
    """Upload the level's recording (type and size checked by content), or remove it."""
    name = _prompt_name(name)
    form = PromptAudioForm()
    code = _level_code(form.departement.data)
    if not form.validate_on_submit():
        return _prompt_page(name, code, audio_form=form, status=400)
    actor, folder = Actor.user(current_user), prompt_operations.audio_folder(current_app.instance_path)
    try:
        if request.form.get("action") == "supprimer":
            obsolete = prompt_operations.remove_audio(db.session(), actor, name, code)
            done = "Enregistrement supprimé : le texte est de nouveau lu." if obsolete else None
        else:
            upload = form.fichier.data
            if not upload or not upload.filename:
                raise OverrideError("Choisissez un fichier MP3 ou WAV.")
            data = upload.stream.read(prompt_operations.MAX_AUDIO_BYTES + 1)
            obsolete = prompt_operations.set_audio(db.session(), actor, name, data, folder, code,
                                                   original_name=upload.filename)
            done = "Enregistrement ajouté : il est joué dès le prochain appel."
    except OverrideError as exc:
        form.fichier.errors = [*form.fichier.errors, str(exc)]
        return _prompt_page(name, code, audio_form=form, status=400)
    if obsolete:
        db.after_commit(lambda: prompt_operations.delete_audio_file(folder, obsolete))
    flash(done or "Aucune modification.", "success" if done else "info")
    return redirect(url_for("admin_pages.prompt", name=name, departement=code))


# --- national worked holidays -------------------------------------------------------------

@bp.route("/jours-feries", methods=["GET", "POST"])
@policy.allow(policy.admin)
def worked_holidays():
    """Public holidays worked in every département (e.g. Lundi de Pentecôte, journée de
    solidarité); a département may still keep the day off on its own page."""
    session = db.session()
    names = sorted(set(rules.known_holidays(
        {t.holiday_subdiv for t in territories().values()}).values()))
    form = Form()
    if request.method == "POST" and form.validate_on_submit():
        wanted = set(request.form.getlist("worked")) & set(names)
        current = set(operations.national_worked_holidays(session))
        for name in sorted(wanted ^ current):
            operations.set_worked_holiday(session, name, None, worked=name in wanted,
                                          actor=Actor.user(current_user))
        flash("Jours fériés travaillés enregistrés." if wanted ^ current else "Aucune modification.",
              "success" if wanted ^ current else "info")
        return redirect(url_for("admin_pages.worked_holidays"))
    return render_template("admin/worked_holidays.html", title="Jours fériés travaillés",
                           form=form, names=names,
                           worked=set(operations.national_worked_holidays(session)))
