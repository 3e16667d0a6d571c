"""One text policy: every entry point refuses what XML cannot hold; every writer survives it.

The hostile text is written straight into the database here, as text stored before the policy
(or by a hand-made SQL fix) would be: the writers must stay well-formed all the same.
"""

from __future__ import annotations

from datetime import date
from email import message_from_bytes

import openpyxl
import pytest
from defusedxml import ElementTree
from sqlalchemy import text

from core import mail
from core.text import TextRefused, check, clean
from directory.io import export_rows, write_file
from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, heard
from tracking.exports import export_workbook
from tracking.models import Solicitation

#: Every class of character XML 1.0 forbids, plus what the policy refuses on top of it.
HOSTILE = "\x00\x01\x08\x0b\x0c\x1f\x7f\x9f\ufdd0\ufffe\uffff\U0001ffff"
#: What a database can hold of it (PostgreSQL refuses NUL in text).
STORED = HOSTILE.replace("\x00", "")


def test_one_function_decides(app):
    for char in HOSTILE + "\ud800\udfff":
        with pytest.raises(TextRefused, match=f"U\\+{ord(char):04X}"):
            check(f"avant{char}après", "champ")
        assert clean(f"avant{char}après") == "avantaprès"
    for fine in ("Fermé\tle 24", "ligne 1\nligne 2\r\n", "«\u00a0Noël\u00a0» 🎄", "日本"):
        assert clean(fine) == fine
        assert check(fine, "champ") == fine.replace("\r\n", "\n")
    # Line breaks are stored as LF alone, whatever sent them (a web text area sends CRLF).
    assert check("a\r\nb\rc\n", "champ") == "a\nb\nc\n"


def _store_hostile_directory(db):
    factories.closure(db, "93", date(2026, 12, 21), date(2026, 12, 21), "Inventaire")
    factories.departement(db, "974", form_url="assistance.example.gouv.fr/974", email="a974@example.gouv.fr")
    db.execute(text("UPDATE date_exceptions SET reason = :r"), {"r": f"Inven{STORED}taire"})
    db.execute(text("UPDATE departements SET form_url = :f, email = :e WHERE code IN ('974', '75')"),
               {"f": f"assistance{STORED}.example.gouv.fr", "e": f"a{STORED}@example.gouv.fr"})
    db.execute(text("UPDATE lines SET label = :l"), {"l": f"Ligne{STORED}"})
    db.execute(text("UPDATE directory_state SET version = version + 1"))
    db.commit()


def test_twiml_of_every_step_is_well_formed_with_hostile_stored_text(app, twilio, db, clock):
    _store_hostile_directory(db)
    clock.set("2026-12-21T10:00")
    calls = [
        # closed (closure reason), voicemail offered, message left
        twilio.call(caller="+33612345678", keys=["93", "1", "2"], voicemail_seconds=12),
        # closed, empty voicemail, then the form (hostile form address of 75 is not 93's)
        twilio.call(caller="+33612345679", keys=["93", "1", "9"], voicemail_seconds=0),
        # no phone assistance: hostile form and email
        twilio.call(caller="+33612345670", keys=["974", "1", "1"]),
        # open: dial with whisper (referent side), then nobody answers and voicemail
        twilio.call(caller="+33612345671", keys=["75", "1", "3"],
                    referents=[Referent("accept")]),
        twilio.call(caller="+33612345672", keys=["75", "1", "3"],
                    referents=[Referent("no-answer")], voicemail_seconds=5),
        # returning caller offered their département, Corsica, then three wrong entries
        twilio.call(caller="+33612345678", keys=["1", "1"], referents=[Referent("decline")]),
        twilio.call(caller="anonymous", keys=["20", "1", "1", "1"]),
        twilio.call(caller="+33612345673", keys=["99", "00", "123"]),
    ]
    documents = [body for t in calls for body in t.twiml]
    for body in documents:  # the emulator parsed each already; say it in the test too
        root = ElementTree.fromstring(body)
        assert root.tag == "Response"
        assert not any(c in body for c in HOSTILE), body
    assert "exceptionnellement fermée : Inventaire" in heard(calls[0])
    assert "assistance.example.gouv.fr" in heard(calls[2]).replace(" point ", ".")
    assert calls[3].dialled and calls[4].dialled
    assert len(documents) > 30


def test_workbooks_and_directory_exports_survive_hostile_stored_text(app, twilio, db, tmp_path,
                                                                     clock):
    _store_hostile_directory(db)
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], referents=[Referent("accept")])
    db.execute(text("UPDATE thematiques SET label = label || :h WHERE key = 'assistance_technique'"),
               {"h": STORED})
    db.execute(text("UPDATE motifs SET label = label || :h"), {"h": STORED})
    db.execute(text("UPDATE solicitations SET comment = :c"), {"c": f"=appel{STORED}"})
    db.commit()

    path = tmp_path / "national.xlsx"
    count = export_workbook(db, departement=None, start=date(2026, 10, 1), end=date(2026, 12, 31),
                            path=path)
    assert count == 1
    book = openpyxl.load_workbook(path)  # a broken file would not load
    rows = list(book["Historique des sollicitations"].iter_rows(values_only=True))
    assert rows[1][4] == "Assistance technique" and rows[1][12] == "=appel"
    assert call_record(db, t.call_sid).outcome.name == "answered"
    lists = [v for r in book["Listes"].iter_rows(values_only=True) for v in r if v]
    assert "Assistance technique" in lists and not any(c in v for v in lists for c in HOSTILE)

    for name in ("annuaire.xlsx", "annuaire.csv"):
        write_file(tmp_path / name, export_rows(db))
    sheet = openpyxl.load_workbook(tmp_path / "annuaire.xlsx").active
    cells = [v for r in sheet.iter_rows(values_only=True) for v in r if isinstance(v, str)]
    assert "2026-12-21 Inventaire" in cells and not any(c in v for v in cells for c in HOSTILE)
    csv_text = (tmp_path / "annuaire.csv").read_text(encoding="utf-8-sig")
    assert "2026-12-21 Inventaire" in csv_text and not any(c in csv_text for c in HOSTILE)


def test_emails_are_cleaned(app, tmp_path):
    config = dict(app.config, SMTP_HOST="", MAIL_OUTBOX_DIR=str(tmp_path))
    mail.send(config, to=["equipe@example.gouv.fr"], subject=f"Classeurs{HOSTILE}\r\nBcc: x@y",
              body=f"Bonjour{HOSTILE},\nles classeurs sont prêts.")
    (eml,) = tmp_path.glob("*.eml")
    msg = message_from_bytes(eml.read_bytes())
    assert msg["Subject"] == "Classeurs Bcc: x@y" and msg["Bcc"] is None
    assert msg.get_payload(decode=True).decode() == "Bonjour,\nles classeurs sont prêts.\n"


@pytest.mark.parametrize("char", ["\x01", "\x1f", "\ufffe", "\uffff"])
def test_motif_files_with_forbidden_text_are_refused_naming_the_place(app, tmp_path, char):
    source = (app.root_path + "/tracking/motifs.yaml")
    content = open(source, encoding="utf-8").read()
    hostile = tmp_path / "motifs.yaml"
    escaped = f"\\u{ord(char):04x}"  # YAML escapes: the file itself stays printable
    hostile.write_text(content.replace("label: Incident ou anomalie",
                                       f'label: "Incident{escaped} ou anomalie"', 1),
                       encoding="utf-8")
    assert hostile.read_text(encoding="utf-8") != content
    result = app.test_cli_runner().invoke(args=["motifs", "load", str(hostile)])
    assert result.exit_code == 1
    assert f"caractère invisible ou interdit (U+{ord(char):04X})" in result.output
    assert "label" in result.output
    with app.app_context():
        from core import db as core_db
        labels = core_db.session().scalars(text("SELECT label FROM motifs")).all()
    assert not any(char in label for label in labels)


@pytest.mark.parametrize("char", ["\x01", "\ufffe", "\uffff"])
def test_solicitation_commands_refuse_forbidden_text(app, db, char):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["solicitations", "add", "--departement", "93", "--channel",
                                 "Courriel", "--at", "2026-11-20T10:15",
                                 "--comment", f"rappeler{char}"])
    assert result.exit_code == 1 and f"commentaire : caractère invisible ou interdit " \
        f"(U+{ord(char):04X})" in result.output
    assert db.query(Solicitation).count() == 0
    result = runner.invoke(args=["solicitations", "add", "--departement", "93", "--channel",
                                 "Courriel", "--at", "2026-11-20T10:15", "--comment", " rappeler "])
    assert result.exit_code == 0, result.output
    reference = result.output.split(": ")[1].strip()
    result = runner.invoke(args=["solicitations", "qualify", reference, "--thematique", "usage",
                                 "--motif", "doublons", "--comment", f"vu{char}"])
    assert result.exit_code == 1 and "caractère invisible ou interdit" in result.output
    db.expire_all()
    assert db.query(Solicitation).one().comment == "rappeler"
