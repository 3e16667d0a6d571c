"""Solicitations: created by calls, qualified, split, added by hand; the taxonomy as data."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from audit.models import AuditEntry
from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record
from tracking import exports, solicitations, taxonomy
from tracking.models import Channel, Solicitation, Source

PARIS = ZoneInfo("Europe/Paris")


def _rows(db, call):
    db.expire_all()
    return db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)
                      .order_by(Solicitation.id)).all()


def test_a_call_that_reached_a_departement_creates_one_row(twilio, db, clock):
    clock.set("2026-12-21T10:05")
    t = twilio.call(caller="+33612345678", keys=["93", "1", "3"], referents=[Referent("accept")])
    rows = _rows(db, call_record(db, t.call_sid))
    assert len(rows) == 1
    row = rows[0]
    assert (row.departement_code, row.channel, row.source, row.is_primary) == (
        "93", Channel.phone_svi, Source.svi, True)
    assert row.thematique.label == "Habilitations et comptes" and row.motif is None
    assert row.reference.startswith("S-") and len(row.reference) == 12
    exported = list(exports.iter_rows(db, departement="93", start=date(2026, 12, 1), end=date(2026, 12, 31)))
    assert exported == [(row.reference, datetime(2026, 12, 21, 10, 5), "93", "Téléphone (SVI)",
                         "Habilitations et comptes", "À qualifier", None, "décroché", 0, 60,
                         None, None, "", row.call_id, "oui")]


def test_calls_without_a_departement_create_no_row_and_corrections_follow(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["99", "98", "97"])
    assert _rows(db, call_record(db, t.call_sid)) == []
    t = twilio.call(caller="+33612345678", keys=["92", "2", "75", "1", None], referents=[Referent("accept")])
    rows = _rows(db, call_record(db, t.call_sid))
    assert [(r.departement_code, r.thematique_id) for r in rows] == [("75", None)]


def test_overseas_rows_are_in_local_time(twilio, db, clock):
    factories.departement(db, "974", phone_assistance=True, lines=["0262 99 00 01"])
    clock.set("2026-12-21T08:00")  # 11:00 in La Réunion
    twilio.call(caller="+262692000001", keys=["974"], referents=[Referent("accept")])
    [row] = exports.iter_rows(db, departement="974", start=date(2026, 12, 21), end=date(2026, 12, 21))
    assert row[1] == datetime(2026, 12, 21, 11, 0)


def test_qualify_split_and_add(db):
    call = factories.call(db, departement="57")
    [row] = _rows(db, call)
    solicitations.qualify(db, row, actor=factories.ACTOR, thematique="usage", motif="Traitement des doublons",
                          comment="doublon signalé", resolved=True, escalated=False)
    db.commit()
    assert (row.thematique.key, row.motif.key, row.resolved_first_level) == ("usage", "doublons", True)
    with pytest.raises(solicitations.SolicitationError, match="motif de « Usage du SI » inconnu"):
        solicitations.qualify(db, row, actor=factories.ACTOR, thematique="usage", motif="incident")
    db.rollback()

    rows = solicitations.split(db, row, [("usage", "doublons", None),
                                         ("assistance_technique", "incident", "Message d'erreur")],
                               actor=factories.ACTOR)
    db.commit()
    assert [(r.is_primary, r.call_id, r.motif.key) for r in rows] == [
        (True, row.call_id, "doublons"), (False, row.call_id, "incident")]
    assert rows[1].sous_motif.label == "Message d'erreur"
    # A later webhook of the same call does not overwrite a qualified row.
    solicitations.sync_call(db, call_record(db, call.call_sid))
    assert _rows(db, call_record(db, call.call_sid))[0].motif.key == "doublons"

    added = solicitations.add(db, actor=factories.ACTOR, departement="57", occurred_at=datetime(2026, 12, 22, 9, tzinfo=PARIS),
                              channel=solicitations.channel_from("courriel"), thematique="habilitations",
                              motif="creation")
    db.commit()
    assert (added.channel, added.call_id, added.source) == (Channel.email, None, Source.manual)
    with pytest.raises(solicitations.SolicitationError, match="canal inconnu"):
        solicitations.channel_from("pigeon voyageur")
    with pytest.raises(solicitations.SolicitationError, match="département inconnu"):
        solicitations.add(db, actor=factories.ACTOR, departement="99", occurred_at=datetime(2026, 12, 22, tzinfo=PARIS),
                          channel=Channel.email)


def test_renaming_a_motif_keeps_history_readable(db, tmp_path):
    row = solicitations.add(db, actor=factories.ACTOR, departement="75", occurred_at=datetime(2026, 11, 2, 10, tzinfo=PARIS),
                            channel=Channel.email, thematique="usage", motif="doublons")
    db.commit()
    renamed = taxonomy.DEFAULT_FILE.read_text(encoding="utf-8").replace(
        "Traitement des doublons", "Doublons de demandes").replace(
        "    - {key: statistiques, label: Extractions et statistiques}\n", "")
    (tmp_path / "motifs.yaml").write_text(renamed, encoding="utf-8")
    counts = taxonomy.load_file(db, tmp_path / "motifs.yaml")
    db.commit()
    assert counts["thematiques"] == 6
    [exported] = exports.iter_rows(db, departement="75", start=date(2026, 11, 1), end=date(2026, 11, 30))
    assert exported[0] == row.reference and exported[5] == "Doublons de demandes"
    tax = taxonomy.taxonomy(db)
    # The retired motif stays listed (last) so that old rows remain valid in workbooks.
    assert tax.motifs["Usage du SI"][-1] == "Extractions et statistiques"
    with pytest.raises(taxonomy.TaxonomyError, match="clé en double"):
        (tmp_path / "bad.yaml").write_text("- {key: a, label: A}\n- {key: a, label: B}\n", encoding="utf-8")
        taxonomy.load_file(db, tmp_path / "bad.yaml")


def test_solicitation_commands(app, twilio, db, clock):
    clock.set("2026-12-21T10:00")
    t = twilio.call(caller="+33612345678", keys=["93"], referents=[Referent("accept")])
    [row] = _rows(db, call_record(db, t.call_sid))
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["solicitations", "list", "--departement", "93"])
    assert row.reference in listed.output and "À qualifier" in listed.output
    result = runner.invoke(args=["solicitations", "qualify", row.reference, "--thematique", "Usage du SI",
                                 "--motif", "saisie", "--resolu", "--comment", "ok"])
    assert result.exit_code == 0 and "Usage du SI / Saisie et consultation des demandes" in result.output
    result = runner.invoke(args=["solicitations", "split", row.reference, "usage/saisie",
                                 "habilitations/droits"])
    assert result.exit_code == 0 and "2 ligne(s)" in result.output, result.output
    result = runner.invoke(args=["solicitations", "add", "--departement", "93", "--channel", "Courriel",
                                 "--at", "2026-12-21T11:30", "--thematique", "autre", "--motif", "autre"])
    assert result.exit_code == 0 and "sollicitation ajoutée : S-" in result.output
    bad = runner.invoke(args=["solicitations", "qualify", "S-NOPE", "--thematique", "x", "--motif", "y"])
    assert bad.exit_code != 0 and "sollicitation introuvable" in bad.output
    assert runner.invoke(args=["motifs", "load"]).output.startswith("6 thématiques")
    # Each change is in the audit log, in the name of the system account that ran the command.
    entries = _audit(db)
    assert [e.summary for e in entries] == [
        f"{row.reference} qualifiée : 1 motif(s)", f"{row.reference} qualifiée : 2 motif(s)",
        entries[2].summary]
    assert entries[2].summary.startswith("S-") and entries[2].summary.endswith("ajoutée (Courriel)")
    assert all(e.actor.startswith("cli:") and e.departement_code == "93" for e in entries)
    saisie = "Usage du SI › Saisie et consultation des demandes — résolu au niveau 1 : oui"
    assert entries[0].changes == {row.reference: ["À qualifier", saisie],
                                  f"{row.reference}, commentaire": ["", "ok"]}
    [added] = [r for r in _rows(db, call_record(db, t.call_sid)) if r.id != row.id]
    assert entries[1].changes == {  # the split adds a row: the first one is unchanged
        added.reference: ["", "Habilitations et comptes › Modification des droits"]}


def _audit(db) -> list[AuditEntry]:
    db.expire_all()
    return db.scalars(select(AuditEntry).where(AuditEntry.entity == "sollicitation")
                      .order_by(AuditEntry.id)).all()


def test_qualification_sent_twice_is_audited_once(app, db):
    call = factories.call(db, departement="93", thematique="usage")
    [row] = _rows(db, call)
    motifs = [("usage", "doublons", None), ("habilitations", "creation", None)]
    for _ in range(2):
        solicitations.qualify_motifs(db, row, motifs, comment="deux sujets", actor=factories.ACTOR)
        db.commit()
    [entry] = _audit(db)
    assert entry.actor == "test:pytest" and entry.summary == f"{row.reference} qualifiée : 2 motif(s)"
    second = _rows(db, call)[1]
    assert entry.changes == {
        row.reference: ["Usage du SI", "Usage du SI › Traitement des doublons"],
        f"{row.reference}, commentaire": ["", "deux sujets"],
        second.reference: ["", "Habilitations et comptes › Création de compte"]}
    # One motif fewer: the second row goes, and the log says so.
    solicitations.qualify_motifs(db, row, motifs[:1], actor=factories.ACTOR)
    db.commit()
    assert _audit(db)[-1].changes == {
        second.reference: ["Habilitations et comptes › Création de compte", ""]}


def test_quarter_bounds():
    assert exports.quarter_bounds("2026-Q4") == (date(2026, 10, 1), date(2026, 12, 31))
    assert exports.quarter_bounds("2027q1") == (date(2027, 1, 1), date(2027, 3, 31))
    assert exports.quarter_of(date(2026, 11, 22)) == "2026-Q4"
    with pytest.raises(exports.PeriodError):
        exports.quarter_bounds("2026-Q5")


def test_later_steps_of_a_call_do_not_touch_its_solicitation(app, twilio):
    """The engine repeats the département on every step; only a change reaches the solicitation."""
    from sqlalchemy import event
    selects = []

    @event.listens_for(app.extensions["svi.voice_engine"], "before_cursor_execute")
    def _count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM solicitations" in statement:
            selects.append(statement)
    twilio.call(caller="+33612345678", keys=["93", "1", "2"], referents=[Referent("accept")])
    # Département confirmed (creates the row), then the menu choice (copies the thématique).
    assert len(selects) == 2
