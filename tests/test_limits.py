"""Sizes are limited before work, imports never hold the write lock long, round trips are exact."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import func, select, text
from werkzeug.test import create_environ

from ivr.simulator import new_sid
from tests import factories
from tests.conftest import PUBLIC_BASE
from tracking import solicitations, workbook_import
from tracking.columns import HEADERS
from tracking.exports import export_workbook
from tracking.models import Channel, Solicitation

PARIS = ZoneInfo("Europe/Paris")
VOICE = f"{PUBLIC_BASE}/ivr/voice"


def _count(db):
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Solicitation))


def _book(path, rows, sheets=("Historique des sollicitations",)):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title in sheets:
        ws = wb.create_sheet(title)
        ws.append(list(HEADERS))
        for row in rows:
            ws.append(list(row))
    wb.save(path)
    return path


def _email_row(comment, when=datetime(2026, 11, 3, 14, 20)):
    return ("", when, "93", "Courriel", "Usage du SI", "Traitement des doublons", None, None,
            None, None, None, None, comment, None, "oui")


# --- request size -------------------------------------------------------------------------------

def test_an_oversized_webhook_is_refused_before_its_body_is_read(app, twilio):
    client = app.test_client()
    small = {"CallSid": new_sid(), "From": "+33612345678", "To": "+33806000156"}
    assert client.post(VOICE, data=small, headers={
        "X-Twilio-Signature": twilio.signature(VOICE, small)}).status_code == 200
    big = dict(small, Padding="x" * (200 * 1024))
    assert client.post(VOICE, data=big, headers={
        "X-Twilio-Signature": twilio.signature(VOICE, big)}).status_code == 413

    # A 200 MB body announced by its Content-Length: refused from the header, nothing read.
    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            self.read_bytes += len(buffer)
            buffer[:] = b"x" * len(buffer)
            return len(buffer)

    body = Endless()
    environ = create_environ("/ivr/voice", "https://svi.example.gouv.fr", method="POST",
                             content_type="application/x-www-form-urlencoded")
    environ.update({"wsgi.input": body, "CONTENT_LENGTH": str(200 * 2 ** 20),
                    "HTTP_X_TWILIO_SIGNATURE": twilio.signature(VOICE, small)})
    statuses = []
    b"".join(app.wsgi_app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["413 REQUEST ENTITY TOO LARGE"] and body.read_bytes == 0


# --- untrusted workbooks ------------------------------------------------------------------------

def _with_sheet_xml(path, xml: bytes):
    """Copy of a workbook whose first sheet's XML is replaced (as a hostile file would be)."""
    hostile = path.with_name("hostile.xlsx")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(hostile, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = xml if info.filename == "xl/worksheets/sheet1.xml" else src.read(info)
            dst.writestr(info.filename, data)
    return hostile


def _token_sheet(megabytes: int) -> bytes:
    return (b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/'
            b'spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>'
            + b"A" * (megabytes * 2 ** 20) + b"</t></is></c></row></sheetData></worksheet>")


def test_a_small_workbook_hiding_a_huge_token_is_refused_before_parsing(app, db, tmp_path):
    hostile = _with_sheet_xml(_book(tmp_path / "base.xlsx", []), _token_sheet(95))
    assert hostile.stat().st_size < 200 * 1024
    result = app.test_cli_runner().invoke(args=["import-workbook", str(hostile)])
    assert result.exit_code == 1
    assert "classeur refusé : contenu anormal (une valeur de plus de 1024 Ko)" in result.output
    # The directory import reads workbooks through the same gate (and allows 20 MB unzipped).
    hostile = _with_sheet_xml(_book(tmp_path / "base.xlsx", []), _token_sheet(5))
    hostile = hostile.rename(tmp_path / "annuaire.xlsx")
    result = app.test_cli_runner().invoke(args=["directory", "import", str(hostile)])
    assert result.exit_code == 1 and "contenu anormal" in result.output


def _renamed_sheet(path, xml: bytes, name: str):
    """Copy of a workbook whose first sheet is the part `name`, as its relationships say."""
    hostile = path.with_name("renamed.xlsx")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(hostile, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data, member = src.read(info), info.filename
            if member == "xl/worksheets/sheet1.xml":
                data, member = xml, name
            elif member in ("[Content_Types].xml", "xl/_rels/workbook.xml.rels"):
                data = data.replace(b"worksheets/sheet1.xml", name.removeprefix("xl/").encode())
            dst.writestr(member, data)
    return hostile


@pytest.mark.parametrize("name", ["xl/worksheets/sheet1.bin", "xl/worksheets/sheet1"])
def test_every_part_is_scanned_whatever_its_name(app, db, tmp_path, name):
    hostile = _renamed_sheet(_book(tmp_path / "base.xlsx", []), _token_sheet(3), name)
    result = app.test_cli_runner().invoke(args=["import-workbook", str(hostile)])
    assert result.exit_code == 1
    assert "contenu anormal (une valeur de plus de 1024 Ko)" in result.output


def _shared_strings(path, count: int):
    """Copy of a workbook with `count` tiny shared strings (1 MB zipped holds 28 million)."""
    flooded = path.with_name("strings.xlsx")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(flooded, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" '
                                    b'ContentType="application/vnd.openxmlformats-officedocument.'
                                    b'spreadsheetml.sharedStrings+xml"/></Types>')
            elif info.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", b'<Relationship Id="rId99" Type="http://'
                                    b'schemas.openxmlformats.org/officeDocument/2006/relationships/'
                                    b'sharedStrings" Target="sharedStrings.xml"/></Relationships>')
            dst.writestr(info, data)
        dst.writestr("xl/sharedStrings.xml", b'<sst xmlns="http://schemas.openxmlformats.org/'
                     b'spreadsheetml/2006/main">' + b"<x:si><t>a</t></x:si>" * count + b"</sst>")
    return flooded


def test_a_flood_of_shared_strings_or_cells_is_refused_before_loading(app, db, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(workbook_import, "MAX_STRINGS", 1000)
    monkeypatch.setattr(workbook_import, "MAX_CELLS", 50)
    base = _book(tmp_path / "base.xlsx", [_email_row(f"n° {i}") for i in range(3)])
    result = app.test_cli_runner().invoke(args=["import-workbook", str(base)])
    assert result.exit_code == 0, result.output  # a genuine file under the limits
    flooded = _shared_strings(base, 1001)
    result = app.test_cli_runner().invoke(args=["import-workbook", str(flooded)])
    assert result.exit_code == 1
    assert "classeur refusé : trop de textes différents (1000 au maximum)" in result.output
    wide = _book(tmp_path / "wide.xlsx", [_email_row(f"n° {i}") for i in range(6)])
    result = app.test_cli_runner().invoke(args=["import-workbook", str(wide)])
    assert result.exit_code == 1
    assert "trop de cellules (50 au maximum, toutes feuilles comprises)" in result.output


def test_rows_are_counted_across_all_sheets(app, db, tmp_path, monkeypatch):
    monkeypatch.setattr(workbook_import, "MAX_READ_ROWS", 25)
    path = _book(tmp_path / "many.xlsx", [_email_row(f"n° {i}") for i in range(10)],
                 sheets=("Historique des sollicitations", "Historique (2)", "Historique (3)"))
    result = app.test_cli_runner().invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 1
    assert "trop de lignes (25 au maximum, toutes feuilles et lignes vides comprises)" in result.output
    assert _count(db) == 0


def test_an_absurd_date_is_a_named_error(app, db, tmp_path):
    path = _book(tmp_path / "dates.xlsx", [_email_row("a", when="01/01/0001 10:00"),
                                          _email_row("b", when=datetime(1, 1, 1, 10, 0)),
                                          _email_row("c", when="31/12/9999")])
    result = app.test_cli_runner().invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 1, result.output
    for line, shown in ((2, "01/01/0001"), (3, "01/01/0001"), (4, "31/12/9999")):
        assert (f"ligne {line}, colonne « Date et heure » : date hors des années 2000 à 2099 : "
                f"« {shown} »") in result.output
    assert "Traceback" not in result.output and _count(db) == 0


# --- imports commit by batches, and stay all or nothing ----------------------------------------

def test_a_long_import_commits_by_batches_and_undoes_them_if_one_fails(app, db, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(workbook_import, "APPLY_BATCH", 3)
    existing = solicitations.add(db, actor=factories.ACTOR, departement="93", channel=Channel.phone_direct,
                                 occurred_at=datetime(2026, 11, 2, 9, tzinfo=PARIS), comment="avant")
    db.commit()
    rows = [_email_row(f"courriel {i}") for i in range(10)]
    rows.append((existing.reference, None, "93", "Téléphone (hors SVI)", "Usage du SI",
                 "Traitement des doublons", None, None, None, None, "oui", None, "après", None,
                 "oui"))
    path = _book(tmp_path / "long.xlsx", rows)

    commits, real_apply = [], workbook_import._apply_batches

    def failing_on_the_third_batch(session, result):
        for number, _ in enumerate(real_apply(session, result), start=1):
            commits.append(_count_elsewhere(app))
            if number == 3:
                raise RuntimeError("disque plein")
            yield
    monkeypatch.setattr(workbook_import, "_apply_batches", failing_on_the_third_batch)
    result = app.test_cli_runner().invoke(args=["import-workbook", str(path)])
    assert result.exit_code != 0
    assert commits[:2] == [1, 1]  # the update batch, then a first batch of additions: committed
    db.expire_all()
    assert _count(db) == 1 and db.get(Solicitation, existing.id).comment == "avant"

    monkeypatch.setattr(workbook_import, "_apply_batches", real_apply)
    result = app.test_cli_runner().invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 0, result.output
    assert "10 ligne(s) ajoutée(s), 1 mise(s) à jour" in result.output
    db.expire_all()
    assert _count(db) == 11 and db.get(Solicitation, existing.id).comment == "après"


def _count_elsewhere(app) -> int:
    """Rows another connection sees: what is committed."""
    with app.extensions["svi.sessionmaker"]() as other:
        return other.scalar(select(func.count()).select_from(Solicitation))


# --- round trips --------------------------------------------------------------------------------

def test_reimporting_an_unmodified_export_changes_nothing(app, db, tmp_path):
    factories.call(db, departement="93", thematique="usage",
                   started_at=datetime(2026, 11, 9, 10, tzinfo=PARIS), wait_seconds=0, talk_seconds=60)
    for comment in ("\tcommence par une tabulation", "  espaces autour  ", "=1+1", "'quote",
                    "ligne 1\nligne 2"):
        solicitations.add(db, actor=factories.ACTOR, departement="93", channel=Channel.email, comment="x",
                          occurred_at=datetime(2026, 11, 10, 9, tzinfo=PARIS))
    db.commit()
    # Text stored before the policy, or by hand: exported cleaned, never written back.
    stored = ["\tcommence par une tabulation", "  espaces autour  ", "=1+1", "bip\x07bip",
              "non\ufffecaractère"]
    ids = db.scalars(select(Solicitation.id).where(Solicitation.call_id.is_(None))
                     .order_by(Solicitation.id)).all()
    for row_id, comment in zip(ids, stored):
        db.execute(text("UPDATE solicitations SET comment = :c WHERE id = :i"),
                    {"c": comment, "i": row_id})
    db.commit()
    path = tmp_path / "93.xlsx"
    export_workbook(db, departement="93", start=date(2026, 10, 1), end=date(2026, 12, 31),
                    path=path)
    result = app.test_cli_runner().invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 0, result.output
    assert "0 ligne(s) ajoutée(s), 0 mise(s) à jour, 6 inchangée(s)" in result.output
    db.expire_all()
    assert db.scalars(select(Solicitation.comment).where(Solicitation.id.in_(ids))
                      .order_by(Solicitation.id)).all() == stored


@pytest.mark.parametrize("comment", ["ligne 1\r\nligne 2", "a\rb", "fin\r\n\r\n"])
def test_a_comment_typed_with_carriage_returns_round_trips_exactly(app, db, tmp_path, comment):
    """Web text areas send CRLF, a workbook gives a CR back as LF: stored as LF, the export of a
    comment qualified from the command line re-imports with no change."""
    row = factories.solicitation_row(db, departement="93", comment="x",
                                     occurred_at=datetime(2026, 11, 10, 9, tzinfo=PARIS))
    cli = app.test_cli_runner()
    result = cli.invoke(args=["solicitations", "qualify", row.reference, "--thematique", "usage",
                              "--motif", "doublons", "--comment", comment])
    assert result.exit_code == 0, result.output
    db.expire_all()
    assert "\r" not in db.get(Solicitation, row.id).comment
    path = tmp_path / "93.xlsx"
    assert cli.invoke(args=["export", "--departement", "93", "--quarter", "2026-Q4",
                            "-o", str(path)]).exit_code == 0
    result = cli.invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 0 and "0 mise(s) à jour, 1 inchangée(s)" in result.output, result.output
    # Stored with a CR before this policy: compared as the export gives it back.
    db.execute(text("UPDATE solicitations SET comment = :c"), {"c": comment.strip() + "\rz"})
    db.commit()
    assert cli.invoke(args=["export", "--departement", "93", "--quarter", "2026-Q4",
                            "-o", str(path)]).exit_code == 0
    result = cli.invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 0 and "0 mise(s) à jour, 1 inchangée(s)" in result.output, result.output


def test_directory_export_with_stored_oddities_reimports_unchanged(app, db, tmp_path):
    from directory.operations import add_exception, get_departement
    add_exception(db, get_departement(db, "93"), "closure", date(2026, 12, 24), date(2026, 12, 24),
                  "Fin d'année")
    db.commit()
    db.execute(text("UPDATE date_exceptions SET reason = :r"), {"r": "\tFin  d'année\uffff "})
    db.execute(text("UPDATE departements SET form_url = :f WHERE code = '93'"),
               {"f": " assistance.example.gouv.fr/93\x01"})
    db.commit()
    for name in ("annuaire.csv", "annuaire.xlsx"):
        assert app.test_cli_runner().invoke(args=["directory", "export", str(tmp_path / name)]).exit_code == 0
        result = app.test_cli_runner().invoke(args=["directory", "import", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "0 département(s) mis à jour, 101 inchangé(s)" in result.output
